"""What ``edgedepth bench`` is asked to do, and its defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgedepth.core.cores import available_cores
from edgedepth.core.sizes import DEFAULT_INPUT_SIZE
from edgedepth.runtime.runtimes import RUNTIMES
from edgedepth.runtime.timing import TIMING_RUNS, TIMING_WARMUP

#: What ``edgedepth bench`` times unless told: every runtime of the table but TorchScript (PyTorch's again).
DEFAULT_RUNTIMES = tuple(name for name in RUNTIMES if name != "torchscript")


def default_thread_counts() -> tuple[int, ...]:
    """One thread and two, as far as the cores this process may use allow (more threads than cores time the
    contention, not the network)."""
    return tuple(count for count in (1, 2) if count <= available_cores())


@dataclass(frozen=True)
class BenchConfig:
    """What ``edgedepth bench`` was asked to do: registry ``models`` (random weights) or trained ``weights`` on
    ``runtimes`` at ``size``, or, where ``files`` is given, those exported files as they are."""

    models: tuple[str, ...] = ("fastdepth_v3", "fastdepth", "zipdepth_base", "midas_v21_small", "depth_anything_v2_small")
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    threads: tuple[int, ...] = field(default_factory=default_thread_counts)
    size: tuple[int, int] | None = DEFAULT_INPUT_SIZE  # None: each model at its own default input
    files: tuple[Path, ...] = ()
    #: Trained ``.safetensors`` timed instead of ``models``: their INT8 cells pass the export's check against FP32.
    weights: tuple[Path, ...] = ()
    runs: int = TIMING_RUNS
    warmup: int = TIMING_WARMUP
    out: Path = Path("bench_out")
    chart: bool = False
    progress: bool = True


