"""Throughput of ``edgedepth label`` on CPU: the pipeline's own cost (decode, crop, resize, encode, write).

Inputs are 640x480 synthetic scenes (JPEG + 16-bit depth PNG, the layout of ``edgedepth synth``), rendered
once and repeated under new names up to ``--count`` (each name gets its own random crop). Teachers: the oracle
(inverse ground truth, nearly free: what is measured is the pipeline) and a tiny random-weight DPT through
the ``hf:`` path (the pipeline plus a transformers processor and a forward pass). Each configuration labels
into a fresh folder; images/s counts every input over the run's wall time, teacher and process start-up
(DataLoader workers) included. The target is 100 images/s per decoding core with the oracle.

    python benchmarks/label_throughput.py [--count 400] [--workers 0,1,2] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from edgedepth.data.synthetic import write_folder
from edgedepth.label import job as label
from edgedepth.teachers.tiny import save_tiny_dpt

SCENES = 48


def make_inputs(folder: Path, count: int) -> Path:
    """``count`` 640x480 JPEG + depth PNG pairs: :data:`SCENES` rendered scenes, hard-linked under new names."""
    rendered = folder / "rendered"
    write_folder(rendered, min(SCENES, count), (640, 480), seed=0, progress=False)
    inputs = folder / "inputs"
    inputs.mkdir()
    for i in range(count):
        for suffix in (".jpg", ".png"):
            os.link(rendered / f"{i % SCENES:06d}{suffix}", inputs / f"{i:06d}{suffix}")
    return inputs


def measure(inputs: Path, out: Path, teacher: str, workers: int, batch: int) -> float:
    """Images/s of one fresh label run."""
    cfg = label.LabelConfig(source=str(inputs), out=out, teacher=teacher, batch_size=batch, shard_size=100,
                            workers=workers, progress=False)  # fmt: skip
    start = time.perf_counter()
    summary = label.run(cfg)
    seconds = time.perf_counter() - start
    assert summary.skipped == 0 and summary.processed > 0
    return summary.processed / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400, help="input images (default: 400)")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (default: 0,1,2)")
    parser.add_argument("--batch", type=int, default=16, help="images per teacher call (default: 16)")
    parser.add_argument("--skip-hf", action="store_true", help="only the oracle")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        inputs = make_inputs(root, args.count)
        teachers = {"oracle": "oracle"}
        if not args.skip_hf:
            teachers["tiny DPT (hf:)"] = f"hf:{save_tiny_dpt(root / 'dpt')}"
        print(
            f"{args.count} inputs, 640x480 JPEG -> crop 512x384 -> 256x192, batch {args.batch}, {os.cpu_count()} CPUs"
        )
        print(f"{'teacher':<16}{'workers':>8}{'images/s':>10}{'per core':>10}")
        for name, spec in teachers.items():
            for workers in (int(w) for w in args.workers.split(",")):
                out = root / f"out-{len(list(root.iterdir()))}"
                rate = measure(inputs, out, spec, workers, args.batch)
                cores = max(1, workers)  # with workers the main process mostly waits on them
                print(f"{name:<16}{workers:>8}{rate:>10.1f}{rate / cores:>10.1f}")
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
