"""A tiny random-weight DPT, saved as a user saves a model: the transformers teacher path, offline.

Tests and benchmarks cannot reach the model hub. This builds MiDaS v3's architecture (a plain DPT) at a
32x32 input with random weights, writes it with ``save_pretrained`` beside its image processor, and
returns the folder, which ``hf:<folder>`` loads through the very code that loads a real checkpoint. Its
"depth" means nothing; its shapes, processor and loading are real.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Standard deviation of the random weights: large enough that the output varies over the image
#: (a fresh head often starts at zero), small enough to stay finite through the network.
WEIGHT_STD = 0.2


def save_tiny_dpt(directory: str | Path, keep_aspect_ratio: bool = False, seed: int = 0) -> Path:
    """Save a random plain DPT (32x32 input, mean = std = 0.5) to ``directory``; returns it, for ``hf:<dir>``.

    ``keep_aspect_ratio=True`` saves a processor that would keep the aspect ratio, as some hub checkpoints
    do; a teacher must still feed plain DPT the square it was built for.
    """
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=16, image_size=32, patch_size=8,
        backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8,
    )  # fmt: skip
    model = DPTForDepthEstimation(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * WEIGHT_STD)
    directory = Path(directory)
    model.save_pretrained(directory)
    processor = DPTImageProcessor(
        size={"height": 32, "width": 32}, keep_aspect_ratio=keep_aspect_ratio, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor.save_pretrained(directory)
    return directory
