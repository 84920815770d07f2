"""What the zero-shot suite keeps while it runs: each set opened for the run, and per row and sample the metrics or
the reason the sample was skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgedepth.data.marigold import EvalArchive, SampleEntry
from edgedepth.eval.metrics import mean_metrics
from edgedepth.eval.zeroshot_metrics import ZERO_SHOT_METRIC_NAMES
from edgedepth.eval.zeroshot_protocols import SetSettings


@dataclass(frozen=True)
class SampleResult:
    """One row's outcome on one sample: metrics, or why it was skipped."""

    sample: str  # the RGB's path in the set
    valid_pixels: int
    metrics: dict[str, float] | None = None
    skipped: str | None = None


@dataclass
class OpenedSet:
    """A set opened for the run: settings, where it is read from, its samples, and per row its results."""

    settings: SetSettings
    archive: EvalArchive
    split_file: Path
    entries: list[SampleEntry]
    results: dict[int, list[SampleResult]] = field(default_factory=dict)


def row_means(results: list[SampleResult]) -> dict[str, float] | None:
    scored = [r.metrics for r in results if r.metrics is not None]
    return mean_metrics(scored, ZERO_SHOT_METRIC_NAMES) if scored else None
