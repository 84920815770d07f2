"""Checkpoints in other projects' layouts, made from facts: their keys and shapes, and their networks' outputs.

``tests/data/<name>.json`` holds, for one original network (ZipDepth's, MiDaS's, Depth Anything's), every key of its
``state_dict()`` with its shape, in its own order, and what the original code computed on :func:`reference_input`
with the weights :func:`weights_for` draws for those keys: the output's shape, mean, standard deviation and a few
pixels. They were recorded by running each project's own code beside ours (its code is not in this repository).
The weights are a function of the key's name alone, so a converter that puts a tensor in the wrong place computes
another output, whatever its own tables say.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).parent / "data"
#: ZipDepth keeps ImageNet's normalisation in two buffers of its network.
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@cache
def layout(name: str) -> dict[str, Any]:
    """The facts recorded for one original network (see the module docstring)."""
    return json.loads((DATA / f"{name}.json").read_text())


def _draw(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    last = key.rsplit(".", 1)[-1]
    if key in IMAGENET:
        return torch.tensor(IMAGENET[key]).reshape(shape)
    if last == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long)
    if last == "running_var":
        return torch.empty(shape).uniform_(0.5, 1.5, generator=generator)
    if last == "running_mean":
        return 0.1 * torch.randn(shape, generator=generator)
    if last == "bias" and shape == (1,):  # a depth head's last bias: keeps its ReLU'd output alive
        return torch.empty(shape).uniform_(0.3, 0.5, generator=generator)
    if last == "bias":
        return torch.empty(shape).uniform_(-0.05, 0.2, generator=generator)
    if len(shape) <= 1:  # normalisation scales, layer-scale factors
        return torch.empty(shape).uniform_(0.5, 1.0, generator=generator)
    if last in ("cls_token", "mask_token", "pos_embed", "tokens"):
        return 0.5 * torch.randn(shape, generator=generator)
    fan_in = 1
    for side in shape[1:]:
        fan_in *= side
    return torch.randn(shape, generator=generator) * (1.0 / fan_in) ** 0.5


def draw_weights(shapes: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """A state dict with these keys and shapes, each tensor drawn from its key's name: outputs of order 1 that depend
    on the image (the rules of :func:`_draw`)."""
    return {key: _draw(key, tuple(shape)) for key, shape in shapes.items()}


def weights_for(name: str) -> dict[str, torch.Tensor]:
    """A state dict in the original layout of a recorded network."""
    return draw_weights(layout(name)["keys"])


def reference_input(name: str) -> torch.Tensor:
    """The image the original network was run on: uniform RGB in [0, 1], ``1 x 3 x H x W``."""
    height, width = layout(name)["input"]
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))


def summarize(output: torch.Tensor) -> dict[str, Any]:
    """What is recorded of an ``N x 1 x H x W`` (or ``N x H x W``) output: shape, mean, std and 16 pixels."""
    output = output.reshape(output.shape[0], -1, *output.shape[-2:])[0, 0].double()
    height, width = output.shape
    pixels = [(y * (height - 1) // 3, x * (width - 1) // 3) for y in range(4) for x in range(4)]
    return {
        "shape": [height, width],
        "mean": float(output.mean()),
        "std": float(output.std()),
        "pixels": [[y, x, float(output[y, x])] for y, x in pixels],
    }
