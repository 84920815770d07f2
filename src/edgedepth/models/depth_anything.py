"""Depth Anything V2 (Yang et al., 2024): a DINOv2 ViT encoder and a DPT head, run by transformers.

The network is transformers' ``DepthAnythingForDepthEstimation``, built from the configurations below (the facts
of the released ``depth-anything/Depth-Anything-V2-{Small,Base}-hf``), so the registry and the ``hf:`` teachers run
one implementation. Weights come from a transformers folder (``save_pretrained``) or from the original
repository's ``depth_anything_v2_vits.pth`` / ``_vitb.pth``, both through ``edgedepth convert``.

One function differs from transformers', on purpose: the interpolation of DINOv2's position embeddings to the input's
patch grid. transformers resamples the 37 x 37 grid to the target size; the original DINOv2 (in Depth Anything's own
code) resamples it by a scale factor with a 0.1 offset, which places the samples slightly differently. At 518x518
they agree (no interpolation), elsewhere the outputs differ (docs/networks.md says by how much); with the original's rule (:func:`original_position_embeddings`) the converted network computes what Depth Anything's
own code computes, at every size.

Inputs are multiples of the 14-pixel patch: a requested size moves to the nearest such size (the card's
``snap_size``). The default is what Depth Anything's own pre-processing gives a 4:3 frame: the shorter side at
518 (its ``lower_bound`` resize), sides multiples of 14, so 686x518.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD
from edgedepth.core.releases import released_weights
from edgedepth.models.registry import DepthNetwork, ModelInfo, register_model

if TYPE_CHECKING:
    from transformers import DepthAnythingForDepthEstimation

PATCH_SIZE = 14
#: Depth Anything V2's input for a 4:3 frame (shorter side 518, sides multiples of 14).
DEPTH_ANYTHING_INPUT_SIZE = (686, 518)
#: DINOv2's pre-training resolution: its position embeddings are a 37 x 37 grid (518 / 14).
BACKBONE_IMAGE_SIZE = 518
#: The original DINOv2's ``interpolate_offset``: added to the target grid before the scale factors are taken.
INTERPOLATE_OFFSET = 0.1


@dataclass(frozen=True)
class Variant:
    """One size of Depth Anything V2: its DINOv2 backbone and DPT head."""

    hidden_size: int
    layers: int
    heads: int
    out_indices: tuple[int, ...]
    neck_hidden_sizes: tuple[int, int, int, int]
    fusion_hidden_size: int


VARIANTS: dict[str, Variant] = {
    "small": Variant(384, 12, 6, (3, 6, 9, 12), (48, 96, 192, 384), 64),
    "base": Variant(768, 12, 12, (3, 6, 9, 12), (96, 192, 384, 768), 128),
}


def transformers_config(variant: Variant) -> Any:
    """The transformers ``DepthAnythingConfig`` of a variant (relative depth, as released)."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=variant.hidden_size, num_hidden_layers=variant.layers, num_attention_heads=variant.heads,
        patch_size=PATCH_SIZE, image_size=BACKBONE_IMAGE_SIZE, apply_layernorm=True, reshape_hidden_states=False,
        out_indices=list(variant.out_indices),  # type: ignore[call-arg]  # typed as _out_indices; taken at run time
    )
    return DepthAnythingConfig(
        backbone_config=backbone, patch_size=PATCH_SIZE, reassemble_hidden_size=variant.hidden_size,
        neck_hidden_sizes=list(variant.neck_hidden_sizes), fusion_hidden_size=variant.fusion_hidden_size,
        head_hidden_size=32, depth_estimation_type="relative",
    )


def variant_of_config(config: Any) -> str | None:
    """The variant a transformers Depth Anything config describes, if it is one of ours (relative depth)."""
    backbone = getattr(config, "backbone_config", None)
    if getattr(config, "model_type", None) != "depth_anything" or backbone is None:
        return None
    if getattr(config, "depth_estimation_type", "relative") != "relative":
        return None
    found = Variant(
        backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads, tuple(backbone.out_indices),
        tuple(config.neck_hidden_sizes), config.fusion_hidden_size,
    )
    return next((name for name, variant in VARIANTS.items() if variant == found), None)


def original_position_embeddings(position_embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINOv2's position embeddings (``1 x (1 + n^2) x dim``) for an input of ``height x width`` pixels, as the
    original DINOv2 computes them (``interpolate_pos_encoding``): the patch grid resampled bicubically by the scale
    factors ``(height / 14 + 0.1) / n`` and ``(width / 14 + 0.1) / n``, without antialiasing."""
    patches = position_embeddings.shape[1] - 1
    rows, columns = int(height) // PATCH_SIZE, int(width) // PATCH_SIZE  # ints also when traced: a fixed-size export
    if rows * columns == patches and rows == columns:
        return position_embeddings
    side, dim = math.sqrt(patches), position_embeddings.shape[-1]
    grid = position_embeddings[:, 1:].float().reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
    scale = ((rows + INTERPOLATE_OFFSET) / side, (columns + INTERPOLATE_OFFSET) / side)
    grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(position_embeddings.dtype)
    return torch.cat((position_embeddings[:, :1], grid), dim=1)


_M = TypeVar("_M", bound=nn.Module)


def use_original_position_embeddings(network: _M) -> _M:
    """Make a transformers Depth Anything network interpolate its position embeddings as the original does."""
    embeddings: Any = network.get_submodule("backbone.embeddings")  # its method is replaced below

    def interpolate(self: nn.Module, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return original_position_embeddings(cast(torch.Tensor, self.position_embeddings), height, width)

    embeddings.interpolate_pos_encoding = types.MethodType(interpolate, embeddings)
    return network


class DepthAnythingV2(DepthNetwork):
    """Depth Anything V2. Input: the normalised ``N x 3 x H x W`` batch (sides multiples of 14); output
    ``N x 1 x H x W`` non-negative relative inverse depth."""

    network: DepthAnythingForDepthEstimation

    def __init__(self, variant: Variant, card: ModelCard) -> None:
        from transformers import DepthAnythingForDepthEstimation

        super().__init__()
        self.network = use_original_position_embeddings(DepthAnythingForDepthEstimation(transformers_config(variant)))
        self.card = card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values=x).predicted_depth.unsqueeze(1)


def _create(variant: str, pretrained: bool) -> DepthAnythingV2:
    if pretrained:
        raise EdgedepthError(
            f"depth_anything_v2_{variant}: pretrained=True builds only the network; load the released weights with "
            f"edgedepth.load('depth_anything_v2_{variant}') or --model depth_anything_v2_{variant}"
        )
    card = ModelCard(
        name=f"depth_anything_v2_{variant}", input_size=DEPTH_ANYTHING_INPUT_SIZE, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, size_multiple=PATCH_SIZE, snap_size=True,
    )
    return DepthAnythingV2(VARIANTS[variant], card)


_SUMMARY = "DINOv2 ViT encoder, DPT head (transformers)"


@register_model(info=ModelInfo(
    family="depth_anything", licence="Apache-2.0", summary=_SUMMARY,
    weights=released_weights("depth_anything_v2_small")
    + " (or convert the transformers folder depth-anything/Depth-Anything-V2-Small-hf)",
))
def depth_anything_v2_small(pretrained: bool = False) -> DepthAnythingV2:
    """Depth Anything V2 Small (ViT-S/14), 24.8 M parameters."""
    return _create("small", pretrained)


@register_model(info=ModelInfo(
    family="depth_anything", licence="CC-BY-NC-4.0", summary=_SUMMARY,
    weights=released_weights("depth_anything_v2_base")
    + " (or convert the transformers folder depth-anything/Depth-Anything-V2-Base-hf)",
))
def depth_anything_v2_base(pretrained: bool = False) -> DepthAnythingV2:
    """Depth Anything V2 Base (ViT-B/14), 97.5 M parameters (non-commercial weights)."""
    return _create("base", pretrained)
