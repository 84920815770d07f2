"""Training checkpoints and logs on disk: atomic checkpoint writes, strict reads, and what a resumed run may change.

A checkpoint holds the model, optimiser, scheduler, scaler, RNG states, the data position and the config
(:data:`CHECKPOINT_KEYS`); it is read with ``torch.load(weights_only=True)``, tensors and plain data only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edgedepth.core.config import from_dict, is_resumable, to_dict
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path
from edgedepth.train.config import TrainConfig

#: What a checkpoint holds; loading one with other keys is an error (it is not ours, or from another version).
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "scheduler", "scaler", "rng", "position", "config"})


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous one intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain data only: ``weights_only=True``) and check its keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, EOFError, KeyError, RuntimeError... for bad files
        raise EdgedepthError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or set(state) != CHECKPOINT_KEYS:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise EdgedepthError(f"{path}: not an edgedepth training checkpoint (keys {keys})")
    return state


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "args":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """A run may only continue with the config it started with, up to the fields marked resumable in
    :mod:`edgedepth.train.config`. A key the saved config lacks (added since) counts at its default."""
    try:
        saved = to_dict(from_dict(TrainConfig, saved))
    except EdgedepthError as exc:
        raise EdgedepthError(f"{path}: its saved config does not load in this version ({exc}); use another run.dir") \
            from None
    old, new = _flatten(saved), _flatten(current)
    changed = sorted(
        key for key in old.keys() | new.keys()
        if old.get(key) != new.get(key) and not is_resumable(TrainConfig, key)
    )
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3])
        raise EdgedepthError(
            f"{path}: a run started with another config ({details}); resume with the same settings or use another "
            "run.dir"
        )


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the log lines up to ``last_step`` (those after the checkpoint are trained again)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))
