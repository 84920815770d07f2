"""Timing networks: one interleaved loop, and one spawned process that holds networks and times them on request.

Every latency edgedepth reports (bench's cells, prune's rounds, export's choice of quantiser) is measured the same
way, by :func:`interleaved`: the networks take turns run by run, each turn one untimed run, which brings back into
the caches what the other networks' turns evicted (as in a steady loop, where a network runs frame after frame),
then one timed run; the first ``warmup`` turns are not kept, and the median of the rest is the latency. Turns
interleave, so the machine's drift hits every network alike.

A :class:`TimingProcess` is a fresh process (spawned: no state of the parent's) that opens model files, each on its
runtime at its thread count, and times one turn of any of them when asked; the parent runs the loop, so networks
in several processes take turns as well as networks in one. At the end it reports its memory: the peak resident
memory of the process, and what the runtime added to what the common imports (Python, NumPy, PyTorch) hold.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from edgedepth.runtime.predictor import Predictor

#: Timed runs and untimed turns before them, wherever a caller does not choose.
TIMING_RUNS, TIMING_WARMUP = 30, 5
#: Runtimes whose threads are a setting of the whole process (PyTorch's), not of an opened network: one opened
#: network serves every thread count, set turn by turn (:meth:`Predictor.use_threads`).
_PROCESS_THREADS = ("torch", "torchscript")
#: Seconds a parent waits between checks that its timing process is still alive.
_POLL_SECONDS = 1.0


def random_input(size: tuple[int, int]) -> np.ndarray:
    """The input every timing runs: a normalised batch of one at ``size = (width, height)``, standard normal, seeded."""
    width, height = size
    return np.random.default_rng(0).standard_normal((1, 3, height, width), dtype=np.float32)


def time_turn(predictor: Predictor, batch: np.ndarray) -> float:
    """One turn: an untimed run, then the milliseconds of a timed one."""
    predictor.infer(batch)
    start = time.perf_counter()
    predictor.infer(batch)
    return (time.perf_counter() - start) * 1e3


class Timer(Protocol):
    """Something that times one turn of one network: milliseconds, or ``None`` once it has failed."""

    def time_turn(self) -> float | None: ...


class LocalTimer:
    """A network opened in this process, timed on :func:`random_input` at its size."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.batch = random_input(predictor.size)

    def time_turn(self) -> float:
        return time_turn(self.predictor, self.batch)


def interleaved(
    timers: Sequence[Timer], runs: int = TIMING_RUNS, warmup: int = TIMING_WARMUP,
    after_turn: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """``warmup + runs`` turns over ``timers`` in order; per timer, the milliseconds of its kept turns.

    ``after_turn(turn)`` runs after every turn of all timers (bench measures sgemm there). A timer that fails keeps
    the turns it had.
    """
    kept: list[list[float]] = [[] for _ in timers]
    for turn in range(warmup + runs):
        for times, timer in zip(kept, timers, strict=True):
            milliseconds = timer.time_turn()
            if milliseconds is not None and turn >= warmup:
                times.append(milliseconds)
        if after_turn is not None:
            after_turn(turn)
    return kept


def median_ms(times: Sequence[float]) -> float:
    """The latency a list of turns gives: their median."""
    return float(statistics.median(times))


@dataclass(frozen=True)
class Network:
    """A model file as a timing process opens it: with ``runtime``'s Predictor, at ``threads`` threads."""

    path: str
    runtime: str
    threads: int


@dataclass(frozen=True)
class Memory:
    """A timing process's memory in MiB: its peak, and what its runtime (library, weights, compiled graphs and
    buffers) added to the common imports."""

    peak_mib: float
    runtime_mib: float


class TimingProcess:
    """A spawned process holding ``networks``; :meth:`timer` times one of them turn by turn.

    Opening may fail (a file its runtime cannot take): ``error`` then says why, in one line, and the timers return
    ``None``. ``precisions`` says, per network, what its runtime computes in where it says (OpenVINO), else None.
    """

    def __init__(self, networks: Sequence[Network]) -> None:
        context = multiprocessing.get_context("spawn")
        self.error: str | None = None
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, list(networks)), daemon=True)
        self.process.start()
        child.close()
        precisions = self._receive("ready")
        self.precisions: list[str | None] = precisions if precisions is not None else [None] * len(networks)

    def timer(self, index: int) -> Timer:
        """The timer of network ``index``."""
        return _RemoteTimer(self, index)

    def time_turn(self, index: int) -> float | None:
        if self.error is not None:
            return None
        self.connection.send(("run", index))
        return self._receive("ms")

    def finish(self) -> Memory | None:
        """Stop the process; its memory, or None where it failed."""
        memory = None
        if self.error is None:
            self.connection.send(("stop", 0))
            memory = self._receive("memory")
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
        return memory

    def _receive(self, kind: str) -> Any:
        while not self.connection.poll(_POLL_SECONDS):
            if not self.process.is_alive():
                self.error = f"timing process died (exit code {self.process.exitcode})"
                return None
        received, value = self.connection.recv()
        if received == "error":
            self.error = value
            return None
        if received != kind:
            raise RuntimeError(f"timing process answered {received!r} to a request for {kind!r}")
        return value


@dataclass(frozen=True)
class _RemoteTimer:
    process: TimingProcess
    index: int

    def time_turn(self) -> float | None:
        return self.process.time_turn(self.index)


def _resident_mib(field: str) -> float:
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


def _serve(connection: Connection, networks: list[Network]) -> None:
    """The timing process: open every network, then answer requests until told to stop."""
    try:
        from edgedepth.runtime.predictor import load_predictor

        baseline = _resident_mib("VmRSS")  # Python, NumPy, PyTorch: common to every timing process
        predictors: list[Predictor] = []
        shared: dict[tuple[str, str], Predictor] = {}
        for network in networks:
            key = (network.path, network.runtime)
            if network.runtime in _PROCESS_THREADS and key in shared:  # one network for every thread count
                predictors.append(shared[key])
                continue
            predictors.append(load_predictor(network.path, threads=network.threads, runtime=network.runtime))
            shared[key] = predictors[-1]
        batches = [random_input(p.size) for p in predictors]
        connection.send(("ready", [getattr(p, "inference_precision", None) for p in predictors]))
        while True:
            command, index = connection.recv()
            if command == "stop":
                connection.send(("memory", Memory(_resident_mib("VmHWM"), _resident_mib("VmRSS") - baseline)))
                return
            predictors[index].use_threads(networks[index].threads)
            connection.send(("ms", time_turn(predictors[index], batches[index])))
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which marks the networks failed and goes on)
        message = str(exc).splitlines()[0][:200] if str(exc) else ""
        connection.send(("error", f"{type(exc).__name__}: {message}"))


def time_files(
    paths: Sequence[Path], runtime: str, threads: int, runs: int = TIMING_RUNS, warmup: int = TIMING_WARMUP
) -> list[float]:
    """Median latency (ms) of each file on ``runtime`` at ``threads`` threads, timed interleaved in one spawned
    process (:func:`interleaved` over a :class:`TimingProcess`)."""
    process = TimingProcess([Network(str(path), runtime, threads) for path in paths])
    try:
        times = interleaved([process.timer(index) for index in range(len(paths))], runs, warmup)
    finally:
        process.finish()
    if process.error is not None:
        raise RuntimeError(f"timing {len(paths)} {runtime} file(s) failed: {process.error}")
    return [median_ms(kept) for kept in times]
