"""Encoders behind the FastDepth decoder, and the contract they share.

An encoder's ``forward`` returns a list of feature maps, shallow to deep: the skip taps, then the
bottleneck. ``feature_channels`` and ``reductions`` describe that list (reduction = input size / map size),
so the decoder is built from them, never from channel lists written elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD
from edgedepth.models.fusion import as_pair, padding_of

if TYPE_CHECKING:
    from timm.models import FeatureInfo

#: The bottleneck's reduction: five x2 decoder stages bring it back to the input size.
BOTTLENECK_REDUCTION = 32

#: The seed's skip taps in torchvision's MobileNetV3-Large: ``features[i]``'s expansion activation
#: (64 ch at 1/2, 240 ch at 1/8, 480 ch at 1/16), by block index.
SEED_V3_TAPS: tuple[int, ...] = (2, 7, 11)

#: FastDepth's skip taps in its MobileNet v1: the outputs of layers 1, 3 and 5 (64 at 1/2, 128 at 1/4, 256 at 1/8).
FASTDEPTH_V1_TAPS: tuple[int, ...] = (1, 3, 5)

T = TypeVar("T")


class Encoder(nn.Module):
    """Base of all encoders: subclasses set ``feature_channels`` and ``reductions`` and return that many maps."""

    feature_channels: tuple[int, ...]
    reductions: tuple[int, ...]

    def check_contract(self) -> None:
        """Fail early if the bottleneck is not at the reduction the decoder expects."""
        if not self.reductions or self.reductions[-1] != BOTTLENECK_REDUCTION:
            raise EdgedepthError(
                f"{type(self).__name__}: the FastDepth decoder needs a bottleneck at 1/{BOTTLENECK_REDUCTION}, "
                f"this encoder's feature reductions are {list(self.reductions)}"
            )


def load_pretrained(what: str, load: Callable[[], T]) -> T:
    """Run ``load`` (which downloads weights) and turn a network failure into one clear sentence."""
    try:
        return load()
    except (OSError, RuntimeError, ValueError) as exc:
        raise EdgedepthError(
            f"downloading the pretrained weights of {what} needs the network, which failed ({type(exc).__name__}); "
            "build the model with pretrained=False or put the weights in the local cache first"
        ) from exc


def timm_feature_info(body: nn.Module) -> FeatureInfo:
    """The ``feature_info`` of a timm ``features_only`` network (a plain attribute, typed as a submodule by torch)."""
    return cast("FeatureInfo", body.feature_info)


def block_scales(blocks: nn.Sequential | nn.ModuleList) -> list[tuple[int, int]]:
    """``(reduction, channels)`` of each block's output, measured once on a dummy input in eval mode."""
    size = 4 * BOTTLENECK_REDUCTION
    x = torch.zeros(1, 3, size, size)
    scales = []
    was_training = blocks.training
    with torch.no_grad():
        for block in blocks.eval():
            x = block(x)
            scales.append((size // x.shape[-1], x.shape[1]))
    blocks.train(was_training)
    return scales


class MobileNetV3LargeEncoder(Encoder):
    """torchvision's MobileNetV3-Large ``features`` with the seed's taps, taken inside the forward pass.

    The tap is the activation of a block's expansion convolution (``block[0]``), read while the block runs,
    so no hooks and no global state are involved.
    """

    def __init__(
        self, pretrained: bool = False, taps: Sequence[int] = SEED_V3_TAPS, expansions: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if pretrained and expansions is not None:
            raise EdgedepthError("MobileNetV3-Large with its own expansion widths has no pretrained weights")
        if pretrained:
            weights = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
            backbone = load_pretrained(
                "MobileNetV3-Large (torchvision, ImageNet)",
                lambda: torchvision.models.mobilenet_v3_large(weights=weights),
            )
        elif expansions is not None:
            backbone = mobilenet_v3_large_with_expansions(expansions)
        else:
            backbone = torchvision.models.mobilenet_v3_large()
        self.features = backbone.features
        self.taps = tuple(taps)
        for index in self.taps:
            if not isinstance(self.features[index], InvertedResidual):
                raise TypeError(f"features[{index}] is not an inverted residual: no expansion convolution to tap")
        scales = block_scales(self.features)
        # The expansion runs before the block's stride, so a tap sits at the scale of the block's input.
        self.feature_channels = (*(self.features[i].block[0][0].out_channels for i in self.taps), scales[-1][1])
        self.reductions = (*(scales[i - 1][0] for i in self.taps), scales[-1][0])
        self.check_contract()

    @property
    def expansions(self) -> list[int]:
        """The 15 inverted-residual blocks' expansion widths: the ``expansions`` that rebuild this encoder."""
        return [self.features[i].block[0][0].out_channels for i in range(1, len(self.features) - 1)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips: list[torch.Tensor] = []
        for index, block in enumerate(self.features):
            if index in self.taps:
                expanded = block.block[0](x)
                skips.append(expanded)
                out = block.block[1:](expanded)
                x = out + x if block.use_res_connect else out
            else:
                x = block(x)
        return [*skips, x]


def mobilenet_v3_large_expansions() -> list[int]:
    """The expansion width of each of MobileNetV3-Large's 15 inverted-residual blocks (``features[1..15]``)."""
    from torchvision.models.mobilenetv3 import _mobilenet_v3_conf

    return [config.expanded_channels for config in _mobilenet_v3_conf("mobilenet_v3_large")[0]]


def mobilenet_v3_large_with_expansions(expansions: Sequence[int]) -> nn.Module:
    """torchvision's MobileNetV3-Large with other expansion widths (a pruned network); SE widths follow them.

    A block whose expansion equals its input width would lose its expansion convolution (torchvision's rule), so
    its layout would change: such widths, and any width of the first block (it has no expansion), are refused.
    """
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large")
    if len(expansions) != len(setting):
        raise EdgedepthError(f"expansions: {len(setting)} widths for MobileNetV3-Large, got {len(expansions)}")
    for index, (config, width) in enumerate(zip(setting, expansions, strict=True), start=1):
        width = int(width)
        has_expansion = config.expanded_channels != config.input_channels
        fixed = not has_expansion and width != config.expanded_channels
        if width < 1 or fixed or (has_expansion and width == config.input_channels):
            raise EdgedepthError(
                f"expansions: block {index} cannot take width {width} (input width {config.input_channels})"
            )
        config.expanded_channels = width
    return MobileNetV3(setting, last_channel)


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1) -> nn.Sequential:
    padding = kernel_size // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


def _depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """FastDepth's ``conv_dw``: 3x3 depthwise + BN + ReLU6, 1x1 pointwise + BN + ReLU6, in one Sequential."""
    return nn.Sequential(
        *_conv_bn_relu6(in_channels, in_channels, 3, stride, groups=in_channels),
        *_conv_bn_relu6(in_channels, out_channels, 1, 1),
    )


#: MobileNet v1 (width 1.0) as FastDepth defines it: (out channels, stride) of each depthwise-separable layer.
_MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


class MobileNetV1Encoder(Encoder):
    """FastDepth's MobileNet v1 encoder (ReLU6), layers ``0..13``, with its taps after layers 1, 3 and 5.

    No published ImageNet weights for this network are on a hub, so ``pretrained`` is not offered;
    FastDepth's own trained model comes in through ``edgedepth convert``.
    """

    def __init__(self, taps: Sequence[int] = FASTDEPTH_V1_TAPS) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, 2)]
        in_channels = 32
        for out_channels, stride in _MOBILENET_V1_LAYERS:
            layers.append(_depthwise_separable(in_channels, out_channels, stride))
            in_channels = out_channels
        self.layers = nn.ModuleList(layers)
        self.taps = tuple(taps)
        scales = block_scales(self.layers)
        self.feature_channels = (*(scales[i][1] for i in self.taps), scales[-1][1])
        self.reductions = (*(scales[i][0] for i in self.taps), scales[-1][0])
        self.check_contract()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips: list[torch.Tensor] = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.taps:
                skips.append(x)
        return [*skips, x]


class TimmEncoder(Encoder):
    """Any timm model with ``features_only`` support; taps are the deepest feature at each skip reduction.

    ``expansions`` (one width per block :func:`timm_expansions` finds) describes a pruned network (``edgedepth
    prune``): timm builds the network as usual, then those blocks' layers are replaced by narrower ones.
    """

    def __init__(
        self, name: str, skip_reductions: Sequence[int], pretrained: bool = False,
        expansions: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        import timm

        if pretrained and expansions is not None:
            raise EdgedepthError(f"{name} with its own expansion widths has no pretrained weights")
        probe = timm.create_model(name, pretrained=False, features_only=True)
        reductions = timm_feature_info(probe).reduction()
        wanted = [i for i, r in enumerate(reductions) if r in skip_reductions]
        out_indices = (*wanted, len(reductions) - 1)
        if pretrained:
            self.body = load_pretrained(
                f"{name} (timm)",
                lambda: timm.create_model(name, pretrained=True, features_only=True, out_indices=out_indices),
            )
        else:
            self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
        if expansions is not None:
            set_timm_expansions(self.body, name, expansions)
        self.feature_channels = tuple(timm_feature_info(self.body).channels())
        self.reductions = tuple(timm_feature_info(self.body).reduction())
        pretrained_cfg = cast("dict[str, Any]", self.body.pretrained_cfg)  # timm's dict, a plain attribute
        self.default_mean = tuple(pretrained_cfg.get("mean", IMAGENET_MEAN))
        self.default_std = tuple(pretrained_cfg.get("std", IMAGENET_STD))
        self.check_contract()

    @property
    def expansions(self) -> list[int]:
        """The width of each of :func:`timm_expansions`' blocks: the ``expansions`` that rebuild this encoder."""
        return [expansion.width(self.body) for expansion in timm_expansions(self.body)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


@dataclass(frozen=True)
class TimmExpansion:
    """Where one timm block's expansion width lives, as module paths in the encoder body: the convolution and BN
    that produce it, the depthwise convolutions and BNs that carry it, its SE (whose squeeze width stays), and the
    convolution that consumes it. The block's output width (a residual, a skip tap) is not among them."""

    block: str
    produce: tuple[str, str]
    carry: tuple[tuple[str, str], ...]
    se: str | None
    consume: str

    def width(self, body: nn.Module) -> int:
        return _conv_at(body, self.produce[0]).out_channels


def timm_expansions(body: nn.Module) -> list[TimmExpansion]:
    """The blocks of a timm MobileNet/EfficientNet-style body (``body.blocks``, stages of blocks) whose expansion
    width can change: ``UniversalInvertedResidual`` (``pw_exp``; ``dw_mid`` and SE follow), ``InvertedResidual``
    (``conv_pw``), ``EdgeResidual`` (``conv_exp``), and a ``ConvBnAct`` with a k x k (k > 1) convolution followed
    in its stage by a 1x1 ``ConvBnAct`` (a fused expansion), neither with a residual. Other blocks (depthwise
    separable ones, attention, layers of other types) keep their widths."""
    from timm.models._efficientnet_blocks import (
        ConvBnAct,
        EdgeResidual,
        InvertedResidual,
        UniversalInvertedResidual,
    )

    stages = getattr(body, "blocks", None)
    if not isinstance(stages, nn.Sequential):
        return []
    found = []
    for s, stage in enumerate(stages):
        stage = cast(nn.Sequential, stage)  # timm's MobileNet/EfficientNet stages are Sequentials of blocks
        for b, block in enumerate(stage):
            p = f"blocks.{s}.{b}"
            kind = type(block)
            if kind is UniversalInvertedResidual:
                carry = () if isinstance(block.dw_mid, nn.Identity) else ((f"{p}.dw_mid.conv", f"{p}.dw_mid.bn"),)
                candidate = TimmExpansion(p, (f"{p}.pw_exp.conv", f"{p}.pw_exp.bn"), carry, f"{p}.se",
                                          f"{p}.pw_proj.conv")
            elif kind is InvertedResidual:
                candidate = TimmExpansion(p, (f"{p}.conv_pw", f"{p}.bn1"), ((f"{p}.conv_dw", f"{p}.bn2"),),
                                          f"{p}.se", f"{p}.conv_pwl")
            elif kind is EdgeResidual:
                candidate = TimmExpansion(p, (f"{p}.conv_exp", f"{p}.bn1"), (), f"{p}.se", f"{p}.conv_pwl")
            elif (kind is ConvBnAct and b + 1 < len(stage) and type(stage[b + 1]) is ConvBnAct
                  and not block.has_skip and not stage[b + 1].has_skip and _kernel_size(block) != (1, 1)
                  and _kernel_size(stage[b + 1]) == (1, 1)):
                candidate = TimmExpansion(p, (f"{p}.conv", f"{p}.bn1"), (), None, f"blocks.{s}.{b + 1}.conv")
            else:
                continue
            if _resizable(body, block, candidate):
                found.append(candidate)
    return found


def _kernel_size(block: nn.Module) -> tuple[int, ...]:
    """The kernel size of a timm ``ConvBnAct``'s convolution."""
    return cast(nn.Conv2d, block.conv).kernel_size


def _resizable(body: nn.Module, block: nn.Module, expansion: TimmExpansion) -> bool:
    """Whether every layer the width touches is one :func:`set_timm_expansions` knows how to narrow."""
    from timm.models._efficientnet_blocks import SqueezeExcite

    plain = [body.get_submodule(expansion.produce[0]), body.get_submodule(expansion.consume)]
    depthwise = [body.get_submodule(conv) for conv, _ in expansion.carry]
    norms = [body.get_submodule(norm) for norm in (expansion.produce[1], *(n for _, n in expansion.carry))]
    se = body.get_submodule(expansion.se) if expansion.se else nn.Identity()
    return (all(type(c) is nn.Conv2d and c.groups == 1 for c in plain)
            and all(type(c) is nn.Conv2d and c.groups == c.in_channels == c.out_channels for c in depthwise)
            and all(isinstance(n, nn.BatchNorm2d) for n in norms)
            and (type(se) is SqueezeExcite or isinstance(se, nn.Identity))
            and isinstance(getattr(block, "aa", nn.Identity()), nn.Identity))


def set_timm_expansions(body: nn.Module, name: str, widths: Sequence[int]) -> None:
    """Give :func:`timm_expansions`' blocks these widths: their layers are replaced by fresh ones that wide."""
    expansions = timm_expansions(body)
    if not expansions:
        raise EdgedepthError(f"expansions: timm encoder {name!r} has no block whose expansion width can change")
    if len(widths) != len(expansions) or any(int(w) < 1 for w in widths):
        raise EdgedepthError(f"expansions: {len(expansions)} positive widths for {name}'s expanding blocks "
                             f"({', '.join(e.block for e in expansions)}), got {list(widths)}")
    for expansion, width in zip(expansions, (int(w) for w in widths), strict=True):
        if width == expansion.width(body):
            continue
        produce, produce_norm = expansion.produce
        _set_module(body, produce, _conv_with(_conv_at(body, produce), None, width))
        for norm in (produce_norm, *(norm for _, norm in expansion.carry)):
            _set_module(body, norm, _norm_with(_norm_at(body, norm), width))
        for conv, _ in expansion.carry:
            _set_module(body, conv, _conv_with(_conv_at(body, conv), width, width))
        if expansion.se and not isinstance(body.get_submodule(expansion.se), nn.Identity):
            _set_module(body, f"{expansion.se}.conv_reduce",
                               _conv_with(_conv_at(body, f"{expansion.se}.conv_reduce"), width, None))
            _set_module(body, f"{expansion.se}.conv_expand",
                               _conv_with(_conv_at(body, f"{expansion.se}.conv_expand"), None, width))
        _set_module(body, expansion.consume, _conv_with(_conv_at(body, expansion.consume), width, None))


def _conv_at(body: nn.Module, path: str) -> nn.Conv2d:
    """The convolution at ``path`` of a block :func:`_resizable` admitted (so an ``nn.Conv2d``)."""
    return cast(nn.Conv2d, body.get_submodule(path))


def _norm_at(body: nn.Module, path: str) -> nn.BatchNorm2d:
    """The BatchNorm at ``path`` of a block :func:`_resizable` admitted (so an ``nn.BatchNorm2d``)."""
    return cast(nn.BatchNorm2d, body.get_submodule(path))


def _set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """``root``'s submodule at dotted ``path`` replaced by ``module`` (``nn.Module.set_submodule`` was merged in
    June 2024, at the edge of the torch>=2.4 this project supports)."""
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _conv_with(conv: nn.Conv2d, in_channels: int | None, out_channels: int | None) -> nn.Conv2d:
    """A fresh ``nn.Conv2d`` like ``conv`` with other channel counts (``None``: unchanged); depthwise stays so."""
    in_channels = conv.in_channels if in_channels is None else in_channels
    out_channels = conv.out_channels if out_channels is None else out_channels
    groups = in_channels if conv.groups > 1 else 1
    return nn.Conv2d(in_channels, out_channels, as_pair(conv.kernel_size), as_pair(conv.stride), padding_of(conv),
                     as_pair(conv.dilation), groups, conv.bias is not None, conv.padding_mode)


def _norm_with(norm: nn.BatchNorm2d, width: int) -> nn.BatchNorm2d:
    """A fresh BN of ``norm``'s class and settings, ``width`` channels wide, with its children (timm's
    ``BatchNormAct2d`` keeps its activation and dropout there)."""
    fresh = type(norm)(width, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                       track_running_stats=norm.track_running_stats)
    for child, module in norm.named_children():
        setattr(fresh, child, module)
    return fresh


class TorchvisionFeaturesEncoder(Encoder):
    """A torchvision classification model with a ``features`` Sequential (MobileNets, EfficientNets, ConvNeXt...).

    Reductions are measured once with a dummy input; the tap at a reduction is the last block at that scale.
    """

    def __init__(self, name: str, skip_reductions: Sequence[int], pretrained: bool = False) -> None:
        super().__init__()
        builder = torchvision.models.get_model_builder(name)
        if pretrained:
            backbone = load_pretrained(f"{name} (torchvision)", lambda: builder(weights="DEFAULT"))
        else:
            backbone = builder()
        features = getattr(backbone, "features", None)
        if not isinstance(features, nn.Sequential):
            raise EdgedepthError(f"torchvision model {name!r} has no 'features' stage to use as an encoder; try timm's")
        self.features = features
        scales = block_scales(self.features)
        last_at = {reduction: index for index, (reduction, _) in enumerate(scales)}
        final_reduction = scales[-1][0]
        tapped = [r for r in sorted(last_at) if r in skip_reductions and r != final_reduction]
        self.tap_indices = tuple(last_at[r] for r in tapped)
        self.feature_channels = (*(scales[i][1] for i in self.tap_indices), scales[-1][1])
        self.reductions = (*tapped, final_reduction)
        self.check_contract()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips: list[torch.Tensor] = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index in self.tap_indices:
                skips.append(x)
        return [*skips, x]
