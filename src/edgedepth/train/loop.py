"""``edgedepth train``: distil a teacher's inverse depth into a student, resumable, on one CPU or many GPUs.

One loop in torchvision's reference shape: :func:`_restore` (the checkpoint's state, or a fresh start),
:func:`_train_one_epoch`, a :class:`ThroughputMeter`, and :func:`_end_epoch` (validate, export the best weights,
checkpoint); the model and ``model_without_ddp`` beside it, only rank 0 writes. Under ``torchrun`` each process
takes its share of every global batch (DistributedSampler) and DistributedDataParallel averages the gradients
(gloo on CPU, NCCL on GPU); validation too is shared, every process scoring its share of the NYU frames.
Which config keys a resumed run may change is declared beside the fields in :mod:`edgedepth.train.config`.

A run folder holds ``config.yaml`` (what ran), ``checkpoint.pt`` (model, optimiser, scheduler, scaler, RNG
states, data position; replaced atomically every ``run.checkpoint_every_steps`` steps and at each epoch end),
``log.jsonl`` (one line per logged step, and when validating on NYU one per epoch with ``val_<metric>`` keys,
also printed), ``final.safetensors`` (the weights when the run stops) and, when validating on NYU,
``best.safetensors`` (lowest RMSE, metrics in its metadata). Rerunning the same command into
the same folder continues from the checkpoint; on CPU a resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edgedepth.core.config import check_values, dump_config, save_config, to_dict
from edgedepth.core.cores import available_cores, loader_workers
from edgedepth.core.devices import resolve_device
from edgedepth.core.distributed import Place, backend_for, place, process_group
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_output_folder
from edgedepth.core.threads import WorkerInit, set_compute_threads
from edgedepth.models import save_weights
from edgedepth.train.checkpoint import check_resumable, load_checkpoint, save_checkpoint, truncate_log
from edgedepth.train.config import TrainConfig
from edgedepth.train.losses import get_loss
from edgedepth.train.pairs import Sample, build_dataset
from edgedepth.train.reporting import Reporter, ThroughputMeter
from edgedepth.train.schedule import build_optimizer, lr_factor, schedule_warning
from edgedepth.train.student import build_student, train_mode
from edgedepth.train.validation import check_validation_files, validate

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
FINAL_WEIGHTS = "final.safetensors"
BEST_WEIGHTS = "best.safetensors"


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`run` did."""

    run_dir: Path
    #: Optimiser steps taken in all (including those before a resume).
    steps: int
    #: True when every epoch ran (False when stopped by ``schedule.max_steps``).
    complete: bool
    weights: Path | None
    #: Training images per second over this call, all processes together, and the share of step time spent
    #: waiting for the data loader.
    images_per_second: float
    data_wait_share: float
    last_loss: dict[str, float]
    best_metrics: dict[str, float] | None = None


@dataclass
class Position:
    """Where the run stands: the next epoch and batch to train, and the optimiser steps taken so far."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_rmse: float = math.inf


def check_config(cfg: TrainConfig, world_size: int) -> None:
    """Check the value ranges the config declares (as loading does), and that the global batch splits over the
    processes."""
    check_values(cfg)
    if cfg.optim.batch_size % world_size:
        raise EdgedepthError(
            f"optim.batch_size={cfg.optim.batch_size} (the global batch) does not split over {world_size} processes"
        )


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way: ``start`` indices of this process are skipped.

    The epoch's order depends only on the seed and the epoch, so a resumed epoch continues exactly where the
    checkpoint left it (``start = batches done x per-process batch`` drops the same global samples whatever
    the number of processes).
    """

    start: int = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return max(super().__len__() - self.start, 0)


# ---------------------------------------------------------------------------------------------------------------
# The job


def run(cfg: TrainConfig, on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train as ``cfg`` says, resuming from ``cfg.run.dir`` when it holds a checkpoint.

    Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) this joins the process group and trains with DDP.
    ``on_step(step)`` is called after every optimiser step (tests use it to interrupt a run).

    On CPU a run is reproducible from its seed: the weights are drawn after ``torch.manual_seed(run.seed)``,
    the data order depends only on the seed and the epoch, and the CPU kernels used here are deterministic
    for a fixed thread count (``torch.use_deterministic_algorithms`` is not switched on: it makes CPU training
    about four times slower and changes nothing for these kernels; the kill-and-resume test checks bit equality).
    """
    here = place()
    check_config(cfg, here.world_size)
    device = resolve_device(cfg.run.device, here.local_rank, setting="run.device")
    with process_group(here, backend_for(device), device):
        return _train(cfg, device, here, on_step)


def _size_cpu_work(requested_workers: int, device: torch.device, world_size: int, is_main: bool) -> int:
    """Loader workers for this process, and (training on the CPU alone) PyTorch's threads, sized to its cores.

    Workers decode small label pairs and mostly wait on a full prefetch queue, so PyTorch keeps every core; each
    worker runs one thread. Under ``torchrun`` on CPU, the launcher's ``OMP_NUM_THREADS`` stands.
    """
    workers = loader_workers(requested_workers)
    if workers < requested_workers and is_main:
        print(f"data.num_workers={requested_workers}: this process may use {available_cores()} core(s); "
              f"using {workers} loader worker(s)", flush=True)
    if device.type == "cpu" and world_size == 1:
        set_compute_threads()
    return workers


class _Job:
    """What one process trains with: the config, where the run lives, the model (DDP-wrapped under torchrun) and
    ``model_without_ddp`` beside it, the data, the optimiser, its schedule and gradient scaler, and the loss."""

    def __init__(self, cfg: TrainConfig, device: torch.device, here: Place) -> None:
        self.cfg, self.device, self.rank, self.world_size = cfg, device, here.rank, here.world_size
        self.is_main = here.is_main
        world_size, rank = here.world_size, here.rank
        self.run_dir = check_output_folder(cfg.run.dir)
        self.checkpoint_path, self.log_path = self.run_dir / CHECKPOINT, self.run_dir / LOG
        check_validation_files(cfg)
        self.use_amp = cfg.run.amp and device.type == "cuda"
        self.memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format

        self.model_without_ddp = build_student(cfg, device, world_size > 1)
        self.model: nn.Module = self.model_without_ddp
        if world_size > 1:
            self.model = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        card = self.model_without_ddp.card

        dataset: Dataset[Sample] = build_dataset(cfg.data, card.mean, card.std)
        self.per_process = cfg.optim.batch_size // world_size
        self.steps_per_epoch = len(dataset) // cfg.optim.batch_size  # type: ignore[arg-type]
        if self.steps_per_epoch == 0:
            raise EdgedepthError(
                f"{cfg.data.path}: {len(dataset)} training pairs, fewer than one batch of "  # type: ignore[arg-type]
                f"optim.batch_size={cfg.optim.batch_size}; add data or lower the batch"
            )
        self.sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.run.seed)
        workers = _size_cpu_work(cfg.data.num_workers, device, world_size, self.is_main)
        self.loader = DataLoader(
            dataset,
            batch_size=self.per_process,
            sampler=self.sampler,
            num_workers=workers,
            worker_init_fn=WorkerInit() if workers > 0 else None,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=workers > 0,
            prefetch_factor=cfg.data.prefetch_factor if workers > 0 else None,
        )
        total_steps = cfg.schedule.epochs * self.steps_per_epoch
        self.stop_at = min(total_steps, cfg.schedule.max_steps or total_steps)

        self.optimizer = build_optimizer(self.model_without_ddp, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, cfg.schedule, self.steps_per_epoch)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = get_loss(cfg.optim.loss)


def _restore(job: _Job) -> Position:
    """Where the run starts: the checkpoint's state (model, optimiser, scheduler, scaler, RNG, position, with its
    log cut back to its step) when the run folder holds one, else a fresh start (and an empty log)."""
    if not job.checkpoint_path.exists():
        if job.cfg.run.resume:
            raise EdgedepthError(f"{job.checkpoint_path}: no checkpoint to resume from (run.resume is set)")
        if job.is_main:
            job.log_path.unlink(missing_ok=True)
        return Position()
    state = load_checkpoint(job.checkpoint_path)
    check_resumable(state["config"], to_dict(job.cfg), job.checkpoint_path)
    job.model_without_ddp.load_state_dict(state["model"])
    job.optimizer.load_state_dict(state["optimizer"])
    job.scheduler.load_state_dict(state["scheduler"])
    job.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if job.device.type == "cuda" and len(state["rng"]["cuda"]):
        torch.cuda.set_rng_state(state["rng"]["cuda"], job.device)
    position = Position(**state["position"])
    if job.is_main:
        truncate_log(job.log_path, position.step)
        print(f"edgedepth train: resuming {job.run_dir} at step {position.step} (epoch {position.epoch + 1})",
              file=sys.stderr)
    return position


def _checkpoint(job: _Job, position: Position) -> None:
    """Rank 0 replaces ``checkpoint.pt`` with the state at ``position`` (what a resume continues from)."""
    if not job.is_main:
        return
    device = job.device
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8)
    save_checkpoint(job.checkpoint_path, {
        "model": job.model_without_ddp.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.scheduler.state_dict(),
        "scaler": job.scaler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng},
        "position": dataclasses.asdict(position),
        "config": to_dict(job.cfg),
    })


def _train_one_epoch(
    job: _Job, position: Position, meter: ThroughputMeter, reporter: Reporter,
    on_step: Callable[[int], None] | None,
) -> dict[str, float]:
    """Train epoch ``position.epoch`` from batch ``position.batch`` to its end or to ``schedule.max_steps``.

    ``position`` follows every step; a checkpoint is written every ``run.checkpoint_every_steps`` steps. Returns
    the losses of the last step logged (every ``logging.every_steps`` steps and the last), empty when none was.
    A non-finite loss on any process stops every process with an error naming the batch.
    """
    cfg, device = job.cfg, job.device
    train_mode(job.model, cfg.model.freeze_bn)
    job.sampler.set_epoch(position.epoch)
    job.sampler.start = position.batch * job.per_process
    last_loss: dict[str, float] = {}
    waited = time.perf_counter()
    for batch in job.loader:
        if position.batch >= job.steps_per_epoch:
            break
        began = time.perf_counter()
        images = batch["image"].to(device, non_blocking=True, memory_format=job.memory_format)
        target = batch["target"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=job.use_amp):
            prediction = job.model(images)
        parts = job.loss_fn(prediction.float(), target, mask)
        finite = torch.isfinite(parts["total"].detach()).float()
        if job.world_size > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not finite.item():
            raise EdgedepthError(
                f"non-finite loss at step {position.step + 1} (epoch {position.epoch + 1}); batch keys: "
                f"{', '.join(batch['key'])}; the last good checkpoint is {job.checkpoint_path} "
                "(lower optim.lr or check those pairs)"
            )
        lr = job.optimizer.param_groups[0]["lr"]
        job.optimizer.zero_grad(set_to_none=True)
        job.scaler.scale(parts["total"]).backward()
        job.scaler.step(job.optimizer)
        job.scaler.update()
        job.scheduler.step()
        position.step += 1
        position.batch += 1
        reporter.bar.update(1)
        meter.add(position.step, began - waited, time.perf_counter() - began)

        if position.step % cfg.logging.every_steps == 0 or position.step == job.stop_at:
            last_loss = {name: float(value.detach()) for name, value in parts.items()}
            record = {"step": position.step, "epoch": position.epoch + 1, "lr": lr, **last_loss,
                      **meter.window(position.step)}
            reporter.step(record, last_loss)
        if position.step % cfg.run.checkpoint_every_steps == 0:
            _checkpoint(job, position)
        if on_step is not None:
            on_step(position.step)
        if position.step >= job.stop_at:
            break
        waited = time.perf_counter()
    return last_loss


def _end_epoch(job: _Job, position: Position, reporter: Reporter) -> dict[str, float] | None:
    """After an epoch's last batch: move ``position`` to the next epoch, validate (every process, when asked for),
    export ``best.safetensors`` on a new lowest RMSE, and checkpoint. Returns the metrics when they are a new
    best, else None."""
    position.epoch, position.batch = position.epoch + 1, 0
    metrics = validate(job.model_without_ddp, job.cfg, job.device, job.rank, job.world_size)
    best = metrics is not None and metrics["rmse"] < position.best_rmse
    if metrics is not None:
        reporter.validation(position.step, position.epoch, metrics, best)
    if metrics is not None and best:
        position.best_rmse = metrics["rmse"]
        if job.is_main:
            save_weights(job.model_without_ddp, job.run_dir / BEST_WEIGHTS, **_provenance(job.cfg, position, metrics))
    _checkpoint(job, position)
    return metrics if best else None


def _train(cfg: TrainConfig, device: torch.device, here: Place, on_step: Callable[[int], None] | None) -> TrainResult:
    """Set up, restore, train epoch after epoch (each ended by :func:`_end_epoch`), and export the final weights.

    A stop by ``schedule.max_steps`` part-way through an epoch leaves a checkpoint at that batch.
    """
    job = _Job(cfg, device, here)
    position = _restore(job)
    if job.is_main:
        print(f"edgedepth train: config\n{dump_config(cfg)}", file=sys.stderr)
        warning = schedule_warning(cfg)
        if warning is not None:
            logger.warning(warning)
        save_config(cfg, job.run_dir / "config.yaml")
    reporter = Reporter(cfg, job.run_dir, job.log_path, job.is_main, position.step, job.stop_at)
    meter = ThroughputMeter(cfg.optim.batch_size, position.step)
    last_loss: dict[str, float] = {}
    best_metrics: dict[str, float] | None = None

    while position.epoch < cfg.schedule.epochs and position.step < job.stop_at:
        last_loss = _train_one_epoch(job, position, meter, reporter, on_step) or last_loss
        if position.batch < job.steps_per_epoch:  # stopped part-way (schedule.max_steps)
            _checkpoint(job, position)
            break
        best_metrics = _end_epoch(job, position, reporter) or best_metrics
    reporter.close()

    weights = None
    if job.is_main:
        weights = save_weights(job.model_without_ddp, job.run_dir / FINAL_WEIGHTS, **_provenance(cfg, position, None))
    return TrainResult(
        run_dir=job.run_dir,
        steps=position.step,
        complete=position.epoch >= cfg.schedule.epochs,
        weights=weights,
        images_per_second=meter.images_per_second(position.step),
        data_wait_share=meter.data_wait_share(),
        last_loss=last_loss,
        best_metrics=best_metrics,
    )


def _provenance(cfg: TrainConfig, position: Position, metrics: dict[str, float] | None) -> dict[str, Any]:
    """What an exported weights file records about its training."""
    return {
        "training_data": cfg.data.path,
        "run_dir": cfg.run.dir,
        "steps": position.step,
        "epochs_done": position.epoch,
        "loss": cfg.optim.loss,
        "config": to_dict(cfg),
        **({"nyu_metrics": metrics} if metrics is not None else {}),
    }
