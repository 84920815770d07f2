"""MiDaS v2.1 small (Ranftl et al.): EfficientNet-Lite3 encoder and MiDaS's small RefineNet-style decoder.

Written from MiDaS's ``midas/midas_net_custom.py`` (``MidasNet_small``, features 64, ``expand``) and
``midas/blocks.py`` (github.com/isl-org/MiDaS, MIT). The encoder is timm's ``tf_efficientnet_lite3`` (the same
network as MiDaS's gen-efficientnet one, with TensorFlow's "same" padding), tapped at 1/4, 1/8, 1/16 and 1/32.
``midas_v21_small_256.pt`` converts onto it by renaming prefixes (:mod:`edgedepth.models.convert`).

MiDaS's network ends in a ReLU, so its output, relative inverse depth, is non-negative; its ``squeeze(1)`` is left
out so that the output is ``N x 1 x H x W`` like every edgedepth network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD
from edgedepth.core.releases import RELEASES, released_weights
from edgedepth.models.registry import DepthNetwork, ModelInfo, register_model

#: timm's EfficientNet-Lite3, and the feature indices MiDaS taps (1/4, 1/8, 1/16, 1/32).
ENCODER = "tf_efficientnet_lite3"
ENCODER_OUT_INDICES = (1, 2, 3, 4)
#: MiDaS small's decoder width (``features=64``) and its per-level widths (``expand``: 1x, 2x, 4x, 8x).
FEATURES = 64
LEVEL_WIDTHS = (FEATURES, FEATURES * 2, FEATURES * 4, FEATURES * 8)
#: What MiDaS's own pre-processing gives a 4:3 frame: its 256 square, aspect kept (``upper_bound``), sides
#: multiples of 32 (:func:`edgedepth.teachers.midas.midas_input_size`; ``MIDAS_MODELS["MiDaS_small"]``).
MIDAS_SMALL_INPUT_SIZE = (256, 192)


class ResidualConvUnit(nn.Module):
    """ReLU, 3x3 conv, ReLU, 3x3 conv, plus the input (MiDaS's ``ResidualConvUnit_custom`` without BatchNorm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """MiDaS's ``FeatureFusionBlock_custom``: the skip through a residual unit is added, a second unit, bilinear x2
    with aligned corners, then a 1x1 convolution halving the width (``expand``)."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels)
        self.unit = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.skip_unit(skip)
        x = F.interpolate(self.unit(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class MidasSmallDecoder(nn.Module):
    """3x3 projections of the four taps, four fusion blocks from 1/32 up, and the head (to full size, ReLU)."""

    def __init__(self, encoder_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.project = nn.ModuleList(
            nn.Conv2d(c, w, 3, padding=1, bias=False) for c, w in zip(encoder_channels, LEVEL_WIDTHS, strict=True)
        )
        # Level k fuses at its own width and hands the next finer level's width on; level 0 keeps its 64.
        self.fusion = nn.ModuleList(
            FusionBlock(width, LEVEL_WIDTHS[level - 1] if level else FEATURES) for level, width in enumerate(LEVEL_WIDTHS)
        )
        self.head = nn.Sequential(
            nn.Conv2d(FEATURES, FEATURES // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(FEATURES // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        projected = [project(f) for project, f in zip(self.project, features, strict=True)]
        path = self.fusion[3](projected[3])
        for level in (2, 1, 0):
            path = self.fusion[level](path, projected[level])
        return self.head(path)


class MidasSmall(DepthNetwork):
    """MiDaS v2.1 small. Input: the normalised ``N x 3 x H x W`` batch (sides multiples of 32); output
    ``N x 1 x H x W`` non-negative relative inverse depth."""

    def __init__(self, card: ModelCard, pretrained: bool = False) -> None:
        import timm

        from edgedepth.models.encoders import load_pretrained, timm_feature_info

        super().__init__()

        def build(weights: bool) -> nn.Module:
            return timm.create_model(ENCODER, pretrained=weights, features_only=True, out_indices=ENCODER_OUT_INDICES)

        self.encoder = load_pretrained(f"{ENCODER} (timm)", lambda: build(True)) if pretrained else build(False)
        self.decoder = MidasSmallDecoder(tuple(timm_feature_info(self.encoder).channels()))
        self.card = card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


#: Where MiDaS publishes the trained weights of v2.1 small.
MIDAS_SMALL_URL = RELEASES["midas_v21_small"].url


@register_model(info=ModelInfo(
    family="midas", licence="MIT", weights=released_weights("midas_v21_small"),
    summary="MiDaS v2.1 small: EfficientNet-Lite3 encoder, RefineNet-style decoder",
))
def midas_v21_small(pretrained: bool = False) -> MidasSmall:
    """MiDaS v2.1 small, 21.3 M parameters. ``pretrained`` loads only the encoder's ImageNet weights (timm's);
    MiDaS's trained network comes in through ``edgedepth convert midas_v21_small_256.pt OUT.safetensors``."""
    card = ModelCard(
        name="midas_v21_small", input_size=MIDAS_SMALL_INPUT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    return MidasSmall(card, pretrained)

