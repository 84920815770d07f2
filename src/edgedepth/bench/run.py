"""``edgedepth bench``: students and the peers a user would pick instead, over runtimes, side by side.

One run measures everything, so ratios are comparable even where absolute times are not:

- the CPU's instruction sets (``/proc/cpuinfo`` flags) and its single-thread FP32 matrix-multiply peak
  (``torch.mm`` on one thread, GFLOP/s), so every latency is also a multiple of the network's FLOP floor
  (``2 x MACs / peak``: what the network would take if every FLOP ran at sgemm speed). Load only ever slows
  sgemm down, and one measurement under load read 90 GFLOP/s where another read 144 on the same machine, so the
  peak is measured again after every round of cells (interleaved with them, as the cells are with each other)
  and the best of all those measurements is the peak. An FP32 cell on one thread below 1x its floor would be
  faster than sgemm itself: the table marks it as a measurement error, not a result;
- each cell (model x runtime x threads) runs the network alone on a normalised batch of one through the
  same :class:`~edgedepth.runtime.predictor.Predictor` that ``predict`` and ``eval`` use (``infer``: no
  resizing), in its own process. Within a thread count the cells take turns run by run (all of run 1,
  then all of run 2, ...), so the machine's drift hits them alike; each turn is one untimed run, which
  brings the cell's weights back into the caches the other cells used, then the timed run (as in a
  steady loop, where the network runs frame after frame);
- memory: ``VmHWM``, the peak resident memory of the cell's process, which loaded only that model on
  that runtime (every cell process imports PyTorch, so this includes PyTorch's few hundred MiB); and the
  runtime's own cost, resident memory after the timed runs minus resident memory after the common imports
  (Python, NumPy, PyTorch): the runtime library, the weights, the compiled graph and its buffers.

Every model is a registry network (``edgedepth models``) with random weights: speed only. Each is timed at the
requested size as its card takes it (Depth Anything at the nearest multiples of 14), or with ``size=None`` at its own
default input; the eager PyTorch cell runs the network fused for inference, as ``predict`` does (ZipDepth's RepVGG
blocks folded). ``openvino`` cells run the FP32 IR in true f32; ``openvino-default`` runs the same file at
OpenVINO's own default precision (bf16 on CPUs with AVX-512 BF16 or AMX), which its cells report. INT8 cells are
calibrated on synthetic scenes.

A run prints its progress on stderr: one line per prepared model x runtime, a line with the time left while
the rounds run (at most every :data:`PROGRESS_SECONDS`), and one line per cell once its thread count is done.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedepth.core.cores import available_cores
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path
from edgedepth.core.sizes import DEFAULT_INPUT_SIZE, format_size

logger = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "onnx-int8", "openvino", "openvino-default", "openvino-int8")
#: Instruction sets that decide CNN speed, as /proc/cpuinfo names them (x86 ``flags``, ARM ``Features``).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
             "asimd", "asimddp", "i8mm", "sve")
#: Synthetic scenes used to calibrate the INT8 cells (speed only: a few are enough for realistic ranges).
CALIBRATION_SCENES = 8
#: The sgemm measurement after each round: the best of this many 1024-cubed products (~20 ms each).
SGEMM_REPEATS_PER_ROUND = 2
#: While the rounds run, a progress line at most this often (seconds), and after the first and the last round.
PROGRESS_SECONDS = 10.0
#: Marks a cell measured below its FLOP floor in the table (see :func:`below_floor`).
BELOW_FLOOR_MARK = "(!)"


def default_thread_counts() -> tuple[int, ...]:
    """One thread and two, as far as the cores this process may use allow (more threads than cores time the
    contention, not the network)."""
    return tuple(count for count in (1, 2) if count <= available_cores())


@dataclass(frozen=True)
class BenchConfig:
    """What ``edgedepth bench`` was asked to do."""

    models: tuple[str, ...] = ("fastdepth_v3", "fastdepth", "zipdepth_base", "midas_v21_small", "depth_anything_v2_small")
    runtimes: tuple[str, ...] = RUNTIMES
    threads: tuple[int, ...] = field(default_factory=default_thread_counts)
    size: tuple[int, int] | None = DEFAULT_INPUT_SIZE  # None: each model at its own default input
    runs: int = 30
    warmup: int = 5
    out: Path = Path("bench_out")
    chart: bool = False
    progress: bool = True


@dataclass
class Cell:
    """One model on one runtime at one thread count, and what was measured."""

    model: str
    runtime: str
    threads: int
    input_size: tuple[int, int]
    params: int
    macs: int
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mib: float | None = None
    runtime_rss_mib: float | None = None
    error: str | None = None
    int8_correlation: float | None = None
    precision: str | None = None  # what the runtime computed in, where it says (OpenVINO's inference precision)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p90_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[int(0.9 * (len(ordered) - 1))]


@dataclass(frozen=True)
class Machine:
    """The CPU, its instruction sets and its measured single-thread FP32 matmul peak.

    ``sgemm_gflops`` is the best of ``sgemm_samples``, the measurements taken through the run (:func:`best_peak`).
    """

    cpu: str
    isa: tuple[str, ...]
    sgemm_gflops: float
    load_average: tuple[float, float, float]
    versions: dict[str, str]
    sgemm_samples: tuple[float, ...] = ()


@dataclass(frozen=True)
class BenchResult:
    machine: Machine
    cells: list[Cell]
    table: str


# ----------------------------------------------------------------------------------------------- machine


def read_cpuinfo() -> str:
    """This machine's ``/proc/cpuinfo`` text, empty where there is none (not Linux)."""
    path = Path("/proc/cpuinfo")
    return path.read_text() if path.exists() else ""


def cpu_isa(cpuinfo: str) -> tuple[str, ...]:
    """The :data:`ISA_FLAGS` present in a ``/proc/cpuinfo`` text (x86 ``flags`` or ARM ``Features`` line)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return tuple(flag for flag in ISA_FLAGS if flag in present)
    return ()


def _cpu_name(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "CPU part"):
            return value.strip()
    return platform.processor() or platform.machine()


def sgemm_peak_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Single-thread FP32 matrix-multiply throughput: the best of ``repeats`` ``size``-cubed products."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def best_peak(samples: Sequence[float]) -> float:
    """The single-thread peak from sgemm measurements spread over a run: the fastest of them.

    Other work on the machine only ever slows sgemm down, never speeds it up, so the fastest measurement is the
    one closest to what the CPU can do; a mean or a median would carry the load of the moments it was taken in.
    """
    if not samples:
        raise ValueError("no sgemm measurement")
    return max(samples)


def describe_machine() -> Machine:
    """The machine, with one sgemm measurement (:func:`run` adds one after every round)."""
    import onnxruntime
    import openvino

    cpuinfo = read_cpuinfo()
    versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__}
    sgemm = sgemm_peak_gflops()
    return Machine(_cpu_name(cpuinfo), cpu_isa(cpuinfo), sgemm, _load_average(), versions, (sgemm,))


def _load_average() -> tuple[float, float, float]:
    import os

    return tuple(round(value, 2) for value in os.getloadavg())  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------- networks


def build_network(name: str, size: tuple[int, int] | None) -> nn.Module:
    """A registry network with random weights (seeded), fused for inference, in eval mode, its card at the size it
    is timed at: ``size`` as the network takes it, or its own default."""
    from edgedepth.models import create_model, prepare_for_inference

    torch.manual_seed(0)
    model = create_model(name, card={"input_size": size} if size is not None else None)
    return prepare_for_inference(model)


# ----------------------------------------------------------------------------------------------- files


def _calibration(card: Any) -> list[np.ndarray]:
    """Normalised synthetic scenes at the card's size: realistic activation ranges for the INT8 cells."""
    from edgedepth.core.processing import preprocess
    from edgedepth.data.synthetic import render_scene

    width, height = card.input_size
    scenes = [render_scene(1000 + k, (width * 5 // 4, height * 5 // 4)).image for k in range(CALIBRATION_SCENES)]
    return [preprocess([image], card.input_size, card.mean, card.std).numpy() for image in scenes]


def _export_cell_file(model: nn.Module, runtime: str, folder: Path) -> tuple[Path, float | None]:
    """The model file a runtime cell loads; for INT8, also its output's correlation with FP32 (``None`` if the
    correlation is undefined: a random-weight peer whose output is constant)."""

    from edgedepth.runtime.export import SUFFIXES, export_model, runtime_format

    fmt, int8 = runtime_format(runtime)
    path = folder / f"{model.card.name}.{runtime}{SUFFIXES[fmt]}"  # openvino-default: its own
    calibration = _calibration(model.card) if int8 else None
    result = export_model(model, path, fmt, source="bench", calibration=calibration, min_correlation=None,
                          fp32_tolerance=None)  # timing only: the exports' accuracy is checked where it matters
    if not int8 or math.isnan(result.correlation):
        return path, None
    return path, result.correlation


# ------------------------------------------------------------------------------------------ cell process


def _memory_mib(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process from ``/proc/self/status``, in MiB.

    Not ``ru_maxrss``: Linux carries that across ``execve``, so a spawned child would inherit its parent's peak.
    """
    status = Path("/proc/self/status")
    if not status.exists():  # not Linux: the peak as getrusage reports it (KiB on Linux, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _cell_main(connection: Connection, model: str, runtime: str, path: str | None, size: tuple[int, int] | None,
               threads: tuple[int, ...]) -> None:
    """A cell's process: open the network for each thread count, then time one run per request."""
    try:
        from edgedepth.runtime.predictor import OpenVinoPredictor, Predictor, TorchPredictor, load_predictor

        baseline = _memory_mib("VmRSS")  # Python, NumPy, PyTorch: common to every cell
        predictors: dict[int, Predictor]
        if runtime == "torch":  # one module; torch.set_num_threads switches the thread count per turn
            network = TorchPredictor(build_network(model, size))
            predictors = {count: network for count in threads}
        elif runtime == "openvino-default":  # the FP32 IR at OpenVINO's own choice of precision
            predictors = {count: OpenVinoPredictor(path, threads=count, default_precision=True)  # type: ignore[arg-type]
                          for count in threads}
        else:  # ONNX Runtime and OpenVINO fix the thread count when the model is opened
            predictors = {count: load_predictor(path, threads=count) for count in threads}  # type: ignore[arg-type]
        width, height = next(iter(predictors.values())).size
        batch = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, height, width), dtype=np.float32))
        precision = getattr(next(iter(predictors.values())), "inference_precision", None)
        connection.send(("ready", precision))
        while True:
            command, count = connection.recv()
            if command == "stop":
                connection.send(("rss", (_memory_mib("VmHWM"), _memory_mib("VmRSS") - baseline)))
                return
            if runtime == "torch" and torch.get_num_threads() != count:
                torch.set_num_threads(count)
            predictors[count].infer(batch)  # re-warm the caches that the other cells' turns have evicted
            start = time.perf_counter()
            predictors[count].infer(batch)
            connection.send(("ms", (time.perf_counter() - start) * 1e3))
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which marks the cell failed and goes on)
        connection.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"))


class _CellProcess:
    """The parent's handle on the process of one model on one runtime: its cells, one per thread count."""

    def __init__(self, context: Any, row: dict[int, Cell], path: Path | None, size: tuple[int, int] | None) -> None:
        self.row = row
        self.error: str | None = None
        first = next(iter(row.values()))
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_cell_main,
            args=(child, first.model, first.runtime, str(path) if path else None, size, tuple(row)),
            daemon=True,
        )
        self.process.start()
        precision = self._receive("ready")
        for cell in row.values():
            cell.precision = precision

    def _receive(self, kind: str) -> Any:
        while not self.connection.poll(1.0):
            if not self.process.is_alive():
                self.error = f"cell process died (exit code {self.process.exitcode})"
                return None
        received, value = self.connection.recv()
        if received == "error":
            self.error = value
            return None
        assert received == kind, (received, kind)
        return value

    def time_one_run(self, threads: int) -> float | None:
        """One turn: milliseconds of one timed run at ``threads``, or ``None`` once the process has failed."""
        if self.error is not None:
            return None
        self.connection.send(("run", threads))
        return self._receive("ms")

    def finish(self) -> None:
        """Collect memory figures, stop the process, and mark the cells with any error it reported."""
        if self.error is None:
            self.connection.send(("stop", 0))
            memory = self._receive("rss")
            if memory is not None:
                for cell in self.row.values():
                    cell.peak_rss_mib, cell.runtime_rss_mib = memory
        self.process.join(timeout=30)
        for cell in self.row.values():
            cell.error = cell.error or self.error


# ------------------------------------------------------------------------------------------------- run


def run(cfg: BenchConfig) -> BenchResult:
    """Measure every cell of ``cfg`` in one interleaved run; write ``bench.md``, ``bench.json`` (and ``bench.png``)."""
    import multiprocessing

    from edgedepth.models import model_info

    unknown = sorted(set(cfg.runtimes) - set(RUNTIMES))
    if unknown:
        raise EdgedepthError(f"unknown runtime(s) {', '.join(unknown)}; use some of {', '.join(RUNTIMES)}")
    for name in cfg.models:
        model_info(name)  # an unknown name fails now, naming the registered ones, not after the exports
    if cfg.runs < 1 or cfg.warmup < 0 or not cfg.threads or min(cfg.threads) < 1:
        raise EdgedepthError("--runs must be >= 1, --warmup >= 0 and --threads positive")
    progress = _Progress(cfg.progress)
    if max(cfg.threads) > available_cores():
        logger.warning(f"--threads {max(cfg.threads)}: this process may use {available_cores()} "
                     "core(s); cells with more threads than cores measure contention, not the network")
    machine = describe_machine()
    sgemm = list(machine.sgemm_samples)
    context = multiprocessing.get_context("spawn")
    cells: list[Cell] = []
    processes: list[_CellProcess] = []
    pairs, rounds = len(cfg.models) * len(cfg.runtimes), len(cfg.threads) * (cfg.warmup + cfg.runs)
    progress.say(f"bench: {pairs * len(cfg.threads)} cells ({len(cfg.models)} model(s) x {len(cfg.runtimes)} "
                 f"runtime(s) x {len(cfg.threads)} thread count(s)): preparing {pairs} model x runtime processes "
                 f"(exports, INT8 calibration), then {rounds} rounds of timing")
    with tempfile.TemporaryDirectory(prefix="edgedepth-bench-") as folder:
        _prepare(cfg, context, Path(folder), cells, processes, progress)
        _time_rounds(cfg, cells, processes, sgemm, progress)
        for handle in processes:
            handle.finish()
    machine = replace(machine, sgemm_gflops=best_peak(sgemm), sgemm_samples=tuple(round(g, 2) for g in sgemm))
    table = format_table(machine, cells, cfg)
    _write_outputs(cfg, machine, cells, table)
    return BenchResult(machine, cells, table)


def _prepare(cfg: BenchConfig, context: Any, folder: Path, cells: list[Cell], processes: list[_CellProcess],
             progress: _Progress) -> None:
    """Build each model, export it for each runtime and start its cell process; one progress line per pair."""
    from edgedepth.models.complexity import count_macs, count_parameters

    pairs = len(cfg.models) * len(cfg.runtimes)
    start = last = time.monotonic()
    for name in cfg.models:
        model = build_network(name, cfg.size)
        size = model.card.input_size
        params, macs = count_parameters(model), count_macs(model, size)
        for runtime in cfg.runtimes:
            row = {count: Cell(name, runtime, count, size, params, macs) for count in cfg.threads}
            cells.extend(row.values())
            path, correlation, error = None, None, None
            if runtime != "torch":
                try:
                    path, correlation = _export_cell_file(model, runtime, folder)
                except Exception as exc:  # noqa: BLE001  (a peer a runtime cannot take: reported, not fatal)
                    error = f"export: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            for cell in row.values():
                cell.error, cell.int8_correlation = error, correlation
            if error is None:
                processes.append(_CellProcess(context, row, path, cfg.size))
                error = processes[-1].error  # the process could not open the file (set on its cells at the end)
            now, done = time.monotonic(), len(cells) // len(cfg.threads)
            status = f"failed ({error})" if error else "ready"
            left = f"; about {format_duration(time_left(done, pairs, now - start))} left to prepare" if done < pairs else ""
            progress.say(f"[prepare {done}/{pairs}] {name} {runtime}: {status} in {now - last:.1f} s{left}")
            last = now


def _time_rounds(cfg: BenchConfig, cells: list[Cell], processes: list[_CellProcess], sgemm: list[float],
                 progress: _Progress) -> None:
    """Within each thread count, all cells take turns, run by run; an sgemm measurement closes every round."""
    per_count = cfg.warmup + cfg.runs
    rounds = len(cfg.threads) * per_count
    done = reported = 0
    start = time.monotonic()
    last_report = -math.inf
    for count in cfg.threads:
        for turn in range(per_count):
            for handle in processes:
                latency = handle.time_one_run(count)
                if latency is not None and turn >= cfg.warmup:
                    handle.row[count].latencies_ms.append(latency)
            sgemm.append(sgemm_peak_gflops(repeats=SGEMM_REPEATS_PER_ROUND))
            done += 1
            now = time.monotonic()
            if done in (1, rounds) or now - last_report >= PROGRESS_SECONDS:
                left = format_duration(time_left(done, rounds, now - start))
                progress.say(f"[timing {count} thread{'s' if count > 1 else ''}: round {turn + 1}/{per_count}, "
                             f"{done}/{rounds} in all] about {left} left")
                last_report = now
        errors = {id(handle.row[count]): handle.error for handle in processes}
        for cell in (c for c in cells if c.threads == count):
            reported += 1
            error = cell.error or errors.get(id(cell))
            result = f"failed: {error}" if error or not cell.latencies_ms else f"{cell.median_ms:.1f} ms"
            progress.say(f"[{reported}/{len(cells)}] {cell.model} {cell.runtime} {count} "
                         f"thread{'s' if count > 1 else ''}: {result}")


class _Progress:
    """Progress lines on stderr (the table goes to stdout), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def say(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stderr, flush=True)


def time_left(done: int, total: int, elapsed: float) -> float:
    """Seconds left if the ``total - done`` steps to go take as long, each, as the ``done`` ones did."""
    if done <= 0:
        return math.nan
    return elapsed / done * max(total - done, 0)


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``, ``1 h 02 min``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


# ---------------------------------------------------------------------------------------------- report


def flop_floor_ms(macs: int, gflops: float) -> float:
    """The time ``2 x macs`` FLOPs take at the measured single-thread sgemm rate, in milliseconds."""
    return 2 * macs / (gflops * 1e9) * 1e3


def computes_in_fp32(cell: Cell) -> bool:
    """Whether the cell's arithmetic is FP32: not an INT8 file, nor OpenVINO's default bf16 (or f16) on CPUs that
    have it (AMX-BF16 runs several times the FP32 operations per instruction)."""
    return not cell.runtime.endswith("-int8") and cell.precision in (None, "f32")


def below_floor(cell: Cell, gflops: float) -> bool:
    """An FP32 cell on one thread faster than its FLOP floor: a measurement error, not a result.

    One thread of FP32 cannot beat the sgemm rate that defines the floor, so either the peak was measured under
    load (too low) or the cell's runs were disturbed. INT8 and bf16 (several times the FP32 operations per
    instruction) and several threads can legitimately go below 1x, so they are not flagged.
    """
    return (cell.threads == 1 and computes_in_fp32(cell) and bool(cell.latencies_ms)
            and cell.median_ms < flop_floor_ms(cell.macs, gflops))


def format_table(machine: Machine, cells: list[Cell], cfg: BenchConfig) -> str:
    """The markdown report: a header on the machine, then one row per cell."""
    versions = ", ".join(f"{k} {v.split('-')[0]}" for k, v in machine.versions.items())
    requested = format_size(cfg.size) if cfg.size is not None else "each model's default"
    title = f"# edgedepth bench: batch 1, {cfg.runs} timed runs after {cfg.warmup} warm-up, requested size {requested}"
    samples = machine.sgemm_samples or (machine.sgemm_gflops,)
    cpu = (f"CPU: {machine.cpu}; instruction sets: {', '.join(machine.isa) or 'none detected'}; single-thread "
           f"FP32 sgemm peak {machine.sgemm_gflops:.1f} GFLOP/s (the best of {len(samples)} measurements through "
           f"the run, lowest {min(samples):.1f}); load average at start {machine.load_average[0]:.2f}; {versions}")
    legend = ("× floor: median latency / (2 × MACs / single-thread sgemm peak), for every thread count (below 1 "
              "at INT8 or several threads is possible). Peak RSS: the cell's own process (PyTorch imported in "
              "all); runtime RSS: resident memory after the runs minus after the common imports (runtime "
              "library, weights, compiled graph, buffers).")
    header = ("| model | runtime | threads | input | params (M) | GMACs | median ms | p90 ms | FPS | × floor "
              "| vs torch | peak RSS MiB | runtime RSS MiB |")
    lines = [title, "", cpu, "", legend, "", header, "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    flagged = 0
    for cell in cells:
        runtime = f"{cell.runtime} ({cell.precision})" if cell.runtime == "openvino-default" and cell.precision else (
            cell.runtime)
        head = [cell.model, runtime, str(cell.threads), format_size(cell.input_size), f"{cell.params / 1e6:.2f}",
                f"{cell.macs / 1e9:.3f}"]
        if cell.error is not None or not cell.latencies_ms:
            lines.append("| " + " | ".join([*head, f"failed: {cell.error}", *[""] * 6]) + " |")
            continue
        torch_cell = next((c for c in cells if (c.model, c.runtime, c.threads) == (cell.model, "torch", cell.threads)
                           and c.latencies_ms), None)
        speedup = f"{torch_cell.median_ms / cell.median_ms:.2f}x" if torch_cell else "—"
        ratio = f"{cell.median_ms / flop_floor_ms(cell.macs, machine.sgemm_gflops):.2f}"
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
        int8 = min((c for c in group if c.runtime.endswith("-int8")), key=lambda c: c.median_ms, default=None)
        reduced = min((c for c in group if not c.runtime.endswith("-int8") and not computes_in_fp32(c)),
                      key=lambda c: c.median_ms, default=None)
        eager = next((c for c in group if c.runtime == "torch"), None)
        if fp32 is None or int8 is None:
            continue
        floor = flop_floor_ms(fp32.macs, sgemm_gflops)
        mark = f" {BELOW_FLOOR_MARK}" if below_floor(fp32, sgemm_gflops) else ""
        versus_reduced = (f", {reduced.median_ms / int8.median_ms:.2f}x faster than {reduced.runtime} "
                          f"({reduced.precision}) {reduced.median_ms:.1f} ms") if reduced else ""
        versus_eager = f", {eager.median_ms / int8.median_ms:.2f}x faster than PyTorch eager" if eager else ""
        lines.append(
            f"- {model}, {threads} thread(s): best FP32 {fp32.runtime} {fp32.median_ms:.1f} ms "
            f"({fp32.median_ms / floor:.2f}x the FLOP floor{mark}); best INT8 {int8.runtime} {int8.median_ms:.1f} ms, "
            f"{fp32.median_ms / int8.median_ms:.2f}x faster than the best FP32{versus_reduced}{versus_eager}"
        )
    return lines


def _write_outputs(cfg: BenchConfig, machine: Machine, cells: list[Cell], table: str) -> None:
    out = Path(cfg.out)
    with atomic_path(out / "bench.md") as tmp:
        tmp.write_text(table)
    document = {
        "config": {**asdict(cfg), "out": str(cfg.out)},
        "machine": asdict(machine),
        "cells": [
            {**asdict(cell), "median_ms": cell.median_ms if cell.latencies_ms else None,
             "p90_ms": cell.p90_ms if cell.latencies_ms else None,
             "flop_floor_ms": flop_floor_ms(cell.macs, machine.sgemm_gflops),
             "below_floor": below_floor(cell, machine.sgemm_gflops)}
            for cell in cells
        ],
    }
    with atomic_path(out / "bench.json") as tmp:
        tmp.write_text(json.dumps(document, indent=2))
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
