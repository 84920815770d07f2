"""Training throughput: images/s and the share of step time spent waiting for data (run by hand, prints a table).

    .venv/bin/python benchmarks/train_throughput.py [--model fastdepth_v3] [--size 256x192] [--batch 16]
        [--steps 30] [--workers 2] [--device cpu]

Writes ``--pairs`` synthetic image / 16-bit inverse-depth pairs at ``--size`` into a temporary folder (the seed's
layout), then runs ``edgedepth.train.run`` for ``--steps`` steps with the given batch and loader workers, logging
every 5 steps. Images/s and the data-wait share are read from the run's ``log.jsonl``; the first window (model
warm-up, worker start-up) is left out. The data-wait share should stay under 10%: above it, add workers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from edgedepth.core.config import load_config
from edgedepth.core.sizes import format_size, parse_size
from edgedepth.train import loop as train
from edgedepth.train.config import TrainConfig

LOG_EVERY = 5


def write_pairs(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    """Smooth random images (a realistic JPEG decode cost) beside 16-bit inverse-depth PNGs."""
    rng = np.random.default_rng(seed)
    width, height = size
    for index in range(count):
        coarse = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        depth = cv2.resize(rng.random((height // 32, width // 32)).astype(np.float32), size)
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), image)
        cv2.imwrite(str(folder / f"{index:05d}.png"), (depth * 65535).astype(np.uint16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fastdepth_v3")
    parser.add_argument("--size", default="256x192")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=160)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    size = parse_size(args.size, 32)

    with tempfile.TemporaryDirectory() as tmp:
        data, run_dir = Path(tmp) / "pairs", Path(tmp) / "run"
        data.mkdir()
        write_pairs(data, args.pairs, size)
        cfg = load_config(TrainConfig, None, [
            f"data.path={data}", f"run.dir={run_dir}", f"model.name={args.model}", "model.pretrained=false",
            f"data.input_size={format_size(size)}", f"data.num_workers={args.workers}",
            f"optim.batch_size={args.batch}",
            f"run.device={args.device}", f"schedule.max_steps={args.steps}", "schedule.epochs=1000",
            f"logging.every_steps={LOG_EVERY}", "logging.progress_bar=false", "logging.tensorboard=false",
        ])
        train.run(cfg)
        windows = [json.loads(line) for line in (run_dir / train.LOG).read_text().splitlines()][1:]
    if not windows:
        raise SystemExit(f"--steps must exceed {2 * LOG_EVERY} to leave a measured window after warm-up")
    rate = statistics.median(w["images_per_second"] for w in windows)
    wait = statistics.median(w["data_wait_share"] for w in windows)
    print(f"# training throughput, PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, device {args.device}")
    print("| model | input | batch | workers | images/s | data wait |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.model} | {format_size(size)} | {args.batch} | {args.workers} | {rate:.1f} | {100 * wait:.1f}% |")


if __name__ == "__main__":
    main()
