"""LiteRT (TensorFlow Lite's successor) with its XNNPACK CPU kernels: an exported ``.tflite``, NumPy in and out.

The model card and export record sit beside it in ``NAME.json`` (:func:`edgedepth.runtime.metadata.sidecar_path`),
as for ncnn. The graph keeps PyTorch's N x C x H x W input (the converter transposes inside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedepth.core.errors import EdgedepthError, last_line
from edgedepth.core.processing import Interpolation
from edgedepth.runtime.metadata import read_sidecar
from edgedepth.runtime.predictor import ExportedPredictor, check_cpu, check_input_shape, existing_model_file


class LiteRtPredictor(ExportedPredictor):
    """An exported ``.tflite`` run by LiteRT's interpreter (XNNPACK) on the CPU; ``threads``: its thread count
    (``None``: LiteRT's default)."""

    runtime = "litert"

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, interpolation: Interpolation = "cubic",
                 threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = existing_model_file(path)
        super().__init__(path, read_sidecar(path), size, interpolation)
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgedepthError(f"{path}: not a readable LiteRT model ({last_line(exc)})") from exc
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        check_input_shape(path, list(self._input["shape"]), self.size)

    @classmethod
    def open(cls, path: Path, size: tuple[int, int] | None, device: str, interpolation: Interpolation,
             threads: int | None, share_cores: bool, **options: Any) -> LiteRtPredictor:
        """The file as :func:`edgedepth.runtime.predictor.load_predictor` opens it: on the CPU."""
        check_cpu(device, f"{path}: LiteRT")
        return cls(path, size, interpolation, threads, **options)

    def run_graph(self, batch: np.ndarray) -> np.ndarray:
        """The graph is exported for one image: each of the batch in turn."""
        outputs = []
        for image in np.ascontiguousarray(batch, dtype=np.float32):
            self.interpreter.set_tensor(self._input["index"], image[None])
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self._output["index"]).copy())
        return np.concatenate(outputs)
