"""Issue 30's INT8 figures: what INT8 costs each zoo network in accuracy at 256x192, which layers its export keeps in
floating point to pass the check, and what keeping them costs in speed (prints Markdown tables).

    PYTHONPATH=src python benchmarks/int8_figures.py --out int8_out [--models a,b] [--formats onnx,openvino,litert]
        [--steps 200,midas_v21_small=100,depth_anything_v2_small=60] [--runs 30]

Each network is trained from scratch (``model.pretrained=false``) on oracle labels of 400 synthetic scenes at 128x96
(Depth Anything at 126x98, its multiples of 14) with one of ``briefly_trained.py``'s recipes (:data:`RECIPE`): random
weights say nothing of INT8 accuracy, and oracle labels need no teacher or download. ``--steps``: a bare number for
every network, ``name=N`` for one; by default 300 steps, 150 for MiDaS small and 100 for Depth Anything small, whose
steps take two to three times longer, so that the run stays under an hour on two cores. So few steps leave the
networks far from converged (the output prints a vertical ramp's AbsRel beside theirs): the figures are of briefly
trained networks. The weights are kept in ``--out`` (one folder per network, recipe and step count), so a rerun skips
training.

Then per network and format, at 256x192 (Depth Anything at 252x196), calibrated on 32 synthetic scenes (MiDaS small
16, Depth Anything 8: see :data:`CALIBRATION`) and scored on 20 others (seeds apart from the training scenes' and each
other's), each file run as a Predictor (stretched, one thread) against FP32 PyTorch (fused):

1. the checked INT8 export (``export_model``'s default bar: a file whose outputs correlate with FP32 below 0.9 on the
   calibration images keeps its most sensitive layers in floating point until it passes): its correlation with FP32,
   the aligned AbsRel (least squares in disparity) of FP32 and of INT8, and the layers it keeps in floating point;
2. where it kept some, the whole-INT8 file (no check, the same quantiser): its correlation and AbsRel change;
3. batch 1, one thread, timed interleaved in one process: the format's FP32 file, the checked INT8 file and the
   whole-INT8 one. Checked over whole-INT8 is the speed cost of the layers kept in floating point.

An export that fails (an EdgedepthError: LiteRT INT8 before it is built, a network no choice of float layers rescues)
is a cell with its message; any other exception too, with its type (a bug). The output starts with the date, commit, command, CPU, its instruction sets and the load.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch
from briefly_trained import TrainRecipe, aligned_abs_rel, oracle_labels, scenes, train_briefly

from edgedepth.core.cpu import cpu_isa, cpu_name, read_cpuinfo
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import preprocess
from edgedepth.core.sizes import format_size
from edgedepth.data.synthetic import Scene
from edgedepth.export.graph import export_model, pearson_correlation
from edgedepth.models import DepthNetwork, create_model, load_model
from edgedepth.runtime.predictor import load_predictor
from edgedepth.runtime.pytorch import TorchPredictor
from edgedepth.runtime.runtimes import EXPORT_FORMATS, SUFFIXES, ExportFormat, Quantizer
from edgedepth.runtime.timing import time_files
from edgedepth.train.loop import FINAL_WEIGHTS

NETWORKS = ("fastdepth_v3", "fastdepth_mobilenetv4_conv_small", "fastdepth", "fastdepth_efficientnet_lite0",
            "fastdepth_mobilenet_v2", "zipdepth_base", "midas_v21_small", "depth_anything_v2_small")
FORMATS = ("onnx", "openvino", "litert")
#: Training steps: 200 per network, fewer for the two slowest (seconds per step at 128x96, batch 16, one thread on
#: a quiet 2-core AMD EPYC: MiDaS small 1.6, Depth Anything small 2.4, the FastDepths and ZipDepth 0.15 to 0.75).
STEPS = "300,midas_v21_small=150,depth_anything_v2_small=100"
#: The training recipe of each network (default: the demo's, "seed"): the scale-and-shift-invariant one for ZipDepth,
#: which the seed's left at a constant output. With "ssi", 100 steps left MiDaS small and Depth Anything small at
#: constant outputs (zero: their last ReLU closed), where "seed" reached AbsRel 0.24 and 0.25 on the test scenes.
RECIPE: dict[str, TrainRecipe] = {"zipdepth_base": "ssi"}
SIZE, TRAIN_SIZE = (256, 192), (128, 96)
LABEL_SCENES = 400
CALIBRATION_SEEDS, TEST_SEEDS = (5000, 32), (9000, 20)  # (first seed, count)
#: Fewer calibration scenes where the search for float layers would not fit in memory: it holds every intermediate
#: activation of every calibration image, float and INT8 (peak measured, 256x192: 1.35 GB per image for Depth
#: Anything small, 0.45 for MiDaS small, under 0.25 for the others; with 32 images Depth Anything was killed for
#: memory on a 23 GB machine).
CALIBRATION = {"midas_v21_small": 16, "depth_anything_v2_small": 8}
ACCURACY_NOTE = ("Correlation: of the INT8 file's outputs with FP32 PyTorch's; AbsRel: aligned (least squares in "
                 "disparity); change: INT8's AbsRel minus FP32's. Whole INT8: the same quantiser with no layer kept in "
                 "floating point (only where the checked file kept some). Training: steps, size and recipe (seed: the "
                 "demo's; ssi: scale-and-shift-invariant loss, AdamW at 5e-4).")
ACCURACY_HEADER = ("| network | input | training | calibration scenes | format | quantiser | layers in float | "
                   "correlation | AbsRel FP32 | AbsRel INT8 | change | whole-INT8 correlation | whole-INT8 change |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
SPEED_HEADER = ("| network | format | FP32 ms | INT8 ms (as exported) | INT8 vs FP32 | whole-INT8 ms "
                "| cost of the float layers (INT8 / whole INT8) |\n|---|---|---|---|---|---|---|")
#: Float layer names shown in the main table; the list below it has them all.
SHOWN_LAYERS = 3


@dataclass(frozen=True)
class Drift:
    """A file's outputs on the test scenes: their correlation with FP32 PyTorch's, and their aligned AbsRel."""

    correlation: float
    abs_rel: float


@dataclass
class Row:
    """One network in one format: what its INT8 files gave, and the message of each step that failed."""

    network: str
    size: tuple[int, int]
    training: str
    calibration: int
    fmt: ExportFormat
    fp32_abs_rel: float
    error: str = ""
    quantizer: str = ""
    float_layers: dict[str, float] = field(default_factory=dict)
    checked: Drift | None = None
    whole: Drift | None = None
    whole_error: str = ""
    #: Median ms of ``fp32``, ``int8`` (the checked file) and, where layers were kept in float, ``whole``.
    latency_ms: dict[str, float] = field(default_factory=dict)
    timing_error: str = ""


def parse_steps(text: str, names: list[str]) -> dict[str, int]:
    """``--steps``: a bare number for every network, ``name=N`` for one (later items win)."""
    steps: dict[str, int] = {}
    for item in text.split(","):
        name, _, count = item.rpartition("=")
        for network in ([name] if name else names):
            steps[network] = int(count)
    return steps


def parse_formats(text: str) -> list[ExportFormat]:
    """``--formats``: comma-separated export formats."""
    known: dict[str, ExportFormat] = {fmt: fmt for fmt in EXPORT_FORMATS}
    try:
        return [known[name] for name in text.split(",")]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"unknown format {exc}; use {', '.join(EXPORT_FORMATS)}") from None


def trained_weights(name: str, steps: int, out: Path) -> Path:
    """``name``'s weights after ``steps`` steps on oracle labels, trained now unless ``out`` has them already."""
    recipe = RECIPE.get(name, "seed")
    run = out / "runs" / f"{name}-{recipe}-{steps}steps"
    if (run / FINAL_WEIGHTS).is_file():
        return run / FINAL_WEIGHTS
    train_size = create_model(name).card.fit_size(TRAIN_SIZE)
    labels = oracle_labels(out / f"labels-{format_size(train_size)}", LABEL_SCENES, train_size)
    began = time.perf_counter()
    weights = train_briefly(name, labels, steps, run, recipe)
    log(f"{name}: {steps} steps at {format_size(train_size)} ({recipe}) in {time.perf_counter() - began:.0f} s")
    return weights


def drift(path: Path, tests: list[Scene], reference: list[np.ndarray]) -> Drift:
    """The file at ``path`` on the test scenes against FP32 PyTorch's outputs there (its Predictor is closed before
    the next export: OpenVINO corrupted memory when a model stayed open while another IR was written)."""
    predictor = load_predictor(path, threads=1, keep_aspect=False)  # stretched, as the FP32 reference
    outputs = [predictor(scene.image) for scene in tests]
    return Drift(pearson_correlation(np.stack(outputs), np.stack(reference)), aligned_abs_rel(outputs, tests))


def format_row(model: DepthNetwork, row: Row, folder: Path, calibration: list[np.ndarray], tests: list[Scene],
               reference: list[np.ndarray], runs: int) -> None:
    """Fill ``row`` for its format: the checked INT8 file, the whole-INT8 one where layers were kept in float, and
    their latencies beside the format's FP32 file."""
    suffix = SUFFIXES[row.fmt]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        checked = export_model(model, folder / f"int8{suffix}", row.fmt, SIZE, calibration=calibration)
    except EdgedepthError as exc:
        row.error = str(exc)
        return
    info = checked.metadata.info
    row.quantizer, row.float_layers = info.quantizer or "", info.float_layers
    row.checked = drift(checked.path, tests, reference)
    files = {"fp32": folder / f"fp32{suffix}", "int8": checked.path}
    if row.float_layers:
        try:
            whole = export_model(model, folder / f"whole-int8{suffix}", row.fmt, SIZE, calibration=calibration,
                                 min_correlation=None, quantizer=cast("Quantizer", info.quantizer))
            row.whole = drift(whole.path, tests, reference)
            files["whole"] = whole.path
        except EdgedepthError as exc:
            row.whole_error = str(exc)
    try:
        export_model(model, files["fp32"], row.fmt, SIZE)
        medians = time_files(list(files.values()), row.fmt, threads=1, runs=runs)
        row.latency_ms = dict(zip(files, medians, strict=True))
    except (EdgedepthError, RuntimeError) as exc:  # time_files' RuntimeError: the timing process failed
        row.timing_error = str(exc)


def network_rows(name: str, steps: int, formats: list[ExportFormat], out: Path, runs: int, calibration_scenes: list[Scene],
                 tests: list[Scene]) -> list[Row]:
    """One row per format for network ``name``, briefly trained.

    An exception other than EdgedepthError (a bug, not a refusal) is reported in its row, so that the other rows of
    an hour's run still come out.
    """
    count = CALIBRATION.get(name, len(calibration_scenes))
    try:
        model = load_model(trained_weights(name, steps, out))
    except EdgedepthError as exc:
        return [Row(name, SIZE, f"{steps} steps", count, fmt, float("nan"), error=f"training: {exc}")
                for fmt in formats]
    card = model.card
    size = card.fit_size(SIZE)
    training = f"{steps} steps at {format_size(card.input_size)}, {RECIPE.get(name, 'seed')}"
    calibration = [preprocess([scene.image], size, card.mean, card.std) for scene in calibration_scenes[:count]]
    fp32 = TorchPredictor(model, size)
    reference = [fp32(scene.image) for scene in tests]
    fp32_abs_rel = aligned_abs_rel(reference, tests)
    rows = []
    for fmt in formats:
        began = time.perf_counter()
        row = Row(name, size, training, count, fmt, fp32_abs_rel)
        try:
            format_row(model, row, out / "files" / name / fmt, calibration, tests, reference, runs)
        except Exception as exc:  # noqa: BLE001  (a bug: said in the row, with its type)
            row.error = f"crashed{where(exc)}, {type(exc).__name__}: {exc}"
        log(f"{name} {fmt}: {time.perf_counter() - began:.0f} s" + (f" ({row.error})" if row.error else ""))
        rows.append(row)
    return rows


def where(exc: BaseException) -> str:
    """`` in <function>``: the innermost edgedepth function an exception came through (where its bug is), or ``""``."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if "/edgedepth/" in frame.filename]
    return f" in {frames[-1].name}" if frames else ""


def log(message: str) -> None:
    """Progress on stderr (stdout is the tables)."""
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def cell(text: str) -> str:
    """Text that fits in one Markdown table cell."""
    return " ".join(text.split()).replace("|", "/")


def layers(kept: dict[str, float]) -> str:
    """The layers kept in floating point: how many, and the first names."""
    if not kept:
        return "none"
    names = list(kept)
    more = f", +{len(names) - SHOWN_LAYERS} more" if len(names) > SHOWN_LAYERS else ""
    return f"{len(names)}: {', '.join(f'`{name}`' for name in names[:SHOWN_LAYERS])}{more}"


def version(package: str) -> str:
    """An installed package's version, read from its metadata (not imported)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def header(started: datetime) -> str:
    """Date, commit, the exact command, the CPU with its instruction sets, the load and the packages' versions."""
    commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True, text=True,
                            check=False, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    cpuinfo = read_cpuinfo()
    versions = ", ".join(f"{package} {version(package)}"
                         for package in ("torch", "onnxruntime", "openvino", "nncf", "ai-edge-litert"))
    return "\n".join([
        "# INT8 against FP32 for the zoo's networks, briefly trained on synthetic scenes",
        "",
        f"- date {started:%Y-%m-%d %H:%M}, commit {commit}",
        f"- command: `PYTHONPATH=src python {shlex.join(sys.argv)}`",
        f"- CPU: {cpu_name(cpuinfo)}, {os.cpu_count()} CPUs; instruction sets: {', '.join(cpu_isa(cpuinfo))}",
        f"- load average at start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}",
        f"- {versions}",
    ])


def ramp_abs_rel(tests: list[Scene]) -> float:
    """The aligned AbsRel of a vertical ramp (no image input) on the test scenes: what a network that learnt nothing
    of the image can reach."""
    height, width = tests[0].raw_depth.shape
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None], (height, width))
    return aligned_abs_rel([ramp] * len(tests), tests)


def tables(rows: list[Row], runs: int, ramp: float) -> str:
    """The accuracy table, the speed table and the list of float layers."""
    lines = [
        f"\n## Accuracy on {TEST_SEEDS[1]} held-out synthetic scenes\n",
        ACCURACY_NOTE + f" A vertical ramp (no image input) scores AbsRel {ramp:.4f} on these scenes.\n",
        ACCURACY_HEADER,
    ]
    for row in rows:
        start = f"| {row.network} | {format_size(row.size)} | {row.training} | {row.calibration} | {row.fmt} |"
        if row.error or row.checked is None:
            lines.append(f"{start} failed: {cell(row.error)} | — | — | {row.fp32_abs_rel:.4f} | — | — | — | — |")
            continue
        change = row.checked.abs_rel - row.fp32_abs_rel
        if row.whole is not None:
            whole = f"{row.whole.correlation:.4f} | {row.whole.abs_rel - row.fp32_abs_rel:+.4f}"
        else:
            whole = f"failed: {cell(row.whole_error)} | —" if row.whole_error else "— | —"
        lines.append(f"{start} {row.quantizer} | {layers(row.float_layers)} | {row.checked.correlation:.4f} | "
                     f"{row.fp32_abs_rel:.4f} | {row.checked.abs_rel:.4f} | {change:+.4f} | {whole} |")
    lines += [
        f"\n## Speed: median ms, batch 1, one thread, {runs} runs; each format's files timed interleaved in one process\n",
        SPEED_HEADER,
    ]
    for row in rows:
        if row.error or row.checked is None:
            continue
        if row.timing_error:
            lines.append(f"| {row.network} | {row.fmt} | failed: {cell(row.timing_error)} | — | — | — | — |")
            continue
        ms = row.latency_ms
        whole = f"{ms['whole']:.2f} | {ms['int8'] / ms['whole']:.2f}x" if "whole" in ms else "— | —"
        lines.append(f"| {row.network} | {row.fmt} | {ms['fp32']:.2f} | {ms['int8']:.2f} | "
                     f"{ms['int8'] / ms['fp32']:.2f}x | {whole} |")
    kept = [row for row in rows if row.float_layers]
    if kept:
        lines.append("\n## Layers kept in floating point (layer: SNR in dB of what it reads in INT8, worst first)\n")
        lines += [f"- {row.network}, {row.fmt} ({row.quantizer}): "
                  + ", ".join(f"`{name}` {snr:.1f}" for name, snr in row.float_layers.items()) for row in kept]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="work folder: labels, weights (kept), files")
    parser.add_argument("--models", default=",".join(NETWORKS), help="comma-separated registry names")
    parser.add_argument("--formats", type=parse_formats, default=",".join(FORMATS), help="comma-separated, of: "
                        + ", ".join(EXPORT_FORMATS))
    parser.add_argument("--steps", default=STEPS, help="training steps: N for every network, name=N for one")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # OpenCV's resizing, in training's data and in post-processing: one core as well
    started, began = datetime.now(), time.perf_counter()
    print(header(started), flush=True)
    names = args.models.split(",")
    steps = parse_steps(args.steps, names)
    calibration_scenes, tests = scenes(*CALIBRATION_SEEDS), scenes(*TEST_SEEDS)
    rows = []
    for name in names:
        rows += network_rows(name, steps[name], args.formats, args.out, args.runs, calibration_scenes, tests)
    print(tables(rows, args.runs, ramp_abs_rel(tests)))
    print(f"\nWall time {time.perf_counter() - began:.0f} s (training included where weights were not kept); load "
          f"average at end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
