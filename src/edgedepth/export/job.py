"""``edgedepth export``: our ``.safetensors`` weights to ONNX, OpenVINO IR or TorchScript, FP32 or INT8 calibrated
on the user's images (:mod:`.graph` writes and checks the file, :mod:`.quantize` makes INT8)."""

from __future__ import annotations

from edgedepth.core.errors import EdgedepthError
from edgedepth.export.config import ExportConfig
from edgedepth.export.graph import ExportResult, check_int8_format, export_model
from edgedepth.export.quantize import calibration_batches
from edgedepth.models.weights import load_model, read_metadata


def run(cfg: ExportConfig) -> ExportResult:
    """Export our ``.safetensors`` weights as ``cfg`` says; provenance is carried into the file."""
    if cfg.int8 != (cfg.calib is not None):
        raise EdgedepthError("--int8 and --calib SOURCE go together: INT8 needs calibration images")
    if cfg.int8:
        check_int8_format(cfg.fmt)
    if cfg.weights.suffix.lower() != ".safetensors":
        raise EdgedepthError(f"--weights {cfg.weights}: export starts from our .safetensors weights")
    card, provenance = read_metadata(cfg.weights)
    model = load_model(cfg.weights)
    size = cfg.size or card.input_size
    calibration = calibration_batches(cfg.calib, card, size, cfg.calib_limit) if cfg.calib is not None else None
    return export_model(model, cfg.out, cfg.fmt, size, provenance, cfg.weights.name, calibration,
                        quantizer=cfg.quantizer, calibration_set=str(cfg.calib or ""), weight_bits=cfg.weight_bits)
