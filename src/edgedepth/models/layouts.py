"""The checkpoint layouts ``edgedepth convert`` knows: how other projects' keys map onto our registered networks.

Each layout is recognised by key prefixes that all appear in a checkpoint (its ``signature``), renames keys by a
table of prefix pairs (theirs -> ours), and names the registered model the tensors become, fixed or read from the
tensors' shapes (ZipDepth's size and options). Facts only: the renaming and checking machinery is
:mod:`edgedepth.models.convert`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from edgedepth.core.errors import EdgedepthError

State = Mapping[str, torch.Tensor]
#: ``(model name, constructor arguments)`` of the network a checkpoint's tensors fit.
Resolution = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class SourceLayout:
    """A checkpoint layout we convert: the network it becomes and how its keys map onto it.

    Attributes:
        name: Short identifier, recorded as ``converted_from`` in the weights' provenance.
        model: The registered network that computes what the source network computes (or, with ``resolve``, the
            family's name for messages).
        title: The source network, for messages.
        keys: What its keys look like, for messages.
        signature: Key prefixes that, all present, identify the layout.
        prefixes: ``(theirs, ours)`` key prefix pairs; every source key must start with one of them.
        ignored: Source key prefixes dropped on purpose (parts our network does not have).
        resolve: For a layout that covers several networks, the one these tensors fit, from their shapes.
        card_tensors: ``{source key: card field}``: tensors that are facts of the card, not weights (ZipDepth's
            normalisation buffers); each must be present and holds three values.
        split: A rewrite of the source tensors before renaming (Depth Anything's fused q/k/v projections).
        through_transformers: The renamed keys are those of the checkpoints transformers publishes, and its own
            loader (which maps them onto its current module names) loads them (Depth Anything).
    """

    name: str
    model: str
    title: str
    keys: str
    signature: tuple[str, ...]
    prefixes: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()
    resolve: Callable[[State, str], Resolution] | None = None
    card_tensors: tuple[tuple[str, str], ...] = ()
    split: Callable[[State], dict[str, torch.Tensor]] | None = None
    through_transformers: bool = False

    def matches(self, keys: list[str]) -> bool:
        return all(any(key.startswith(prefix) for key in keys) for prefix in self.signature)

    def resolution(self, state: State, what: str) -> Resolution:
        return self.resolve(state, what) if self.resolve is not None else (self.model, {})


# ------------------------------------------------------------------------------------ the seed and FastDepth

#: FastDepth's NNConv5 decoder (also the seed's): ``decode_conv1..5`` are our stages, ``decode_conv6`` our head.
_DECODER_PREFIXES = (
    *((f"decode_conv{i}.", f"decoder.stages.{i - 1}.") for i in range(1, 6)),
    ("decode_conv6.", "decoder.head."),
)

SEED_LAYOUT = SourceLayout(
    name="seed_mobilenetv3_skipadd",
    model="fastdepth_v3",
    title="the seed's MobileNetV3SkipAdd",
    keys="original_model.features.*, decode_conv1..6.*",
    signature=("original_model.features.", "decode_conv1."),
    prefixes=(("original_model.features.", "encoder.features."), *_DECODER_PREFIXES),
    ignored=("original_model.classifier.",),
)

FASTDEPTH_LAYOUT = SourceLayout(
    name="fastdepth_mobilenet_skipadd",
    model="fastdepth",
    title="FastDepth's MobileNetSkipAdd",
    keys="conv0..13.*, decode_conv1..6.*",
    signature=("conv0.", "decode_conv1."),
    prefixes=(*((f"conv{i}.", f"encoder.layers.{i}.") for i in range(14)), *_DECODER_PREFIXES),
)


# ------------------------------------------------------------------------------------------------- ZipDepth


def _zipdepth_resolution(state: State, what: str) -> Resolution:
    """ZipDepth's variant from its stage widths and depths, ``global_mode`` and head from the blocks present."""
    from edgedepth.models.zipdepth import variant_of

    def width(key: str) -> int:
        if key not in state:
            raise EdgedepthError(f"{what}: a ZipDepth checkpoint without {key} (incomplete or another network)")
        return int(state[key].shape[0])

    dims = (width("encoder.stage1.0.branch_3x3.0.weight"), *(width(f"encoder.down{k}.branch_3x3.0.weight")
                                                              for k in (2, 3, 4)))
    depths = tuple(
        len({match.group(1) for key in state if (match := re.match(rf"encoder\.stage{k}\.(\d+)\.branch_3x3\.", key))})
        for k in (1, 2, 3, 4)
    )
    variant = variant_of(dims, depths)
    if variant is None:
        raise EdgedepthError(
            f"{what}: a ZipDepth checkpoint with stage widths {list(dims)} and depths {list(depths)}, which are not "
            "those of zipdepth_small, _base, _large or _giant"
        )
    args: dict[str, Any] = {}
    if any(re.match(r"encoder\.stage4\.\d+\.tokens$", key) for key in state):
        args["global_mode"] = "full"
    elif not any(re.match(r"encoder\.stage3\.\d+\.context_weight\.", key) for key in state):
        args["global_mode"] = "none"
    if any(key.startswith("decoder.convex_up.where_conv.") for key in state):
        args["upsample"] = "blend"
    return f"zipdepth_{variant}", args


ZIPDEPTH_LAYOUT = SourceLayout(
    name="zipdepth",
    model="zipdepth_base",
    title="ZipDepth",
    keys="encoder.stem_half.*, decoder.convex_up.*, mean, std",
    signature=("encoder.stem_half.conv.", "decoder.convex_up."),
    prefixes=(("encoder.", "encoder."), ("decoder.", "decoder.")),
    resolve=_zipdepth_resolution,
    card_tensors=(("mean", "mean"), ("std", "std")),
)


# ------------------------------------------------------------------------------------------ MiDaS v2.1 small

#: MiDaS's ``_make_efficientnet_backbone``: layer1 = conv_stem, bn1, act1, blocks[0:2]; layer2 = blocks[2];
#: layer3 = blocks[3:5]; layer4 = blocks[5:9] (Lite3 has seven stages, so blocks 5 and 6).
_MIDAS_ENCODER_PREFIXES = (
    ("pretrained.layer1.0.", "encoder.conv_stem."),
    ("pretrained.layer1.1.", "encoder.bn1."),
    ("pretrained.layer1.3.", "encoder.blocks.0."),
    ("pretrained.layer1.4.", "encoder.blocks.1."),
    ("pretrained.layer2.0.", "encoder.blocks.2."),
    ("pretrained.layer3.0.", "encoder.blocks.3."),
    ("pretrained.layer3.1.", "encoder.blocks.4."),
    ("pretrained.layer4.0.", "encoder.blocks.5."),
    ("pretrained.layer4.1.", "encoder.blocks.6."),
)
#: ``scratch.layer{k}_rn`` project the taps; ``refinenet{k}`` fuse level k-1 (resConfUnit1 takes the skip);
#: ``output_conv`` is the head (indices 0, 2, 4 hold weights).
_MIDAS_DECODER_PREFIXES = (
    *((f"scratch.layer{k}_rn.", f"decoder.project.{k - 1}.") for k in range(1, 5)),
    *((f"scratch.refinenet{k}.resConfUnit1.", f"decoder.fusion.{k - 1}.skip_unit.") for k in range(1, 5)),
    *((f"scratch.refinenet{k}.resConfUnit2.", f"decoder.fusion.{k - 1}.unit.") for k in range(1, 5)),
    *((f"scratch.refinenet{k}.out_conv.", f"decoder.fusion.{k - 1}.out_conv.") for k in range(1, 5)),
    ("scratch.output_conv.", "decoder.head."),
)

MIDAS_SMALL_LAYOUT = SourceLayout(
    name="midas_v21_small",
    model="midas_v21_small",
    title="MiDaS v2.1 small (MidasNet_small)",
    keys="pretrained.layer1..4.*, scratch.*",
    signature=("pretrained.layer1.0.", "scratch.refinenet4."),
    prefixes=(*_MIDAS_ENCODER_PREFIXES, *_MIDAS_DECODER_PREFIXES),
)


# ------------------------------------------------------------------------------------------ Depth Anything V2

#: Deep enough for every DINOv2 size (ViT-G has 40 blocks).
_MAX_BLOCKS = 40
_DA_BACKBONE_BLOCK = (
    ("ls1.gamma", "layer_scale1.lambda1"), ("ls2.gamma", "layer_scale2.lambda1"), ("norm1.", "norm1."),
    ("norm2.", "norm2."), ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2."), ("attn.proj.", "attention.output.dense."),
    ("attn.q.", "attention.attention.query."), ("attn.k.", "attention.attention.key."),
    ("attn.v.", "attention.attention.value."),
)
#: The original DPT head's ``refinenet{i}`` is transformers' fusion layer ``4 - i``.
_DA_FUSION_UNIT = (("out_conv.", "projection."), ("resConfUnit1.conv1.", "residual_layer1.convolution1."),
                   ("resConfUnit1.conv2.", "residual_layer1.convolution2."),
                   ("resConfUnit2.conv1.", "residual_layer2.convolution1."),
                   ("resConfUnit2.conv2.", "residual_layer2.convolution2."))
#: The original repository's keys (``depth_anything_v2/dpt.py``, DINOv2's ``vision_transformer.py``) against those of
#: the checkpoints transformers publishes (``Depth-Anything-V2-*-hf``; the table of transformers' conversion script
#: ``convert_depth_anything_to_hf.py``, which its package does not ship). transformers' loader maps these onto its
#: current module names (``attention.attention.query`` became ``attention.q_proj``) with its own conversion rules.
_DEPTH_ANYTHING_PREFIXES = (
    ("pretrained.cls_token", "backbone.embeddings.cls_token"),
    ("pretrained.mask_token", "backbone.embeddings.mask_token"),
    ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
    ("pretrained.patch_embed.proj.", "backbone.embeddings.patch_embeddings.projection."),
    *((f"pretrained.blocks.{i}.{theirs}", f"backbone.encoder.layer.{i}.{ours}")
      for i in range(_MAX_BLOCKS) for theirs, ours in _DA_BACKBONE_BLOCK),
    ("pretrained.norm.", "backbone.layernorm."),
    *((f"depth_head.projects.{i}.", f"neck.reassemble_stage.layers.{i}.projection.") for i in range(4)),
    *((f"depth_head.resize_layers.{i}.", f"neck.reassemble_stage.layers.{i}.resize.") for i in (0, 1, 3)),
    *((f"depth_head.scratch.refinenet{i}.{theirs}", f"neck.fusion_stage.layers.{4 - i}.{ours}")
      for i in range(1, 5) for theirs, ours in _DA_FUSION_UNIT),
    *((f"depth_head.scratch.layer{i + 1}_rn.", f"neck.convs.{i}.") for i in range(4)),
    ("depth_head.scratch.output_conv1.", "head.conv1."),
    ("depth_head.scratch.output_conv2.0.", "head.conv2."),
    ("depth_head.scratch.output_conv2.2.", "head.conv3."),
)


def split_qkv(state: State) -> dict[str, torch.Tensor]:
    """Each block's fused ``attn.qkv`` projection as the three transformers keeps (q, k, v stacked in that order)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = re.fullmatch(r"(pretrained\.blocks\.\d+\.attn\.)qkv\.(weight|bias)", key)
        if match is None:
            out[key] = tensor
            continue
        if tensor.shape[0] % 3:
            raise EdgedepthError(f"{key} has shape {tuple(tensor.shape)}: not three stacked projections")
        for part, chunk in zip("qkv", tensor.chunk(3), strict=True):
            out[f"{match.group(1)}{part}.{match.group(2)}"] = chunk
    return out


def _depth_anything_resolution(state: State, what: str) -> Resolution:
    """The variant from the ViT's width (the class token's last dimension)."""
    token = state.get("pretrained.cls_token", state.get("backbone.embeddings.cls_token"))
    width = int(token.shape[-1]) if token is not None else None
    variant = {384: "small", 768: "base"}.get(width)  # type: ignore[arg-type]
    if variant is None:
        raise EdgedepthError(
            f"{what}: a Depth Anything checkpoint with a ViT of width {width}; edgedepth runs ViT-S (384) and "
            "ViT-B (768): depth_anything_v2_small and _base"
        )
    return f"depth_anything_v2_{variant}", {}


DEPTH_ANYTHING_LAYOUT = SourceLayout(
    name="depth_anything_v2",
    model="depth_anything_v2_small",
    title="Depth Anything V2 (original repository)",
    keys="pretrained.* (DINOv2), depth_head.*",
    signature=("pretrained.blocks.0.attn.qkv.", "depth_head.scratch."),
    prefixes=_DEPTH_ANYTHING_PREFIXES,
    resolve=_depth_anything_resolution,
    split=split_qkv,
    through_transformers=True,
)

#: A transformers ``DepthAnythingForDepthEstimation`` state dict saved with torch (``pytorch_model.bin``), in the
#: published names or the current ones. (A ``save_pretrained`` folder converts through its config instead.)
DEPTH_ANYTHING_TRANSFORMERS_LAYOUT = SourceLayout(
    name="depth_anything_v2_transformers",
    model="depth_anything_v2_small",
    title="Depth Anything V2 (transformers state dict)",
    keys="backbone.*, neck.*, head.*",
    signature=("backbone.embeddings.", "neck.fusion_stage."),
    prefixes=(("backbone.", "backbone."), ("neck.", "neck."), ("head.", "head.")),
    resolve=_depth_anything_resolution,
)

LAYOUTS: tuple[SourceLayout, ...] = (
    SEED_LAYOUT, FASTDEPTH_LAYOUT, ZIPDEPTH_LAYOUT, MIDAS_SMALL_LAYOUT, DEPTH_ANYTHING_LAYOUT,
    DEPTH_ANYTHING_TRANSFORMERS_LAYOUT,
)
