"""ONNX Runtime: an exported ``.onnx`` (FP32 or INT8 QDQ) on the CPU, NumPy in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedepth.core.errors import EdgedepthError, last_line
from edgedepth.core.processing import Interpolation
from edgedepth.runtime.metadata import KEYS, ExportMetadata
from edgedepth.runtime.predictor import (
    ExportedPredictor,
    check_cpu,
    check_input_shape,
    existing_model_file,
)


class OnnxPredictor(ExportedPredictor):
    """An exported ``.onnx`` (FP32 or INT8 QDQ) run by ONNX Runtime on the CPU.

    ``threads`` sets ``intra_op_num_threads`` (``None``: ONNX Runtime's default, all cores); ``spin``: its idle
    threads spin-wait for the next operator (ONNX Runtime's default), else they sleep (see ``load_predictor``'s
    ``share_cores``).
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] | None = None,
        interpolation: Interpolation = "cubic",
        threads: int | None = None,
        spin: bool = True,
    ) -> None:
        import onnxruntime as ort

        path = existing_model_file(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's InvalidProtobuf, Fail, ... derive from Exception only
            raise EdgedepthError(f"{path}: not a readable ONNX model ({last_line(exc)})") from exc
        values = self.session.get_modelmeta().custom_metadata_map
        metadata = ExportMetadata.from_strings({k: values[f"edgedepth.{k}"] for k in KEYS if f"edgedepth.{k}" in values},
                                               path)
        super().__init__(path, metadata, size, interpolation)
        self._input = self.session.get_inputs()[0].name
        check_input_shape(path, self.session.get_inputs()[0].shape, self.size)

    @classmethod
    def open(cls, path: Path, size: tuple[int, int] | None, device: str, interpolation: Interpolation,
             threads: int | None, share_cores: bool, **options: Any) -> OnnxPredictor:
        """The file as :func:`edgedepth.runtime.predictor.load_predictor` opens it: on the CPU."""
        check_cpu(device, f"{path}: ONNX Runtime")
        return cls(path, size, interpolation, threads, spin=not share_cores, **options)

    def run_graph(self, batch: np.ndarray) -> np.ndarray:
        (output,) = self.session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(output)
