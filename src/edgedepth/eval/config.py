"""What ``edgedepth eval nyu`` and ``edgedepth eval zeroshot`` are asked to do, and the seed's NYU protocol: light
to import (the command line reads the defaults here before any model loads)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from edgedepth.core.depth import DEFAULT_MAX_DEPTH
from edgedepth.core.errors import EdgedepthError
from edgedepth.data.marigold import EVAL_SETS
from edgedepth.data.nyu import NYU_CROPS, GroundTruth
from edgedepth.eval.metrics import ALIGNMENTS, Alignment
from edgedepth.eval.zeroshot_metrics import AlignmentSpace

Baseline = Literal["ramp", "constant"]
Split = Literal["test", "train"]

@dataclass(frozen=True)
class EvalProtocol:
    """How predictions are scored. The defaults are the seed's protocol."""

    ground_truth: GroundTruth = "rawDepths"
    alignment: Alignment = "lsq-disparity"
    crop: str = "seed"  # a key of edgedepth.data.nyu.NYU_CROPS
    min_depth: float = 0.0
    max_depth: float = DEFAULT_MAX_DEPTH

    def describe(self) -> str:
        """One sentence for the report."""
        box = NYU_CROPS[self.crop]
        crop = "full frame" if box is None else f"crop rows {box[0]}:{box[1]}, columns {box[2]}:{box[3]}"
        alignment = {
            "lsq-disparity": "least-squares scale and shift in disparity against 1/depth",
            "median-depth": "median scaling in depth space",
            "none": "no alignment (prediction taken as metric inverse depth)",
        }[self.alignment]
        return (
            f"ground truth {self.ground_truth}, valid where {self.min_depth:g} < d < {self.max_depth:g} m, "
            f"{crop} ({self.crop}); {alignment}; aligned disparity clamped at 1/{self.max_depth:g} and inverted"
        )

#: Named protocols; ``--gt``, ``--align`` and ``--crop`` override single fields.
PROTOCOLS = {"seed": EvalProtocol()}

def make_protocol(
    name: str = "seed",
    ground_truth: GroundTruth | None = None,
    alignment: Alignment | None = None,
    crop: str | None = None,
) -> EvalProtocol:
    """A named protocol with the fields given here (not None) replaced."""
    if name not in PROTOCOLS:
        raise EdgedepthError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    if crop is not None and crop not in NYU_CROPS:
        raise EdgedepthError(f"unknown crop {crop!r}; use one of {', '.join(NYU_CROPS)}")
    if alignment is not None and alignment not in ALIGNMENTS:
        raise EdgedepthError(f"unknown alignment {alignment!r}; use one of {', '.join(ALIGNMENTS)}")
    if ground_truth is not None and ground_truth not in ("depths", "rawDepths"):
        raise EdgedepthError(f"unknown ground truth {ground_truth!r}; use depths or rawDepths")
    overrides: dict[str, Any] = {"ground_truth": ground_truth, "alignment": alignment, "crop": crop}
    return replace(PROTOCOLS[name], **{key: value for key, value in overrides.items() if value is not None})

@dataclass(frozen=True)
class EvalConfig:
    """What ``edgedepth eval`` was asked to do. ``config_file`` (the seed's YAML) fills fields left None."""

    data: Path | None = None
    splits: Path | None = None
    weights: Path | None = None
    teacher: str | None = None
    baseline: Baseline | None = None
    size: tuple[int, int] | None = None
    protocol: EvalProtocol = field(default_factory=EvalProtocol)
    split: Split = "test"
    out: Path = Path("eval_out")
    device: str = "cpu"
    batch_size: int = 4
    limit: int | None = None
    training_data: str | None = None
    config_file: Path | None = None


@dataclass(frozen=True)
class ZeroShotConfig:
    """What ``edgedepth eval --suite zero-shot`` was asked to do."""

    data_root: Path | None = None
    archives: dict[str, Path] = field(default_factory=dict)  # --tar NAME=PATH, over the data root's
    split_files: dict[str, Path] = field(default_factory=dict)  # --split-file NAME=PATH, over the shipped lists
    datasets: tuple[str, ...] = tuple(EVAL_SETS)
    weights: tuple[Path, ...] = ()
    teachers: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()
    predictions: tuple[Path, ...] = ()
    prediction_kind: AlignmentSpace | None = None
    protocol: str = "marigold"
    alignment_max_res: int | None = None
    save_predictions: Path | None = None
    nyu_mat: Path | None = None  # the seed's NYU .mat protocol as one more column
    nyu_splits: Path | None = None
    size: tuple[int, int] | None = None
    device: str = "cpu"
    limit: int | None = None
    out: Path = Path("eval_out")
    progress: bool = True
