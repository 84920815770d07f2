"""Which student for this CPU (issue 16): several students trained with one recipe, scored and timed in INT8, in one run.

Renders synthetic scenes, labels them with the oracle teacher, trains every student from scratch with the demo's
recipe (cosine, batch 16, at ``--train-size``, the same label shards and seed), scores each on held-out synthetic
scenes (aligned AbsRel and delta1, the seed's least-squares alignment in disparity), then times all of them
interleaved in one round per runtime (OpenVINO INT8 and ONNX Runtime INT8, one thread, at ``--size``) through the
same export and Predictor path as ``edgedepth prune`` and ``bench``. Prints the table with the CPU's instruction
sets and the Pareto frontier (latency against AbsRel, per runtime), and writes ``pareto.png`` and ``pareto.json``.

    python benchmarks/students_pareto.py --out /tmp/pareto [--steps 300] [--scenes 400]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from briefly_trained import oracle_labels

from edgedepth.bench.machine import cpu_isa
from edgedepth.core.config import load_config
from edgedepth.core.depth import UnscorableImage
from edgedepth.core.sizes import format_size, parse_size
from edgedepth.data import synthetic
from edgedepth.eval.metrics import score_prediction
from edgedepth.export.graph import runtime_file
from edgedepth.models import load_model
from edgedepth.models.complexity import count_macs, count_parameters
from edgedepth.prune.tune import calibration
from edgedepth.runtime.pytorch import TorchPredictor
from edgedepth.runtime.runtimes import get_runtime
from edgedepth.runtime.timing import time_files
from edgedepth.train import loop as train
from edgedepth.train.config import TrainConfig

STUDENTS = ("fastdepth_v3", "fastdepth", "fastdepth_mobilenetv4_conv_small", "fastdepth_efficientnet_lite0",
            "fastdepth_mobilenet_v2")
RUNTIMES = ("openvino-int8", "onnx-int8")


def held_out_scores(model: torch.nn.Module, seeds: range, train_size: tuple[int, int]) -> dict[str, float]:
    """Mean aligned AbsRel and delta1 on synthetic scenes never trained on (an unscorable map: AbsRel inf, delta1 0)."""
    predictor = TorchPredictor(model, train_size)
    abs_rel, delta1 = [], []
    for seed in seeds:
        scene = synthetic.render_scene(seed, (160, 120))
        prediction = predictor.predict_batch([scene.image])[0, 0]
        try:
            metrics = score_prediction(prediction, scene.depth, scene.depth > 0)[0]
        except UnscorableImage:
            metrics = {"abs_rel": float("inf"), "delta1": 0.0}
        abs_rel.append(metrics["abs_rel"])
        delta1.append(metrics["delta1"])
    return {"abs_rel": float(np.mean(abs_rel)), "delta1": float(np.mean(delta1))}


def pareto_front(rows: list[dict], latency_key: str) -> list[str]:
    """The students no other is both faster than and at least as accurate as (lower AbsRel)."""
    return [row["model"] for row in rows
            if not any(o[latency_key] <= row[latency_key] and o["abs_rel"] <= row["abs_rel"]
                       and (o[latency_key], o["abs_rel"]) != (row[latency_key], row["abs_rel"]) for o in rows)]


def train_student(name: str, labels: Path, out: Path, steps: int, train_size: tuple[int, int]) -> Path:
    """``name`` trained from scratch with the demo's recipe for ``steps`` steps; its final weights."""
    cfg = load_config(TrainConfig, None, [
        f"model.name={name}", "model.pretrained=false", f"data.path={labels}", "data.format=shards",
        f"data.input_size={format_size(train_size)}", "data.num_workers=0", "optim.batch_size=16",
        "schedule.name=cosine", f"schedule.max_steps={steps}", "schedule.warmup_steps=20", f"run.dir={out}",
        "run.device=cpu", "logging.progress_bar=false", "logging.tensorboard=false",
    ])
    return train.run(cfg).weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--students", default=",".join(STUDENTS), help="comma-separated registry names")
    parser.add_argument("--size", type=parse_size, default=(256, 192), help="timed input (default 256x192)")
    parser.add_argument("--train-size", type=parse_size, default=(128, 96))
    parser.add_argument("--steps", type=int, default=300, help="training steps per student")
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--test-scenes", type=int, default=60)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per network per runtime")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out
    started = time.perf_counter()
    labels = oracle_labels(out, args.scenes, args.train_size)
    rows, models = [], {}
    test_seeds = range(50_000, 50_000 + args.test_scenes)
    for name in args.students.split(","):
        began = time.perf_counter()
        model = load_model(train_student(name, labels, out / "runs" / name, args.steps, args.train_size))
        models[name] = model
        rows.append({"model": name, **held_out_scores(model, test_seeds, args.train_size),
                     "gmacs": count_macs(model, args.size) / 1e9, "params_m": count_parameters(model) / 1e6,
                     "train_s": time.perf_counter() - began})
    for runtime in RUNTIMES:
        files = []
        for name, model in models.items():
            timed = load_model(out / "runs" / name / train.FINAL_WEIGHTS)
            timed.card = dataclasses.replace(timed.card, input_size=args.size)
            files.append(runtime_file(timed, get_runtime(runtime), out / "files" / f"{name}_{runtime}",
                                      calibration(labels, timed))[0])
        for row, ms in zip(rows, time_files(files, runtime, 1, args.runs), strict=True):
            row[f"{runtime}_ms"] = ms
    isa = cpu_isa(Path("/proc/cpuinfo").read_text())
    print(f"# students: {args.steps} steps at {format_size(args.train_size)} on {args.scenes} oracle-labelled synthetic "
          f"scenes, scored on {args.test_scenes} held-out ones; INT8 timed at {format_size(args.size)}, 1 thread")
    print(f"instruction sets: {', '.join(isa)}; wall {time.perf_counter() - started:.0f} s")
    print("| student | OpenVINO INT8 ms | ONNX Runtime INT8 ms | AbsRel | delta1 | params (M) | GMACs |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['openvino-int8_ms']:.2f} | {row['onnx-int8_ms']:.2f} | {row['abs_rel']:.4f} | "
              f"{row['delta1']:.3f} | {row['params_m']:.2f} | {row['gmacs']:.3f} |")
    fronts = {runtime: pareto_front(rows, f"{runtime}_ms") for runtime in RUNTIMES}
    for runtime, front in fronts.items():
        print(f"Pareto frontier on {runtime}: {', '.join(front)}")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(RUNTIMES), figsize=(11, 4.5))
    for axis, runtime in zip(axes, RUNTIMES, strict=True):
        for row in rows:
            on_front = row["model"] in fronts[runtime]
            axis.scatter(row[f"{runtime}_ms"], row["abs_rel"], color="tab:red" if on_front else "tab:gray")
            axis.annotate(row["model"].removeprefix("fastdepth_"), (row[f"{runtime}_ms"], row["abs_rel"]), fontsize=8)
        axis.set(xlabel=f"{runtime} ms ({format_size(args.size)}, 1 thread)", ylabel="held-out AbsRel", title=runtime)
    figure.tight_layout()
    figure.savefig(out / "pareto.png", dpi=120)
    (out / "pareto.json").write_text(json.dumps({"rows": rows, "fronts": fronts, "isa": isa}, indent=1))


if __name__ == "__main__":
    main()
