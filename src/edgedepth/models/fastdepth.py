"""FastDepth students: an encoder, the NNConv5 decoder, and the registered builders.

- ``fastdepth_v3``: the seed's network (MobileNetV3-Large, taps at 1/2, 1/8, 1/16, bilinear upsampling).
- ``fastdepth``: the original FastDepth MobileNet-NNConv5(depthwise) with additive skips (nearest upsampling).
- ``fastdepth_<encoder>``: any timm or torchvision encoder behind the same decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD, Upsample
from edgedepth.core.sizes import DEFAULT_INPUT_SIZE
from edgedepth.models.decoder import NUM_STAGES, NNConv5Decoder
from edgedepth.models.encoders import (
    BOTTLENECK_REDUCTION,
    Encoder,
    MobileNetV1Encoder,
    MobileNetV3LargeEncoder,
    TimmEncoder,
    TorchvisionFeaturesEncoder,
)
from edgedepth.models.registry import (
    ENCODER_FAMILY_PREFIX,
    DepthNetwork,
    ModelInfo,
    register_encoder_family,
    register_model,
)

#: The seed's input normalisation (MiDaS-style mean = std = 0.5) and input size (width, height).
SEED_MEAN_STD = (0.5, 0.5, 0.5)
SEED_INPUT_SIZE = DEFAULT_INPUT_SIZE
#: FastDepth feeds RGB in [0, 1] unnormalised, at 224x224.
FASTDEPTH_INPUT_SIZE = (224, 224)
#: Skip reductions for encoders chosen by name: the seed's choice (1/2, 1/8, 1/16).
DEFAULT_SKIP_REDUCTIONS = (2, 8, 16)


class FastDepth(DepthNetwork):
    """Encoder + NNConv5 decoder. Input ``N x 3 x H x W`` (sides multiples of 32), output ``N x 1 x H x W``."""

    def __init__(
        self,
        encoder: Encoder,
        card: ModelCard,
        upsample: Upsample = "bilinear",
        detach_skips: bool = False,
        decoder_widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = NNConv5Decoder(
            encoder.feature_channels, encoder.reductions, upsample, detach_skips, decoder_widths
        )
        self.card = card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def without_final_upsample(self) -> tuple[nn.Module, Upsample]:
        """What an export runs: inference up to the last x2 upsampling (one channel at half resolution), and that
        upsampling's mode. The Predictor applies the rest (:func:`edgedepth.core.processing.final_upsample`)."""
        return _BeforeFinalUpsample(self), self.decoder.upsample


class _BeforeFinalUpsample(nn.Module):
    """A FastDepth's inference without its last x2 upsampling and ReLU (see ``NNConv5Decoder.before_final_upsample``)."""

    def __init__(self, model: FastDepth) -> None:
        super().__init__()
        self.model = model
        # In the wrapped network's mode: an exporter that restores the mode it found would otherwise put the
        # network in training mode (a fresh module's) after its export.
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.decoder.before_final_upsample(self.model.encoder(x))


@register_model(info=ModelInfo(
    family="fastdepth", licence="not stated",
    weights="the seed's model_0.449.pth (github.com/Glonor/monocular-depth-estimation, not published at a URL); "
    "or train your own (edgedepth train)",
    summary="the seed's student: torchvision MobileNetV3-Large, skips from the expansions of features 2, 7 and 11 "
            "(1/2, 1/8, 1/16), NNConv5 decoder, bilinear upsampling",
))
def fastdepth_v3(
    pretrained: bool = False,
    detach_skips: bool = False,
    expansions: Sequence[int] | None = None,
    decoder_widths: Sequence[int] | None = None,
) -> FastDepth:
    """The seed's student: MobileNetV3-Large + NNConv5, 3,638,714 parameters, 256x192 input.

    ``detach_skips=True`` reproduces the seed's training exactly (its hooks detach the skip tensors,
    so no gradient reaches the encoder through them); leave it off otherwise. ``expansions`` (the 15
    inverted-residual blocks' expansion widths) and ``decoder_widths`` (the 5 stages') describe a pruned network
    (``edgedepth prune``); the card records them, so the weights file rebuilds it.
    """
    model_args: dict[str, object] = {"detach_skips": True} if detach_skips else {}
    if expansions is not None:
        model_args["expansions"] = [int(w) for w in expansions]
    if decoder_widths is not None:
        model_args["decoder_widths"] = [int(w) for w in decoder_widths]
    card = ModelCard(
        name="fastdepth_v3",
        model_args=model_args,
        input_size=SEED_INPUT_SIZE,
        mean=SEED_MEAN_STD,
        std=SEED_MEAN_STD,
    )
    encoder = MobileNetV3LargeEncoder(pretrained=pretrained, expansions=expansions)
    return FastDepth(encoder, card, "bilinear", detach_skips, decoder_widths)


@register_model(info=ModelInfo(
    family="fastdepth", licence="not stated",
    weights="http://datasets.lids.mit.edu/fast-depth/results/ (mobilenet-nnconv5dw-skipadd; the pruned one "
    "does not fit: its widths differ)",
    summary="FastDepth: MobileNet v1 (ReLU6), skips from layers 1, 3 and 5 (1/2, 1/4, 1/8), NNConv5 depthwise "
            "decoder, additive skips, nearest upsampling",
))
def fastdepth(pretrained: bool = False) -> FastDepth:
    """The original FastDepth MobileNet-NNConv5(depthwise) with additive skips, 3,960,930 parameters."""
    if pretrained:
        raise EdgedepthError(
            "fastdepth has no ImageNet encoder weights on a hub; convert FastDepth's trained model with "
            "`edgedepth convert` or build it with pretrained=False"
        )
    card = ModelCard(
        name="fastdepth", input_size=FASTDEPTH_INPUT_SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
    )
    return FastDepth(MobileNetV1Encoder(), card, "nearest")


#: ``fastdepth_<encoder>`` students that ``list_models`` shows: a timm and a torchvision encoder the tests build.
FAMILY_MEMBERS = ("efficientnet_lite0", "mobilenet_v2")


def _is_timm_model(name: str) -> bool:
    import timm

    return timm.is_model(name)


def _is_torchvision_model(name: str) -> bool:
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def is_known_encoder(name: str) -> bool:
    """Whether ``fastdepth_<name>`` can be built: timm or torchvision has an encoder of that name."""
    return _is_timm_model(name) or _is_torchvision_model(name)


@register_encoder_family(members=FAMILY_MEMBERS, knows=is_known_encoder)
def fastdepth_encoder(
    encoder: str,
    pretrained: bool = False,
    skip_reductions: Sequence[int] | None = None,
    upsample: Upsample = "bilinear",
    detach_skips: bool = False,
    expansions: Sequence[int] | None = None,
    decoder_widths: Sequence[int] | None = None,
) -> FastDepth:
    """``fastdepth_<encoder>``: a timm model (preferred) or a torchvision one with a ``features`` stage.

    ``skip_reductions`` picks the skip taps; by default the seed's (1/2, 1/8, 1/16), as far as the encoder
    has features there. Asking for a reduction the encoder does not offer is an error. ``expansions`` (timm
    encoders only: one width per block :func:`~edgedepth.models.encoders.timm_expansions` finds) and
    ``decoder_widths`` (the 5 stages') describe a pruned network (``edgedepth prune``); the card records them.
    """
    requested = skip_reductions is not None
    skip_reductions = tuple(int(r) for r in skip_reductions) if skip_reductions is not None else DEFAULT_SKIP_REDUCTIONS
    allowed = {BOTTLENECK_REDUCTION >> stage for stage in range(1, NUM_STAGES)}
    if not set(skip_reductions) <= allowed:
        raise EdgedepthError(f"skip_reductions {list(skip_reductions)}: each must be one of {sorted(allowed)}")
    if _is_timm_model(encoder):
        body: TimmEncoder | TorchvisionFeaturesEncoder = TimmEncoder(encoder, skip_reductions, pretrained, expansions)
        mean, std = body.default_mean, body.default_std
    elif expansions is not None:
        raise EdgedepthError(f"expansions: {encoder!r} is not a timm encoder; only timm encoders take expansion widths")
    elif _is_torchvision_model(encoder):
        body = TorchvisionFeaturesEncoder(encoder, skip_reductions, pretrained)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        raise EdgedepthError(f"unknown encoder {encoder!r}: not a timm model nor a torchvision classification model")
    unavailable = set(skip_reductions) - set(body.reductions[:-1])
    if requested and unavailable:
        raise EdgedepthError(
            f"encoder {encoder!r} has no feature at reduction(s) {sorted(unavailable)} for a skip; "
            f"it offers {sorted(set(body.reductions[:-1]))}"
        )
    model_args: dict[str, object] = {"encoder": encoder}
    if requested:
        model_args["skip_reductions"] = list(skip_reductions)
    if upsample != "bilinear":
        model_args["upsample"] = upsample
    if detach_skips:
        model_args["detach_skips"] = True
    if expansions is not None:
        model_args["expansions"] = [int(w) for w in expansions]
    if decoder_widths is not None:
        model_args["decoder_widths"] = [int(w) for w in decoder_widths]
    card = ModelCard(
        name=ENCODER_FAMILY_PREFIX + encoder,
        model_args=model_args,
        input_size=SEED_INPUT_SIZE,
        mean=tuple(mean),  # type: ignore[arg-type]
        std=tuple(std),  # type: ignore[arg-type]
    )
    return FastDepth(body, card, upsample, detach_skips, decoder_widths)
