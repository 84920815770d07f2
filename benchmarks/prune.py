"""Issue 16's figure: ``edgedepth prune`` of a briefly trained student to half its INT8 latency, in one run.

``--model`` picks the student (default fastdepth_v3; issue 16 also asks for fastdepth_mobilenetv4_conv_small, the
student benchmarks/students_pareto.py puts on the INT8 frontier). Renders synthetic scenes, labels them with the
oracle teacher, trains the student from scratch as the demo does
(cosine, batch 16, at ``--train-size``), prunes it to ``--ratio`` of its latency on ``--runtime`` at ``--size`` on
one thread, fine-tunes the unpruned model for the prune's total number of fine-tune steps (the baseline), then, in
one interleaved timing round, times both on OpenVINO INT8 and ONNX Runtime INT8, and scores both on held-out
synthetic scenes (aligned AbsRel, the seed's least-squares alignment in disparity). Prints a table with the CPU's
instruction sets. The defaults are the issue's setting; ``--small`` is a scale that fits minutes on two cores (48
training steps, with BatchNorm frozen: so few steps with batch statistics left fastdepth_v3's output constant) and
prunes only the student's ``SMALL_GROUPS``.

    python benchmarks/prune.py --out /tmp/prune_bench [--small] [--model fastdepth_mobilenetv4_conv_small]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from students_pareto import held_out_scores, oracle_labels

from edgedepth.bench.machine import cpu_isa, read_cpuinfo
from edgedepth.core.config import load_config
from edgedepth.core.sizes import format_size, parse_size
from edgedepth.export.graph import runtime_file
from edgedepth.models import create_model, load_model
from edgedepth.models.complexity import count_macs, count_parameters
from edgedepth.prune import netadapt as prune
from edgedepth.prune.tune import calibration, fine_tune, split_labels
from edgedepth.prune.widths import layer_groups
from edgedepth.runtime.runtimes import RUNTIMES
from edgedepth.runtime.timing import time_files
from edgedepth.train import loop as train
from edgedepth.train.config import TrainConfig

#: ``--small``'s groups. fastdepth_v3: the decoder-side ones (the skip-tied blocks and the free stages). The MobileNetV4
#: student's skips are stage outputs, not prunable, so its decoder side is the two free stages; with them, its three
#: encoder groups of most MACs at 256x192 (a half cut removes 15.7, 13.0 and 7.2 of its 212 MMACs). Other students:
#: the groups that touch the decoder.
SMALL_GROUPS = {
    "fastdepth_v3": ("block2+stage3", "block7+stage1", "block11+stage0", "stage2", "stage4"),
    "fastdepth_mobilenetv4_conv_small": ("block0.0", "block1.0", "block3.0", "stage2", "stage4"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runtime", default="openvino-int8", choices=list(RUNTIMES))
    parser.add_argument("--size", type=parse_size, default=(256, 192), help="timed input (default 256x192)")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--model", default="fastdepth_v3", help="the student to train and prune (default fastdepth_v3)")
    parser.add_argument("--small", action="store_true", help="fewer scenes and steps, the student's SMALL_GROUPS only")
    parser.add_argument("--max-iterations", type=int, default=50, help="stop pruning after this many iterations")
    parser.add_argument("--step", type=float, help="latency cut per iteration, share of the start (0.1; --small 0.25)")
    parser.add_argument("--runs", type=int, default=40, help="timed runs per network in each round (default 40)")
    parser.add_argument("--long-steps", type=int, help="the final fine-tune's steps (400; --small 60)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    small = args.small
    scenes, epochs, train_size = (96, 8, (128, 96)) if small else (1600, 8, (128, 96))
    short, long, step = (10, 60, 0.25) if small else (20, 400, 0.1)
    step = args.step or step
    long = args.long_steps or long
    groups = small_groups(args.model) if small else None
    out = args.out
    started = time.perf_counter()
    labels = oracle_labels(out, scenes, train_size)
    cfg = load_config(TrainConfig, None, [
        f"model.name={args.model}", "model.pretrained=false", f"data.path={labels}", "data.format=shards",
        f"data.input_size={format_size(train_size)}",
        "data.num_workers=0", "optim.batch_size=16", "schedule.name=cosine", f"schedule.epochs={epochs}",
        "schedule.warmup_steps=20", f"run.dir={out / 'run'}", "run.device=cpu", "logging.progress_bar=false",
        "logging.tensorboard=false", *(["model.freeze_bn=true"] if small else []),
    ])
    trained = train.run(cfg).weights
    trained_at = time.perf_counter()
    prune_cfg = prune.PruneConfig(weights=trained, data=labels, runtime=args.runtime, out=out / "prune",
                                  target_ratio=args.ratio, threads=1, size=args.size, step_share=step,
                                  short_steps=short, long_steps=long, groups=groups, runs=args.runs,
                                  max_iterations=args.max_iterations)
    result = prune.run(prune_cfg)
    pruned_at = time.perf_counter()
    splits = split_labels(labels, out / "prune" / "labels")
    baseline_steps = result.iterations * short + long
    baseline = fine_tune(trained, out / "baseline", splits, baseline_steps, prune_cfg.batch_size, prune_cfg.lr, "seed")

    models = {"unpruned (fine-tuned)": load_model(baseline), "pruned": load_model(result.weights)}
    for model in models.values():
        model.card = dataclasses.replace(model.card, input_size=args.size)
    latency: dict[tuple[str, str], float] = {}
    for runtime in ("openvino-int8", "onnx-int8"):
        batches = calibration(labels, models["pruned"])
        files = [runtime_file(m, RUNTIMES[runtime], out / f"{runtime}_{i}", batches)[0] for i, m in enumerate(models.values())]
        for name, ms in zip(models, time_files(files, runtime, 1, 50), strict=True):
            latency[(name, runtime)] = ms
    test_seeds = range(50_000, 50_000 + (24 if small else 200))
    rows = []
    for name, model in models.items():
        rows.append({
            "model": name, "openvino_int8_ms": latency[(name, "openvino-int8")],
            "onnx_int8_ms": latency[(name, "onnx-int8")],
            "abs_rel": held_out_scores(model, test_seeds, train_size)["abs_rel"],
            "gmacs": count_macs(model, args.size) / 1e9, "params_m": count_parameters(model) / 1e6,
        })
    isa = cpu_isa(read_cpuinfo())
    print(f"# prune benchmark: {args.model}, {args.runtime} target {args.ratio}x at {format_size(args.size)}, 1 thread"
          f"{' (--small)' if small else ''}")
    print(f"instruction sets: {', '.join(isa)}; train {trained_at - started:.0f} s, prune {pruned_at - trained_at:.0f} s "
          f"({result.iterations} iterations), baseline fine-tune {baseline_steps} steps; {result.message}")
    print("| model | OpenVINO INT8 ms | ONNX Runtime INT8 ms | held-out AbsRel | GMACs | params (M) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['openvino_int8_ms']:.2f} | {row['onnx_int8_ms']:.2f} | {row['abs_rel']:.4f} | "
              f"{row['gmacs']:.3f} | {row['params_m']:.2f} |")
    ov, ort = (rows[1][k] / rows[0][k] for k in ("openvino_int8_ms", "onnx_int8_ms"))
    print(f"pruned / unpruned latency: OpenVINO INT8 {ov:.2f}x, ONNX Runtime INT8 {ort:.2f}x (target {args.ratio}x); "
          f"AbsRel difference {rows[1]['abs_rel'] - rows[0]['abs_rel']:+.4f} (bar: 0.01)")
    (out / "prune_benchmark.json").write_text(json.dumps({"model": args.model, "rows": rows, "isa": isa,
                                                          "message": result.message}, indent=1))


def small_groups(model: str) -> tuple[str, ...]:
    """``--small``'s groups for ``model``: ``SMALL_GROUPS``, else those that touch the decoder."""
    if model in SMALL_GROUPS:
        return SMALL_GROUPS[model]
    return tuple(g.name for g in layer_groups(create_model(model)) if g.stage is not None)


if __name__ == "__main__":
    main()
