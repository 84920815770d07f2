"""What ``edgedepth export`` is asked to do: light to import (the command line reads the defaults here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgedepth.export.quantize import DEFAULT_CALIBRATION_LIMIT, WeightBits
from edgedepth.runtime.runtimes import ExportFormat, Quantizer

#: How the INT8 quantiser is chosen: ``auto`` builds both and keeps the one whose file runs faster here.
QuantizerChoice = Literal["auto", Quantizer]


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
    #: INT8 weight precision, 7 or 8 bits (``None``: 8 where this CPU does not saturate, else 7).
    weight_bits: WeightBits | None = None
