"""OpenVINO: an IR (``.xml`` + ``.bin``, FP32 or INT8) compiled for the CPU, NumPy in and out."""

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


class OpenVinoPredictor(ExportedPredictor):
    """An OpenVINO IR (``.xml`` + ``.bin``, FP32 or INT8) compiled for the CPU with the latency hint.

    FP32 files are compiled with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AVX-512 BF16 or AMX,
    OpenVINO would otherwise silently run them in bfloat16. ``default_precision=True`` leaves OpenVINO its own
    choice (bf16 there; what ``bench`` times as ``openvino-default``). ``inference_precision`` says what it chose.
    The IR has batch 1; a batch runs image by image.
    """

    runtime = "openvino"

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] | None = None,
        interpolation: Interpolation = "cubic",
        threads: int | None = None,
        default_precision: bool = False,
    ) -> None:
        import openvino as ov

        path = existing_model_file(path)
        _check_ir(path)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise EdgedepthError(f"{path}: not a readable OpenVINO IR (.xml with its .bin beside it): "
                                 f"{last_line(exc)}") from exc
        values = {k: model.get_rt_info(["edgedepth", k]).astype(str) for k in KEYS if model.has_rt_info(["edgedepth", k])}
        metadata = ExportMetadata.from_strings(values, path)
        super().__init__(path, metadata, size, interpolation)
        check_input_shape(path, [d.get_length() if d.is_static else None for d in model.inputs[0].partial_shape],
                          self.size)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if metadata.info.precision == "fp32" and not default_precision:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inference_precision: str = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "bf16"

    @classmethod
    def open(cls, path: Path, size: tuple[int, int] | None, device: str, interpolation: Interpolation,
             threads: int | None, share_cores: bool, **options: Any) -> OpenVinoPredictor:
        """The file as :func:`edgedepth.runtime.predictor.load_predictor` opens it: on the CPU."""
        check_cpu(device, f"{path}: OpenVINO")
        return cls(path, size, interpolation, threads, **options)

    def run_graph(self, batch: np.ndarray) -> np.ndarray:
        outputs = [self.request.infer({0: image[None]})[0].copy() for image in np.asarray(batch, dtype=np.float32)]
        return np.concatenate(outputs)


def _check_ir(path: Path) -> None:
    """An IR is a well-formed ``<net>`` XML with its ``.bin`` beside it: checked before OpenVINO reads it, since
    OpenVINO offers a file its IR reader refuses to its other frontends, and TensorFlow's logs its parse errors
    on stderr (lines a user of this command would see above its own)."""
    from xml.etree import ElementTree

    unreadable = f"{path}: not a readable OpenVINO IR (.xml with its .bin beside it)"
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise EdgedepthError(f"{unreadable}: not well-formed XML ({exc}); export it again") from exc
    if root.tag != "net":
        raise EdgedepthError(f"{unreadable}: its root element is <{root.tag}>, not <net>")
    if not path.with_suffix(".bin").is_file():
        raise EdgedepthError(f"{unreadable}: {path.with_suffix('.bin').name} is missing; keep it beside the .xml")
