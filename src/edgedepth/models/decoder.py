"""FastDepth's NNConv5 decoder, built from an encoder's feature description.

Five stages, each a 5x5 depthwise conv + BN + ReLU and a pointwise conv + BN + ReLU, then x2 upsampling;
a skip is added after the stage whose output reaches the skip's scale. A stage's width is the width of the
skip it receives, otherwise half of the previous stage's (at least ``MIN_WIDTH``), or as given (a pruned decoder). A pointwise conv + BN + ReLU
to one channel ends it, so the output (relative inverse depth) is non-negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import Upsample

NUM_STAGES = 5
KERNEL_SIZE = 5
MIN_WIDTH = 16


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, groups: int = 1) -> Conv2dNormActivation:
    return Conv2dNormActivation(
        in_channels, out_channels, kernel_size, groups=groups, bias=False, activation_layer=nn.ReLU, inplace=True
    )


class NNConvStage(nn.Sequential):
    """Depthwise ``k x k`` + pointwise, each with BN + ReLU (FastDepth's ``decode_conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__(
            _conv_bn_relu(in_channels, in_channels, kernel_size, groups=in_channels),
            _conv_bn_relu(in_channels, out_channels, 1),
        )


def stage_widths(bottleneck_channels: int, skip_channels_at: dict[int, int], bottleneck_reduction: int) -> list[int]:
    """Output width of each decoder stage: the skip's width where a skip lands, else half the previous."""
    widths, width, reduction = [], bottleneck_channels, bottleneck_reduction
    for _ in range(NUM_STAGES):
        reduction //= 2
        width = skip_channels_at.get(reduction, max(width // 2, MIN_WIDTH))
        widths.append(width)
    return widths


class NNConv5Decoder(nn.Module):
    """The decoder. ``forward`` takes the encoder's feature list (skips, then bottleneck)."""

    def __init__(
        self,
        feature_channels: Sequence[int],
        reductions: Sequence[int],
        upsample: Upsample = "bilinear",
        detach_skips: bool = False,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        *skip_channels, bottleneck_channels = feature_channels
        *skip_reductions, bottleneck_reduction = reductions
        skips = dict(zip(skip_reductions, skip_channels, strict=True))
        default = stage_widths(bottleneck_channels, skips, bottleneck_reduction)
        widths = default if widths is None else [int(w) for w in widths]
        tied = [bottleneck_reduction >> (stage + 1) in skips for stage in range(NUM_STAGES)]
        if len(widths) != NUM_STAGES or any(w < 1 for w in widths) or any(
            t and w != d for t, w, d in zip(tied, widths, default, strict=True)
        ):
            raise EdgedepthError(
                f"decoder widths {widths}: {NUM_STAGES} positive widths, those of stages that receive a skip equal "
                f"to the skip's width ({default})"
            )
        self.widths = tuple(widths)
        self.stages = nn.ModuleList(
            NNConvStage(w_in, w_out) for w_in, w_out in zip([bottleneck_channels, *widths[:-1]], widths, strict=True)
        )
        self.head = _conv_bn_relu(widths[-1], 1, 1)
        # For stage i, the index in the feature list of the skip added after it, or -1.
        reduction_to_feature = {r: i for i, r in enumerate(skip_reductions)}
        self.skip_after_stage = [
            reduction_to_feature.get(bottleneck_reduction >> (stage + 1), -1) for stage in range(NUM_STAGES)
        ]
        # The last stage's output is upsampled to the input's scale, where no encoder has a skip.
        unused = set(skip_reductions) - {bottleneck_reduction >> (s + 1) for s in range(NUM_STAGES - 1)}
        if unused:
            raise ValueError(f"skips at reductions {sorted(unused)} fall on no decoder stage before the last")
        self.upsample = upsample
        self.detach_skips = detach_skips

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.training:
            return self.head(self._upsample(self._stages(features)))
        return self.final_upsample(self.before_final_upsample(features))

    def _stages(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The five stages with their upsampling and skips, but for the last stage's upsampling."""
        x = features[-1]
        for stage, skip_index in zip(self.stages[:-1], self.skip_after_stage[:-1], strict=True):
            x = self._upsample(stage(x))
            if skip_index >= 0:
                skip = features[skip_index]
                x = x + (skip.detach() if self.detach_skips else skip)
        return self.stages[-1](x)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "bilinear":
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def before_final_upsample(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Inference up to the last x2 upsampling: the head's conv and BN at half resolution, one channel.

        ``head(upsample(x))`` equals ``relu(upsample(bn(conv(x))))``: the head's 1x1 conv and (inference) BN act on
        each pixel's channels alone, and the x2 upsampling on each channel alone with weights summing to 1, so the
        two commute; only the ReLU must come last. Upsampling one channel instead of the last stage's 32 saves a
        fifth of an INT8 CPU run, and an export may end here (the Predictor then upsamples, see
        :func:`edgedepth.core.processing.final_upsample`). Training keeps the literal order, since BN's batch
        statistics would be taken over other pixels.
        """
        *linear, _ = self.head
        x = self._stages(features)
        for layer in linear:
            x = layer(x)
        return x

    def final_upsample(self, x: torch.Tensor) -> torch.Tensor:
        """The rest of inference after :meth:`before_final_upsample`: x2 upsampling, then the head's ReLU."""
        return self.head[-1](self._upsample(x))
