"""The benchmark's report: each cell's latency as a multiple of its FLOP floor, the INT8 summary, and the files
(``bench.md``, ``bench.json``, ``bench.png``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from edgedepth.bench.cells import Cell
from edgedepth.bench.config import BenchConfig
from edgedepth.bench.machine import Machine
from edgedepth.core.files import atomic_path, write_json
from edgedepth.core.sizes import format_size
from edgedepth.runtime.runtimes import RUNTIMES

#: Marks a cell measured below its FLOP floor in the table (see :func:`below_floor`).
BELOW_FLOOR_MARK = "(!)"


def flop_floor_ms(macs: int | None, gflops: float) -> float | None:
    """The time ``2 x macs`` FLOPs take at the measured single-thread sgemm rate, in milliseconds (``None`` where the
    MACs are not known)."""
    return None if macs is None else 2 * macs / (gflops * 1e9) * 1e3


def _is_int8(cell: Cell) -> bool:
    return RUNTIMES[cell.runtime].int8


def computes_in_fp32(cell: Cell) -> bool:
    """Whether the cell's arithmetic is FP32: not an INT8 file, nor OpenVINO's default bf16 (or f16) on CPUs that
    have it (AMX-BF16 runs several times the FP32 operations per instruction)."""
    return not _is_int8(cell) and cell.precision in (None, "f32")


def below_floor(cell: Cell, gflops: float) -> bool:
    """An FP32 cell on one thread faster than its FLOP floor: a measurement error, not a result.

    One thread of FP32 cannot beat the sgemm rate that defines the floor, so either the peak was measured under
    load (too low) or the cell's runs were disturbed. INT8 and bf16 (several times the FP32 operations per
    instruction) and several threads can legitimately go below 1x, so they are not flagged.
    """
    floor = flop_floor_ms(cell.macs, gflops)
    return (floor is not None and cell.threads == 1 and computes_in_fp32(cell) and bool(cell.latencies_ms)
            and cell.median_ms < floor)


def format_table(machine: Machine, cells: list[Cell], cfg: BenchConfig) -> str:
    """The markdown report: a header on the machine, then one row per cell."""
    versions = ", ".join(f"{k} {v.split('-')[0]}" for k, v in machine.versions.items())
    if cfg.files:
        requested = "each file's exported size"
    else:
        requested = "requested size " + (format_size(cfg.size) if cfg.size is not None else "each model's default")
    title = f"# edgedepth bench: batch 1, {cfg.runs} timed runs after {cfg.warmup} warm-up, {requested}"
    samples = machine.sgemm_samples or (machine.sgemm_gflops,)
    cpu = (f"CPU: {machine.cpu}; instruction sets: {', '.join(machine.isa) or 'none detected'}; single-thread "
           f"FP32 sgemm peak {machine.sgemm_gflops:.1f} GFLOP/s (the best of {len(samples)} measurements through "
           f"the run, lowest {min(samples):.1f}); load average at start {machine.load_average[0]:.2f}; {versions}")
    legend = ("× floor: median latency / (2 × MACs / single-thread sgemm peak), for every thread count (below 1 "
              "at INT8 or several threads is possible; — where a file's metadata has no MACs). Peak RSS: the cell's own "
              "process (PyTorch imported only in torch and torchscript cells); runtime RSS: resident memory after the runs minus after the common imports (runtime "
              "library, weights, compiled graph, buffers).")
    header = ("| model | runtime | threads | input | params (M) | GMACs | median ms | p90 ms | FPS | × floor "
              "| vs torch | peak RSS MiB | runtime RSS MiB |")
    lines = [title, "", cpu, "", legend, "", header, "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    flagged = 0
    for cell in cells:
        own_choice = RUNTIMES[cell.runtime].precision == "default" and cell.precision
        runtime = f"{cell.runtime} ({cell.precision})" if own_choice else cell.runtime
        head = [cell.model, runtime, str(cell.threads), format_size(cell.input_size),
                "—" if cell.params is None else f"{cell.params / 1e6:.2f}",
                "—" if cell.macs is None else f"{cell.macs / 1e9:.3f}"]
        if cell.error is not None or not cell.latencies_ms:
            lines.append("| " + " | ".join([*head, f"failed: {cell.error}", *[""] * 6]) + " |")
            continue
        torch_cell = next((c for c in cells if (c.model, c.runtime, c.threads) == (cell.model, "torch", cell.threads)
                           and c.latencies_ms), None)
        speedup = f"{torch_cell.median_ms / cell.median_ms:.2f}x" if torch_cell else "—"
        floor = flop_floor_ms(cell.macs, machine.sgemm_gflops)
        ratio = "—" if floor is None else f"{cell.median_ms / floor:.2f}"
        if below_floor(cell, machine.sgemm_gflops):
            ratio, flagged = f"{ratio} {BELOW_FLOOR_MARK}", flagged + 1
        rss = (f"{cell.peak_rss_mib:.0f}", f"{cell.runtime_rss_mib:.0f}") if cell.peak_rss_mib else ("—", "—")
        lines.append("| " + " | ".join([
            *head, f"{cell.median_ms:.1f}", f"{cell.p90_ms:.1f}", f"{1e3 / cell.median_ms:.1f}", ratio, speedup, *rss,
        ]) + " |")
    if flagged:
        lines += ["", (f"{BELOW_FLOOR_MARK} {flagged} FP32 one-thread cell(s) below 1x the FLOP floor, i.e. faster "
                       "than sgemm itself: a MEASUREMENT ERROR (the machine was busy while the peak or the cell was "
                       "measured), not a result. Rerun on a quiet machine.")]
    correlations = dict.fromkeys((c.model, c.runtime, c.int8_correlation) for c in cells
                                 if c.int8_correlation is not None)
    if correlations:
        weights = "trained weights, checked as an export is" if cfg.weights else "random weights: speed only"
        lines += ["", f"INT8 files' correlation with their FP32 network on the check images ({weights}): "
                  + ", ".join(f"{model} {runtime} {value:.4f}" for model, runtime, value in correlations)]
    summary = int8_summary(cells, machine.sgemm_gflops)
    return "\n".join(lines + (["", *summary] if summary else [])) + "\n"


def int8_summary(cells: list[Cell], sgemm_gflops: float) -> list[str]:
    """Per model and thread count: the best FP32 and best INT8 cells and their ratio, INT8 against a reduced float
    precision where one was timed (OpenVINO's default bf16), and INT8 against eager."""
    lines = []
    timed = [c for c in cells if c.latencies_ms]
    for model, threads in dict.fromkeys((c.model, c.threads) for c in timed):
        group = [c for c in timed if (c.model, c.threads) == (model, threads)]
        fp32 = min((c for c in group if computes_in_fp32(c)), key=lambda c: c.median_ms, default=None)
        int8 = min((c for c in group if _is_int8(c)), key=lambda c: c.median_ms, default=None)
        reduced = min((c for c in group if not _is_int8(c) and not computes_in_fp32(c)),
                      key=lambda c: c.median_ms, default=None)
        eager = next((c for c in group if c.runtime == "torch"), None)
        if fp32 is None or int8 is None:
            continue
        floor = flop_floor_ms(fp32.macs, sgemm_gflops)
        mark = f" {BELOW_FLOOR_MARK}" if below_floor(fp32, sgemm_gflops) else ""
        versus_floor = "" if floor is None else f" ({fp32.median_ms / floor:.2f}x the FLOP floor{mark})"
        versus_reduced = (f", {reduced.median_ms / int8.median_ms:.2f}x faster than {reduced.runtime} "
                          f"({reduced.precision}) {reduced.median_ms:.1f} ms") if reduced else ""
        versus_eager = f", {eager.median_ms / int8.median_ms:.2f}x faster than PyTorch eager" if eager else ""
        lines.append(
            f"- {model}, {threads} thread(s): best FP32 {fp32.runtime} {fp32.median_ms:.1f} ms"
            f"{versus_floor}; best INT8 {int8.runtime} {int8.median_ms:.1f} ms, "
            f"{fp32.median_ms / int8.median_ms:.2f}x faster than the best FP32{versus_reduced}{versus_eager}"
        )
    return lines


def write_outputs(cfg: BenchConfig, machine: Machine, cells: list[Cell], table: str) -> None:
    out = Path(cfg.out)
    with atomic_path(out / "bench.md") as tmp:
        tmp.write_text(table)
    document = {
        "config": {**asdict(cfg), "out": str(cfg.out), "files": [str(path) for path in cfg.files],
                   "weights": [str(path) for path in cfg.weights]},
        "machine": asdict(machine),
        "cells": [
            {**asdict(cell), "median_ms": cell.median_ms if cell.latencies_ms else None,
             "p90_ms": cell.p90_ms if cell.latencies_ms else None,
             "flop_floor_ms": flop_floor_ms(cell.macs, machine.sgemm_gflops),
             "below_floor": below_floor(cell, machine.sgemm_gflops)}
            for cell in cells
        ],
    }
    write_json(out / "bench.json", document, indent=2)
    if cfg.chart:
        _write_chart(out / "bench.png", cells)


def _write_chart(path: Path, cells: list[Cell]) -> None:
    """Horizontal bars of median latency, one per measured cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [c for c in cells if c.latencies_ms]
    figure, axis = plt.subplots(figsize=(8, 0.3 * len(measured) + 1.5))
    axis.barh([f"{c.model} {c.runtime} ×{c.threads}" for c in measured], [c.median_ms for c in measured])
    axis.set_xlabel("median latency (ms), batch 1")
    axis.invert_yaxis()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
