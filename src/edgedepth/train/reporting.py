"""What a training run reports: ``log.jsonl``, TensorBoard and the progress bar (rank 0's), and its throughput."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edgedepth.train.config import TrainConfig

#: Prefix of the validation metrics in a ``log.jsonl`` record (flat numbers, as every other record holds).
VAL_PREFIX = "val_"


def _report_validation(
    log_path: Path, step: int, epoch: int, epochs: int, metrics: dict[str, float], best: bool
) -> str:
    """Append the epoch's NYU metrics to ``log.jsonl`` (``{"step", "epoch", "val_<metric>": ...}``) and return the
    line printed for them."""
    record = {"step": step, "epoch": epoch, **{VAL_PREFIX + key: value for key, value in metrics.items()}}
    with log_path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    return (
        f"epoch {epoch}/{epochs}: val abs_rel {metrics['abs_rel']:.3f} delta1 {metrics['delta1']:.3f} "
        f"rmse {metrics['rmse']:.3f}" + (" (best)" if best else "")
    )


def _tensorboard(cfg: TrainConfig, run_dir: Path) -> Any:
    """A SummaryWriter when asked for and tensorboard is installed, else None."""
    if not cfg.logging.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


class Reporter:
    """Rank 0's three sinks: ``log.jsonl`` in ``run_dir``, TensorBoard (when asked for and installed) and the
    progress bar, from ``initial_step`` to ``stop_at``.

    Other ranks report nothing (their bar is disabled).
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path, log_path: Path, is_main: bool, initial_step: int,
                 stop_at: int) -> None:
        self.log_path = log_path
        self.is_main = is_main
        self.epochs = cfg.schedule.epochs
        self.writer = _tensorboard(cfg, run_dir) if is_main else None
        self.bar = tqdm(total=stop_at, initial=initial_step, unit="step", dynamic_ncols=True, file=sys.stderr,
                        disable=not (is_main and cfg.logging.progress_bar))

    def step(self, record: dict[str, Any], loss: dict[str, float]) -> None:
        """One logged step: a line of ``log.jsonl``, TensorBoard scalars and the bar's postfix."""
        if not self.is_main:
            return
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in loss.items()} | {"img/s": f"{record['images_per_second']:.1f}"})
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])

    def validation(self, step: int, epoch: int, metrics: dict[str, float], best: bool) -> None:
        """An epoch's NYU metrics: logged, printed (one line) and sent to TensorBoard."""
        if not self.is_main:
            return
        self.bar.write(_report_validation(self.log_path, step, epoch, self.epochs, metrics, best), file=sys.stderr)
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"val/{key}", value, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


class ThroughputMeter:
    """Training images per second (all processes together) and the share of step time spent waiting for data.

    Per logging window (:meth:`window`), and over this call (:meth:`images_per_second`, :meth:`data_wait_share`),
    where the wait share leaves out the first step, which waits for the loader workers to start.
    """

    def __init__(self, batch_size: int, start_step: int) -> None:
        self.batch_size, self.start_step = batch_size, start_step
        self.started = time.perf_counter()
        self.window_start, self.window_step = self.started, start_step
        self.window_wait = self.window_busy = self.data_wait = self.compute = 0.0

    def add(self, step: int, wait: float, busy: float) -> None:
        """Step ``step`` waited ``wait`` seconds for its batch and took ``busy`` seconds to compute."""
        self.window_wait, self.window_busy = self.window_wait + wait, self.window_busy + busy
        if step > self.start_step + 1:
            self.data_wait, self.compute = self.data_wait + wait, self.compute + busy

    def window(self, step: int) -> dict[str, float]:
        """``images_per_second`` and ``data_wait_share`` since the last window, which this one closes."""
        now = time.perf_counter()
        rate = (step - self.window_step) * self.batch_size / max(now - self.window_start, 1e-9)
        share = self.window_wait / max(self.window_wait + self.window_busy, 1e-9)
        self.window_start, self.window_step, self.window_wait, self.window_busy = now, step, 0.0, 0.0
        return {"images_per_second": rate, "data_wait_share": share}

    def images_per_second(self, step: int) -> float:
        elapsed = time.perf_counter() - self.started
        return (step - self.start_step) * self.batch_size / elapsed if elapsed > 0 else 0.0

    def data_wait_share(self) -> float:
        return self.data_wait / (self.data_wait + self.compute) if self.data_wait + self.compute > 0 else 0.0
