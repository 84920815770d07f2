"""Converters from PyTorch checkpoints to our weights format: the seed's, FastDepth's, and our own.

A foreign checkpoint's layout is recognised from its keys. Each layout is a table of key prefixes (theirs -> ours)
onto a registered student built to compute exactly what the original network computed, so conversion is
renaming plus checks. Our own files need no renaming: a training checkpoint (``checkpoint.pt`` of
``edgedepth train``) names its model in its saved config, and a plain ``state_dict()`` of a student is converted
with the model name given (``--model``). Files are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, never pickled code.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedepth.errors import EdgedepthError
from edgedepth.imageio import check_input_file, check_output_folder
from edgedepth.models.registry import ModelCard, create_model, list_models
from edgedepth.models.weights import save_weights

#: Where training checkpoints keep the model's state dict (the seed's ``model_state_dict``, others').
_NESTED_STATE_KEYS = ("model_state_dict", "state_dict")
#: The prefix ``nn.DataParallel`` / ``DistributedDataParallel`` puts on every key.
_PARALLEL_PREFIX = "module."
#: BatchNorm's step counter, absent from checkpoints of PyTorch < 0.4.1 and unused in eval mode.
_OPTIONAL_SUFFIX = "num_batches_tracked"
#: The top-level modules of every edgedepth student: the keys of its own ``state_dict()`` start with these.
_OWN_PREFIXES = ("encoder.", "decoder.")
#: ``converted_from`` of a converted ``checkpoint.pt`` of ``edgedepth train`` and of a plain student state dict.
TRAINING_CHECKPOINT = "edgedepth_training_checkpoint"
OWN_STATE_DICT = "edgedepth_state_dict"


@dataclass(frozen=True)
class SourceLayout:
    """A checkpoint layout we convert: the student it becomes and how its keys map onto the student's.

    Attributes:
        name: Short identifier, recorded as ``converted_from`` in the weights' provenance.
        model: The registered student that computes what the source network computes.
        title: The source network, for messages.
        keys: What its keys look like, for messages.
        signature: Key prefixes that, all present, identify the layout.
        prefixes: ``(theirs, ours)`` key prefix pairs; every source key must start with one of them.
        ignored: Source key prefixes dropped on purpose (parts our student does not have).
    """

    name: str
    model: str
    title: str
    keys: str
    signature: tuple[str, ...]
    prefixes: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()


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

LAYOUTS: tuple[SourceLayout, ...] = (SEED_LAYOUT, FASTDEPTH_LAYOUT)


def load_checkpoint(path: str | Path) -> Any:
    """Read a PyTorch file with ``weights_only=True``; anything that needs arbitrary unpickling is refused."""
    path = check_input_file(path, "a PyTorch checkpoint (.pth, .pt)")
    unreadable = f"{path}: not a readable PyTorch checkpoint (corrupt, truncated or another format)"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            raise EdgedepthError(
                f"{path}: holds pickled Python objects ({found.group(1)}), and edgedepth never unpickles those "
                "(it could run arbitrary code); where the checkpoint was made, re-save only the weights with "
                "torch.save(model.state_dict(), 'weights.pth') and convert that file"
            ) from None
        raise EdgedepthError(unreadable) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError):
        raise EdgedepthError(unreadable) from None


def unwrap_state_dict(checkpoint: Any, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: itself, or under ``model_state_dict``/``state_dict``, less ``module.``."""
    if isinstance(checkpoint, Mapping):
        nested = next((checkpoint[k] for k in _NESTED_STATE_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
        if nested is not None:
            checkpoint = nested
    if not isinstance(checkpoint, Mapping):
        raise EdgedepthError(f"{what}: holds an object of type {type(checkpoint).__name__}, not a state dict")
    for key, value in checkpoint.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise EdgedepthError(
                f"{what}: not a state dict ({key!r} is of type {type(value).__name__}, not a tensor); expected "
                f"model.state_dict() or a training checkpoint with it under {' or '.join(_NESTED_STATE_KEYS)}"
            )
    state = dict(checkpoint)
    if state and all(key.startswith(_PARALLEL_PREFIX) for key in state):
        state = {key[len(_PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return state


def detect_layout(keys: Iterable[str], what: str = "checkpoint") -> SourceLayout:
    """The layout whose signature prefixes all appear among ``keys``."""
    keys = list(keys)
    for layout in LAYOUTS:
        if all(any(key.startswith(prefix) for key in keys) for prefix in layout.signature):
            return layout
    heads = sorted({key.split(".")[0] for key in keys})
    shown = ", ".join(heads[:6]) + (", ..." if len(heads) > 6 else "")
    supported = "; ".join(f"{layout.title} ({layout.keys})" for layout in LAYOUTS)
    raise EdgedepthError(
        f"{what}: not a layout edgedepth can convert (found {len(keys)} tensors under {shown or 'nothing'}); "
        f"supported: {supported}"
    )


def _swap_prefix(key: str, pairs: Iterable[tuple[str, str]]) -> str | None:
    return next((new + key[len(old) :] for old, new in pairs if key.startswith(old)), None)


def key_mapping(keys: Iterable[str], layout: SourceLayout, what: str = "checkpoint") -> dict[str, str]:
    """``{their key: our key}`` for every key not ignored by ``layout``; a key it does not know is an error."""
    mapping = {}
    for key in keys:
        if key.startswith(layout.ignored):
            continue
        ours = _swap_prefix(key, layout.prefixes)
        if ours is None:
            raise EdgedepthError(f"{what}: unexpected key {key!r} for {layout.title}")
        mapping[key] = ours
    return mapping


def _fit(
    model: nn.Module, state: Mapping[str, torch.Tensor], layout: SourceLayout, what: str
) -> dict[str, torch.Tensor]:
    """Rename ``state`` to ``model``'s keys and check that it fills the model exactly, shape for shape."""
    mapping = key_mapping(state, layout, what)
    expected = model.state_dict()
    renamed = {ours: state[theirs] for theirs, ours in mapping.items()}
    unknown = sorted(set(renamed) - set(expected))
    if unknown:
        theirs = _swap_prefix(unknown[0], ((new, old) for old, new in layout.prefixes))
        raise EdgedepthError(f"{what}: {len(unknown)} tensors that {layout.title} does not have (e.g. {theirs})")
    missing = [key for key in expected if key not in renamed and not key.endswith(_OPTIONAL_SUFFIX)]
    if missing:
        theirs = _swap_prefix(missing[0], ((new, old) for old, new in layout.prefixes))
        raise EdgedepthError(f"{what}: {len(missing)} tensors of {layout.title} are missing (e.g. {theirs})")
    for theirs, ours in mapping.items():
        if renamed[ours].shape != expected[ours].shape:
            raise EdgedepthError(
                f"{what}: {theirs} has shape {tuple(renamed[ours].shape)}, but {layout.title} has "
                f"{tuple(expected[ours].shape)} there (only the unmodified network converts, not a pruned one)"
            )
    return {key: renamed.get(key, value) for key, value in expected.items()}


def _describe_keys(keys: Iterable[str]) -> str:
    keys = list(keys)
    heads = sorted({key.split(".")[0] for key in keys})
    return f"{len(keys)} tensors under " + (", ".join(heads[:6]) + (", ..." if len(heads) > 6 else "") or "nothing")


def _named(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _load_own(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load a student's own state dict strictly: every missing, unexpected or reshaped tensor is named."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state and not key.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in state
        if key in expected and state[key].shape != expected[key].shape
    ]
    problems = [
        f"{len(keys)} {label} ({_named(keys)})"
        for label, keys in (
            ("missing tensors", missing), ("unexpected tensors", unexpected), ("tensors of another shape", wrong)
        )
        if keys
    ]
    if problems:
        name = model.card.name  # type: ignore[union-attr]
        raise EdgedepthError(f"{what}: does not fit model {name!r}: {'; '.join(problems)}")
    model.load_state_dict({key: state.get(key, value) for key, value in expected.items()})


def _training_checkpoint(checkpoint: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """``(state dict, saved config)`` of an ``edgedepth train`` checkpoint, or None for anything else.

    Such a checkpoint holds the model's state dict under ``model`` and the run's config (as plain data) under
    ``config``, whose ``model`` section names the student and its constructor arguments.
    """
    if not isinstance(checkpoint, Mapping):
        return None
    state, config = checkpoint.get("model"), checkpoint.get("config")
    if not (isinstance(state, Mapping) and isinstance(config, Mapping) and isinstance(config.get("model"), Mapping)):
        return None
    return state, config


def _from_training_checkpoint(
    state: Mapping[str, Any], config: Mapping[str, Any], model_name: str | None, what: str
) -> nn.Module:
    """The student a training checkpoint trained, with the card its ``final.safetensors`` would have."""
    from edgedepth.processing import SIZE_DIVISOR, parse_size

    section = config["model"]
    name, args = section.get("name"), section.get("args") or {}
    if not isinstance(name, str) or not isinstance(args, Mapping):
        raise EdgedepthError(f"{what}: its saved config has no usable model.name/model.args (not from edgedepth train?)")
    if model_name is not None and model_name != name:
        raise EdgedepthError(
            f"{what}: a training checkpoint of {name!r} (from its saved config), not of --model {model_name!r}; "
            f"drop --model: edgedepth convert {what} OUT.safetensors"
        )
    model = create_model(name, **args)
    size = (config.get("data") or {}).get("input_size")
    if size is not None:
        try:
            model.card = dataclasses.replace(model.card, input_size=parse_size(str(size), SIZE_DIVISOR))
        except EdgedepthError as exc:
            raise EdgedepthError(f"{what}: saved config data.input_size: {exc}") from None
    _load_own(model, unwrap_state_dict(state, what), what)
    return model


def _fitting_models(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered students whose state dict has exactly these keys and shapes (for the hint of a missing --model)."""
    fitting = []
    for name in list_models():
        try:
            expected = create_model(name).state_dict()
        except EdgedepthError:
            continue
        if set(expected) == set(state) and all(expected[k].shape == state[k].shape for k in expected):
            fitting.append(name)
    return fitting


def _model_hint(state: Mapping[str, torch.Tensor], what: str) -> str:
    fitting = _fitting_models(state)
    name = fitting[0] if len(fitting) == 1 else "NAME"
    known = f" (its tensors fit {name})" if len(fitting) == 1 else (
        f" (registered: {', '.join(list_models())}, or fastdepth_<encoder>)"
    )
    return f"edgedepth convert {what} OUT.safetensors --model {name}{known}"


def _is_own_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    return bool(state) and all(key.startswith(_OWN_PREFIXES) for key in state)


def _convert(checkpoint: Any, what: str, model_name: str | None = None) -> tuple[nn.Module, str]:
    """The student in ``checkpoint`` (eval mode) and what it was converted from (for the provenance)."""
    training = _training_checkpoint(checkpoint)
    if training is not None:
        return _from_training_checkpoint(*training, model_name, what).eval(), TRAINING_CHECKPOINT
    state = unwrap_state_dict(checkpoint, what)
    if model_name is None:
        if _is_own_state_dict(state):
            raise EdgedepthError(
                f"{what}: a state dict of an edgedepth student ({_describe_keys(state)}), which does not record "
                f"which model it is; name it with --model: {_model_hint(state, what)}"
            )
        layout = detect_layout(state, what)
    else:
        layout = next(
            (layout for layout in LAYOUTS if all(any(k.startswith(p) for k in state) for p in layout.signature)), None
        )
        if layout is not None and layout.model != model_name:
            raise EdgedepthError(
                f"{what}: holds {layout.title}, which converts to {layout.model}, not --model {model_name}; "
                f"drop --model: edgedepth convert {what} OUT.safetensors"
            )
    if layout is None:
        assert model_name is not None
        model = create_model(model_name)
        try:
            _load_own(model, state, what)
        except EdgedepthError as exc:
            fitting = [name for name in _fitting_models(state) if name != model_name]
            if not fitting:
                raise
            command = f"edgedepth convert {what} OUT.safetensors --model {fitting[0]}"
            raise EdgedepthError(f"{exc}; its tensors fit {fitting[0]}: {command}") from None
        return model.eval(), OWN_STATE_DICT
    model = create_model(layout.model)
    model.load_state_dict(_fit(model, state, layout, what))
    return model.eval(), layout.name


def convert_state_dict(checkpoint: Mapping[str, Any], model: str | None = None) -> nn.Module:
    """Build our student from a state dict or training checkpoint in memory; eval mode.

    The seed's and FastDepth's layouts are recognised from their keys; a training checkpoint of
    ``edgedepth train`` names its model; a plain state dict of one of our students needs ``model``.
    """
    return _convert(checkpoint, "state dict", model)[0]


def convert_checkpoint(in_path: str | Path, out_path: str | Path, model: str | None = None) -> ModelCard:
    """Convert a ``.pth``/``.pt`` file to our ``.safetensors`` weights (written atomically).

    Accepted: the seed's or FastDepth's state dict or training checkpoint, a ``checkpoint.pt`` of
    ``edgedepth train``, and a plain ``state_dict()`` of one of our students when ``model`` names it.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if out_path.suffix.lower() != ".safetensors":
        raise EdgedepthError(f"{out_path}: the output must be a .safetensors file")
    if out_path.is_dir():
        raise EdgedepthError(f"{out_path}: a folder, not a file; choose another output file name")
    check_output_folder(out_path.parent)
    checkpoint = load_checkpoint(in_path)
    converted, source = _convert(checkpoint, str(in_path), model)
    provenance: dict[str, Any] = {"source": in_path.name, "converted_from": source}
    training = _training_checkpoint(checkpoint)
    if training is not None:
        provenance.update(_training_provenance(checkpoint, training[1]))
    save_weights(converted, out_path, **provenance)
    return converted.card


def _training_provenance(checkpoint: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """What ``final.safetensors`` of the same run records about its training, as far as the checkpoint knows."""
    position = checkpoint.get("position") if isinstance(checkpoint.get("position"), Mapping) else {}
    data, optim, run = (config.get(key) if isinstance(config.get(key), Mapping) else {} for key in ("data", "optim", "run"))
    return {
        "training_data": data.get("path"),
        "run_dir": run.get("dir"),
        "steps": position.get("step"),
        "epochs_done": position.get("epoch"),
        "loss": optim.get("loss"),
        "config": dict(config),
    }


def convert_hint(path: str | Path) -> str:
    """The ``edgedepth convert`` command that turns the PyTorch file ``path`` into our weights.

    For messages of commands that were handed a ``.pth``/``.pt`` checkpoint instead of weights. The file is read
    (``weights_only=True``) to tell whether it needs ``--model``; an unreadable one gets the plain command,
    which then says what is wrong with it.
    """
    plain = f"edgedepth convert {path} OUT.safetensors"
    try:
        checkpoint = load_checkpoint(path)
        if _training_checkpoint(checkpoint) is not None:
            return plain
        state = unwrap_state_dict(checkpoint, str(path))
    except EdgedepthError:
        return plain
    return _model_hint(state, str(path)) if _is_own_state_dict(state) else plain
