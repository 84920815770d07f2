"""Validation on NYU Depth v2 at each epoch end, through the evaluation code, shared by the processes of a run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from edgedepth.core.errors import EdgedepthError
from edgedepth.train.config import TrainConfig

if TYPE_CHECKING:
    from edgedepth.models import DepthNetwork

logger = logging.getLogger(__name__)


def check_validation_files(cfg: TrainConfig) -> None:
    """Open the NYU files validation will read, so that a missing, corrupt or swapped one (or a split index out of
    range) fails before training, not at the end of the first epoch."""
    if cfg.validation.nyu_data_path is None:
        return
    if cfg.validation.nyu_splits_path is None:
        raise EdgedepthError("validation.nyu_data_path is set but validation.nyu_splits_path (splits.mat) is not")
    from edgedepth.data.nyu import NyuLabeled, read_splits

    with NyuLabeled(Path(cfg.validation.nyu_data_path)) as labeled:
        read_splits(Path(cfg.validation.nyu_splits_path), len(labeled))


def validate(
    model: DepthNetwork, cfg: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1
) -> dict[str, float] | None:
    """NYU Depth v2 test-split metrics (the seed's protocol) through the evaluation code, every process scoring
    its share of the frames.

    Process ``rank`` scores every ``world_size``-th test frame from its rank; the sums of each metric and the
    number of frames scored are then summed over processes, so the means are those of one process scoring all
    frames (every frame weighs the same, as in :func:`edgedepth.eval.metrics.mean_metrics`) and no process waits in a
    collective while another validates. Under DDP each process's BatchNorm statistics are rank 0's first (the
    weights that are saved). None when not asked for, or when no frame could be scored (a young student may
    predict a constant map).
    """
    if cfg.validation.nyu_data_path is None:
        return None
    if cfg.validation.nyu_splits_path is None:
        raise EdgedepthError("validation.nyu_data_path is set but validation.nyu_splits_path (splits.mat) is not")
    from edgedepth.data.nyu import NyuLabeled, read_splits
    from edgedepth.eval.metrics import METRIC_NAMES
    from edgedepth.eval.nyu import PROTOCOLS, evaluate_frames
    from edgedepth.runtime.pytorch import TorchPredictor

    if world_size > 1:
        for buffer in model.buffers():  # DDP syncs buffers at the start of a forward pass, not after it
            dist.broadcast(buffer, src=0)
    predictor = TorchPredictor(model, cfg.data.input_size, str(device))
    with NyuLabeled(Path(cfg.validation.nyu_data_path)) as labeled:
        indices = read_splits(Path(cfg.validation.nyu_splits_path), len(labeled), quiet=True).test  # warned at start
        results = evaluate_frames(predictor, labeled, indices[rank::world_size], PROTOCOLS["seed"], progress=False)
    scored = [r.metrics for r in results if r.metrics is not None]
    sums = torch.tensor([len(scored), *(sum(m[name] for m in scored) for name in METRIC_NAMES)],
                        dtype=torch.float64, device=device)
    if world_size > 1:
        dist.all_reduce(sums)
    count, *totals = sums.tolist()
    if count == 0:
        if rank == 0:
            logger.warning("validation: no NYU frame could be scored (constant or non-finite predictions); no metrics this "
                 "epoch")
        return None
    return {name: total / count for name, total in zip(METRIC_NAMES, totals, strict=True)}
