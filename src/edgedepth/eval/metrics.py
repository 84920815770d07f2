"""Depth metrics and the alignment of relative predictions to metric ground truth: pure array functions.

A prediction is aligned in inverse depth (:func:`align`, by :func:`edgedepth.core.depth.fit_scale_shift`), clamped
at the far limit and inverted (:func:`edgedepth.core.depth.inverse_to_depth_clamped`), then scored on the valid
pixels (:func:`depth_metrics`). The crop, the depth limits and the alignment are arguments, never constants inside.
Everything is computed in float64 on one image at a time. :func:`frame_flicker` measures how a video's predictions
flicker between frames.

A prediction that cannot be scored (non-finite values, no valid pixel, a constant map that leaves the
alignment undetermined) raises :class:`~edgedepth.core.depth.UnscorableImage`, so the caller can skip that image
with a warning.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from edgedepth.core.depth import DEFAULT_MAX_DEPTH, UnscorableImage, chunks, fit_scale_shift, inverse_to_depth_clamped
from edgedepth.core.sizes import Crop

#: How a prediction (relative inverse depth) is brought to metric scale before scoring:
#: ``lsq-disparity``: least-squares scale and shift in disparity against 1 / ground truth (MiDaS, the seed);
#: ``median-depth``: one scale in depth space, median(ground truth) / median(1 / prediction) (monodepth2);
#: ``none``: the prediction is taken as metric inverse depth (1 / metres) as it is.
Alignment = Literal["lsq-disparity", "median-depth", "none"]

ALIGNMENTS: tuple[Alignment, ...] = ("lsq-disparity", "median-depth", "none")

#: The metrics, in the order they are reported. ``delta1..3`` are fractions of pixels with
#: max(pred / gt, gt / pred) below 1.25, 1.25² and 1.25³; log is natural except in ``log10``.
METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")


def valid_mask(
    depth: np.ndarray, min_depth: float = 0.0, max_depth: float = DEFAULT_MAX_DEPTH, crop: Crop | None = None
) -> np.ndarray:
    """Pixels where the ground truth is usable: ``min_depth < depth < max_depth``, finite, inside ``crop``.

    The seed uses ``0 < d < 10`` (the NYU toolbox's far limit) inside the crop rows 45:471, columns 41:601.
    """
    depth = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(depth) & (depth > min_depth) & (depth < max_depth)
    if crop is not None:
        top, bottom, left, right = crop
        height, width = depth.shape[-2:]
        if not (0 <= top < bottom <= height and 0 <= left < right <= width):
            raise ValueError(f"crop {crop} does not fit a {width}x{height} frame")
        inside = np.zeros(depth.shape[-2:], dtype=bool)
        inside[top:bottom, left:right] = True
        mask &= inside
    return mask


def align(
    prediction: np.ndarray, depth: np.ndarray, mask: np.ndarray, alignment: Alignment = "lsq-disparity"
) -> np.ndarray:
    """Bring a relative inverse depth ``prediction`` to metric inverse depth (1 / metres) against ``depth``.

    Only the pixels of ``mask`` inform the fit; the whole map is transformed. See :data:`Alignment`.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    if alignment == "none":
        return prediction
    if alignment == "lsq-disparity":
        target = np.zeros_like(prediction)
        target[mask] = 1.0 / np.asarray(depth, dtype=np.float64)[mask]
        scale, shift = fit_scale_shift(prediction, target, mask)
        return scale * prediction + shift
    if alignment == "median-depth":
        usable = mask & (prediction > 0)
        if not usable.any():
            raise UnscorableImage("no positive prediction on the valid pixels, median scaling undefined")
        # depth_aligned = s / prediction with s = median(gt) / median(1 / prediction); in disparity: prediction / s
        scale = float(np.median(np.asarray(depth, dtype=np.float64)[usable]) / np.median(1.0 / prediction[usable]))
        return prediction / scale
    raise ValueError(f"unknown alignment {alignment!r}; use one of {', '.join(ALIGNMENTS)}")


def depth_metrics(prediction: np.ndarray, depth: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """The standard NYU metrics of a metric ``prediction`` against ``depth`` on the pixels of ``mask`` (None: all).

    Definitions as in the seed's ``compute_errors`` and Depth-Anything-V2's ``eval_depth``:
    AbsRel = mean(|p - g| / g), SqRel = mean((p - g)² / g), RMSE = sqrt(mean((p - g)²)),
    RMSE log = sqrt(mean((ln p - ln g)²)), log10 = mean(|log10 p - log10 g|), and the δ thresholds (strict <).
    """
    return masked_metrics(prediction, depth, mask, METRIC_NAMES)


def masked_metrics(
    prediction: np.ndarray,
    depth: np.ndarray,
    mask: np.ndarray | None,
    names: tuple[str, ...],
    ratio_dtype: type[np.floating] = np.float64,
) -> dict[str, float]:
    """:func:`metrics_from_sums` of ``prediction`` on ``mask``, the δ ratios divided in ``ratio_dtype``."""
    p, g = np.asarray(prediction), np.asarray(depth)
    if mask is not None:
        p, g = p[mask], g[mask]
    if g.size == 0:
        raise UnscorableImage("no valid ground-truth pixel")
    if not np.all(np.isfinite(p)) or not np.all(p > 0):
        raise UnscorableImage("prediction not finite and positive on every valid pixel")
    if not np.all(g > 0):
        raise ValueError("ground truth must be positive on the mask")
    sums = sum(
        error_sums(p[c].astype(np.float64), g[c].astype(np.float64), p[c].astype(ratio_dtype), g[c].astype(ratio_dtype))
        for c in chunks(g.size)
    )
    assert isinstance(sums, np.ndarray)  # at least one chunk: g has pixels
    return metrics_from_sums(sums, g.size, names)


#: The per-pixel errors whose sums the metrics are made of, in the order :func:`error_sums` returns them.
ERROR_SUMS = ("abs_rel", "sq_rel", "sq", "log_sq", "log10", "delta1", "delta2", "delta3", "inverse_sq", "log")


def error_sums(p: np.ndarray, g: np.ndarray, p_ratio: np.ndarray, g_ratio: np.ndarray) -> np.ndarray:
    """The sums over pixels (positive float64 vectors) named by :data:`ERROR_SUMS`; the δ entries count pixels whose
    ``max(p / g, g / p)`` is below each threshold, of ``p_ratio`` and ``g_ratio`` in their own dtype."""
    diff = p - g
    log_diff = np.log(p) - np.log(g)
    ratio = np.maximum(p_ratio / g_ratio, g_ratio / p_ratio)  # divided and compared in their dtype
    return np.array([
        np.sum(np.abs(diff) / g), np.sum(diff**2 / g), np.sum(diff**2), np.sum(log_diff**2),
        np.sum(np.abs(np.log10(p) - np.log10(g))), np.count_nonzero(ratio < 1.25),
        np.count_nonzero(ratio < 1.25**2), np.count_nonzero(ratio < 1.25**3), np.sum((1.0 / p - 1.0 / g) ** 2),
        np.sum(log_diff),
    ])


def metrics_from_sums(sums: np.ndarray, count: int, names: tuple[str, ...]) -> dict[str, float]:
    mean = dict(zip(ERROR_SUMS, sums / count))
    metrics = {
        "abs_rel": mean["abs_rel"],
        "sq_rel": mean["sq_rel"],
        "rmse": np.sqrt(mean["sq"]),
        "rmse_log": np.sqrt(mean["log_sq"]),
        "log10": mean["log10"],
        "delta1": mean["delta1"],
        "delta2": mean["delta2"],
        "delta3": mean["delta3"],
        "i_rmse": np.sqrt(mean["inverse_sq"]),
        # The variance of ln p - ln g, floored at 0: rounding can take an exact prediction's a hair below, which
        # is a NaN in Marigold's.
        "silog_rmse": 100.0 * np.sqrt(max(mean["log_sq"] - mean["log"] ** 2, 0.0)),
    }
    return {name: float(metrics[name]) for name in names}


def score_prediction(
    prediction: np.ndarray,
    depth: np.ndarray,
    mask: np.ndarray,
    alignment: Alignment = "lsq-disparity",
    max_depth: float = DEFAULT_MAX_DEPTH,
) -> tuple[dict[str, float], np.ndarray]:
    """Align one relative inverse depth map, convert it to depth and score it: ``(metrics, metric depth)``.

    Raises :class:`UnscorableImage` for non-finite predictions, an empty mask or a failed alignment.
    """
    prediction = np.asarray(prediction)
    bad = int(np.size(prediction) - np.count_nonzero(np.isfinite(prediction)))
    if bad:
        raise UnscorableImage(f"prediction has {bad} non-finite value(s)")
    if not mask.any():
        raise UnscorableImage("no valid ground-truth pixel")
    predicted_depth = inverse_to_depth_clamped(align(prediction, depth, mask, alignment), max_depth)
    return depth_metrics(predicted_depth, depth, mask), predicted_depth


def mean_metrics(per_image: list[dict[str, float]], names: tuple[str, ...] = METRIC_NAMES) -> dict[str, float]:
    """Average each metric over images (every image weighs the same, as in the seed's MetricAggregator and
    Marigold's MetricTracker); ``names``: which, e.g. :data:`ZERO_SHOT_METRIC_NAMES`."""
    if not per_image:
        raise ValueError("no image to average")
    return {name: float(np.mean([metrics[name] for metrics in per_image])) for name in names}


def frame_flicker(
    previous: np.ndarray,
    current: np.ndarray,
    previous_depth: np.ndarray,
    current_depth: np.ndarray,
    static_change: float = 0.01,
) -> float:
    """Flicker between two frames of predicted inverse depth: the mean absolute change at the pixels whose true
    inverse depth changed by less than ``static_change`` (relative), over the current frame's median.

    The true depths (metres, 0 or non-finite = unknown) pick the pixels that should not change; dividing by the
    median makes the measure unitless, so relative and stabilised maps compare. Raises :class:`UnscorableImage`
    when no pixel is static or the median is not positive.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        before, after = 1.0 / np.asarray(previous_depth, np.float64), 1.0 / np.asarray(current_depth, np.float64)
        static = np.isfinite(before) & np.isfinite(after) & (np.abs(after - before) < static_change * before)
    if not static.any():
        raise UnscorableImage("no pixel keeps its true inverse depth between the two frames")
    current = np.asarray(current, dtype=np.float64)
    median = float(np.median(current))
    if not median > 0:
        raise UnscorableImage(f"median inverse depth {median:g}: the measure needs positive inverse depth")
    return float(np.mean(np.abs(current[static] - np.asarray(previous, dtype=np.float64)[static]))) / median
