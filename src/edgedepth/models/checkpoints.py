"""PyTorch checkpoints as other projects and ``edgedepth train`` write them: read safely, told apart, and the
``edgedepth convert`` command that turns one into our weights.

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code. What a
checkpoint is (a training checkpoint of ours, a plain state dict of one of our students, or another project's layout)
is read from its keys; :mod:`edgedepth.models.convert` converts it.
"""

from __future__ import annotations

import functools
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_input_file
from edgedepth.models.registry import create_model, list_models

#: Where training checkpoints keep the model's state dict (the seed's and ZipDepth's ``model_state_dict``, MiDaS's
#: ``model`` beside its ``optimizer``, others' ``state_dict``).
_NESTED_STATE_KEYS = ("model_state_dict", "state_dict", "model")

#: Prefixes wrappers put on keys: ``nn.DataParallel`` / ``DistributedDataParallel``'s, ``torch.compile``'s.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

#: The top-level modules of every edgedepth network: the keys of its own ``state_dict()`` start with these.
OWN_PREFIXES = ("encoder.", "decoder.", "network.")


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
            ) from exc
        raise EdgedepthError(unreadable) from exc
    except (RuntimeError, EOFError, KeyError, ValueError, OSError):
        raise EdgedepthError(unreadable) from None


def unwrap_state_dict(checkpoint: Any, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: itself, or under one of :data:`_NESTED_STATE_KEYS`, each key stripped of
    the wrapper prefixes (``module.``, ``_orig_mod.``, in any order)."""
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
    state: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        stripped = strip_wrappers(key)
        if stripped in state:
            raise EdgedepthError(f"{what}: holds {stripped!r} twice (with and without a wrapper prefix)")
        state[stripped] = value
    return state


def strip_wrappers(key: str) -> str:
    while key.startswith(_WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def describe_keys(keys: Iterable[str]) -> str:
    keys = list(keys)
    heads = sorted({key.split(".")[0] for key in keys})
    return f"{len(keys)} tensors under " + (", ".join(heads[:6]) + (", ..." if len(heads) > 6 else "") or "nothing")


def training_checkpoint(checkpoint: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
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


@functools.cache
def _state_shapes(name: str) -> dict[str, torch.Size]:
    """The keys and shapes of a registered network's state dict, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return {key: value.shape for key, value in create_model(name).state_dict().items()}


def fitting_models(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered networks whose state dict has exactly these keys and shapes (for the hint of a missing --model)."""
    fitting = []
    for name in list_models():
        try:
            expected = _state_shapes(name)
        except EdgedepthError:
            continue
        if set(expected) == set(state) and all(expected[k] == state[k].shape for k in expected):
            fitting.append(name)
    return fitting


def model_hint(state: Mapping[str, torch.Tensor], what: str) -> str:
    fitting = fitting_models(state)
    name = fitting[0] if len(fitting) == 1 else "NAME"
    known = f" (its tensors fit {name})" if len(fitting) == 1 else (
        f" (registered: {', '.join(list_models())}, or fastdepth_<encoder>)"
    )
    return f"edgedepth convert {what} OUT.safetensors --model {name}{known}"


def is_own_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    return bool(state) and all(key.startswith(OWN_PREFIXES) for key in state)


def convert_hint(path: str | Path) -> str:
    """The ``edgedepth convert`` command that turns the PyTorch file ``path`` into our weights.

    For messages of commands that were handed a ``.pth``/``.pt`` checkpoint instead of weights. The file is read
    (``weights_only=True``) to tell whether it needs ``--model``; an unreadable one gets the plain command,
    which then says what is wrong with it.
    """
    plain = f"edgedepth convert {path} OUT.safetensors"
    try:
        checkpoint = load_checkpoint(path)
        if training_checkpoint(checkpoint) is not None:
            return plain
        state = unwrap_state_dict(checkpoint, str(path))
    except EdgedepthError:
        return plain
    return model_hint(state, str(path)) if is_own_state_dict(state) else plain


def is_torch_save_archive(path: str | Path) -> bool:
    """Whether ``path`` is a ``torch.save`` zip archive (a pickle and its tensors), not a TorchScript export."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.endswith("/data.pkl") for name in names) and not any(
        name.endswith("/constants.pkl") for name in names
    )


def pickled_checkpoint_error(path: str | Path) -> EdgedepthError:
    """The error for a PyTorch checkpoint handed where weights are expected: it names the command that converts it."""
    return EdgedepthError(f"{path}: a PyTorch checkpoint, not edgedepth weights; convert it first: {convert_hint(path)}")
