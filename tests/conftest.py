"""Fixtures shared by the whole suite."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgedepth  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch is imported; see edgedepth/__init__.py)
from edgedepth.core.logs import configure_logging

# Library calls in tests log as the command line shows them (``edgedepth: warning: ...`` on stderr).
configure_logging()


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ``fastdepth_v3`` saved in our format, with perturbed BatchNorm statistics so that its output
    depends on the image (a fresh BatchNorm gives a near-constant map). Test files may override it."""
    from edgedepth.models import create_model, save_weights

    torch.manual_seed(0)
    model = create_model("fastdepth_v3")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "student.safetensors"
    save_weights(model, path)
    return path


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state, so its numbers are reproducible."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def _randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    was_training = model.training
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5, generator=generator)
            norm.bias.uniform_(-0.2, 0.3, generator=generator)
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: the statistics of the sample below
        model.train()(torch.rand(2, 3, 64, 64, generator=generator))
        for norm in norms:
            norm.momentum = 0.1
            # A channel the sample left (nearly) constant would divide by ~sqrt(eps) on other inputs: floor it.
            spread = norm.running_var.clamp_(min=1e-2).sqrt()
            norm.running_mean.add_(0.2 * spread * torch.randn(spread.shape, generator=generator))
            norm.running_var.mul_(torch.empty_like(spread).uniform_(0.7, 1.3, generator=generator))
    return model.train(was_training)


@pytest.fixture(scope="session")
def randomize_batchnorm() -> Callable[[nn.Module, int], nn.Module]:
    """``randomize_batchnorm(model, seed)``: draw every BatchNorm's affine weights and running statistics.

    Fresh BatchNorms are an identity in eval mode (mean 0, var 1, weight 1, bias 0), which would let a
    wrong weight mapping or a lost statistic go unnoticed; random ones make every tensor count. The
    statistics are measured on a random 64x64 batch, then perturbed, so activations keep their scale
    through the depth of the network instead of fading to a constant.
    """
    return _randomize_batchnorm
