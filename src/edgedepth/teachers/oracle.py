"""The oracle teacher: the inverse of the ground-truth depth that comes with a dataset.

It is how the tests and the demo run the whole pipeline (label, train, eval) without downloadable weights:
on synthetic scenes or NYU the "teacher" is exact, so anything the pipeline loses is the pipeline's fault.

Design: RGB alone does not hold the depth, so the depth travels beside the images through the one teacher
call every backend shares, ``predict_batch(images, depths=...)``. Only a teacher with ``requires_depth``
(this one) reads it; a label pipeline passes whatever depth its source has, cropped and resized exactly as
the images (for the seed's recipe: the same 512x384 crop of the same resized frame, depth resized with
nearest-neighbour so no invented depths appear at edges), and asks for it only when ``requires_depth`` is
set. Inverse depth is ``1 / depth`` where depth is finite and positive and 0 elsewhere, the holes staying
marked as invalid (0) rather than becoming "infinitely far".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from edgedepth.core.errors import EdgedepthError
from edgedepth.teachers.base import Teacher, invert_ground_truth


class OracleTeacher(Teacher):
    """Returns ``1 / depth`` of the ground truth given with each image (0 where depth is invalid)."""

    name = "oracle"
    input_size = None
    requires_depth = True

    def _infer(self, images: Sequence[np.ndarray], depths: Sequence[np.ndarray] | None) -> torch.Tensor:
        if depths is None:
            raise EdgedepthError(
                "the oracle teacher needs the ground-truth depth of each image; use it on a source that has depth "
                "(synthetic scenes, NYU Depth v2), or pick a network teacher"
            )
        if len(depths) != len(images):
            raise EdgedepthError(f"oracle teacher: {len(images)} images but {len(depths)} depth maps")
        for image, depth in zip(images, depths):
            if depth.shape != image.shape[:2]:
                raise EdgedepthError(
                    f"oracle teacher: depth map of shape {depth.shape} does not match its image's {image.shape[:2]}"
                )
        batch = torch.from_numpy(np.stack([np.asarray(depth, dtype=np.float32) for depth in depths]))
        return invert_ground_truth(batch).unsqueeze(1)
