"""Speed of the synthetic scene generator on ONE core (run by hand, prints a table).

    .venv/bin/python benchmarks/synth_speed.py [--sizes 640x480,320x240] [--scenes 40]

For each size: scenes rendered per second (render only) and with the files ``edgedepth synth`` writes
(JPEG + 16-bit depth PNG). BLAS, OpenMP and OpenCV are held to one thread. Both wall-clock and CPU-time
rates are printed: on a shared machine the CPU-time rate is the one-core cost, the wall rate what you waited.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from edgedepth.core.sizes import format_size, parse_size
from edgedepth.data.synthetic import render_scene, scene_seed, write_folder

_COLUMNS = (
    "size",
    "render scenes/s (wall)",
    "render scenes/s (CPU)",
    "median CPU ms",
    "p90 CPU ms",
    "+ files scenes/s (wall)",
    "+ files scenes/s (CPU)",
)


def _time(run: Callable[..., object], *args: object, **kwargs: object) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``run(*args, **kwargs)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="640x480,320x240,256x192")
    parser.add_argument("--scenes", type=int, default=40)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    machine = platform.processor() or platform.machine()
    print(f"# synthetic scenes 0..{args.scenes - 1} of seed 1 per row (the same in both passes), one thread, {machine}")
    print("| " + " | ".join(_COLUMNS) + " |")
    print("|" + "---|" * len(_COLUMNS))
    for text in args.sizes.split(","):
        size = parse_size(text)
        render_scene(0, size)  # warm-up: imports, allocator
        per_scene = [_time(render_scene, scene_seed(1, number), size) for number in range(args.scenes)]
        render_wall, render_cpu = (sum(column) for column in zip(*per_scene, strict=True))
        with tempfile.TemporaryDirectory() as folder:
            files_wall, files_cpu = _time(write_folder, Path(folder) / "s", args.scenes, size, seed=1, progress=False)
        times = sorted(cpu for _, cpu in per_scene)
        cells = [
            format_size(size),
            f"{args.scenes / render_wall:.1f}",
            f"{args.scenes / render_cpu:.1f}",
            f"{statistics.median(times) * 1e3:.0f}",
            f"{times[int(0.9 * (len(times) - 1))] * 1e3:.0f}",
            f"{args.scenes / files_wall:.1f}",
            f"{args.scenes / files_cpu:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
