"""The demo's sizes, importable without the training framework so that ``edgedepth demo``'s options parse at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgedepth.label.recipe import SEED_CROP


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults fit in 15 minutes on a 2-core CPU (measured times: benchmarks/README.md).

    The student trains at 128x96, a quarter of the seed's pixels, for 800 steps: within the same time as 300
    steps at 256x192, it learns far more than the positional prior (trained AbsRel about 0.72x the vertical
    ramp's on the held-out scenes), where 300 steps at 256x192 reached 0.9x.
    """

    out: Path = Path("demo_out")
    train_scenes: int = 1600
    test_scenes: int = 200  # NYU-layout set: the test split is its last 654/1449
    scene_size: tuple[int, int] = SEED_CROP  # rendered at the seed's crop size, so the crop is the whole scene
    crop: tuple[int, int] = SEED_CROP
    train_size: tuple[int, int] = (128, 96)
    epochs: int = 8
    batch_size: int = 16
    bench_runs: int = 30
    seed: int = 0
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)
