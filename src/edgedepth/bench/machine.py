"""The machine a benchmark runs on: its CPU, the instruction sets that decide CNN speed, its load, the runtimes'
versions, and its single-thread FP32 matrix-multiply peak (the FLOP floor's rate)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from edgedepth.core.cpu import ISA_FLAGS, cpu_isa, cpu_name, read_cpuinfo
from edgedepth.runtime.runtimes import package_versions

__all__ = ["ISA_FLAGS", "Machine", "cpu_isa", "cpu_name", "read_cpuinfo"]

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


def sgemm_peak_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Single-thread FP32 matrix-multiply throughput: the best of ``repeats`` ``size``-cubed products (NumPy's BLAS,
    held to one thread; no training framework, so ``bench --files`` measures it on a runtime-only install too)."""
    generator = np.random.default_rng(0)
    a = generator.standard_normal((size, size), dtype=np.float32)
    b = generator.standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        np.matmul(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b)
            best = min(best, time.perf_counter() - start)
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
    cpuinfo = read_cpuinfo()
    versions = package_versions()
    sgemm = sgemm_peak_gflops()
    return Machine(cpu_name(cpuinfo), cpu_isa(cpuinfo), sgemm, _load_average(), versions, (sgemm,))


def _load_average() -> tuple[float, float, float]:
    return tuple(round(value, 2) for value in os.getloadavg())  # type: ignore[return-value]
