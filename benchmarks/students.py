"""Params, GMACs and PyTorch CPU latency of each student at one input size (run by hand, prints a table).

    .venv/bin/python benchmarks/students.py [--size 256x192] [--runs 50] [--threads 1,2] [--models a,b]

Latency is the median (and p90) of ``--runs`` timed forward passes after warm-up, batch 1, eval mode,
measured for all models at one thread count before moving to the next, models interleaved run by run so
that drift of a shared machine hits them alike. Compare ratios within one run, not across machines.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from edgedepth.core.sizes import parse_size
from edgedepth.models import create_model, list_models
from edgedepth.models.complexity import count_macs, count_parameters

EXTRA_STUDENTS = ("fastdepth_efficientnet_lite0", "fastdepth_mobilenetv4_conv_small", "fastdepth_mobilenet_v2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256x192")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--models", default=",".join([*list_models(family="fastdepth"), *EXTRA_STUDENTS]))
    args = parser.parse_args()

    width, height = parse_size(args.size, 32)
    names = args.models.split(",")
    models = {name: create_model(name).eval() for name in names}
    x = torch.randn(1, 3, height, width)
    print(f"# students at {width}x{height}, batch 1, PyTorch {torch.__version__}, {platform.processor() or platform.machine()}")
    thread_counts = [int(t) for t in args.threads.split(",")]
    latencies: dict[tuple[str, int], list[float]] = {}
    with torch.inference_mode():
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for model in models.values():
                for _ in range(args.warmup):
                    model(x)
            for _ in range(args.runs):
                for name, model in models.items():
                    start = time.perf_counter()
                    model(x)
                    latencies.setdefault((name, threads), []).append(time.perf_counter() - start)

    header = ["model", "params (M)", "GMACs"]
    for threads in thread_counts:
        header += [f"{threads} thr median ms", f"{threads} thr p90 ms"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, model in models.items():
        cells = [name, f"{count_parameters(model) / 1e6:.3f}", f"{count_macs(model, (width, height)) / 1e9:.3f}"]
        for threads in thread_counts:
            times = sorted(latencies[(name, threads)])
            p90 = times[int(0.9 * (len(times) - 1))]
            cells += [f"{statistics.median(times) * 1e3:.1f}", f"{p90 * 1e3:.1f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
