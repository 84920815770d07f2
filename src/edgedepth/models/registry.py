"""The model registry: ``create_model(name)`` is the only door, ``list_models()`` lists what is behind it.

A model built here carries a :class:`ModelCard` (its name, constructor arguments, input size and
normalisation), so its weights file can rebuild it with no other flag. Each registered name also has a
:class:`ModelInfo`: its family and where its trained weights come from (what ``edgedepth models`` prints).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar, cast, overload

from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError

#: Prefix of the open family of students built on any timm or torchvision encoder.
ENCODER_FAMILY_PREFIX = "fastdepth_"




class DepthNetwork(nn.Module):
    """A registered network: an nn.Module that carries its ModelCard (what rebuilds it, its input size and
    normalisation)."""

    card: ModelCard


@dataclass(frozen=True)
class ModelInfo:
    """Where a registered network comes from, beside its builder.

    Attributes:
        family: The architecture family (``fastdepth``, ``zipdepth``, ``midas``, ``depth_anything``).
        licence: The licence of the upstream trained weights (or of the code, where no weights exist).
        weights: Where a user downloads trained weights: a URL written as text, never fetched by edgedepth,
            or a sentence saying there are none.
        summary: One line on what the network is.
    """

    family: str
    licence: str
    weights: str
    summary: str = ""


Builder = Callable[..., DepthNetwork]
_BUILDERS: dict[str, Builder] = {}
_INFO: dict[str, ModelInfo] = {}
_family_builder: Builder | None = None
_family_members: tuple[str, ...] = ()
_family_knows: Callable[[str], bool] = lambda encoder: False
_FAMILY_INFO = ModelInfo(
    family="fastdepth",
    licence="",
    weights="none: train your own (edgedepth train)",
    summary="FastDepth's NNConv5 decoder on a timm or torchvision encoder, skips from its deepest features at 1/2, "
            "1/8 and 1/16, bilinear upsampling",
)
#: What a caller may change on the card a builder gives; the name and constructor arguments are the builder's.
_CARD_CHANGES = frozenset(f.name for f in fields(ModelCard)) - {"name", "model_args"}


@overload
def register_model(builder: Builder, /) -> Builder: ...
@overload
def register_model(*, info: ModelInfo) -> Callable[[Builder], Builder]: ...


def register_model(builder: Builder | None = None, /, *, info: ModelInfo | None = None) -> Any:
    """Decorator: register a builder under its function name, with its :class:`ModelInfo`.

    Used bare (``@register_model``) or with its info (``@register_model(info=ModelInfo(...))``).
    Registering a name twice raises.
    """

    def add(function: Builder) -> Builder:
        name = function.__name__
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = function
        _INFO[name] = info or ModelInfo(family="custom", licence="", weights="")
        return function

    return add(builder) if builder is not None else add


def register_encoder_family(
    *, members: Sequence[str], knows: Callable[[str], bool]
) -> Callable[[Builder], Builder]:
    """Decorator: register the builder of ``fastdepth_<encoder>`` names (called with ``encoder=...``).

    ``knows(encoder)`` says whether the builder takes an encoder (checked by name, nothing built); ``members`` are
    the encoders :func:`list_models` shows (those the project documents and tests). Only one family may be
    registered: a second registration raises, as a second model of one name does.
    """

    def add(builder: Builder) -> Builder:
        global _family_builder, _family_members, _family_knows
        if _family_builder is not None:
            raise ValueError(f"the {ENCODER_FAMILY_PREFIX}<encoder> family is already registered")
        names = tuple(ENCODER_FAMILY_PREFIX + encoder for encoder in members)
        clashes = sorted(set(names) & set(_BUILDERS))
        if clashes:
            raise ValueError(f"family members {clashes} are already registered as models")
        _family_builder, _family_members, _family_knows = builder, names, knows
        return builder

    return add


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Registered names matching a shell-style pattern (and ``family``, if given), sorted.

    The ``fastdepth_<encoder>`` family is open (any timm or torchvision encoder); its documented members are listed.
    """
    infos = {**{name: _FAMILY_INFO for name in _family_members}, **_INFO}
    return sorted(
        name
        for name, info in infos.items()
        if fnmatch.fnmatch(name, pattern) and (family is None or info.family == family)
    )


def is_model(name: str) -> bool:
    """Whether :func:`create_model` accepts ``name``: a registered model, or ``fastdepth_<encoder>`` for an
    encoder the family's builder takes (checked by name: nothing is built)."""
    if name in _BUILDERS or name in _family_members:
        return True
    return name.startswith(ENCODER_FAMILY_PREFIX) and _family_knows(name[len(ENCODER_FAMILY_PREFIX) :])


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered name or of a ``fastdepth_<encoder>`` student."""
    if name in _INFO:
        return _INFO[name]
    if name.startswith(ENCODER_FAMILY_PREFIX):
        return _FAMILY_INFO
    raise _unknown(name)


def create_model(
    name: str, pretrained: bool = False, *, card: Mapping[str, Any] | None = None, **kwargs: Any
) -> DepthNetwork:
    """Build a model by name; ``pretrained=True`` loads its encoder's ImageNet weights (needs the network).

    The builder gives the model its :class:`ModelCard`; ``card`` changes fields of it (``input_size``, ``mean``,
    ``std``, ...), e.g. ``card={"input_size": (320, 240)}`` for a network trained at that size. An input size is
    fitted by the card's rule (:meth:`ModelCard.fit_size`: refused, or snapped to the network's multiples). The
    name and constructor arguments are not changes: they are ``name`` and ``kwargs``.
    """
    if name in _BUILDERS:
        model = _BUILDERS[name](pretrained=pretrained, **kwargs)
    elif name.startswith(ENCODER_FAMILY_PREFIX) and _family_builder is not None:
        encoder = kwargs.pop("encoder", name[len(ENCODER_FAMILY_PREFIX) :])
        model = _family_builder(encoder=encoder, pretrained=pretrained, **kwargs)
    else:
        raise _unknown(name)
    if card:
        model.card = _changed_card(model.card, card)
    return model


def _changed_card(card: ModelCard, changes: Mapping[str, Any]) -> ModelCard:
    unknown = sorted(set(changes) - _CARD_CHANGES)
    if unknown:
        raise ValueError(f"card changes {unknown}: only {sorted(_CARD_CHANGES)} may be changed")
    changed = replace(card, **changes)
    if "input_size" in changes:
        changed = replace(changed, input_size=changed.fit_size(tuple(changes["input_size"])))
    return changed


def _unknown(name: str) -> EdgedepthError:
    known = ", ".join(list_models())
    return EdgedepthError(f"unknown model {name!r}; registered: {known}, or fastdepth_<timm or torchvision encoder>")


_M = TypeVar("_M", bound=nn.Module)


def prepare_for_inference(model: _M, copy: bool = False) -> _M:
    """``model`` in eval mode, with its layers fused where it knows how (``fuse_for_inference``).

    Networks trained with separate branches (ZipDepth's RepVGG blocks) or BatchNorms fold them into single
    convolutions here: the same function, fewer operations. A fused model keeps its card; its state dict no longer
    matches the training layout, so it is for running, not for saving. Fusion is in place, or with ``copy`` on a
    copy (the model itself is returned when it has nothing to fuse).
    """
    model.eval()
    if not callable(getattr(model, "fuse_for_inference", None)) or is_fused(model):
        return model
    if copy:
        import copy as copying

        model = copying.deepcopy(model)
    cast("Callable[[], object]", model.fuse_for_inference)()  # a method (checked above), not a submodule
    return model


def is_fused(model: nn.Module) -> bool:
    """Whether :func:`prepare_for_inference` changed ``model``'s layers (so its weights cannot be saved)."""
    return bool(getattr(model, "fused", False))
