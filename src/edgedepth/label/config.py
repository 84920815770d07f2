"""What ``edgedepth label`` is asked to do: light to import (the command line reads the defaults here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgedepth.label.recipe import Recipe


@dataclass(frozen=True)
class LabelConfig:
    """What ``edgedepth label`` was asked to do."""

    source: str
    out: Path
    teacher: str
    recipe: Recipe = field(default_factory=Recipe)
    batch_size: int = 8
    shard_size: int = 1000
    workers: int = 4
    device: str = "cpu"
    progress: bool = True
