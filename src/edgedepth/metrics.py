"""Depth metrics and the alignment of relative predictions to metric ground truth: pure array functions.

This is the one place where relative inverse depth becomes metric depth (see DESIGN.md): a prediction is
aligned in disparity space (:func:`align`), clamped at the far limit and inverted (:func:`disparity_to_depth`),
then scored on the valid pixels (:func:`depth_metrics`). The crop, the depth limits and the alignment are
arguments, never constants inside. Everything is computed in float64 on one image at a time.

A prediction that cannot be scored (non-finite values, no valid pixel, a constant map that leaves the
alignment undetermined) raises :class:`UnscorableImage`, so the caller can skip that image with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

#: How a prediction (relative inverse depth) is brought to metric scale before scoring:
#: ``lsq-disparity``: least-squares scale and shift in disparity against 1 / ground truth (MiDaS, the seed);
#: ``median-depth``: one scale in depth space, median(ground truth) / median(1 / prediction) (monodepth2);
#: ``none``: the prediction is taken as metric inverse depth (1 / metres) as it is.
Alignment = Literal["lsq-disparity", "median-depth", "none"]
ALIGNMENTS: tuple[Alignment, ...] = ("lsq-disparity", "median-depth", "none")

#: A crop box ``(top, bottom, left, right)``: zero-based, half-open rows ``top:bottom`` and columns ``left:right``.
Crop = tuple[int, int, int, int]

#: The metrics, in the order they are reported. ``delta1..3`` are fractions of pixels with
#: max(pred / gt, gt / pred) below 1.25, 1.25² and 1.25³; log is natural except in ``log10``.
METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")

# A prediction whose spread over the valid pixels is below this fraction of its magnitude is constant:
# the least-squares scale is then undetermined (the seed's solver returns scale = shift = 0 there).
_RELATIVE_VARIANCE_FLOOR = 1e-12


class UnscorableImage(ValueError):
    """This image's prediction cannot be scored; the message says why (one line)."""


def valid_mask(
    depth: np.ndarray, min_depth: float = 0.0, max_depth: float = 10.0, crop: Crop | None = None
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


def fit_scale_shift(
    prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, float]:
    """Least-squares ``scale, shift`` minimising ``sum over mask (None: all) of (scale * prediction + shift - target)²``.

    The same solution as the seed's 2x2 normal equations (and Marigold's ``np.linalg.lstsq``), written in centred
    form for float64 accuracy, a million pixels at a time. Raises :class:`UnscorableImage` when fewer than two
    pixels are valid or the prediction is constant.
    """
    p, t = np.asarray(prediction), np.asarray(target)
    if mask is not None:
        p, t = p[mask], t[mask]
    if p.size < 2:
        raise UnscorableImage(f"{p.size} valid pixel(s), alignment needs at least 2")
    chunks = _chunks(p.size)
    p_mean = sum(float(np.sum(p[c], dtype=np.float64)) for c in chunks) / p.size
    t_mean = sum(float(np.sum(t[c], dtype=np.float64)) for c in chunks) / p.size
    variance = covariance = square = 0.0
    for c in chunks:
        p_chunk = p[c].astype(np.float64)
        p_centred = p_chunk - p_mean
        variance += float(np.dot(p_centred, p_centred))
        covariance += float(np.dot(p_centred, t[c].astype(np.float64) - t_mean))
        square += float(np.dot(p_chunk, p_chunk))
    if variance <= _RELATIVE_VARIANCE_FLOOR * square:
        raise UnscorableImage("constant prediction over the valid pixels, scale and shift undetermined")
    scale = covariance / variance
    return scale, t_mean - scale * p_mean


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


def disparity_to_depth(disparity: np.ndarray, max_depth: float = 10.0) -> np.ndarray:
    """Metric inverse depth to depth, clamping the disparity below at ``1 / max_depth`` as the seed does.

    Non-positive disparities (beyond the affine horizon) thereby become ``max_depth``; the result lies in
    ``(0, max_depth]``.
    """
    return 1.0 / np.maximum(np.asarray(disparity, dtype=np.float64), 1.0 / max_depth)


def depth_metrics(prediction: np.ndarray, depth: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """The standard NYU metrics of a metric ``prediction`` against ``depth`` on the pixels of ``mask`` (None: all).

    Definitions as in the seed's ``compute_errors`` and Depth-Anything-V2's ``eval_depth``:
    AbsRel = mean(|p - g| / g), SqRel = mean((p - g)² / g), RMSE = sqrt(mean((p - g)²)),
    RMSE log = sqrt(mean((ln p - ln g)²)), log10 = mean(|log10 p - log10 g|), and the δ thresholds (strict <).
    """
    return _masked_metrics(prediction, depth, mask, METRIC_NAMES)


def _masked_metrics(
    prediction: np.ndarray,
    depth: np.ndarray,
    mask: np.ndarray | None,
    names: tuple[str, ...],
    ratio_dtype: type[np.floating] = np.float64,
) -> dict[str, float]:
    """:func:`_metrics_from_sums` of ``prediction`` on ``mask``, the δ ratios divided in ``ratio_dtype``."""
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
        _error_sums(p[c].astype(np.float64), g[c].astype(np.float64), p[c].astype(ratio_dtype), g[c].astype(ratio_dtype))
        for c in _chunks(g.size)
    )
    return _metrics_from_sums(sums, g.size, names)


#: Pixels per chunk of the sums behind the fit and the metrics: bounded memory on ETH3D's 24-megapixel frames.
_CHUNK_PIXELS = 1 << 20

#: The per-pixel errors whose sums the metrics are made of, in the order :func:`_error_sums` returns them.
_SUMS = ("abs_rel", "sq_rel", "sq", "log_sq", "log10", "delta1", "delta2", "delta3", "inverse_sq", "log")


def _chunks(count: int) -> list[slice]:
    return [slice(start, start + _CHUNK_PIXELS) for start in range(0, count, _CHUNK_PIXELS)]


def _error_sums(p: np.ndarray, g: np.ndarray, p_ratio: np.ndarray, g_ratio: np.ndarray) -> np.ndarray:
    """The sums over pixels (positive float64 vectors) named by :data:`_SUMS`; the δ entries count pixels whose
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


def _metrics_from_sums(sums: np.ndarray, count: int, names: tuple[str, ...]) -> dict[str, float]:
    mean = dict(zip(_SUMS, sums / count))
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
    max_depth: float = 10.0,
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
    predicted_depth = disparity_to_depth(align(prediction, depth, mask, alignment), max_depth)
    return depth_metrics(predicted_depth, depth, mask), predicted_depth


def mean_metrics(per_image: list[dict[str, float]], names: tuple[str, ...] = METRIC_NAMES) -> dict[str, float]:
    """Average each metric over images (every image weighs the same, as in the seed's MetricAggregator and
    Marigold's MetricTracker); ``names``: which, e.g. :data:`ZERO_SHOT_METRIC_NAMES`."""
    if not per_image:
        raise ValueError("no image to average")
    return {name: float(np.mean([metrics[name] for metrics in per_image])) for name in names}


# ---------------------------------------------------------------------------------------------------------------
# Metric scale at predict time (``edgedepth predict --metric``) and temporal stability: robust fits, pure.

#: A residual further than this many robust standard deviations from the fit is an outlier.
ROBUST_CUTOFF = 3.0
# 1.4826 * median absolute deviation estimates the standard deviation of normally distributed residuals.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, eq=False)
class ScaleShiftFit:
    """``target ≈ scale * prediction + shift`` on the points ``used`` (a boolean mask of the input's shape).

    ``sigma`` is the robust standard deviation (1.4826 MAD) of the residuals on the points used, in target units.
    """

    scale: float
    shift: float
    used: np.ndarray
    sigma: float


def _robust_sigma(residuals: np.ndarray) -> float:
    return _MAD_TO_SIGMA * float(np.median(np.abs(residuals - np.median(residuals))))


def fit_scale_shift_robust(
    prediction: np.ndarray, target: np.ndarray, mask: np.ndarray, cutoff: float = ROBUST_CUTOFF, iterations: int = 8
) -> ScaleShiftFit:
    """:func:`fit_scale_shift` that tolerates outliers (up to about a quarter of the points).

    It starts from medians and interquartile ranges (``scale = IQR(target) / IQR(prediction)``), then alternates
    keeping the points whose residual lies within ``cutoff`` robust standard deviations of the median residual and
    refitting by least squares on them, until the kept set stops changing. Raises :class:`UnscorableImage` as the
    plain fit does.
    """
    mask = np.asarray(mask, dtype=bool)
    pm = np.asarray(prediction, dtype=np.float64)[mask]
    tm = np.asarray(target, dtype=np.float64)[mask]
    if pm.size < 2:
        raise UnscorableImage(f"{pm.size} valid point(s), alignment needs at least 2")
    p_low, p_mid, p_high = np.percentile(pm, [25.0, 50.0, 75.0])
    t_low, t_mid, t_high = np.percentile(tm, [25.0, 50.0, 75.0])
    everything = np.ones(pm.size, dtype=bool)
    if p_high > p_low:
        scale = float((t_high - t_low) / (p_high - p_low))
        shift = float(t_mid - scale * p_mid)
    else:  # half the points share one prediction: start from least squares
        scale, shift = fit_scale_shift(pm, tm, everything)
    floor = 1e-9 * max(abs(float(t_mid)), 1e-12)  # an exact fit must not trim everything
    used = None  # the points the current scale and shift were fitted on (None: the start from quartiles)
    for _ in range(iterations):
        residual = scale * pm + shift - tm
        residual -= np.median(residual)  # the start from quartiles may be off by a shift
        kept = np.abs(residual) <= cutoff * max(_robust_sigma(residual), floor)
        if (used is not None and np.array_equal(kept, used)) or np.count_nonzero(kept) < 2:
            break
        scale, shift = fit_scale_shift(pm, tm, kept)
        used = kept
    if used is None:
        used = everything
    full = np.zeros(mask.shape, dtype=bool)
    full[mask] = used
    return ScaleShiftFit(scale, shift, full, _robust_sigma((scale * pm + shift - tm)[used]))


def depth_from_inverse(inverse_depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Metric inverse depth (1 / m) to depth in metres, 0 where there is none: at or beyond ``max_depth``, or where
    the inverse depth is not positive (past the horizon of the fit) or not finite. Float32, for outputs."""
    disparity = np.asarray(inverse_depth, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = 1.0 / disparity
        return np.where(np.isfinite(depth) & (disparity > 1.0 / max_depth), depth, 0.0).astype(np.float32)


#: The floor fit's defaults: floor pixels lie within this relative error of the floor plane's inverse depth, a
#: pixel below the plane (impossible: nothing is seen through the floor) costs this many outliers, and this many
#: two-pixel hypotheses are drawn (deterministically) on at most this many pixels.
FLOOR_TOLERANCE = 0.05
FLOOR_BELOW_PENALTY = 10.0
FLOOR_HYPOTHESES = 256
FLOOR_SAMPLE = 4096
#: A floor must be seen on at least this fraction of the frame's pixels, and over this relative range of inverse
#: depth (its far edge at most 1 / (1 + range) of its near edge's), for its scale to be determined; and it is a
#: region, not scattered pixels: at least this fraction of its pixels have their right-hand neighbour on it too.
FLOOR_MIN_FRACTION = 0.01
FLOOR_MIN_RANGE = 0.15
FLOOR_MIN_COHERENCE = 0.5


class NoFloor(UnscorableImage):
    """The floor cannot be found in this frame (none below the horizon, or none that fits the plane)."""


def fit_to_floor(
    prediction: np.ndarray,
    floor: np.ndarray,
    max_depth: float = 10.0,
    tolerance: float = FLOOR_TOLERANCE,
    below_penalty: float = FLOOR_BELOW_PENALTY,
    hypotheses: int = FLOOR_HYPOTHESES,
    seed: int = 0,
) -> ScaleShiftFit:
    """Scale and shift that put the floor pixels of a relative inverse depth ``prediction`` on the floor plane.

    ``floor`` is the plane's inverse depth at every pixel (:func:`edgedepth.geometry.floor_inverse_depth`). The
    candidates are the pixels where it is nearer than ``max_depth``: the lower part of the frame, below the
    horizon. Every surface seen there is on the floor or in front of it (walls, furniture), so with the right fit
    floor pixels satisfy ``scale * prediction + shift ≈ floor`` and the others lie above it; a fit that puts many
    pixels *below* the floor (the top of a table taken for the floor, say) is wrong. So two-pixel hypotheses are
    scored by a truncated cost, asymmetric: ``(r / tolerance)²`` for a relative residual ``r`` within
    ``tolerance``, 1 above, ``below_penalty`` below; the best is refined by least squares on its inliers, the band
    of which narrows to :data:`ROBUST_CUTOFF` robust standard deviations of their residuals (at least 0.1 %).

    Raises :class:`NoFloor` when no candidate exists, or too few pixels (:data:`FLOOR_MIN_FRACTION`), scattered
    (:data:`FLOOR_MIN_COHERENCE`) or over too narrow a range (:data:`FLOOR_MIN_RANGE`), fit a floor with a positive
    scale. A large horizontal surface that hides the whole floor (a bed filling the lower frame) is taken for it.
    """
    p = np.asarray(prediction, dtype=np.float64)
    g = np.asarray(floor, dtype=np.float64)
    candidates = np.isfinite(p) & (g > 1.0 / max_depth)
    index = np.flatnonzero(candidates)
    needed = max(int(FLOOR_MIN_FRACTION * p.size), 2)
    if index.size < needed:
        raise NoFloor(f"the floor would be out of view (nearer than {max_depth:g} m on {index.size} pixel(s)): "
                      "check the camera height, pitch and intrinsics")
    sample = index[:: max(1, index.size // FLOOR_SAMPLE)]
    ps, gs = p.ravel()[sample], g.ravel()[sample]
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, sample.size, (2, hypotheses))
    dp = ps[first] - ps[second]
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = (gs[first] - gs[second]) / dp
        shifts = gs[first] - scales * ps[first]
    good = np.isfinite(scales) & (scales > 0)
    if not good.any():
        raise NoFloor("no part of the lower frame rises towards the camera as a floor does")
    scales, shifts = scales[good], shifts[good]
    relative = (scales[:, None] * ps[None, :] + shifts[:, None]) / gs[None, :] - 1.0
    cost = np.where(np.abs(relative) <= tolerance, (relative / tolerance) ** 2,
                    np.where(relative > 0, 1.0, below_penalty)).sum(axis=1)
    best = int(np.argmin(cost))
    scale, shift = float(scales[best]), float(shifts[best])
    safe = np.where(candidates, g, 1.0)
    used: np.ndarray | None = None
    band = tolerance
    for _ in range(6):  # least squares on the inliers, whose band narrows to the fit's own noise
        relative = (scale * p + shift) / safe - 1.0
        inliers = candidates & (np.abs(relative) <= band)
        if np.count_nonzero(inliers) < needed:
            break
        scale, shift = fit_scale_shift(p, g, inliers)
        if used is not None and np.array_equal(inliers, used):
            break
        used = inliers
        band = min(tolerance, max(ROBUST_CUTOFF * _robust_sigma(((scale * p + shift) / safe - 1.0)[used]), 1e-3))
    if used is None or scale <= 0:
        count = int(np.count_nonzero(inliers))
        raise NoFloor(f"no floor found: {count} of the {index.size} pixels below the horizon fit a floor plane "
                      f"(at least {needed} must)")
    coherence = np.count_nonzero(used[:, :-1] & used[:, 1:]) / max(np.count_nonzero(used[:, :-1]), 1)
    if coherence < FLOOR_MIN_COHERENCE:
        raise NoFloor(f"no floor found: the {np.count_nonzero(used)} pixels that fit a floor plane are scattered, "
                      f"not a region ({coherence:.0%} of them have a neighbour that fits)")
    near, far = np.percentile(g[used], [95.0, 5.0])
    if near < (1.0 + FLOOR_MIN_RANGE) * far:
        raise NoFloor(f"the floor is seen over too narrow a band ({1 / near:.2f} to {1 / far:.2f} m) to fix a scale")
    return ScaleShiftFit(scale, shift, used, _robust_sigma((scale * p + shift - g)[used]))


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


# ---------------------------------------------------------------------------------------------------------------
# The zero-shot benchmark: Marigold's evaluator (script/depth/eval.py, src/util/alignment.py, src/util/metric.py)
# and ZipDepth's (zipdepth/evaluation/metrics.py, evaluator.py), which differ in how they subsample the fit.

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
    return _masked_metrics(prediction, depth, mask, ZERO_SHOT_METRIC_NAMES, ZERO_SHOT_RATIO_DTYPE)


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
    sums = np.zeros(len(_SUMS))
    for c in _chunks(count):
        aligned = zero_shot_depth(predicted[c], scale, shift, space, min_depth, max_depth)
        if evaluator == "marigold":
            ratio_depth = zero_shot_depth(predicted[c], scale, shift, space, min_depth, max_depth, ZERO_SHOT_RATIO_DTYPE)
        else:
            ratio_depth = aligned.astype(ZERO_SHOT_RATIO_DTYPE)
        sums += _error_sums(aligned, truth[c].astype(np.float64), ratio_depth, truth[c].astype(ZERO_SHOT_RATIO_DTYPE))
    return _metrics_from_sums(sums, count, ZERO_SHOT_METRIC_NAMES)
