"""``edgedepth bench``: students and the peers a user would pick instead, over runtimes, side by side.

One run measures everything, so ratios are comparable even where absolute times are not:

- the CPU's instruction sets (``/proc/cpuinfo`` flags) and its single-thread FP32 matrix-multiply peak
  (NumPy's BLAS on one thread, GFLOP/s), so every latency is also a multiple of the network's FLOP floor
  (``2 x MACs / peak``: what the network would take if every FLOP ran at sgemm speed). Load only ever slows
  sgemm down, so the peak is measured again after every round of cells (interleaved with them, as the cells are
  with each other) and the best of all those measurements is the peak. An FP32 cell on one thread below 1x its floor would be
  faster than sgemm itself: the table marks it as a measurement error, not a result;
- each cell (model x runtime x threads) runs the network alone on a normalised batch of one through the
  same :class:`~edgedepth.runtime.predictor.Predictor` that ``predict`` and ``eval`` use (``infer``: no
  resizing), each model x runtime in its own process (:mod:`.cells`). Within a thread count the cells take turns
  run by run (:mod:`.rounds`, the one timing loop of :mod:`edgedepth.runtime.timing`), so the machine's drift hits
  them alike;
- memory: ``VmHWM``, the peak resident memory of the cell's process, which loaded only that model on
  that runtime (only the ``torch`` and ``torchscript`` cells import PyTorch); and the runtime's own cost, resident
  memory after the timed runs minus resident memory after the common imports (Python, NumPy, OpenCV): the runtime
  library, the weights, the compiled graph and its buffers.

With ``files`` (``bench --files``), the cells are those exported files, each on the runtime its metadata names
(an INT8 ONNX file on ``onnx-int8``), at the size it was exported at; parameters and MACs come from its metadata.
That needs no training framework: a board with ``pip install edgedepth`` times the files it will run.

Otherwise every model is a registry network (``edgedepth models``) with random weights: speed only. Each is timed at the
requested size as its card takes it (Depth Anything at the nearest multiples of 14), or with ``size=None`` at its own
default input; the eager PyTorch cell runs the network fused for inference, as ``predict`` does (ZipDepth's RepVGG
blocks folded). Each runtime name means what :data:`edgedepth.runtime.runtimes.RUNTIMES` says: ``openvino`` cells
run the FP32 IR in true f32, ``openvino-default`` the same file at OpenVINO's own default precision (bf16 on CPUs
with AVX-512 BF16 or AMX), which its cells report; INT8 cells run the file of the runtime's own quantiser,
calibrated on synthetic scenes.

A run prints its progress on stderr: one line per prepared model x runtime, a line with the time left while
the rounds run (at most every :data:`~.rounds.PROGRESS_SECONDS`), and one line per cell once its thread count is done.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edgedepth.bench.cells import Cell, Row
from edgedepth.bench.config import BenchConfig
from edgedepth.bench.machine import Machine, best_peak, describe_machine
from edgedepth.bench.report import format_table, write_outputs
from edgedepth.bench.rounds import Progress, format_duration, time_left, time_rounds
from edgedepth.core.cores import available_cores
from edgedepth.core.errors import EdgedepthError
from edgedepth.runtime.predictor import existing_model_file, load_predictor
from edgedepth.runtime.runtimes import RUNTIMES, runtime_of_export

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchResult:
    machine: Machine
    cells: list[Cell]
    table: str


def run(cfg: BenchConfig) -> BenchResult:
    """Measure every cell of ``cfg`` in one interleaved run; write ``bench.md``, ``bench.json`` (and ``bench.png``)."""
    if cfg.files or cfg.weights:
        for path in (*cfg.files, *cfg.weights):
            existing_model_file(path)  # a missing file fails now, not after the others were opened
    if not cfg.files:
        from edgedepth.models import model_info

        unknown = sorted(set(cfg.runtimes) - set(RUNTIMES))
        if unknown:
            raise EdgedepthError(f"unknown runtime(s) {', '.join(unknown)}; use some of {', '.join(RUNTIMES)}")
        for name in () if cfg.weights else cfg.models:
            model_info(name)  # an unknown name fails now, naming the registered ones, not after the exports
    if cfg.runs < 1 or cfg.warmup < 0 or not cfg.threads or min(cfg.threads) < 1:
        raise EdgedepthError("--runs must be >= 1, --warmup >= 0 and --threads positive")
    progress = Progress(cfg.progress)
    if max(cfg.threads) > available_cores():
        logger.warning(f"--threads {max(cfg.threads)}: this process may use {available_cores()} "
                       "core(s); cells with more threads than cores measure contention, not the network")
    machine = describe_machine()
    sgemm = list(machine.sgemm_samples)
    rounds = len(cfg.threads) * (cfg.warmup + cfg.runs)
    if cfg.files:
        progress.say(f"bench: {len(cfg.files) * len(cfg.threads)} cells ({len(cfg.files)} file(s) x "
                     f"{len(cfg.threads)} thread count(s)), then {rounds} rounds of timing")
    else:
        sources = len(cfg.weights or cfg.models)
        pairs = sources * len(cfg.runtimes)
        progress.say(f"bench: {pairs * len(cfg.threads)} cells ({sources} model(s) x {len(cfg.runtimes)} "
                     f"runtime(s) x {len(cfg.threads)} thread count(s)): preparing {pairs} model x runtime processes "
                     f"(exports, INT8 calibration), then {rounds} rounds of timing")
    with tempfile.TemporaryDirectory(prefix="edgedepth-bench-") as folder:
        rows = _open_files(cfg, progress) if cfg.files else _prepare(cfg, Path(folder), progress)
        try:
            time_rounds(rows, cfg.threads, cfg.runs, cfg.warmup, sgemm, progress)
        finally:
            for row in rows:
                row.finish()
    cells = [cell for row in rows for cell in row.cells.values()]
    machine = replace(machine, sgemm_gflops=best_peak(sgemm), sgemm_samples=tuple(round(g, 2) for g in sgemm))
    table = format_table(machine, cells, cfg)
    write_outputs(cfg, machine, cells, table)
    return BenchResult(machine, cells, table)


def _prepare(cfg: BenchConfig, folder: Path, progress: Progress) -> list[Row]:
    """Build each model, make its file for each runtime and start its timing process; one progress line per pair."""
    from edgedepth.bench.networks import build_network, cell_file, load_network
    from edgedepth.models.complexity import count_macs, count_parameters

    sources: list[str | Path] = list(cfg.weights or cfg.models)
    pairs = len(sources) * len(cfg.runtimes)
    start = last = time.monotonic()
    rows: list[Row] = []
    for source in sources:
        trained = isinstance(source, Path)
        model = load_network(source, cfg.size) if isinstance(source, Path) else build_network(source, cfg.size)
        name = f"{model.card.name} ({source.name})" if isinstance(source, Path) else source
        size = model.card.input_size
        params, macs = count_parameters(model), count_macs(model, size)
        for runtime in cfg.runtimes:
            cells = {count: Cell(name, runtime, count, size, params, macs) for count in cfg.threads}
            path, correlation, error = None, None, None
            try:
                path, correlation = cell_file(model, runtime, folder, checked=trained)
            except Exception as exc:  # noqa: BLE001  (a peer a runtime cannot take: reported, not fatal)
                error = f"export: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            for cell in cells.values():
                cell.error, cell.int8_correlation = error, correlation
            rows.append(Row(cells, path if error is None else None))
            error = rows[-1].error  # the process could not open the file
            now, done = time.monotonic(), len(rows)
            status = f"failed ({error})" if error else "ready"
            left = f"; about {format_duration(time_left(done, pairs, now - start))} left to prepare" if done < pairs else ""
            progress.say(f"[prepare {done}/{pairs}] {name} {runtime}: {status} in {now - last:.1f} s{left}")
            last = now
    return rows


def _open_files(cfg: BenchConfig, progress: Progress) -> list[Row]:
    """One row per exported file, on the runtime its metadata names, with its card's name, size and counts."""
    rows: list[Row] = []
    for done, path in enumerate(cfg.files, start=1):
        opened = load_predictor(path)  # its metadata, read the way predict reads it; closed before the row opens
        info = opened.export
        if info is None:
            raise EdgedepthError(f"{path}: bench --files times exported files (.onnx, .xml, .pt); time our "
                                 ".safetensors weights with --models and --runtimes")
        runtime = runtime_of_export(info.runtime, info.precision).name
        name, size = opened.card.name, opened.size
        del opened
        cells = {count: Cell(name, runtime, count, size, info.params, info.macs) for count in cfg.threads}
        rows.append(Row(cells, Path(path)))
        status = f"failed ({rows[-1].error})" if rows[-1].error else "ready"
        progress.say(f"[open {done}/{len(cfg.files)}] {path}: {name} on {runtime}, {status}")
    return rows
