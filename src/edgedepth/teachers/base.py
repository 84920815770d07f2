"""The teacher interface: RGB images in, relative inverse depth at the images' own resolution out.

A teacher answers ``predict_batch(images)`` exactly as a student's
:class:`edgedepth.runtime.predictor.Predictor` does (same name, same meaning, ``.name`` and ``.size``),
so evaluation code can take a teacher or a student alike. A backend supplies only ``_infer``: its network
on the batch, returning inverse depth at whatever resolution the network works at; bringing it back to
the images' size (bicubic, :func:`edgedepth.core.processing.upsample_prediction`) happens here, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from edgedepth.core.card import RELATIVE_INVERSE_DEPTH
from edgedepth.core.processing import upsample_prediction

#: What a teacher built on a metric-depth model returns: ``1 / max(depth, METRIC_DEPTH_FLOOR)``.
INVERSE_OF_METRIC_DEPTH = "inverse_of_metric_depth"

#: Metric depth (metres) below this is clamped before inversion, so a zero or negative prediction stays finite.
METRIC_DEPTH_FLOOR = 1e-3


def invert_metric_depth(depth: torch.Tensor, floor: float = METRIC_DEPTH_FLOOR) -> torch.Tensor:
    """``1 / max(depth, floor)``: a metric-depth model's output as inverse depth. NaN stays NaN."""
    return 1.0 / depth.float().clamp(min=floor)


def invert_ground_truth(depth: torch.Tensor) -> torch.Tensor:
    """``1 / depth`` where depth is finite and positive, 0 elsewhere (ground truth marks holes with 0 or NaN)."""
    depth = depth.float()
    valid = torch.isfinite(depth) & (depth > 0)
    return torch.where(valid, 1.0 / depth, torch.zeros_like(depth))


def batch_image_size(images: Sequence[np.ndarray]) -> tuple[int, int]:
    """``(width, height)`` shared by a non-empty batch of uint8 RGB ``H x W x 3`` images.

    Raises ``ValueError`` on an empty batch, a non-RGB or non-uint8 image, or mixed sizes: these are
    mistakes of the calling code, not of the user's data.
    """
    if len(images) == 0:
        raise ValueError("predict_batch needs at least one image")
    shape = images[0].shape
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"teachers take uint8 RGB H x W x 3 images, got {image.dtype} {image.shape}")
        if image.shape != shape:
            raise ValueError(f"all images of a batch must have the same size, got {shape} and {image.shape}")
    return int(shape[1]), int(shape[0])


class Teacher(ABC):
    """A frozen depth network that labels images with relative inverse depth.

    Attributes:
        name: what the teacher is, e.g. ``"hf:Intel/dpt-large"``; written into every label it makes.
        input_size: the ``(width, height)`` the network prefers (its processor's or MiDaS's size);
            backends that keep the aspect ratio feed a size derived from it and from each image.
            ``None`` when the teacher works at the images' own size (the oracle).
        output: :data:`RELATIVE_INVERSE_DEPTH`, or :data:`INVERSE_OF_METRIC_DEPTH` for a metric model.
        requires_depth: True only for the oracle, which needs ground-truth depth with the images.
    """

    name: str
    input_size: tuple[int, int] | None
    output: str = RELATIVE_INVERSE_DEPTH
    requires_depth: bool = False

    @property
    def size(self) -> tuple[int, int] | None:
        """``input_size`` under the name a :class:`~edgedepth.runtime.predictor.Predictor` uses."""
        return self.input_size

    def describe(self) -> dict[str, Any]:
        """The teacher's metadata, for label files and reports."""
        size = list(self.input_size) if self.input_size is not None else None
        return {"name": self.name, "input_size": size, "output": self.output}

    @torch.inference_mode()
    def predict_batch(
        self, images: Sequence[np.ndarray], depths: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """uint8 RGB images (all the same size) to ``N x 1 x H x W`` float32 inverse depth at that size (NumPy, as a
        Predictor answers).

        ``depths`` (metric ground truth, ``H x W`` per image) is read only by teachers with
        ``requires_depth`` (the oracle); the others ignore it, so a caller may always pass what it has.
        """
        width, height = batch_image_size(images)
        prediction = self._infer(images, depths)
        return upsample_prediction(prediction.float().cpu().numpy(), (width, height))

    @abstractmethod
    def _infer(self, images: Sequence[np.ndarray], depths: Sequence[np.ndarray] | None) -> torch.Tensor:
        """The network on a batch: ``N x 1 x h x w`` inverse depth covering the whole image, any ``h x w``."""
