"""Issue 12's figures for the registry's networks, batch 1, one thread, as ratios measured in ONE run (prints tables).

    .venv/bin/python benchmarks/networks.py [--models a,b] [--runs 20] [--labels demo_out/labels]
        [--train-steps 400] [--out networks_out]

1. Latency of each network at its own default input and at 256x192 (as the network takes it: Depth Anything at the
   nearest multiples of 14, 252x196), through ``edgedepth bench``: eager PyTorch (fused, FP32), ONNX Runtime FP32,
   OpenVINO FP32 (true f32), OpenVINO's default precision (bf16 on CPUs with AVX-512 BF16 or AMX) and both INT8
   files (ONNX Runtime's, OpenVINO's; each the faster of the two quantisers). One bench run per network and size
   (its six runtimes interleaved, one process each: all 54 cells at once would not fit in memory), so its ratios
   are measured in one run; the table puts the runs together, with the sgemm peak of each.
2. The target: ZipDepth base's best INT8 at least 3x faster than its own eager PyTorch path (fused, FP32) at
   384x384 on one thread.
3. FP32 exports against PyTorch: the largest difference of each network's ONNX and OpenVINO files on normalised
   synthetic scenes, with random weights drawn as ``tests/foreign.py`` draws them (from each tensor's name, scaled
   by its fan-in: outputs of order 1, as a trained network's, where default initialisation gives some networks
   outputs of 1e3 or 1e-4). Target: within 1e-4.
4. INT8 drift on synthetic test scenes with exact depth: correlation of each INT8 file's output with FP32 (PyTorch)
   and the aligned AbsRel of both (the seed's least-squares alignment in disparity), for ZipDepth base with those
   random weights and briefly trained (``edgedepth train`` on the demo's label shards, ``--labels``: run
   ``make demo`` first). Target: correlation above 0.99.

``--sections 3,4`` runs some of them only.

Run it on a quiet machine (``uptime``); the bench tables print the instruction sets and the load at their start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from briefly_trained import aligned_abs_rel, scenes, train_briefly
from torch import nn

from edgedepth.bench.cells import Cell
from edgedepth.bench.config import BenchConfig
from edgedepth.bench.run import run
from edgedepth.core.processing import preprocess
from edgedepth.export.graph import export_model, pearson_correlation
from edgedepth.models import create_model, list_models, load_model
from edgedepth.runtime.predictor import load_predictor
from edgedepth.runtime.pytorch import TorchPredictor

RUNTIMES = ("torch", "onnx", "openvino", "openvino-default", "onnx-int8", "openvino-int8")
TARGET = "zipdepth_base"
TARGET_SIZE = (384, 384)


def calm(name: str) -> nn.Module:
    """A network with weights drawn from its tensors' names as the tests draw them (outputs of order 1)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from foreign import draw_weights

    model = create_model(name)
    model.load_state_dict(draw_weights({key: value.shape for key, value in model.state_dict().items()}))
    return model.eval()


def fp32_exports(names: list[str], folder: Path) -> list[tuple[str, str, float, float]]:
    """``(network, format, max |diff| vs PyTorch, output peak)`` on normalised synthetic scenes."""
    images = [s.image for s in scenes(6000, 4)]
    rows = []
    for name in names:
        model = calm(name)
        size = model.card.fit_size((256, 192))
        batch = preprocess(images[2:], size, model.card.mean, model.card.std)
        with torch.no_grad():
            expected = model(torch.from_numpy(batch)).numpy()  # the training layout, unfused
        for fmt, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
            path = folder / f"{name}{suffix}"
            export_model(model, path, fmt, size)
            got = load_predictor(path).infer(batch)
            rows.append((name, fmt, float(np.abs(got - expected).max()), float(np.abs(expected).max())))
    return rows


def drift(model: nn.Module, size: tuple[int, int], folder: Path) -> list[tuple[str, float, float, float]]:
    """``(file, correlation with FP32, aligned AbsRel, AbsRel - FP32's)`` of FP32 and each INT8 file on 20 scenes."""
    card = model.card
    calibration = [preprocess([s.image], size, card.mean, card.std) for s in scenes(5000, 64)]
    tests = scenes(9000, 20)
    fp32 = TorchPredictor(model, size)
    predictors = {"fp32 (torch, fused)": fp32}
    for fmt, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
        path = folder / f"int8-{size[0]}x{size[1]}{suffix}"
        export_model(model, path, fmt, size, calibration=calibration, min_correlation=None)
        predictor = load_predictor(path, keep_aspect=False)  # stretched, as the FP32 reference
        predictors[f"int8 ({fmt}, {predictor.export.quantizer})"] = predictor
    reference = [fp32(scene.image) for scene in tests]
    rows = []
    for name, predictor in predictors.items():
        outputs = reference if predictor is fp32 else [predictor(scene.image) for scene in tests]
        correlation = pearson_correlation(np.stack(outputs), np.stack(reference))
        rows.append((name, correlation, aligned_abs_rel(outputs, tests)))
    return [(name, r, abs_rel, abs_rel - rows[0][2]) for name, r, abs_rel in rows]


def latency_row(cells: list[Cell], gflops: float) -> str:
    """One network's row: median ms per runtime (OpenVINO's default with its precision), best INT8 vs eager."""
    by_runtime = {c.runtime: c for c in cells}
    values = []
    for runtime in RUNTIMES:
        cell = by_runtime.get(runtime)
        if cell is None or not cell.latencies_ms:
            values.append(f"failed: {cell.error}" if cell is not None else "—")
        else:
            precision = f" ({cell.precision})" if runtime == "openvino-default" and cell.precision else ""
            values.append(f"{cell.median_ms:.1f}{precision}")
    first = cells[0]
    eager, int8 = _best(cells, first.model, False, "torch"), _best(cells, first.model, True)
    ratio = f"{eager.median_ms / int8.median_ms:.2f}x" if eager and int8 else "—"
    return (f"| {first.model} | {first.input_size[0]}x{first.input_size[1]} | " + " | ".join(values)
            + f" | {ratio} | {gflops:.0f} |")


def _best(cells: list[Cell], model: str, int8: bool, runtime: str | None = None) -> Cell | None:
    timed = [c for c in cells if c.model == model and c.latencies_ms and c.runtime.endswith("-int8") == int8
             and runtime in (None, c.runtime)]
    return min(timed, key=lambda c: c.median_ms, default=None)


def latency_tables(names: list[str], runs: int, out: Path) -> None:
    """Section 1: one bench run per network and size."""
    for label, size in (("each network's default input", None), ("256x192, as each network takes it", (256, 192))):
        print(f"\n## 1. Latency at {label}, one thread\n")
        print("| model | input | " + " | ".join(RUNTIMES) + " | best INT8 vs eager | sgemm GFLOP/s |")
        print("|---|---|" + "---|" * (len(RUNTIMES) + 2))
        for name in names:
            result = run(BenchConfig(models=(name,), runtimes=RUNTIMES, threads=(1,), size=size, runs=runs,
                                     warmup=3, out=out / ("default" if size is None else "256x192") / name))
            print(latency_row(result.cells, result.machine.sgemm_gflops), flush=True)


def target(runs: int, out: Path) -> None:
    """Section 2: ZipDepth base's best INT8 against its eager PyTorch path at 384x384."""
    print(f"\n## 2. Target: {TARGET} at {TARGET_SIZE[0]}x{TARGET_SIZE[1]}, one thread\n")
    result = run(BenchConfig(models=(TARGET,), runtimes=("torch", "onnx-int8", "openvino-int8"), threads=(1,),
                             size=TARGET_SIZE, runs=max(runs, 30), out=out / "target"))
    print(result.table)
    eager, int8 = _best(result.cells, TARGET, False), _best(result.cells, TARGET, True)
    if eager is not None and int8 is not None:
        speedup = eager.median_ms / int8.median_ms
        print(f"- eager PyTorch (fused, FP32) {eager.median_ms:.1f} ms; best INT8 {int8.runtime} {int8.median_ms:.1f} "
              f"ms: {speedup:.2f}x (target >= 3x: {'MET' if speedup >= 3 else 'MISSED'})")


def int8_drift(labels: Path, steps: int, out: Path, folder: Path) -> None:
    """Section 4: ZipDepth base's INT8 files against FP32, random and briefly trained."""
    print(f"\n## 4. INT8 drift of {TARGET} on 20 synthetic test scenes\n")
    models = {"random weights (drawn as the tests draw them)": calm(TARGET)}
    if (labels / "index.json").is_file():
        weights = train_briefly(TARGET, labels, steps, out / "run")
        models[f"briefly trained ({steps} steps on {labels})"] = load_model(weights)
    else:
        print(f"(no label shards at {labels}: run `make demo` first for the trained row)")
    for title, model in models.items():
        for size in (model.card.input_size if "trained" in title else (256, 192), TARGET_SIZE):
            print(f"\n{title}, {size[0]}x{size[1]}:\n")
            print("| file | correlation with FP32 | aligned AbsRel | vs FP32 |\n|---|---|---|---|")
            for name, correlation, abs_rel, change in drift(model, size, folder):
                print(f"| {name} | {correlation:.4f} | {abs_rel:.4f} | {change:+.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(list_models()))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--labels", type=Path, default=Path("demo_out/labels"))
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("networks_out"))
    parser.add_argument("--sections", default="1,2,3,4")
    args = parser.parse_args()
    names = args.models.split(",")
    sections = {int(k) for k in args.sections.split(",")}
    torch.set_num_threads(1)
    if 1 in sections:
        latency_tables(names, args.runs, args.out)
    if 2 in sections:
        target(args.runs, args.out)
    with tempfile.TemporaryDirectory(prefix="edgedepth-networks-") as work:
        if 3 in sections:
            print("\n## 3. FP32 exports against PyTorch (weights drawn as the tests draw them)\n")
            print("| network | format | max abs diff | output peak |\n|---|---|---|---|")
            for name, fmt, diff, peak in fp32_exports(names, Path(work)):
                print(f"| {name} | {fmt} | {diff:.2e} | {peak:.3g} |")
        if 4 in sections:
            int8_drift(args.labels, args.train_steps, args.out / "zipdepth", Path(work))


if __name__ == "__main__":
    main()
