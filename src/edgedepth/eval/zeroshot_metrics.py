"""The zero-shot benchmark's maths: Marigold's evaluator (script/depth/eval.py, src/util/alignment.py,
src/util/metric.py) and ZipDepth's (zipdepth/evaluation/metrics.py, evaluator.py), which differ in how they subsample
the fit. Pure array functions, one frame at a time.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

from edgedepth.core.depth import UnscorableImage, chunks, fit_scale_shift
from edgedepth.eval.metrics import ERROR_SUMS, METRIC_NAMES, error_sums, masked_metrics, metrics_from_sums

#: Marigold's metrics in its order: the standard eight, then RMSE of inverse depth (1/m) and the scale-invariant
#: log RMSE (times 100).
ZERO_SHOT_METRIC_NAMES = (*METRIC_NAMES, "i_rmse", "silog_rmse")

#: What the fit of :func:`zero_shot_fit` is done in: ``disparity`` (Marigold's ``least_square_disparity``, for
#: relative inverse depth: ours, MiDaS, Depth Anything) or ``depth`` (``least_square``, for affine-invariant
#: depth such as Marigold's own outputs).
AlignmentSpace = Literal["disparity", "depth"]
ALIGNMENT_SPACES: tuple[AlignmentSpace, ...] = ("disparity", "depth")

#: Whose evaluator's details to follow where they differ. ``--alignment-max-res`` subsamples the fit: ``marigold``
#: as its ``torch.nn.Upsample(mode="nearest")`` on an ``1 x H x W`` tensor does, which PyTorch reads as
#: one-dimensional, so only the columns are subsampled, to ``floor(W * s)`` with ``s = min(max_res / H, max_res /
#: W)``; ``zipdepth`` as its ``cv2.resize(INTER_NEAREST)`` does, both sides to ``int(side * max_res / max(H, W))``.
#: The δ ratios are those of the evaluator's float32 (:data:`ZERO_SHOT_RATIO_DTYPE`): Marigold aligns in float32
#: (its ``lstsq`` returns float32 scale and shift), ZipDepth aligns in float64 and casts the depth to float32.
Evaluator = Literal["marigold", "zipdepth"]

#: Marigold (and ZipDepth) clip the aligned disparity below at this before inverting it.
ZERO_SHOT_DISPARITY_FLOOR = 1e-3

#: Marigold and ZipDepth divide float32 depths for the δ ratios. A prediction clipped to the range's end against
#: ground truth in millimetres can sit exactly on a threshold (10 m against 6.4 m is 1.5625 = 1.25²), where float32
#: and float64 round to different sides, and a pixel a few float32 steps from one follows their rounding of the
#: aligned depth: the zero-shot δ count what theirs count (:data:`Evaluator`); the other metrics stay float64.
ZERO_SHOT_RATIO_DTYPE = np.float32


def alignment_subsample(
    arrays: list[np.ndarray], max_resolution: int | None, evaluator: Evaluator = "marigold"
) -> list[np.ndarray]:
    """The ``H x W`` arrays (all one shape) nearest-neighbour subsampled for the least-squares fit, or as they are.

    See :data:`Evaluator`. Marigold's index of output column ``i`` is PyTorch's ``floor(float32(i) *
    float32(1 / s))``, computed the same way here; ZipDepth's is OpenCV's own resize.
    """
    height, width = arrays[0].shape
    if max_resolution is None:
        return arrays
    if evaluator == "marigold":
        factor = min(max_resolution / height, max_resolution / width)
        if factor >= 1:
            return arrays
        inverse = np.float32(1.0 / factor)
        columns = np.floor(np.arange(math.floor(width * factor), dtype=np.float32) * inverse).astype(np.int64)
        columns = np.minimum(columns, width - 1)
        return [array[:, columns] for array in arrays]
    if max(height, width) <= max_resolution:
        return arrays
    factor = max_resolution / max(height, width)
    size = (int(width * factor), int(height * factor))
    resized = []
    for array in arrays:
        source = array.astype(np.uint8) if array.dtype == bool else array
        result = cv2.resize(source, size, interpolation=cv2.INTER_NEAREST)
        resized.append(result.astype(bool) if array.dtype == bool else result)
    return resized


def zero_shot_fit(
    prediction: np.ndarray,
    depth: np.ndarray,
    valid: np.ndarray,
    space: AlignmentSpace,
    max_resolution: int | None = None,
    evaluator: Evaluator = "marigold",
) -> tuple[float, float]:
    """Marigold's least-squares ``scale, shift`` of a relative ``prediction`` against ground truth ``depth``.

    ``disparity``: fitted against 1 / depth on the pixels of ``valid`` where depth and prediction are positive;
    ``depth``: against depth on ``valid``. The fit may run on a subsample (:func:`alignment_subsample`, taken
    before the pointwise steps, which gives the same pixels as Marigold's order). Raises :class:`UnscorableImage`
    as :func:`fit_scale_shift` does.
    """
    prediction, depth, valid = alignment_subsample([prediction, depth, valid], max_resolution, evaluator)
    if space == "disparity":
        fit = valid & (depth > 0) & (prediction > 0)
        if np.count_nonzero(fit) < 2:
            raise UnscorableImage(
                f"{np.count_nonzero(fit)} valid pixel(s) where the prediction is positive, the disparity fit needs 2"
            )
        return fit_scale_shift(prediction[fit], 1.0 / depth[fit].astype(np.float64))
    return fit_scale_shift(prediction[valid], depth[valid])


def zero_shot_depth(
    prediction: np.ndarray,
    scale: float,
    shift: float,
    space: AlignmentSpace,
    min_depth: float,
    max_depth: float,
    dtype: type[np.floating] = np.float64,
) -> np.ndarray:
    """Aligned metric depth, as Marigold's eval.py makes it: ``scale * prediction + shift``; in ``disparity``
    clipped below at :data:`ZERO_SHOT_DISPARITY_FLOOR` and inverted; then clipped to ``[min_depth, max_depth]``.

    Computed in ``dtype`` throughout (float32: Marigold's own arithmetic, its scale and shift rounded to float32 as
    its ``lstsq`` returns them). ``min_depth`` must be positive (Marigold's last clip, at 1e-6, is then a no-op).
    """
    if not min_depth > 0:
        raise ValueError(f"min_depth must be positive, got {min_depth}")
    aligned = dtype(scale) * np.asarray(prediction, dtype=dtype) + dtype(shift)
    if space == "disparity":
        aligned = dtype(1.0) / np.maximum(aligned, dtype(ZERO_SHOT_DISPARITY_FLOOR))
    return np.clip(aligned, dtype(min_depth), dtype(max_depth))


def zero_shot_metrics(prediction: np.ndarray, depth: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """:data:`ZERO_SHOT_METRIC_NAMES` of a metric ``prediction`` against ``depth`` on ``mask`` (None: all).

    The eight of :func:`depth_metrics`, plus Marigold's ``i_rmse`` = sqrt(mean((1/p - 1/g)²)) and ``silog_rmse``
    = 100 sqrt(mean(d²) - mean(d)²) with d = ln p - ln g.
    """
    return masked_metrics(prediction, depth, mask, ZERO_SHOT_METRIC_NAMES, ZERO_SHOT_RATIO_DTYPE)


def score_zero_shot(
    prediction: np.ndarray,
    depth: np.ndarray,
    valid: np.ndarray,
    space: AlignmentSpace,
    min_depth: float,
    max_depth: float,
    max_resolution: int | None = None,
    evaluator: Evaluator = "marigold",
    min_pixels: int = 1,
) -> dict[str, float]:
    """One frame scored as ``evaluator``'s evaluator scores it: :func:`zero_shot_fit`, then :func:`zero_shot_depth` and
    :func:`zero_shot_metrics` on the ``valid`` pixels, a million at a time (ETH3D's frames stay light).

    Raises :class:`UnscorableImage` for non-finite predictions, fewer than ``min_pixels`` valid pixels (ZipDepth
    skips frames with fewer than 10) or a failed fit; Marigold's evaluator would average a NaN or an arbitrary
    value into its table there.
    """
    prediction = np.asarray(prediction)
    bad = int(np.size(prediction) - np.count_nonzero(np.isfinite(prediction)))
    if bad:
        raise UnscorableImage(f"prediction has {bad} non-finite value(s)")
    count = int(np.count_nonzero(valid))
    if count < max(min_pixels, 1):
        raise UnscorableImage(f"{count} valid ground-truth pixel(s), fewer than {max(min_pixels, 1)}")
    scale, shift = zero_shot_fit(prediction, depth, valid, space, max_resolution, evaluator)
    predicted, truth = prediction[valid], np.asarray(depth)[valid]
    sums = np.zeros(len(ERROR_SUMS))
    for c in chunks(count):
        aligned = zero_shot_depth(predicted[c], scale, shift, space, min_depth, max_depth)
        if evaluator == "marigold":
            ratio_depth = zero_shot_depth(predicted[c], scale, shift, space, min_depth, max_depth, ZERO_SHOT_RATIO_DTYPE)
        else:
            ratio_depth = aligned.astype(ZERO_SHOT_RATIO_DTYPE)
        sums += error_sums(aligned, truth[c].astype(np.float64), ratio_depth, truth[c].astype(ZERO_SHOT_RATIO_DTYPE))
    return metrics_from_sums(sums, count, ZERO_SHOT_METRIC_NAMES)
