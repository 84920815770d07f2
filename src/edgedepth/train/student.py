"""The student as training builds it: from the registry with the run's card, optionally from weights to fine-tune,
and how its BatchNorm layers train."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from edgedepth.core.errors import EdgedepthError
from edgedepth.models import DepthNetwork, create_model, load_model
from edgedepth.train.config import TrainConfig


def build_student(cfg: TrainConfig, device: torch.device, distributed: bool) -> DepthNetwork:
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


def _load_init_weights(model: DepthNetwork, path: Path) -> None:
    """Load ``model.init_weights`` into the freshly built student; weights of another shape are a clear error."""
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


def train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode; with ``freeze_bn`` the BatchNorm layers normalise with (and keep) their running statistics."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
