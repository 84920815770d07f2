"""``edgedepth train``: distil a teacher's inverse depth into a student, resumable, on one CPU or many GPUs.

One loop in torchvision's reference shape: :func:`_restore` (the checkpoint's state, or a fresh start),
:func:`_train_one_epoch`, a :class:`ThroughputMeter`, and :func:`_end_epoch` (validate, export the best weights,
checkpoint); the model and ``model_without_ddp`` beside it, only rank 0 writes. Under ``torchrun`` each process
takes its share of every global batch (DistributedSampler) and DistributedDataParallel averages the gradients
(gloo on CPU, NCCL on GPU); validation too is shared, every process scoring its share of the NYU frames.
Which config keys a resumed run may change is declared beside the fields in :mod:`edgedepth.config`.

A run folder holds ``config.yaml`` (what ran), ``checkpoint.pt`` (model, optimiser, scheduler, scaler, RNG
states, data position; replaced atomically every ``run.checkpoint_every_steps`` steps and at each epoch end),
``log.jsonl`` (one line per logged step, and when validating on NYU one per epoch with ``val_<metric>`` keys,
also printed), ``final.safetensors`` (the weights when the run stops) and, when validating on NYU,
``best.safetensors`` (lowest RMSE, metrics in its metadata). Rerunning the same command into
the same folder continues from the checkpoint; on CPU a resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
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
from tqdm import tqdm

from edgedepth.config import (
    ScheduleConfig,
    TrainConfig,
    check_values,
    dump_config,
    from_dict,
    is_resumable,
    save_config,
    to_dict,
)
from edgedepth.cores import WorkerInit, available_cores, loader_workers, set_compute_threads
from edgedepth.data.pairs import Sample, build_dataset
from edgedepth.errors import EdgedepthError
from edgedepth.imageio import atomic_path, check_output_folder
from edgedepth.losses import get_loss
from edgedepth.models import create_model, save_weights

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
FINAL_WEIGHTS = "final.safetensors"
BEST_WEIGHTS = "best.safetensors"

#: What a checkpoint holds; loading one with other keys is an error (it is not ours, or from another version).
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "scheduler", "scaler", "rng", "position", "config"})

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


# ---------------------------------------------------------------------------------------------------------------
# Schedules, devices, processes


def lr_factor(step: int, cfg: ScheduleConfig, steps_per_epoch: int) -> float:
    """The learning-rate multiplier after ``step`` optimiser steps (applied to the optimiser's base rate).

    ``exponential``: ``gamma ** epoch`` (the seed's ExponentialLR stepped at each epoch end); ``cosine``: from 1 to
    ``min_lr_ratio`` over all epochs; both times a linear warm-up ``(step + 1) / warmup_steps`` while it lasts.
    """
    if cfg.name == "exponential":
        factor = cfg.gamma ** (step // steps_per_epoch)
    else:
        progress = min(step / max(cfg.epochs * steps_per_epoch, 1), 1.0)
        factor = cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if step < cfg.warmup_steps:
        factor *= (step + 1) / cfg.warmup_steps
    return factor


#: Warn when the exponential schedule ends below this fraction of ``optim.lr`` (``gamma ** epochs``).
MIN_FINAL_LR_FACTOR = 1e-3
#: Where the suggested ``schedule.gamma`` ends the run instead.
SUGGESTED_FINAL_LR_FACTOR = 1e-2


def schedule_warning(cfg: TrainConfig) -> str | None:
    """Why the exponential schedule starves the end of the run, and what to set instead; None when it does not.

    ``exponential`` multiplies the rate by ``gamma`` at each epoch end, so the schedule ends at ``gamma ** epochs``
    and epoch ``k`` (from 1) trains at ``gamma ** (k - 1)``. The seed's 0.316 over 6 epochs ends at 1.0e-3 (its
    last epoch trains at 3.2e-3 of ``optim.lr``): made for 450,000 images, it leaves a small set's run mostly at
    rates too small to learn, and more epochs make it worse. ``cosine`` is not checked: only its last steps
    approach ``min_lr_ratio``.
    """
    schedule = cfg.schedule
    if schedule.name != "exponential" or not 0 < schedule.gamma < 1:
        return None
    final = schedule.gamma**schedule.epochs
    if final >= MIN_FINAL_LR_FACTOR:
        return None
    second_half = schedule.gamma ** math.ceil(schedule.epochs / 2) * cfg.optim.lr
    last_epoch = schedule.gamma ** (schedule.epochs - 1) * cfg.optim.lr
    suggested = SUGGESTED_FINAL_LR_FACTOR ** (1 / schedule.epochs)
    return (
        f"schedule.gamma={schedule.gamma:g} over schedule.epochs={schedule.epochs} ends the learning rate at "
        f"{final:.2e} x optim.lr: the second half of the run trains at {second_half:.1e} or less and the last epoch "
        f"at {last_epoch:.1e}, too little to learn much on a small data set (the seed's recipe was made for 450,000 "
        f"images); set schedule.gamma={suggested:.3f} (ends at {SUGGESTED_FINAL_LR_FACTOR:g} x optim.lr) or "
        "schedule.name=cosine"
    )


def resolve_device(name: str, local_rank: int) -> torch.device:
    """``run.device`` to a device; asking for CUDA on a machine without it is a clear error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise EdgedepthError(
            f"run.device=cuda but PyTorch {torch.__version__} sees no CUDA device on this machine; "
            "use run.device=cpu (or auto)"
        )
    if name != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


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
# Checkpoints and logs


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous one intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain data only: ``weights_only=True``) and check its keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, EOFError, KeyError, RuntimeError... for bad files
        raise EdgedepthError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or set(state) != CHECKPOINT_KEYS:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise EdgedepthError(f"{path}: not an edgedepth training checkpoint (keys {keys})")
    return state


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "args":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """A run may only continue with the config it started with, up to the fields marked resumable in
    :mod:`edgedepth.config`. A key the saved config lacks (added since) counts at its default."""
    try:
        saved = to_dict(from_dict(TrainConfig, saved))
    except EdgedepthError as exc:
        raise EdgedepthError(f"{path}: its saved config does not load in this version ({exc}); use another run.dir") \
            from None
    old, new = _flatten(saved), _flatten(current)
    changed = sorted(
        key for key in old.keys() | new.keys()
        if old.get(key) != new.get(key) and not is_resumable(TrainConfig, key)
    )
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3])
        raise EdgedepthError(
            f"{path}: a run started with another config ({details}); resume with the same settings or use another "
            "run.dir"
        )


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep the log lines up to ``last_step`` (those after the checkpoint are trained again)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


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


# ---------------------------------------------------------------------------------------------------------------
# The model


def _build_model(cfg: TrainConfig, device: torch.device, distributed: bool) -> nn.Module:
    """The student, on ``device``, with the card it will be exported with (trained input size)."""
    torch.manual_seed(cfg.run.seed)
    try:
        model = create_model(cfg.model.name, pretrained=cfg.model.pretrained, card={"input_size": cfg.data.input_size},
                             **cfg.model.args)
    except EdgedepthError as exc:
        raise EdgedepthError(_as_config_hint(str(exc))) from None
    if cfg.model.init_weights is not None:
        _load_init_weights(model, Path(cfg.model.init_weights))
    if cfg.model.sync_bn and distributed:
        if device.type != "cuda":
            raise EdgedepthError("model.sync_bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if cfg.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _load_init_weights(model: nn.Module, path: Path) -> None:
    """Load ``model.init_weights`` into the freshly built student; weights of another shape are a clear error."""
    from edgedepth.models import load_model

    state = load_model(path).state_dict()
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise EdgedepthError(
            f"model.init_weights={path}: these weights do not fit model.name={model.card.name} with model.args "
            "as given (use the name and args of their card)"
        )
    model.load_state_dict(state)


def _as_config_hint(message: str) -> str:
    """A model builder's advice in Python terms (``pretrained=False``) in the terms of a training config."""
    message = re.sub(
        r"build (?:the model|it) with pretrained=False",
        "train with model.pretrained=false (a KEY=VALUE argument of edgedepth train, or in the config file)",
        message,
    )
    return message.replace("pretrained=False", "model.pretrained=false")


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode; with ``freeze_bn`` the BatchNorm layers normalise with (and keep) their running statistics."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``optim.name`` over the model's parameters, in up to four groups (those with parameters).

    Weight decay spares norm weights and biases (every parameter of one dimension or none), as in timm and
    torchvision's references; the parameters of ``model.encoder`` train at ``optim.encoder_lr_scale`` times
    ``optim.lr``. The first group trains at the base rate (the one logged). With the seed's recipe (no decay,
    scale 1) this is one group holding every parameter in order, as before.
    """
    optim = cfg.optim
    encoder = getattr(model, "encoder", None)
    if optim.encoder_lr_scale != 1.0 and not isinstance(encoder, nn.Module):
        raise EdgedepthError(
            f"optim.encoder_lr_scale={optim.encoder_lr_scale:g} needs a model with an encoder; {cfg.model.name} has "
            "no .encoder module (leave optim.encoder_lr_scale at 1)"
        )
    in_encoder = {id(p) for p in encoder.parameters()} if isinstance(encoder, nn.Module) else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        scaled = id(parameter) in in_encoder and optim.encoder_lr_scale != 1.0
        decayed = parameter.ndim > 1 or optim.weight_decay == 0.0
        groups.setdefault((scaled, decayed), []).append(parameter)
    param_groups = [
        {"params": groups[key], "lr": optim.lr * (optim.encoder_lr_scale if key[0] else 1.0),
         "weight_decay": optim.weight_decay if key[1] else 0.0}
        for key in sorted(groups, key=lambda key: (key[0], not key[1]))
    ]
    optimizer_class = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    return optimizer_class(param_groups, lr=optim.lr, weight_decay=optim.weight_decay)


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


def _validate(
    model: nn.Module, cfg: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1
) -> dict[str, float] | None:
    """NYU Depth v2 test-split metrics (the seed's protocol) through the evaluation code, every process scoring
    its share of the frames.

    Process ``rank`` scores every ``world_size``-th test frame from its rank; the sums of each metric and the
    number of frames scored are then summed over processes, so the means are those of one process scoring all
    frames (every frame weighs the same, as in :func:`edgedepth.metrics.mean_metrics`) and no process waits in a
    collective while another validates. Under DDP each process's BatchNorm statistics are rank 0's first (the
    weights that are saved). None when not asked for, or when no frame could be scored (a young student may
    predict a constant map).
    """
    if cfg.validation.nyu_data_path is None:
        return None
    if cfg.validation.nyu_splits_path is None:
        raise EdgedepthError("validation.nyu_data_path is set but validation.nyu_splits_path (splits.mat) is not")
    from edgedepth.data.nyu import NyuLabeled, read_splits
    from edgedepth.evaluate import PROTOCOLS, evaluate_frames
    from edgedepth.metrics import METRIC_NAMES
    from edgedepth.runtime.predictor import TorchPredictor

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
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    check_config(cfg, world_size)
    device = resolve_device(cfg.run.device, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cfg, device, rank, world_size, on_step)
    finally:
        if world_size > 1:
            dist.destroy_process_group()


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

    def __init__(self, cfg: TrainConfig, device: torch.device, rank: int, world_size: int) -> None:
        self.cfg, self.device, self.rank, self.world_size = cfg, device, rank, world_size
        self.is_main = rank == 0
        self.run_dir = check_output_folder(cfg.run.dir)
        self.checkpoint_path, self.log_path = self.run_dir / CHECKPOINT, self.run_dir / LOG
        check_validation_files(cfg)
        self.use_amp = cfg.run.amp and device.type == "cuda"
        self.memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format

        self.model_without_ddp = _build_model(cfg, device, world_size > 1)
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


class _Reporter:
    """Rank 0's three sinks: ``log.jsonl``, TensorBoard (when asked for and installed) and the progress bar.

    Other ranks report nothing (their bar is disabled).
    """

    def __init__(self, job: _Job, initial_step: int) -> None:
        self.log_path = job.log_path
        self.is_main = job.is_main
        self.epochs = job.cfg.schedule.epochs
        self.writer = _tensorboard(job.cfg, job.run_dir) if job.is_main else None
        self.bar = tqdm(total=job.stop_at, initial=initial_step, unit="step", dynamic_ncols=True, file=sys.stderr,
                        disable=not (job.is_main and job.cfg.logging.progress_bar))

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
        _truncate_log(job.log_path, position.step)
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
    job: _Job, position: Position, meter: ThroughputMeter, reporter: _Reporter,
    on_step: Callable[[int], None] | None,
) -> dict[str, float]:
    """Train epoch ``position.epoch`` from batch ``position.batch`` to its end or to ``schedule.max_steps``.

    ``position`` follows every step; a checkpoint is written every ``run.checkpoint_every_steps`` steps. Returns
    the losses of the last step logged (every ``logging.every_steps`` steps and the last), empty when none was.
    A non-finite loss on any process stops every process with an error naming the batch.
    """
    cfg, device = job.cfg, job.device
    _train_mode(job.model, cfg.model.freeze_bn)
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


def _end_epoch(job: _Job, position: Position, reporter: _Reporter) -> dict[str, float] | None:
    """After an epoch's last batch: move ``position`` to the next epoch, validate (every process, when asked for),
    export ``best.safetensors`` on a new lowest RMSE, and checkpoint. Returns the metrics when they are a new
    best, else None."""
    position.epoch, position.batch = position.epoch + 1, 0
    metrics = _validate(job.model_without_ddp, job.cfg, job.device, job.rank, job.world_size)
    best = metrics is not None and metrics["rmse"] < position.best_rmse
    if metrics is not None:
        reporter.validation(position.step, position.epoch, metrics, best)
    if metrics is not None and best:
        position.best_rmse = metrics["rmse"]
        if job.is_main:
            save_weights(job.model_without_ddp, job.run_dir / BEST_WEIGHTS, **_provenance(job.cfg, position, metrics))
    _checkpoint(job, position)
    return metrics if best else None


def _train(
    cfg: TrainConfig, device: torch.device, rank: int, world_size: int, on_step: Callable[[int], None] | None
) -> TrainResult:
    """Set up, restore, train epoch after epoch (each ended by :func:`_end_epoch`), and export the final weights.

    A stop by ``schedule.max_steps`` part-way through an epoch leaves a checkpoint at that batch.
    """
    job = _Job(cfg, device, rank, world_size)
    position = _restore(job)
    if job.is_main:
        print(f"edgedepth train: config\n{dump_config(cfg)}", file=sys.stderr)
        warning = schedule_warning(cfg)
        if warning is not None:
            logger.warning(warning)
        save_config(cfg, job.run_dir / "config.yaml")
    reporter = _Reporter(job, position.step)
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
