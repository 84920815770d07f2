"""Size and cost of a network: parameters and multiply-accumulates at a given input size."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on a ``1 x 3 x H x W`` input, ``size = (width, height)``.

    Counted by PyTorch's FlopCounterMode (convolutions and matrix products; a MAC is two FLOPs). The input is made
    on the model's device, so a model built on the ``meta`` device is counted without memory or arithmetic.
    """
    width, height = size
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2
