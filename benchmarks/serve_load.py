"""``edgedepth serve`` under load: CLIENTS clients posting IMAGES images each, its memory before and after.

    .venv/bin/python benchmarks/serve_load.py --weights demo_out/run/final.safetensors [--clients 4] [--images 50]
        [--size 640x480] [--format color]

Starts a real server process (``--threads 1``), warms it with one round of 10 images per client, reads its resident
memory (VmRSS), runs the load, reads it again, and prints a table: requests, errors, requests/s, latency median and
p90, memory before and after. Posts synthetic 640x480 scenes as PNG.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgedepth.core.imageio import encode_png
from edgedepth.core.sizes import parse_size
from edgedepth.data.synthetic import render_scene


def _rss_mib(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=Path("demo_out/run/final.safetensors"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--format", default="color", choices=("npy", "png16", "color"))
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
    command = [sys.executable, "-m", "edgedepth.cli", "serve", "--weights", str(args.weights), "--port", "0", "--quiet",
               "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"on (http://\S+):", process.stdout.readline()).group(1) + f"/predict?format={args.format}"
        images = [encode_png(render_scene(k, parse_size(args.size)).image) for k in range(8)]

        def client(number: int, count: int) -> tuple[list[float], int]:
            times, errors = [], 0
            for k in range(count):
                start = time.perf_counter()
                try:
                    with urllib.request.urlopen(urllib.request.Request(url, data=images[(number + k) % 8]),
                                                timeout=300) as response:
                        response.read()
                        errors += response.status != 200
                except OSError:
                    errors += 1
                times.append(time.perf_counter() - start)
            return times, errors

        def load(count: int) -> tuple[list[float], int, float]:
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(client, range(args.clients), [count] * args.clients))
            return [t for times, _ in results for t in times], sum(e for _, e in results), time.perf_counter() - start

        load(10)
        before = _rss_mib(process.pid)
        times, errors, seconds = load(args.images)
        after = _rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    print("| clients x images | errors | requests/s | latency median ms | p90 ms | RSS before MiB | RSS after MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    p90 = sorted(times)[int(0.9 * len(times))]
    print(f"| {args.clients} x {args.images} ({args.size} PNG, {args.format}) | {errors} | "
          f"{len(times) / seconds:.1f} | "
          f"{1e3 * statistics.median(times):.0f} | {1e3 * p90:.0f} | {before:.1f} | {after:.1f} |")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
