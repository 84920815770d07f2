"""Metric scale from the floor, and flicker with and without --stabilize, on synthetic frames with exact depth.

    .venv/bin/python benchmarks/robot_depth.py [--weights demo_out/run/final.safetensors] [--frames 90]
        [--scenes 40] [--more-sequences 1,2,3] [--work bench_out/robot_depth]

Renders (once; reruns reuse them) a synthetic sequence (``edgedepth synth --sequence``: a camera moving through one
room, each frame's exact depth and camera) and a set of random synthetic scenes (``edgedepth synth --count``, each
scene's camera in ``cameras.json``), then prints three tables:

1. ``--metric ground`` against the least-squares oracle alignment (lsq-disparity against the exact depth, on the
   same frames and pixels, the evaluation's protocol): AbsRel of each, per frame then averaged, for the student and
   for the exact relative inverse depth (an ideal model: ``(1 / depth - shift) / scale`` with 2 % noise), whose
   fitted scale and shift are also compared with the truth.
2. Flicker (:func:`edgedepth.eval.metrics.frame_flicker`) of the student on the sequence, per frame and stabilised
   (:class:`edgedepth.robot.stabilize.Stabilizer` on the same network outputs: no extra runs), and the per-frame
   aligned AbsRel of both.
3. What stabilising costs per frame: the stabiliser alone on the network's output for a 640x480 frame, and the
   real-time loop (``predict --video``) with and without it.

Frames are read from the sequence's MP4, as ``predict`` reads a video. Prints the load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from edgedepth.core.depth import fit_scale_shift, inverse_to_depth_or_zero
from edgedepth.core.imageio import iter_video_frames
from edgedepth.core.processing import upsample_prediction
from edgedepth.data import synthetic
from edgedepth.eval.metrics import frame_flicker, score_prediction, valid_mask
from edgedepth.predict.video import run_loop
from edgedepth.robot.geometry import Intrinsics, floor_inverse_depth
from edgedepth.robot.metric_scale import Ground, MetricConfig, MetricFitError, fit
from edgedepth.robot.stabilize import Stabilizer
from edgedepth.runtime.predictor import Predictor, load_predictor

MAX_DEPTH = 10.0


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _metric_config(camera: dict) -> tuple[MetricConfig, Ground]:
    cfg = MetricConfig(metric="ground", camera_height=camera["camera_height"], pitch_deg=camera["pitch_deg"],
                       roll_deg=camera["roll_deg"], intrinsics=Intrinsics(**camera["intrinsics"]), max_depth=MAX_DEPTH)
    return cfg, Ground(cfg.camera_height, cfg.pitch_deg, cfg.roll_deg)


def _abs_rel(metric_inverse_depth: np.ndarray, depth: np.ndarray, mask: np.ndarray) -> float:
    """AbsRel of a metric inverse depth map; no depth (past the far limit) counts as the far limit, as eval clamps."""
    metric = inverse_to_depth_or_zero(metric_inverse_depth, MAX_DEPTH)
    predicted = np.where(metric > 0, metric, MAX_DEPTH)
    return float(np.mean(np.abs(predicted[mask] - depth[mask]) / depth[mask]))


def _abs_rel_ground(prediction: np.ndarray, depth: np.ndarray, camera: dict, name: str) -> tuple[float, ...]:
    """One frame: (oracle AbsRel, ground AbsRel, fitted scale, fitted shift, AbsRel of least squares on the true
    floor pixels). The ground figures are NaN if no floor was found, the last if the floor shows on < 1 %."""
    mask = valid_mask(depth, 0.0, MAX_DEPTH)
    oracle = score_prediction(prediction, depth, mask, "lsq-disparity", MAX_DEPTH)[0]["abs_rel"]
    cfg, ground = _metric_config(camera)
    floor = floor_inverse_depth(cfg.camera(depth.shape[::-1], name), depth.shape[::-1], ground.camera_height,
                                ground.pitch_deg, ground.roll_deg)
    with np.errstate(divide="ignore", invalid="ignore"):
        on_floor = (floor > 1 / MAX_DEPTH) & (np.abs(1.0 / depth / floor - 1.0) < 0.01)
    best = float("nan")
    if on_floor.mean() > 0.01:
        scale, shift = fit_scale_shift(prediction, floor, on_floor)
        best = _abs_rel(scale * prediction + shift, depth, mask)
    try:
        found = fit(prediction, ground, cfg, name)
    except MetricFitError:
        return oracle, float("nan"), float("nan"), float("nan"), best
    return oracle, _abs_rel(found.scale * prediction + found.shift, depth, mask), found.scale, found.shift, best


def _read_depth(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64) / 1000.0


def _ground_table(rows: list[tuple[str, list[tuple[float, ...]]]]) -> None:
    print("\n| frames | model | floor found | oracle AbsRel | ground AbsRel | ground - oracle | median | "
          "best floor fit - oracle |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, results in rows:
        found = [r for r in results if np.isfinite(r[1])]
        oracle, ground = (float(np.mean([r[i] for r in found])) if found else float("nan") for i in (0, 1))
        median = float(np.median([r[1] - r[0] for r in found])) if found else float("nan")
        best = [r[4] - r[0] for r in results if np.isfinite(r[4])]
        print(f"| {name} | {len(found)}/{len(results)} | {oracle:.4f} | {ground:.4f} | {ground - oracle:+.4f} | "
              f"{median:+.4f} | {np.mean(best) if best else float('nan'):+.4f} |")


def _network_outputs(predictor: Predictor, video: Path) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    frames, outputs = [], []
    for frame in iter_video_frames(video):
        frames.append(frame)
        outputs.append(predictor.network_output([frame]))
    return frames, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=Path("demo_out/run/final.safetensors"))
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7, help="synthetic seed (the demo trains on 0, tests on 1)")
    parser.add_argument("--work", type=Path, default=Path("bench_out/robot_depth"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--more-sequences", default="", metavar="SEEDS",
                        help="comma-separated seeds of more sequences for table 1 (--frames frames each)")
    args = parser.parse_args()
    print(f"load average at start: {_load()} ({os.cpu_count()} CPUs); weights {args.weights}")
    if args.threads:
        torch.set_num_threads(args.threads)

    sequence, scenes = args.work / f"sequence_{args.seed}_{args.frames}", args.work / f"scenes_{args.seed}"
    start = time.perf_counter()
    synthetic.write_sequence(sequence, args.frames, (640, 480), args.seed, progress=False)
    synthetic.write_folder(scenes, args.scenes, (640, 480), args.seed, progress=False)
    print(f"scenes ready in {time.perf_counter() - start:.1f} s: {sequence}, {scenes}")
    predictor = load_predictor(args.weights, threads=args.threads, keep_aspect=False)
    cameras = json.loads((sequence / synthetic.CAMERAS_NAME).read_text())
    depths = [_read_depth(sequence / synthetic.SEQUENCE_DEPTH / f"{key}.png") for key in sorted(cameras)]
    frames, outputs = _network_outputs(predictor, sequence / synthetic.SEQUENCE_VIDEO)
    size = (frames[0].shape[1], frames[0].shape[0])
    per_frame = [upsample_prediction(o, size)[0, 0].astype(np.float64) for o in outputs]

    # 1. ground fit against the oracle alignment
    rng = np.random.default_rng(0)
    scene_cameras = json.loads((scenes / synthetic.CAMERAS_NAME).read_text())
    student_scenes, ideal_scenes, ideal_errors = [], [], []
    for key, camera in sorted(scene_cameras.items()):
        image = cv2.cvtColor(cv2.imread(str(scenes / f"{key}.jpg")), cv2.COLOR_BGR2RGB)
        depth = _read_depth(scenes / f"{key}.png")
        student_scenes.append(_abs_rel_ground(predictor(image).astype(np.float64), depth, camera, key))
        with np.errstate(divide="ignore"):
            truth = np.where(depth > 0, 1.0 / depth, 0.0)
        ideal = (truth - 0.1) / 2.5 * (1.0 + 0.02 * rng.standard_normal(truth.shape))
        result = _abs_rel_ground(ideal, depth, camera, key)
        ideal_scenes.append(result)
        if np.isfinite(result[1]):
            ideal_errors.append((abs(result[2] / 2.5 - 1.0), abs(result[3] - 0.1)))
    student_sequence = [_abs_rel_ground(p, d, cameras[key], key)
                        for p, d, key in zip(per_frame, depths, sorted(cameras))]
    more = []
    for extra in (int(text) for text in args.more_sequences.split(",") if text):
        folder = args.work / f"sequence_{extra}_{args.frames}"
        synthetic.write_sequence(folder, args.frames, (640, 480), extra, progress=False)
        extra_cameras = json.loads((folder / synthetic.CAMERAS_NAME).read_text())
        results = [_abs_rel_ground(predictor(frame).astype(np.float64),
                                   _read_depth(folder / synthetic.SEQUENCE_DEPTH / f"{key}.png"), extra_cameras[key], key)
                   for key, frame in zip(sorted(extra_cameras), iter_video_frames(folder / synthetic.SEQUENCE_VIDEO))]
        more.append((f"sequence seed {extra} ({args.frames} frames) | student", results))
    print(f"\n1. --metric ground vs the least-squares oracle alignment (AbsRel, depth < {MAX_DEPTH:g} m, means over "
          "the frames where a floor was found; the last column: least squares on the true floor pixels, the best a floor "
          "fit could do with this model)")
    _ground_table([(f"sequence seed {args.seed} ({args.frames} frames) | student", student_sequence), *more,
                   (f"scenes ({args.scenes}) | student", student_scenes),
                   (f"scenes ({args.scenes}) | exact relative depth, 2 % noise", ideal_scenes)])
    if ideal_errors:
        scale_errors = [e[0] for e in ideal_errors]
        print(f"exact relative depth: fitted scale off the truth (2.5) by {100 * np.median(scale_errors):.2f} % "
              f"(median), {100 * np.max(scale_errors):.2f} % (worst); shift off 0.1 by "
              f"{np.median([e[1] for e in ideal_errors]):.4f} (median)")

    # 2. flicker, per frame and stabilised, on the same network outputs
    stabilizer = Stabilizer()
    stabilized = [upsample_prediction(stabilizer(o[0, 0])[None, None], size)[0, 0].astype(np.float64) for o in outputs]
    rows = []
    for name, maps in (("per frame", per_frame), ("--stabilize", stabilized)):
        flicker = statistics.mean(frame_flicker(a, b, da, db) for a, b, da, db in
                                  zip(maps, maps[1:], depths, depths[1:]))
        abs_rel = statistics.mean(score_prediction(m, d, valid_mask(d, 0.0, MAX_DEPTH), "lsq-disparity",
                                                   MAX_DEPTH)[0]["abs_rel"] for m, d in zip(maps, depths))
        rows.append((name, flicker, abs_rel))
    print(f"\n2. flicker on the sequence ({args.frames} frames, mean |change| at pixels whose true inverse depth moved "
          "< 1 %, over the median), per-frame aligned AbsRel")
    print("| output | flicker | AbsRel (aligned per frame) |\n| --- | --- | --- |")
    for name, flicker, abs_rel in rows:
        print(f"| {name} | {flicker:.5f} | {abs_rel:.4f} |")
    print(f"flicker reduced {rows[0][1] / rows[1][1]:.2f}x; AbsRel {rows[1][2] - rows[0][2]:+.4f}")

    # 3. the cost of stabilising: on this model's output, and on fastdepth_v3's default 256x192
    low = [o[0, 0].numpy() for o in outputs]
    for maps in (low, [cv2.resize(item, (256, 192), interpolation=cv2.INTER_CUBIC) for item in low]):
        timer = Stabilizer()
        for item in maps[:5]:
            timer(item)
        wall, cpu = [], []
        for item in maps * max(1, 300 // len(maps)):
            tick, tock = time.perf_counter(), time.thread_time()
            timer(item)
            wall.append(time.perf_counter() - tick)
            cpu.append(time.thread_time() - tock)
        shape = maps[0].shape
        print(f"\n3. stabilise per frame (network output {shape[1]}x{shape[0]} for 640x480 frames, {len(wall)} frames): "
              f"median {1e3 * statistics.median(wall):.3f} ms wall ({1e3 * statistics.median(cpu):.3f} ms CPU), "
              f"p90 {1e3 * float(np.percentile(wall, 90)):.3f} ms wall")
    print("| video loop | network threads | frames | FPS | post stage ms/frame | of which stabilise ms/frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    for threads in (args.threads, 1):  # with one network thread, the post stage has a core of its own
        looped = load_predictor(args.weights, threads=threads, keep_aspect=False)
        for stabilize in (False, True):
            summary = run_loop(looped, str(sequence / synthetic.SEQUENCE_VIDEO), stabilize=stabilize)
            print(f"| {'--stabilize' if stabilize else 'per frame'} | {threads or 'all cores'} | {summary.frames} | "
                  f"{summary.fps:.1f} | {1e3 * summary.post_seconds / summary.frames:.2f} | "
                  f"{1e3 * summary.stabilize_seconds / summary.frames:.3f} |")
    print(f"\nload average at end: {_load()}")


if __name__ == "__main__":
    main()
