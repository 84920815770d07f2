"""The cells of a benchmark (a model on a runtime at a thread count) and the process each model x runtime runs in.

Each model x runtime's file (made by :mod:`.networks`, or given with ``--files``) is opened in a
:class:`~edgedepth.runtime.timing.TimingProcess` of its own, one network per thread count, so a cell's memory is
that of its model on its runtime alone. This module imports no training framework: ``bench --files`` times
exported files on a runtime-only install.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from edgedepth.runtime.timing import Network, Timer, TimingProcess


@dataclass
class Cell:
    """One model on one runtime at one thread count, and what was measured."""

    model: str
    runtime: str
    threads: int
    input_size: tuple[int, int]
    params: int | None  # None: not known (a file exported before its metadata carried them)
    macs: int | None
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


class Row:
    """One model on one runtime: its cells by thread count, timed in one process (``None`` where its file could
    not be made; the cells then carry the error)."""

    def __init__(self, cells: dict[int, Cell], path: Path | None) -> None:
        self.cells = cells
        first = next(iter(cells.values()))
        self.process: TimingProcess | None = None
        if path is not None:
            self.process = TimingProcess([Network(str(path), first.runtime, count) for count in cells])
            for cell, precision in zip(cells.values(), self.process.precisions, strict=True):
                cell.precision = precision

    @property
    def error(self) -> str | None:
        """Why this row's cells have no figures, if they have none."""
        first = next(iter(self.cells.values()))
        return first.error or (self.process.error if self.process is not None else None)

    def timer(self, threads: int) -> Timer:
        """The timer of the cell at ``threads``."""
        assert self.process is not None
        return self.process.timer(list(self.cells).index(threads))

    def finish(self) -> None:
        """Stop the process, keep its memory figures, and mark the cells with any error it reported."""
        memory = self.process.finish() if self.process is not None else None
        for cell in self.cells.values():
            if memory is not None:
                cell.peak_rss_mib, cell.runtime_rss_mib = memory.peak_mib, memory.runtime_mib
            cell.error = cell.error or (self.process.error if self.process is not None else None)
