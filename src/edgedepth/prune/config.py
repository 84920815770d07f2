"""What ``edgedepth prune`` is asked to do: light to import (the command line reads the defaults here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PruneConfig:
    """What ``edgedepth prune`` was asked to do; exactly one of ``target_ms`` and ``target_ratio`` is set."""

    weights: Path
    data: Path
    runtime: str
    out: Path
    target_ms: float | None = None
    target_ratio: float | None = None
    threads: int = 1
    size: tuple[int, int] | None = None
    step_share: float = 0.1
    short_steps: int = 20
    long_steps: int = 200
    batch_size: int = 8
    lr: float = 1e-4
    runs: int = 20
    max_iterations: int = 50
    min_width: int = 8
    #: Restrict pruning to these groups (names as :func:`~.widths.layer_groups` gives them); ``None``: all.
    groups: tuple[str, ...] | None = None
    progress: bool = True

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues."""
        fields = ("weights", "data", "runtime", "target_ms", "target_ratio", "threads", "size", "step_share",
                  "short_steps", "long_steps", "batch_size", "lr", "min_width", "groups")
        return {name: _plain(getattr(self, name)) for name in fields}

def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, tuple):
        return list(value)
    return value
