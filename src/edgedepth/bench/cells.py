"""The cells of a benchmark (a model on a runtime at a thread count) and the process each model x runtime runs in.

Each model is a registry network with random weights (seeded): speed only. It is made into the file each runtime
runs (:func:`edgedepth.export.graph.runtime_file`; INT8 calibrated on synthetic scenes) and opened in a
:class:`~edgedepth.runtime.timing.TimingProcess` of its own, one network per thread count, so a cell's memory is
that of its model on its runtime alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgedepth.core.card import ModelCard
from edgedepth.core.processing import preprocess
from edgedepth.models import DepthNetwork, create_model, prepare_for_inference
from edgedepth.runtime.runtimes import get_runtime
from edgedepth.runtime.timing import Network, Timer, TimingProcess

#: Synthetic scenes used to calibrate the INT8 cells (speed only: a few are enough for realistic ranges).
CALIBRATION_SCENES = 8


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


def build_network(name: str, size: tuple[int, int] | None) -> DepthNetwork:
    """A registry network with random weights (seeded), fused for inference, in eval mode, its card at the size it
    is timed at: ``size`` as the network takes it, or its own default."""
    torch.manual_seed(0)
    model = create_model(name, card={"input_size": size} if size is not None else None)
    return prepare_for_inference(model)


def calibration(card: ModelCard) -> list[np.ndarray]:
    """Normalised synthetic scenes at the card's size: realistic activation ranges for the INT8 cells."""
    from edgedepth.data.synthetic import render_scene

    width, height = card.input_size
    scenes = [render_scene(1000 + k, (width * 5 // 4, height * 5 // 4)).image for k in range(CALIBRATION_SCENES)]
    return [preprocess([image], card.input_size, card.mean, card.std) for image in scenes]


def cell_file(model: DepthNetwork, runtime: str, folder: Path) -> tuple[Path, float | None]:
    """The file a runtime's cells run; for INT8, also its output's correlation with FP32 (``None`` where it is
    undefined: a random-weight peer whose output is constant)."""
    from edgedepth.export.graph import runtime_file

    chosen = get_runtime(runtime)
    return runtime_file(model, chosen, folder / model.card.name, calibration(model.card) if chosen.int8 else None)
