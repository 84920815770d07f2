"""Loading transformers models, configs and processors (``from_pretrained``) from the Hugging Face hub or a
``save_pretrained`` folder, with every failure one line that says what to do: the ``hf:`` teachers and the
conversion of a transformers folder both load through here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedepth.core.errors import EdgedepthError

_UNREACHABLE = (
    "hf:{reference} needs its files from the Hugging Face hub, which is unreachable (offline or no "
    "connection); save the model with save_pretrained where the hub is reachable and pass that local directory "
    "instead: hf:/path/to/saved_model"
)


def _hub_unreachable(exc: BaseException | None) -> bool:
    """Whether a loading error comes from the hub being offline or unreachable (not from a bad repo)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    while exc is not None:
        if isinstance(exc, LocalEntryNotFoundError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def from_pretrained(loader: Any, reference: str, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(reference)`` with its failures turned into one-line :class:`EdgedepthError`."""
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(reference, **kwargs)
    except SafetensorError as exc:  # a local weights file cut short or corrupt: name it
        weights = sorted(Path(reference).glob("*.safetensors")) if Path(reference).is_dir() else []
        where = str(weights[0]) if len(weights) == 1 else f"hf:{reference}"
        problem = "empty file (0 bytes)" if weights and weights[0].stat().st_size == 0 else str(exc).strip()
        raise EdgedepthError(
            f"{where}: not a readable .safetensors weights file ({problem}); save or download the model again"
        ) from exc
    except (OSError, ValueError) as exc:
        if _hub_unreachable(exc):
            raise EdgedepthError(_UNREACHABLE.format(reference=reference)) from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgedepthError(f"hf:{reference}: cannot load its {what} ({first_line})") from exc
