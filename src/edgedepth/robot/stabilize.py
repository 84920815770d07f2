"""Temporally stable video depth: each frame aligned to a running estimate, then blended into it.

A per-frame network gives each frame its own scale and shift (relative inverse depth) and its own noise, so a
video flickers. :class:`Stabilizer` removes both without extra network runs:

1. the new frame's prediction ``p`` is aligned to the running estimate ``S`` by a robust scale and shift
   (:func:`edgedepth.robot.fits.fit_scale_shift_robust`, on a grid of pixels): global flicker goes;
2. each pixel moves towards the aligned value by ``blend`` where the two agree within the fit's noise, and
   all the way where they differ by well more (``motion`` noise levels: something moved), so noise averages out
   and motion does not smear.

The output is the estimate, in the scale of the first frame. It runs on the network's output (e.g. 256x192),
before the upsampling to the frame's size, which it commutes with up to the per-pixel weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgedepth.core.depth import UnscorableImage
from edgedepth.robot.fits import fit_scale_shift_robust


@dataclass
class Stabilizer:
    """Stateful: call it on each frame's prediction in order (``H x W`` float array); it returns the estimate.

    ``blend``: the weight of a new frame where it agrees with the estimate (1: no smoothing). ``motion``: residuals
    (in robust standard deviations of the fit) from which a pixel is taken as changed, fully at the second.
    ``samples``: about how many pixels, on a regular grid, the fit uses (its cost does not grow with the map).
    """

    blend: float = 0.35
    motion: tuple[float, float] = (2.0, 4.0)
    samples: int = 768
    _estimate: np.ndarray | None = field(default=None, init=False, repr=False)

    def reset(self) -> None:
        """Forget the estimate (a cut in the video): the next frame starts anew."""
        self._estimate = None

    def __call__(self, prediction: np.ndarray) -> np.ndarray:
        current = np.asarray(prediction, dtype=np.float32)
        estimate = self._estimate
        if estimate is None or estimate.shape != current.shape or not np.isfinite(current).all():
            self._estimate = current.copy()
            return current
        step = max(1, round((current.size / self.samples) ** 0.5))
        sample_p, sample_s = current[::step, ::step], estimate[::step, ::step]
        try:
            found = fit_scale_shift_robust(sample_p, sample_s, np.ones(sample_p.shape, dtype=bool), iterations=2)
        except UnscorableImage:  # a constant frame: nothing to align to
            self._estimate = current.copy()
            return current
        change = current * np.float32(found.scale)
        change += np.float32(found.shift)
        change -= estimate  # the aligned frame's difference from the estimate
        low, high = (found.sigma * level for level in self.motion)
        weight = np.abs(change)  # in place from here: this runs on every frame
        weight -= np.float32(low)
        weight *= np.float32(1.0 / max(high - low, 1e-12))
        np.clip(weight, 0.0, 1.0, out=weight)  # 0: within the noise, 1: moved
        weight *= np.float32(1.0 - self.blend)
        weight += np.float32(self.blend)
        weight *= change
        estimate += weight
        return estimate.copy()  # the caller's to keep; the estimate goes on changing
