"""Our weights format: a ``.safetensors`` file whose metadata carries the model card and provenance.

Metadata keys (all strings, as safetensors requires):
``format`` (``edgedepth.weights/1``), ``card`` (JSON :class:`ModelCard`), ``provenance`` (JSON, free-form:
training run, teacher, metrics, source checkpoint). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, check_input_file
from edgedepth.models.checkpoints import is_torch_save_archive, pickled_checkpoint_error
from edgedepth.models.registry import DepthNetwork, create_model, is_fused

FORMAT = "edgedepth.weights/1"
_PICKLE_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin")


def save_weights(model: nn.Module, path: str | Path, **provenance: Any) -> Path:
    """Write ``model``'s state dict and card to ``path`` (atomically); ``provenance`` must be JSON-serialisable."""
    card: ModelCard | None = getattr(model, "card", None)
    if card is None:
        raise ValueError("model has no card; build it with edgedepth.models.create_model")
    if is_fused(model):
        raise ValueError(f"{card.name} is fused for inference; save it in its training layout, before fusing")
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "card": json.dumps(card.to_dict()),
        "provenance": json.dumps(provenance, default=str),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def read_metadata(path: str | Path) -> tuple[ModelCard, dict[str, Any]]:
    """Read the card and provenance of a weights file without loading its tensors."""
    path = check_input_file(path, "edgedepth weights (.safetensors)", "no such weights file")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise pickled_checkpoint_error(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        if is_torch_save_archive(path):
            raise pickled_checkpoint_error(path) from exc
        raise EdgedepthError(f"{path}: not a readable .safetensors weights file ({exc})") from exc
    if metadata.get("format") != FORMAT or "card" not in metadata:
        raise EdgedepthError(f"{path}: a .safetensors file without edgedepth model metadata (not our weights)")
    try:
        card = ModelCard.from_dict(json.loads(metadata["card"]))
        provenance = json.loads(metadata.get("provenance", "{}"))
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgedepthError(f"{path}: corrupt model metadata ({exc})") from exc
    return card, provenance


def read_card(path: str | Path) -> ModelCard:
    """The model card of a weights file."""
    return read_metadata(path)[0]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DepthNetwork:
    """Rebuild the student described by a weights file and load its weights; returns it in eval mode."""
    path = Path(path)
    card, _ = read_metadata(path)
    # The saved card wins over the builder's (input size and normalisation as trained).
    changes = {key: value for key, value in card.to_dict().items() if key not in ("name", "model_args")}
    model = create_model(card.name, card=changes, **card.model_args)
    try:
        from safetensors.torch import load_file

        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EdgedepthError(f"{path}: corrupt weights ({exc})") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{label} {len(keys)} (e.g. {keys[0]})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        )
        raise EdgedepthError(f"{path}: weights do not fit model {card.name!r}: {details}")
    model.load_state_dict(state)
    return model.to(device).eval()
