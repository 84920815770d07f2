"""``edgedepth export``: our ``.safetensors`` weights to ONNX, OpenVINO IR or TorchScript, FP32 or INT8 calibrated
on the user's images (:mod:`.graph` writes and checks the file, :mod:`.quantize` makes INT8)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgedepth.core.errors import EdgedepthError
from edgedepth.export.graph import ExportResult, QuantizerChoice, export_model
from edgedepth.export.quantize import DEFAULT_CALIBRATION_LIMIT, calibration_batches
from edgedepth.models.weights import load_model, read_metadata
from edgedepth.runtime.runtimes import ExportFormat


@dataclass(frozen=True)
class ExportConfig:
    """What ``edgedepth export`` was asked to do."""

    weights: Path
    fmt: ExportFormat
    out: Path
    size: tuple[int, int] | None = None
    int8: bool = False
    calib: Path | None = None
    calib_limit: int = DEFAULT_CALIBRATION_LIMIT
    quantizer: QuantizerChoice = "auto"

def run(cfg: ExportConfig) -> ExportResult:
    """Export our ``.safetensors`` weights as ``cfg`` says; provenance is carried into the file."""
    if cfg.int8 != (cfg.calib is not None):
        raise EdgedepthError("--int8 and --calib SOURCE go together: INT8 needs calibration images")
    if cfg.weights.suffix.lower() != ".safetensors":
        raise EdgedepthError(f"--weights {cfg.weights}: export starts from our .safetensors weights")
    card, provenance = read_metadata(cfg.weights)
    model = load_model(cfg.weights)
    size = cfg.size or card.input_size
    calibration = calibration_batches(cfg.calib, card, size, cfg.calib_limit) if cfg.calib is not None else None
    return export_model(model, cfg.out, cfg.fmt, size, provenance, cfg.weights.name, calibration,
                        quantizer=cfg.quantizer)
