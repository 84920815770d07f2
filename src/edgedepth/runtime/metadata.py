"""The model card inside an exported file, so that a Predictor needs no flag beside the file.

An export carries four string entries (ONNX ``metadata_props``, OpenVINO ``rt_info`` under ``edgedepth``,
TorchScript ``_extra_files``): ``format`` (``edgedepth.export/1``), ``card`` (the JSON :class:`ModelCard`,
its ``input_size`` the fixed size the network was exported at), ``provenance`` (the weights' own, carried
over) and ``export`` (the JSON :class:`ExportInfo`: how the file was made).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import Upsample

FORMAT = "edgedepth.export/1"
KEYS = ("format", "card", "provenance", "export")
#: The decoder's upsampling modes, which ``final_upsample`` may name.
FINAL_UPSAMPLE_MODES: tuple[Upsample, ...] = get_args(Upsample)


@dataclass(frozen=True)
class ExportInfo:
    """How an exported file was made.

    ``precision`` is ``fp32`` or ``int8``; ``quantizer`` names the INT8 tool (``onnxruntime`` or ``nncf``,
    ``None`` for FP32), ``calibration_images`` how many images fixed its activation ranges and ``calibration_set``
    which they were (the ``--calib`` source's name, or the package's rendered scenes). When the tool
    was chosen by speed, ``quantizer_latency_ms`` holds each candidate's measured median latency; an INT8 file
    checked at export holds its own and its FP32 file's (``int8_latency_ms``, ``fp32_latency_ms``: batch 1, one
    thread, on the machine that exported it), so a file slower than FP32 says so. ``float_layers`` names the layers
    an INT8 file keeps in floating point because INT8 hurt them most (ONNX node name -> the signal-to-quantisation-
    noise ratio in dB of what each read when quantised), so that the file passes its check. ``weight_bits`` says
    whether its weights take 7 bits (any CPU) or 8 (CPUs whose INT8 dot products do not saturate: VNNI, AMX, ARM
    dot product); ``None`` for FP32 files and files made before it was recorded.
    ``final_upsample`` (``bilinear`` or ``nearest``; ``None``: the graph is the whole network) says that the graph
    ends before a FastDepth's last x2 upsampling and ReLU, which the Predictor then applies
    (:func:`edgedepth.core.processing.final_upsample`). ``params`` and ``macs`` are the network's parameters and
    multiply-accumulates at the exported size, counted at export (``None`` in files made before they were), so that
    ``bench --files`` shows the FLOP floor without the training framework.
    """

    runtime: str
    precision: str = "fp32"
    quantizer: str | None = None
    calibration_images: int = 0
    calibration_set: str = ""
    source: str = ""
    quantizer_latency_ms: dict[str, float] = field(default_factory=dict)
    int8_latency_ms: float | None = None
    fp32_latency_ms: float | None = None
    float_layers: dict[str, float] = field(default_factory=dict)
    weight_bits: int | None = None
    final_upsample: Upsample | None = None
    params: int | None = None
    macs: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportInfo:
        return cls(
            runtime=str(data["runtime"]),
            precision=str(data["precision"]),
            quantizer=None if data.get("quantizer") is None else str(data["quantizer"]),
            calibration_images=int(data.get("calibration_images", 0)),
            calibration_set=str(data.get("calibration_set", "")),
            source=str(data.get("source", "")),
            quantizer_latency_ms={str(k): float(v) for k, v in dict(data.get("quantizer_latency_ms", {})).items()},
            int8_latency_ms=_optional_float(data.get("int8_latency_ms")),
            fp32_latency_ms=_optional_float(data.get("fp32_latency_ms")),
            float_layers={str(k): float(v) for k, v in dict(data.get("float_layers", {})).items()},
            weight_bits=None if data.get("weight_bits") is None else int(data["weight_bits"]),
            final_upsample=_final_upsample_mode(data.get("final_upsample")),
            params=None if data.get("params") is None else int(data["params"]),
            macs=None if data.get("macs") is None else int(data["macs"]),
        )


@dataclass(frozen=True)
class ExportMetadata:
    """What an exported file says about itself."""

    card: ModelCard
    provenance: dict[str, Any]
    info: ExportInfo

    def to_strings(self) -> dict[str, str]:
        """The four entries, as the string key/value pairs every format stores."""
        return {
            "format": FORMAT,
            "card": json.dumps(self.card.to_dict()),
            "provenance": json.dumps(self.provenance, default=str),
            "export": json.dumps(asdict(self.info)),
        }

    @classmethod
    def from_strings(cls, values: Mapping[str, str], path: str | Path) -> ExportMetadata:
        """Parse the entries read back from ``path``; a file that is not ours is a clear error."""
        if values.get("format") != FORMAT or "card" not in values:
            raise EdgedepthError(
                f"{path}: no edgedepth model card in its metadata (not made by `edgedepth export`); "
                "export it with: edgedepth export --weights W.safetensors --format ... --out ..."
            )
        try:
            return cls(
                card=ModelCard.from_dict(json.loads(values["card"])),
                provenance=dict(json.loads(values.get("provenance", "{}"))),
                info=ExportInfo.from_dict(json.loads(values["export"])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgedepthError(f"{path}: corrupt edgedepth metadata ({exc})") from exc


def sidecar_path(model_file: Path) -> Path:
    """Where the metadata of a format with no place for it (ncnn, LiteRT) is kept: ``NAME.json`` beside the file."""
    return model_file.with_suffix(".json")


def read_sidecar(model_file: Path) -> ExportMetadata:
    """The metadata beside ``model_file``; a missing or corrupt one is a one-line error."""
    path = sidecar_path(model_file)
    if not path.is_file():
        raise EdgedepthError(f"{model_file}: its edgedepth metadata (.json) {path.name} is missing beside it; copy the "
                             "export's files together")
    try:
        values = json.loads(path.read_text())
    except ValueError as exc:
        raise EdgedepthError(f"{path}: corrupt edgedepth metadata ({exc})") from exc
    return ExportMetadata.from_strings(values if isinstance(values, dict) else {}, model_file)


def _optional_float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _final_upsample_mode(value: object) -> Upsample | None:
    if value is None:
        return None
    for mode in FINAL_UPSAMPLE_MODES:
        if value == mode:
            return mode
    raise ValueError(f"final_upsample {value!r}, not one of {FINAL_UPSAMPLE_MODES}")
