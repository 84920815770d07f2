"""ZipDepth (Tosi et al., ECCV 2026): a RepVGG encoder with global context, an FPN decoder and a convex upsampling head.

Written from the paper's released code (github.com/fabiotosi92/ZipDepth, ``zipdepth/model/architecture.py``, MIT),
module for module, with its parameter names, so its checkpoints load by renaming prefixes only
(:mod:`edgedepth.models.convert`). Two differences, both on purpose:

- the input is the NORMALISED image, as for every edgedepth network: ZipDepth's ``mean``/``std`` buffers
  (ImageNet's, applied to RGB in [0, 1] inside its forward) move into the model card, where the one
  pre-processing applies them;
- the convex head gathers each pixel's 3x3 neighbourhood with nine slices instead of ``F.unfold``: the same
  numbers, and a graph every runtime takes.

The module tree is the training layout (RepVGG branches and BatchNorms separate), which is what checkpoints hold
and what trains; :meth:`ZipDepth.fuse_for_inference` folds it into single convolutions for inference.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD
from edgedepth.core.releases import RELEASES, released_weights
from edgedepth.models.fusion import batchnorm_affine, fold_parallel_branches, fold_sequential_batchnorms, scaled_conv
from edgedepth.models.registry import DepthNetwork, ModelInfo, register_model

GlobalMode = Literal["none", "balanced", "full"]
#: ``convex``: the unfold/convex head of ``zipdepth_base.pth``; ``blend``: the nearest/bilinear blend of
#: ``zipdepth_base_npu.pth`` (ZipDepth's ``upsample_unfold=False``).
UpsampleHead = Literal["convex", "blend"]

#: ZipDepth's default input for a 4:3 frame: shorter side 384, sides multiples of 32.
ZIPDEPTH_INPUT_SIZE = (512, 384)
#: The two global-context choices of ZipDepth's builder that the released checkpoints use, and the others.
GLOBAL_MODES: tuple[GlobalMode, ...] = ("none", "balanced", "full")
UPSAMPLE_HEADS: tuple[UpsampleHead, ...] = ("convex", "blend")
#: Weight of each cross-scale exchange (ZipDepth's constant).
CROSS_SCALE_WEIGHT = 0.3


@dataclass(frozen=True)
class Variant:
    """One size of ZipDepth (its ``MODEL_CONFIGS``)."""

    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: int
    decoder_channels: int
    half_decoder_channels: int


VARIANTS: dict[str, Variant] = {
    "small": Variant((24, 48, 96, 192), (2, 2, 4, 2), 4, 32, 24),
    "base": Variant((48, 96, 192, 384), (2, 2, 6, 2), 4, 96, 32),
    "large": Variant((64, 128, 256, 384), (2, 4, 10, 4), 8, 192, 48),
    "giant": Variant((96, 192, 384, 512), (2, 4, 14, 6), 8, 288, 64),
}


# ----------------------------------------------------------------------------------------------------- blocks


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, as ZipDepth's ``ConvBN`` (children ``conv``, ``bn``, ``act``)."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        act=nn.ReLU(inplace=True) if act else nn.Identity(),
    ))


def _conv_and_norm(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def pick_groups(in_channels: int, out_channels: int, most: int = 4) -> int:
    """The largest of ``most``, 2, 1 dividing both channel counts (ZipDepth's grouped 1x1 projections)."""
    return next(g for g in (most, 2, 1) if in_channels % g == 0 and out_channels % g == 0)


class RepVGGBlock(nn.Module):
    """3x3 conv + BN, 1x1 conv + BN and (same shape) the identity, summed, then ReLU (ZipDepth's ``QARepBlock``).

    :meth:`fuse` folds the two convolutions and their BatchNorms into one 3x3 convolution (RepVGG's
    re-parameterisation) and keeps the identity as an addition. Folded into the kernel too, the identity would put
    a 1 on the centre tap of every channel, whose range then leaves the other taps few of INT8's levels: a briefly
    trained ``zipdepth_base`` at 384x384 correlated 0.989 with FP32 in INT8 that way, 0.997 with the identity
    apart (ONNX Runtime's quantiser; 0.975 and 0.990 with NNCF's), at the same speed.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.has_identity = in_channels == out_channels and stride == 1
        self.branch_3x3 = _conv_and_norm(in_channels, out_channels, 3, stride, 1)
        self.branch_1x1 = _conv_and_norm(in_channels, out_channels, 1, stride, 1)
        self.act = nn.ReLU(inplace=True)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fused(x) if self.fused is not None else self.branch_3x3(x) + self.branch_1x1(x)
        return self.act(out + x if self.has_identity else out)

    def fuse(self) -> None:
        """Fold the two convolution branches into one 3x3 convolution; the identity stays an addition."""
        self.fused = fold_parallel_branches([_conv_norm_pair(self.branch_3x3), _conv_norm_pair(self.branch_1x1)])
        del self.branch_3x3, self.branch_1x1


def _conv_norm_pair(branch: nn.Sequential) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """The convolution and BatchNorm of a branch :func:`_conv_and_norm` built."""
    return cast(nn.Conv2d, branch[0]), cast(nn.BatchNorm2d, branch[1])


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: a gate per channel from its mean."""

    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(dim // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False), nn.ReLU(inplace=True), nn.Conv2d(hidden, dim, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.pool(x))


class StripPoolingAttention(nn.Module):
    """A per-pixel gate from the mean of its row plus the mean of its column."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate_conv = nn.Sequential(nn.Conv2d(dim, dim, 1, groups=dim, bias=False), nn.BatchNorm2d(dim), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate_conv(x.mean(dim=3, keepdim=True) + x.mean(dim=2, keepdim=True))


class GlobalContextBlock(nn.Module):
    """GCNet's global context: a softmax over all pixels pools the map into one vector, added back everywhere.

    The learned softmax pooling is the point of the block (ZipDepth's own ONNX export replaces it with a plain
    average, which computes something else); here it is kept in every runtime.
    """

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(dim // reduction, 8)
        self.context_weight = nn.Conv2d(dim, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True), nn.Conv2d(hidden, dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(self.context_weight(x).flatten(2), dim=-1)  # B x 1 x HW
        context = torch.bmm(x.flatten(2), weights.transpose(1, 2)).unsqueeze(-1)  # B x C x 1 x 1
        return x + self.transform(context)


class MinimalMultiScale(nn.Module):
    """Two depthwise 3x3 convolutions (dilation 1 and 2), summed, normalised, added to the input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.branch1 = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False)
        self.branch2 = nn.Conv2d(dim, dim, 3, 1, 2, dilation=2, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.branch1(x) + self.branch2(x))

    def fuse(self) -> None:
        """The BatchNorm's scale into both branches, its shift into the first."""
        scale, shift = batchnorm_affine(self.bn)
        self.branch1, self.branch2 = scaled_conv(self.branch1, scale, shift), scaled_conv(self.branch2, scale)
        self.bn = nn.Identity()  # type: ignore[assignment]


class EfficientGlobalAttention(nn.Module):
    """Global attention through learned tokens: tokens attend to all pixels, then each pixel to the tokens.

    Only in ``global_mode="full"``.
    """

    def __init__(self, dim: int, num_tokens: int = 8, num_heads: int = 4) -> None:
        super().__init__()
        self.num_tokens, self.num_heads, self.head_dim = num_tokens, num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.tokens = nn.Parameter(torch.empty(1, num_tokens, dim))
        nn.init.trunc_normal_(self.tokens, std=0.02)
        self.q_tokens = nn.Linear(dim, dim, bias=False)
        self.kv_spatial = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.q_spatial = nn.Conv2d(dim, dim, 1, groups=num_heads, bias=False)
        self.k_proj_tokens = nn.Linear(dim, dim, bias=False)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.norm = nn.BatchNorm2d(dim)

    def _heads(self, maps: torch.Tensor) -> torch.Tensor:
        """``B x C x N`` to ``B x heads x N x head_dim``."""
        return maps.reshape(maps.shape[0], self.num_heads, self.head_dim, -1).transpose(-1, -2)

    def _token_heads(self, tokens: torch.Tensor, batch: int) -> torch.Tensor:
        """``1 x T x C`` to ``B x heads x T x head_dim``."""
        return tokens.reshape(1, self.num_tokens, self.num_heads, self.head_dim).permute(0, 2, 1, 3).expand(
            batch, -1, -1, -1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        keys_values = self.kv_spatial(x).reshape(batch, 2, channels, height * width)
        keys, values = self._heads(keys_values[:, 0]), self._heads(keys_values[:, 1])
        token_queries = self._token_heads(self.q_tokens(self.tokens), batch)
        tokens = F.softmax(token_queries @ keys.transpose(-2, -1) * self.scale, dim=-1) @ values
        queries = self._heads(self.q_spatial(x).flatten(2))
        token_keys = self._token_heads(self.k_proj_tokens(self.tokens), batch)
        out = F.softmax(queries @ token_keys.transpose(-2, -1) * self.scale, dim=-1) @ tokens  # B x h x N x d
        out = out.transpose(1, 2).reshape(batch, height * width, channels).transpose(1, 2)
        return x + self.norm(self.proj_out(out.reshape(batch, channels, height, width)))

    def fuse(self) -> None:
        self.proj_out = scaled_conv(self.proj_out, *batchnorm_affine(self.norm))
        self.norm = nn.Identity()  # type: ignore[assignment]


class CrossScale(nn.Module):
    """The 1/16 and 1/32 maps exchange a weighted projection of each other (ZipDepth's ``MinimalCrossScale``).

    ZipDepth pools the 1/16 map to the 1/32 one's size with adaptive average pooling; input sides are multiples
    of 32, so that is exactly a 2x2 average, written so (ONNX has no adaptive pooling to a computed size).
    """

    def __init__(self, dim_high: int, dim_low: int) -> None:
        super().__init__()
        self.low_to_high = nn.Conv2d(dim_low, dim_high, 1, groups=pick_groups(dim_low, dim_high), bias=False)
        self.high_to_low = nn.Conv2d(dim_high, dim_low, 1, groups=pick_groups(dim_high, dim_low), bias=False)

    def forward(self, x_high: torch.Tensor, x_low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low_up = F.interpolate(self.low_to_high(x_low), size=x_high.shape[2:], mode="nearest")
        high_down = F.avg_pool2d(self.high_to_low(x_high), 2)
        return x_high + low_up * CROSS_SCALE_WEIGHT, x_low + high_down * CROSS_SCALE_WEIGHT


class SPPF(nn.Module):
    """YOLO's fast spatial pyramid pooling with a quarter of the channels inside (``LightweightSPPF``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        hidden = in_channels // 4
        self.cv1 = conv_bn(in_channels, hidden, 1)
        self.cv2 = conv_bn(hidden * 4, out_channels, 1)
        self.m = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Fusion(nn.Module):
    """FPN step: the coarser map upsampled (bilinear), both projected by grouped 1x1s, summed, BN, ReLU."""

    def __init__(self, high_channels: int, low_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj_high = nn.Conv2d(
            high_channels, out_channels, 1, groups=pick_groups(high_channels, out_channels), bias=False
        )
        self.proj_low = nn.Conv2d(low_channels, out_channels, 1, groups=pick_groups(low_channels, out_channels), bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x_high: torch.Tensor, x_low: torch.Tensor) -> torch.Tensor:
        x_low = F.interpolate(x_low, size=x_high.shape[2:], mode="bilinear", align_corners=False)
        return self.act(self.bn(self.proj_high(x_high) + self.proj_low(x_low)))

    def fuse(self) -> None:
        """The BatchNorm's scale into both projections, its shift into the first."""
        scale, shift = batchnorm_affine(self.bn)
        self.proj_high, self.proj_low = scaled_conv(self.proj_high, scale, shift), scaled_conv(self.proj_low, scale)
        self.bn = nn.Identity()  # type: ignore[assignment]


class ConvexUpsample(nn.Module):
    """x2 upsampling of the half-resolution depth, guided by the half-resolution features.

    ``convex``: each output pixel is a softmax-weighted (convex) combination of the 3x3 neighbourhood of its source
    pixel (RAFT's convex upsampling). ``blend``: a learned per-pixel mix of nearest and bilinear upsampling. Both
    end with ReLU: the output, inverse depth, is non-negative.
    """

    def __init__(self, channels: int, head: UpsampleHead = "convex", scale: int = 2) -> None:
        super().__init__()
        self.scale, self.head = scale, head
        if head == "convex":
            hidden = max(channels // 4, 8)
            self.mask_pred = nn.Sequential(
                nn.Conv2d(channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                nn.Conv2d(hidden, 9 * scale * scale, 1),
            )
        else:
            hidden = max(channels // 2, 8)
            self.where_conv = nn.Sequential(
                nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1, bias=False),
            )

    def forward(self, features: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        return F.relu(self._convex(features, depth) if self.head == "convex" else self._blend(features, depth))

    def _convex(self, features: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = depth.shape
        weights = F.softmax(self.mask_pred(features).view(batch, 9, self.scale**2, height, width), dim=1)
        padded = _replicate_pad(depth)
        # The 3x3 neighbourhood, in F.unfold's order (row-major over the kernel): B x 9 x 1 x H x W.
        neighbours = torch.stack(
            [padded[:, 0, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)], dim=1
        ).unsqueeze(2)
        upsampled = (weights * neighbours).sum(1)  # B x S^2 x H x W
        return F.pixel_shuffle(upsampled, self.scale)

    def _blend(self, features: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        nearest = F.interpolate(depth, scale_factor=self.scale, mode="nearest")
        bilinear = F.interpolate(depth, scale_factor=self.scale, mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(
            F.interpolate(self.where_conv(features), scale_factor=self.scale, mode="bilinear", align_corners=False)
        )
        return alpha * nearest + (1.0 - alpha) * bilinear


def _replicate_pad(x: torch.Tensor) -> torch.Tensor:
    """``F.pad(x, (1, 1, 1, 1), mode="replicate")`` by concatenating the edge rows and columns: the same values, and
    an ONNX graph without the reversed Slice that the exporter builds for replicate padding (and warns about)."""
    x = torch.cat((x[..., :1, :], x, x[..., -1:, :]), dim=-2)
    return torch.cat((x[..., :1], x, x[..., -1:]), dim=-1)


# ------------------------------------------------------------------------------------------- encoder, decoder


def _stage(blocks: int, dim: int, extras: Sequence[nn.Module]) -> nn.Sequential:
    return nn.Sequential(*[RepVGGBlock(dim, dim) for _ in range(blocks)], *extras)


class ZipDepthEncoder(nn.Module):
    """Stems to 1/2 and 1/4, four RepVGG stages (1/4 .. 1/32) with their context blocks, SPPF, cross-scale."""

    def __init__(self, variant: Variant, global_mode: GlobalMode) -> None:
        super().__init__()
        d1, d2, d3, d4 = variant.dims
        use_global = global_mode != "none"
        self.stem_half = conv_bn(3, d1 // 2, 3, 2)
        self.stem_quarter = conv_bn(d1 // 2, d1, 3, 2)
        self.stage1 = _stage(variant.depths[0], d1, [])
        self.down2 = RepVGGBlock(d1, d2, stride=2)
        strip_pooling = [StripPoolingAttention(d2)] if use_global else []
        self.stage2 = _stage(variant.depths[1], d2, [MinimalMultiScale(d2), *strip_pooling])
        self.down3 = RepVGGBlock(d2, d3, stride=2)
        global_context = [GlobalContextBlock(d3)] if use_global else []
        self.stage3 = _stage(variant.depths[2], d3, [ChannelAttention(d3), *global_context])
        self.down4 = RepVGGBlock(d3, d4, stride=2)
        attention = [EfficientGlobalAttention(d4, 8, variant.heads)] if global_mode == "full" else []
        self.stage4 = _stage(variant.depths[3], d4, attention)
        self.spp = SPPF(d4, d4)
        self.cross_scale = CrossScale(d3, d4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        half = self.stem_half(x)
        s1 = self.stage1(self.stem_quarter(half))
        s2 = self.stage2(self.down2(s1))
        s3 = self.stage3(self.down3(s2))
        s4 = self.spp(self.stage4(self.down4(s3)))
        s3, s4 = self.cross_scale(s3, s4)
        return half, [s1, s2, s3, s4]


class ZipDepthDecoder(nn.Module):
    """FPN from 1/32 to 1/4, one more fusion with the 1/2 stem, a 3x3 head, then the x2 upsampling head."""

    def __init__(self, variant: Variant, head: UpsampleHead) -> None:
        super().__init__()
        c1, c2, c3, c4 = variant.dims
        channels = variant.decoder_channels
        ch4, ch3, ch2, ch1 = channels * 3, channels * 2, int(channels * 1.5), channels
        half = variant.half_decoder_channels
        self.proj4 = conv_bn(c4, ch4, 1)
        self.fuse3 = Fusion(c3, ch4, ch3)
        self.fuse2 = Fusion(c2, ch3, ch2)
        self.fuse1 = Fusion(c1, ch2, ch1)
        self.fuse_half = Fusion(c1 // 2, ch1, half)
        self.head_half = nn.Conv2d(half, 1, 3, padding=1)
        self.convex_up = ConvexUpsample(half, head)

    def forward(self, half: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        c1, c2, c3, c4 = features
        f1 = self.fuse1(c1, self.fuse2(c2, self.fuse3(c3, self.proj4(c4))))
        f_half = self.fuse_half(half, f1)
        return self.convex_up(f_half, self.head_half(f_half))


class ZipDepth(DepthNetwork):
    """ZipDepth. Input: the normalised ``N x 3 x H x W`` batch (sides multiples of 32); output ``N x 1 x H x W``,
    non-negative relative inverse depth."""

    def __init__(self, variant: Variant, card: ModelCard, global_mode: GlobalMode = "balanced",
                 head: UpsampleHead = "convex") -> None:
        super().__init__()
        if global_mode not in GLOBAL_MODES:
            raise EdgedepthError(f"global_mode {global_mode!r}: use one of {', '.join(GLOBAL_MODES)}")
        if head not in UPSAMPLE_HEADS:
            raise EdgedepthError(f"upsample {head!r}: use one of {', '.join(UPSAMPLE_HEADS)}")
        self.encoder = ZipDepthEncoder(variant, global_mode)
        self.decoder = ZipDepthDecoder(variant, head)
        self.card = card
        self.fused = False
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(*self.encoder(x))

    def fuse_for_inference(self) -> ZipDepth:
        """Fold every RepVGG block and BatchNorm into its convolutions, in place (eval mode; the same function)."""
        if not self.fused:
            self.eval()
            for module in list(self.modules()):
                fuse = getattr(module, "fuse", None) if module is not self else None
                if callable(fuse):
                    fuse()
            fold_sequential_batchnorms(self)
            self.fused = True
        return self


def _init_weights(module: nn.Module) -> None:
    """ZipDepth's initialisation (for training from scratch): He for convolutions, truncated normal for linears."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)


# -------------------------------------------------------------------------------------------------- builders


def _create(variant: str, pretrained: bool, global_mode: GlobalMode, upsample: UpsampleHead) -> ZipDepth:
    if pretrained:
        raise EdgedepthError(
            f"zipdepth_{variant}: pretrained=True builds only the network; "
            + (f"load the released weights with edgedepth.load('zipdepth_{variant}') or --model zipdepth_{variant}"
               if f"zipdepth_{variant}" in RELEASES else "ZipDepth released no weights for it; train your own")
        )
    model_args: dict[str, object] = {}
    if global_mode != "balanced":
        model_args["global_mode"] = global_mode
    if upsample != "convex":
        model_args["upsample"] = upsample
    card = ModelCard(
        name=f"zipdepth_{variant}", model_args=model_args, input_size=ZIPDEPTH_INPUT_SIZE, mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    return ZipDepth(VARIANTS[variant], card, global_mode, upsample)


_RELEASED = released_weights("zipdepth_base", "zipdepth_base_npu") + " (the NPU head: upsample=blend)"
_UNRELEASED = "none released (github.com/fabiotosi92/ZipDepth ships base only); train your own"


def _info(weights: str) -> ModelInfo:
    return ModelInfo("zipdepth", "MIT", weights, "RepVGG encoder with global context, FPN decoder, convex upsampling")


@register_model(info=_info(_UNRELEASED))
def zipdepth_small(pretrained: bool = False, global_mode: GlobalMode = "balanced",
                   upsample: UpsampleHead = "convex") -> ZipDepth:
    """ZipDepth small: 1.50 M parameters in the training layout."""
    return _create("small", pretrained, global_mode, upsample)


@register_model(info=_info(_RELEASED))
def zipdepth_base(pretrained: bool = False, global_mode: GlobalMode = "balanced",
                  upsample: UpsampleHead = "convex") -> ZipDepth:
    """ZipDepth base, the released network: 6,788,254 parameters in the training layout, about 6.14 M fused."""
    return _create("base", pretrained, global_mode, upsample)


@register_model(info=_info(_UNRELEASED))
def zipdepth_large(pretrained: bool = False, global_mode: GlobalMode = "balanced",
                   upsample: UpsampleHead = "convex") -> ZipDepth:
    """ZipDepth large: 15.3 M parameters in the training layout."""
    return _create("large", pretrained, global_mode, upsample)


@register_model(info=_info(_UNRELEASED))
def zipdepth_giant(pretrained: bool = False, global_mode: GlobalMode = "balanced",
                   upsample: UpsampleHead = "convex") -> ZipDepth:
    """ZipDepth giant: 42.3 M parameters in the training layout."""
    return _create("giant", pretrained, global_mode, upsample)


def variant_of(dims: tuple[int, ...], depths: tuple[int, ...]) -> str | None:
    """The variant name with these stage widths and depths, if any (for recognising checkpoints)."""
    return next((name for name, v in VARIANTS.items() if v.dims == tuple(dims) and v.depths == tuple(depths)), None)

