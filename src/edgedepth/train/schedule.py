"""The optimiser and its learning-rate schedule: parameter groups, the per-step rate factor, and the warning for a
schedule that starves the end of a run."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgedepth.core.errors import EdgedepthError
from edgedepth.train.config import ScheduleConfig, TrainConfig


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
