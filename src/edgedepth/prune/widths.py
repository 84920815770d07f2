"""The widths NetAdapt prunes: the layer groups of a student, and the surgery that removes filters from one.

The layer groups are each expanding block's expansion width and each decoder stage's width; a block whose expansion is
a skip tap and the decoder stage that receives that skip are one group (their widths stay tied). What an expanding
block is and which tensors index its width is the student's layout (:class:`Block`, from :func:`encoder_blocks`):
torchvision's MobileNetV3 for ``fastdepth_v3`` (skips are expansions; the SE squeeze follows, torchvision's rule, a
quarter of the expansion), timm's blocks otherwise (skips are stage outputs, which are not pruned, so the decoder
stages receiving them keep their widths; an SE keeps its squeeze width). Either way the card's ``expansions`` and
``decoder_widths`` rebuild the network. The filters with the smallest L1 norms go first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from edgedepth.core.errors import EdgedepthError
from edgedepth.models import DepthNetwork, create_model
from edgedepth.models.decoder import NNConv5Decoder
from edgedepth.models.encoders import MobileNetV3LargeEncoder, TimmEncoder, timm_expansions

#: The students whose widths the registry rebuilds from their cards (``expansions``, ``decoder_widths``).
PRUNABLE = ("fastdepth_v3 and fastdepth_<timm encoder> students with MobileNet/EfficientNet blocks "
            "(e.g. fastdepth_mobilenetv4_conv_small)")


@dataclass(frozen=True)
class Block:
    """An encoder block whose expansion width is prunable, in one student's layout (see :func:`encoder_blocks`)."""

    #: As the encoder numbers it: ``"2"`` (fastdepth_v3's ``features[2]``), ``"2.1"`` (timm's ``blocks.2.1``).
    name: str
    #: Its place in the card's ``expansions``.
    index: int
    #: State key of the convolution that produces the width: its filters' L1 norms rank the channels.
    score: str
    #: ``(state key, dim)`` of every tensor of the block whose ``dim`` indexes the width.
    slices: tuple[tuple[str, int], ...]
    #: The encoder feature (skip) this expansion is, tying it to the decoder stage that receives it; ``None``: none.
    tap: int | None = None
    #: A width the block must not take (torchvision drops the expansion convolution at its input width).
    input_width: int | None = None
    #: State prefix of an SE whose squeeze width is rebuilt from the expansion (torchvision's rule).
    squeeze: str | None = None


@dataclass(frozen=True)
class Group:
    """One prunable width: a block's expansion (``block``), a decoder stage's (``stage``), or both, tied."""

    block: Block | None
    stage: int | None

    @property
    def name(self) -> str:
        return "+".join(part for part in (
            f"block{self.block.name}" if self.block is not None else "",
            f"stage{self.stage}" if self.stage is not None else "") if part)


def _norm_slices(prefix: str) -> list[tuple[str, int]]:
    return [(f"{prefix}.{name}", 0) for name in ("weight", "bias", "running_mean", "running_var")]


def _unprunable(model: DepthNetwork) -> EdgedepthError:
    return EdgedepthError(f"a {model.card.name}; prune takes {PRUNABLE}")


def _student(model: DepthNetwork) -> tuple[MobileNetV3LargeEncoder | TimmEncoder, NNConv5Decoder]:
    """The encoder and decoder of a FastDepth student whose encoder prune knows; any other network is refused."""
    encoder, decoder = getattr(model, "encoder", None), getattr(model, "decoder", None)
    if not isinstance(encoder, MobileNetV3LargeEncoder | TimmEncoder) or not isinstance(decoder, NNConv5Decoder):
        raise _unprunable(model)
    return encoder, decoder


def encoder_blocks(model: DepthNetwork) -> list[Block]:
    """The student's expanding blocks, from the layout of its encoder (torchvision's MobileNetV3 or timm's)."""
    encoder, _ = _student(model)
    if isinstance(encoder, MobileNetV3LargeEncoder):
        return _mobilenet_v3_blocks(encoder)
    blocks = _timm_blocks(encoder)
    if not blocks:
        raise _unprunable(model)
    return blocks


def _mobilenet_v3_blocks(encoder: MobileNetV3LargeEncoder) -> list[Block]:
    """torchvision's MobileNetV3 ``features[1..15]``: the blocks with a 1x1 expansion convolution (``block.0``);
    depthwise ``block.1``; an SE ``block.2`` (its squeeze follows, a quarter of the expansion); projection last.
    A tapped expansion is a skip. The first block has no expansion convolution: its width is its input's."""
    features, blocks = encoder.features, []
    for index in range(1, len(features) - 1):
        first = features[index].block[0][0]
        if first.kernel_size != (1, 1) or first.groups != 1:  # torchvision drops the expansion at ratio 1
            continue
        p = f"encoder.features.{index}.block"
        has_se = hasattr(features[index].block[2], "fc1")
        project = 3 if has_se else 2
        slices = [(f"{p}.0.0.weight", 0), *_norm_slices(f"{p}.0.1"), (f"{p}.1.0.weight", 0),
                  *_norm_slices(f"{p}.1.1"), (f"{p}.{project}.0.weight", 1)]
        if has_se:
            slices += [(f"{p}.2.fc1.weight", 1), (f"{p}.2.fc2.weight", 0), (f"{p}.2.fc2.bias", 0)]
        blocks.append(Block(
            name=str(index), index=index - 1, score=f"{p}.0.0.weight", slices=tuple(slices),
            tap=encoder.taps.index(index) if index in encoder.taps else None, input_width=first.in_channels,
            squeeze=f"{p}.2" if has_se else None,
        ))
    return blocks


def _timm_blocks(encoder: TimmEncoder) -> list[Block]:
    """timm's MobileNet/EfficientNet blocks that :func:`~edgedepth.models.encoders.timm_expansions` finds. A skip
    is a stage's output, never an expansion, so no block is tied to a decoder stage; an SE's squeeze width stays."""
    body = encoder.body

    def conv(path: str, dim: int) -> list[tuple[str, int]]:
        bias = [(f"encoder.body.{path}.bias", dim)] if dim == 0 and body.get_submodule(path).bias is not None else []
        return [(f"encoder.body.{path}.weight", dim), *bias]

    blocks = []
    for index, expansion in enumerate(timm_expansions(body)):
        produce, norm = expansion.produce
        slices = [*conv(produce, 0), *_norm_slices(f"encoder.body.{norm}")]
        for carry, carry_norm in expansion.carry:
            slices += [*conv(carry, 0), *_norm_slices(f"encoder.body.{carry_norm}")]
        if expansion.se and not isinstance(body.get_submodule(expansion.se), nn.Identity):
            slices += [*conv(f"{expansion.se}.conv_reduce", 1), *conv(f"{expansion.se}.conv_expand", 0)]
        slices += conv(expansion.consume, 1)
        blocks.append(Block(name=expansion.block.removeprefix("blocks."), index=index,
                            score=f"encoder.body.{produce}.weight", slices=tuple(slices)))
    return blocks


def widths_of(model: DepthNetwork) -> tuple[list[int], list[int]]:
    """``(expansions, decoder_widths)``: the constructor arguments that rebuild the student."""
    encoder, decoder = _student(model)
    return list(encoder.expansions), list(decoder.widths)


def layer_groups(model: DepthNetwork) -> list[Group]:
    """The prunable groups: expanding blocks (tied to the decoder stage that receives them, where they are a
    skip), then the decoder stages that receive no skip. A stage that receives an unprunable skip (timm's: a
    stage's output) keeps that skip's width, so it is no group."""
    _, decoder = _student(model)
    tap_stage: dict[int | None, int] = {skip: stage for stage, skip in enumerate(decoder.skip_after_stage) if skip >= 0}
    groups = [Group(block, tap_stage.get(block.tap)) for block in encoder_blocks(model)]
    return groups + [Group(None, stage) for stage, skip in enumerate(decoder.skip_after_stage) if skip < 0]


def group_width(model: DepthNetwork, group: Group) -> int:
    expansions, decoder_widths = widths_of(model)
    if group.block is not None:
        return expansions[group.block.index]
    assert group.stage is not None  # a group is a block, a decoder stage or both
    return decoder_widths[group.stage]


def allowed_width(model: DepthNetwork, group: Group, keep: int) -> int:
    """``keep``, or one less where a block's expansion would equal its input width (torchvision would then drop the
    expansion convolution, changing the block's layout)."""
    if group.block is not None and keep == group.block.input_width:
        return keep - 1
    return keep


def _slices(model: DepthNetwork, group: Group) -> list[tuple[str, int]]:
    """``(state key, dim)`` of every tensor whose ``dim`` indexes the group's channels."""
    plan: list[tuple[str, int]] = list(group.block.slices) if group.block is not None else []
    if group.stage is not None:
        q = f"decoder.stages.{group.stage}"
        plan += [(f"{q}.1.0.weight", 0), *_norm_slices(f"{q}.1.1")]
        if group.stage + 1 < len(_student(model)[1].stages):
            n = f"decoder.stages.{group.stage + 1}"
            plan += [(f"{n}.0.0.weight", 0), *_norm_slices(f"{n}.0.1"), (f"{n}.1.0.weight", 1)]
        else:
            plan += [("decoder.head.0.weight", 1)]
    return plan


def _filter_l1(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter, divided by their mean (so tied layers count alike)."""
    norms = weight.detach().abs().flatten(1).sum(1)
    return norms / norms.mean().clamp_min(1e-12)


def prune_group(model: DepthNetwork, group: Group, keep: int) -> DepthNetwork:
    """A new network with ``keep`` of the group's filters: those of largest L1 norm, weights sliced physically.

    The same channel indices go from every layer the group's width touches (producing conv and BN, depthwise conv,
    consuming conv, the SE's convolutions; for a tied group the skip's block and the decoder stage alike). The
    network is rebuilt from its card with the new widths (``create_model(name, expansions=..., decoder_widths=...)``).
    """
    keep = allowed_width(model, group, keep)
    state = model.state_dict()
    scores = torch.zeros(group_width(model, group))
    if group.block is not None:
        scores += _filter_l1(state[group.block.score])
    if group.stage is not None:
        scores += _filter_l1(state[f"decoder.stages.{group.stage}.1.0.weight"])
    kept = torch.sort(torch.topk(scores, keep).indices).values
    expansions, decoder_widths = widths_of(model)
    if group.block is not None:
        expansions[group.block.index] = keep
    if group.stage is not None:
        decoder_widths[group.stage] = keep
    args = {**model.card.model_args, "expansions": expansions, "decoder_widths": decoder_widths}
    pruned = create_model(model.card.name, **args)
    pruned.card = dataclasses.replace(model.card, model_args=pruned.card.model_args)
    state = dict(state)
    for key, dim in _slices(model, group):
        state[key] = state[key].index_select(dim, kept)
    if group.block is not None and group.block.squeeze is not None:
        _slice_squeeze(state, group.block.squeeze, pruned)
    pruned.load_state_dict(state)
    return pruned.eval()


def _slice_squeeze(state: dict[str, torch.Tensor], prefix: str, pruned: nn.Module) -> None:
    """The SE's squeeze width follows the expansion: keep its largest-L1 squeeze filters, as many as it now has."""
    squeeze = pruned.state_dict()[f"{prefix}.fc1.weight"].shape[0]
    fc1 = state[f"{prefix}.fc1.weight"]
    if fc1.shape[0] == squeeze:
        return
    kept = torch.sort(torch.topk(_filter_l1(fc1), squeeze).indices).values
    state[f"{prefix}.fc1.weight"] = fc1.index_select(0, kept)
    state[f"{prefix}.fc1.bias"] = state[f"{prefix}.fc1.bias"].index_select(0, kept)
    state[f"{prefix}.fc2.weight"] = state[f"{prefix}.fc2.weight"].index_select(1, kept)
