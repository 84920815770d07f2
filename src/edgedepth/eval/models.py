"""What an evaluation scores: anything with a name, an input size and batched prediction of inverse depth (our
weights and exports through a Predictor, a teacher, or a model-free baseline), opened by one function."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from edgedepth.core.cores import compute_threads
from edgedepth.core.errors import EdgedepthError
from edgedepth.runtime.predictor import load_predictor
from edgedepth.teachers import create_teacher


class DepthModel(Protocol):
    """What ``eval`` needs of a model: a name, its input ``(width, height)`` and batched prediction."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> tuple[int, ...] | None:
        """The network input ``(width, height)``; empty or ``None`` where there is none (baselines, the oracle)."""
        ...

    def predict_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images of one size to ``N x 1 x H x W`` float32 relative inverse depth at that size."""
        ...


class VerticalRamp:
    """A baseline that ignores the image: inverse depth rising linearly from the top row to the bottom row.

    Indoors the floor comes nearer towards the bottom of the frame, so this positional prior alone scores well;
    a model is worth its compute by how far it beats it.
    """

    name = "vertical ramp (no image input)"
    size: tuple[int, ...] = ()  # no network input

    def predict_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        height, width = images[0].shape[:2]
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        return np.ascontiguousarray(np.broadcast_to(ramp, (len(images), 1, height, width)))


class ConstantDepth:
    """A baseline that predicts one depth for the whole frame; scored with median scaling (the alignment
    :func:`run` gives it), that depth is the ground truth's median: an oracle constant."""

    name = "constant depth, the ground truth's median (oracle)"
    size: tuple[int, ...] = ()  # no network input

    def predict_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        height, width = images[0].shape[:2]
        return np.ones((len(images), 1, height, width), dtype=np.float32)


Baseline = Literal["ramp", "constant"]

BASELINES: dict[str, type[VerticalRamp | ConstantDepth]] = {"ramp": VerticalRamp, "constant": ConstantDepth}


def open_model(
    weights: Path | None = None,
    teacher: str | None = None,
    baseline: str | None = None,
    size: tuple[int, int] | None = None,
    device: str = "cpu",
    training_data: str | None = None,
) -> tuple[DepthModel, str, str]:
    """The model to evaluate (a baseline, else a teacher, else ``weights``), its label for the table and the
    training data it names (``training_data``, else what the model says)."""
    if baseline is not None:
        if baseline not in BASELINES:
            raise EdgedepthError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")
        model = BASELINES[baseline]()
        return model, model.name, "none"
    if teacher is not None:
        opened = create_teacher(teacher, device)
        if opened.requires_depth:
            raise EdgedepthError("--teacher oracle answers with the ground truth itself; evaluate a real teacher")
        return opened, opened.name, training_data or "the teacher's own"
    if weights is None:
        raise EdgedepthError("nothing to evaluate: pass --weights W.safetensors (or best_model in --config)")
    # .safetensors, .onnx, .xml or TorchScript .pt, on the cores this process may use; stretched to the input size,
    # the seed's protocol, so the figures stay comparable
    predictor = load_predictor(weights, size, device, threads=compute_threads(), keep_aspect=False)
    training_data = training_data or str(predictor.provenance.get("training_data") or "unknown")
    return predictor, f"{predictor.name} ({weights.name})", training_data
