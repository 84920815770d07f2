"""Issue 32's figure: a ROS 2 bag runs as fast as a video file of the same frames.

    .venv/bin/python benchmarks/bag_speed.py [--frames 300] [--repeats 3] [--work /tmp/edgedepth-bag-speed]

Exports ``fastdepth_v3`` (random weights: speed only) as OpenVINO INT8 at 256x192 (bench's file), writes the same
``--frames`` 640x480 frames (ten synthetic rooms, each held for a tenth) as an MP4, as a bag of raw ``rgb8`` images
and as a bag of JPEG ``CompressedImage`` messages, then times, interleaved, ``--repeats`` times each:

- ``edgedepth predict BAG --out depth.mcap --threads N``: relative inverse depth (32FC1) and camera info written;
- ``edgedepth predict --video clip.mp4 --out depth.mp4 --threads N``: the live loop writing its colour video;

for N = 1 and 2, and prints the median end-to-end FPS each reports (model loading apart) with the bag / video
ratio (target: at least 0.9). The CPU's instruction sets head the table.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edgedepth.bench.machine import cpu_isa, cpu_name, read_cpuinfo
from edgedepth.data.synthetic import render_scene
from edgedepth.robot import rosmsgs
from edgedepth.robot.bags import BagWriter
from edgedepth.robot.geometry import Intrinsics

SIZE = (640, 480)
PERIOD_NS = 33_333_333


def write_inputs(folder: Path, frames: int) -> dict[str, Path]:
    """The same frames as an MP4, a raw-image bag and a JPEG bag (each with camera info)."""
    scenes = [render_scene(k, SIZE).image for k in range(10)]
    paths = {"video": folder / "clip.mp4", "bag rgb8": folder / "raw.mcap", "bag JPEG": folder / "jpeg.mcap"}
    video = cv2.VideoWriter(str(paths["video"]), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, SIZE)
    raw, jpeg = BagWriter(paths["bag rgb8"]), BagWriter(paths["bag JPEG"])
    camera = Intrinsics.from_hfov(60.0, SIZE)
    for k in range(frames):
        image = scenes[k * len(scenes) // frames]
        stamp = 10**18 + k * PERIOD_NS
        header = rosmsgs.header(stamp, "camera_optical")
        video.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        raw.write("/camera/image_raw", rosmsgs.IMAGE, stamp, rosmsgs.TYPESTORE.types[rosmsgs.IMAGE](
            header=header, height=SIZE[1], width=SIZE[0], encoding="rgb8", is_bigendian=0, step=SIZE[0] * 3,
            data=image.reshape(-1)))
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert ok
        jpeg.write("/camera/image_raw/compressed", rosmsgs.COMPRESSED_IMAGE, stamp,
                   rosmsgs.TYPESTORE.types[rosmsgs.COMPRESSED_IMAGE](header=header, format="jpeg",
                                                                      data=np.asarray(encoded).reshape(-1)))
        for writer in (raw, jpeg):
            writer.write("/camera/camera_info", rosmsgs.CAMERA_INFO, stamp, rosmsgs.camera_info(header, SIZE, camera))
    video.release()
    raw.close()
    jpeg.close()
    return paths


def fps(command: list[str]) -> float:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr[-1000:]}")
    return float(re.search(r"([\d.]+) FPS", done.stdout).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgedepth-bag-speed")
    args = parser.parse_args()
    cpuinfo = read_cpuinfo()
    header = (f"CPU: {cpu_name(cpuinfo)}, {os.cpu_count()} CPUs; instruction sets: {', '.join(cpu_isa(cpuinfo))}; "
              f"load average at start {os.getloadavg()[0]:.2f}")
    args.work.mkdir(parents=True, exist_ok=True)
    from edgedepth.bench.networks import build_network, cell_file

    model_file, _ = cell_file(build_network("fastdepth_v3", (256, 192)), "openvino-int8", args.work)
    inputs = write_inputs(args.work, args.frames)
    edgedepth = [sys.executable, "-m", "edgedepth.cli", "predict"]
    runs: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for threads in (1, 2):
            for name, path in inputs.items():
                source = ["--video", str(path)] if name == "video" else [str(path)]
                out = args.work / ("depth.mp4" if name == "video" else "depth.mcap")
                command = [*edgedepth, *source, "--weights", str(model_file), "--threads", str(threads), "--out",
                           str(out)]
                runs.setdefault((name, threads), []).append(fps(command))
                print(f"  {name}, {threads} thread(s): {runs[name, threads][-1]:.1f} FPS", file=sys.stderr, flush=True)
    print(f"# ROS 2 bags against a video of the same frames (fastdepth_v3 OpenVINO INT8, 256x192)\n\n{header}\n")
    print(f"{args.frames} frames of 640x480, median of {args.repeats} interleaved runs; FPS end to end as each "
          "command reports it (model loading apart)\n")
    print("| input | threads | FPS | vs the video |\n|---|---|---|---|")
    for (name, threads), values in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0] != "video")):
        ratio = statistics.median(values) / statistics.median(runs["video", threads])
        print(f"| {name} | {threads} | {statistics.median(values):.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
