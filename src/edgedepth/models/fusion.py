"""Folding for inference: BatchNorms and parallel branches merged into single convolutions (pure functions).

In eval mode a BatchNorm is a per-channel affine map, ``y = scale * x + shift``, so a convolution followed by one
is a convolution with scaled weights and a bias; parallel convolutions summed before it (RepVGG's 3x3 and 1x1
branches) are one convolution whose kernel is the sum of theirs. The folded network computes the same
function with fewer operations; only float rounding differs.
"""

from __future__ import annotations

import itertools
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def as_pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's kernel size, stride or dilation: two ints, which torch types as ``tuple[int, ...]``."""
    return cast("tuple[int, int]", value)


def padding_of(conv: nn.Conv2d) -> str | tuple[int, int]:
    """A Conv2d's padding: a mode (``"same"``, ``"valid"``) or two ints (torch types them ``tuple[int, ...]``)."""
    return cast("str | tuple[int, int]", conv.padding)


def batchnorm_affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of an eval-mode BatchNorm: ``norm(x) == scale[c] * x + shift[c]``."""
    assert norm.running_mean is not None and norm.running_var is not None  # the BatchNorms folded track them
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias.detach() - norm.running_mean * scale


def scaled_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor | None = None) -> nn.Conv2d:
    """A new convolution computing ``scale[c] * conv(x) + shift[c]`` (a bias is added when there is one to hold)."""
    bias = conv.bias is not None or shift is not None
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, as_pair(conv.kernel_size), as_pair(conv.stride), padding_of(conv),
        as_pair(conv.dilation), conv.groups, bias=bias, padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        if bias:
            assert folded.bias is not None  # built with one
            value = torch.zeros_like(scale) if conv.bias is None else conv.bias * scale
            folded.bias.copy_(value if shift is None else value + shift)
    return folded


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """``norm(conv(x))`` as one convolution."""
    return scaled_conv(conv, *batchnorm_affine(norm))


def fold_sequential_batchnorms(module: nn.Module) -> int:
    """In every ``nn.Sequential`` under ``module``, fold each Conv2d directly followed by a BatchNorm2d.

    The convolution is replaced by the folded one and the BatchNorm by ``nn.Identity``, in place, so indices and
    the other children keep their places. Returns how many pairs were folded.
    """
    folded = 0
    for sequential in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = sequential._modules[first], sequential._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequential._modules[first] = fold_batchnorm(conv, norm)
                sequential._modules[second] = nn.Identity()
                folded += 1
    return folded


def fold_parallel_branches(branches: list[tuple[nn.Conv2d, nn.BatchNorm2d]]) -> nn.Conv2d:
    """``sum(norm(conv(x)) for conv, norm in branches)`` as one convolution with the largest branch's kernel.

    Every branch must share stride, groups and channels, with odd square kernels centred on the same pixel
    (padding ``k // 2``): smaller kernels are zero-padded to the largest, then the kernels and biases add up.
    """
    largest = max(branches, key=lambda branch: branch[0].kernel_size[0])[0]
    size = largest.kernel_size[0]
    kernel = torch.zeros_like(largest.weight)
    bias = torch.zeros(largest.out_channels, device=largest.weight.device)
    for conv, norm in branches:
        folded = fold_batchnorm(conv, norm)
        assert folded.bias is not None  # a folded BatchNorm's shift
        margin = (size - conv.kernel_size[0]) // 2
        kernel = kernel + F.pad(folded.weight.detach(), [margin] * 4)
        bias = bias + folded.bias.detach()
    merged = nn.Conv2d(
        largest.in_channels, largest.out_channels, size, as_pair(largest.stride), size // 2, groups=largest.groups,
        bias=True,
    ).to(largest.weight.device)
    assert merged.bias is not None  # built with one
    with torch.no_grad():
        merged.weight.copy_(kernel)
        merged.bias.copy_(bias)
    return merged
