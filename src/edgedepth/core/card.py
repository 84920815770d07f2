"""A model's metadata, in one place: the card every network carries and every file of it holds.

A :class:`ModelCard` names the registered network and its constructor arguments (what rebuilds it), its input size
and its normalisation. Our ``.safetensors`` weights and every export carry it, so no file needs a flag beside it.
Pure data: the runtime reads cards without a training framework.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.sizes import DEFAULT_INPUT_SIZE, SIZE_MULTIPLE, format_size

#: What every model predicts (docs/design.md, "One owner for each fact": the depth representation).
RELATIVE_INVERSE_DEPTH = "relative_inverse_depth"

@dataclass(frozen=True)
class ModelCard:
    """A model's metadata, kept in one place and saved with its weights.

    ``input_size`` is ``(width, height)``; ``mean``/``std`` normalise an RGB image in [0, 1]. Input sides must
    be multiples of ``size_multiple``; a requested size that is not is refused, or, with ``snap_size``, moved to
    the nearest multiple (Depth Anything's rule for its 14-pixel patches).
    """

    name: str
    model_args: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    output: str = RELATIVE_INVERSE_DEPTH
    size_multiple: int = SIZE_MULTIPLE
    snap_size: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        return cls(
            name=str(data["name"]),
            model_args=dict(data.get("model_args", {})),
            input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            output=str(data.get("output", RELATIVE_INVERSE_DEPTH)),
            size_multiple=int(data.get("size_multiple", SIZE_MULTIPLE)),
            snap_size=bool(data.get("snap_size", False)),
        )

    def fit_size(self, requested: tuple[int, int] | None) -> tuple[int, int]:
        """The network input ``(width, height)`` for a requested size (``None``: the card's own).

        Raises :class:`EdgedepthError` for a size the network cannot take.
        """
        if requested is None:
            return tuple(self.input_size)  # type: ignore[return-value]
        width, height = (int(side) for side in requested)
        multiple = self.size_multiple
        if self.snap_size:
            return max(1, round(width / multiple)) * multiple, max(1, round(height / multiple)) * multiple
        if width <= 0 or height <= 0 or width % multiple or height % multiple:
            raise EdgedepthError(
                f"input size {format_size((width, height))}: {self.name}'s sides must be multiples of {multiple}"
            )
        return width, height
