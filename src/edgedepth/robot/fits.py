"""Fits at predict time: a robust scale and shift against sparse references, and the floor under the camera.

Pure array functions; :mod:`edgedepth.robot.metric_scale` brings a prediction to metres with them and
:mod:`edgedepth.robot.stabilize` aligns video frames with :func:`fit_scale_shift_robust`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgedepth.core.depth import DEFAULT_MAX_DEPTH, UnscorableImage, fit_scale_shift

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


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array, by partition: a third of its cost on the few hundred points a video frame's
    fit uses (:class:`~edgedepth.robot.stabilize.Stabilizer` runs it on every frame)."""
    half = values.size // 2
    if values.size % 2:
        return float(np.partition(values, half)[half])
    lower, upper = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return 0.5 * (float(lower) + float(upper))


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    """``np.percentile(values, [25, 50, 75])`` (linear interpolation) of a 1-D array, from one sort."""
    ordered = np.sort(values)
    found = []
    for position in (0.25 * (ordered.size - 1), 0.5 * (ordered.size - 1), 0.75 * (ordered.size - 1)):
        low = int(position)
        high = min(low + 1, ordered.size - 1)
        found.append(float(ordered[low]) + (float(ordered[high]) - float(ordered[low])) * (position - low))
    return found[0], found[1], found[2]


def _robust_sigma(residuals: np.ndarray) -> float:
    return _MAD_TO_SIGMA * _median(np.abs(residuals - _median(residuals)))


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
    p_low, p_mid, p_high = _quartiles(pm)
    t_low, t_mid, t_high = _quartiles(tm)
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
        residual -= _median(residual)  # the start from quartiles may be off by a shift
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
    max_depth: float = DEFAULT_MAX_DEPTH,
    tolerance: float = FLOOR_TOLERANCE,
    below_penalty: float = FLOOR_BELOW_PENALTY,
    hypotheses: int = FLOOR_HYPOTHESES,
    seed: int = 0,
) -> ScaleShiftFit:
    """Scale and shift that put the floor pixels of a relative inverse depth ``prediction`` on the floor plane.

    ``floor`` is the plane's inverse depth at every pixel (:func:`edgedepth.robot.geometry.floor_inverse_depth`). The
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
    coherence = np.count_nonzero(used[:, :-1] & used[:, 1:]) / max(int(np.count_nonzero(used[:, :-1])), 1)
    if coherence < FLOOR_MIN_COHERENCE:
        raise NoFloor(f"no floor found: the {np.count_nonzero(used)} pixels that fit a floor plane are scattered, "
                      f"not a region ({coherence:.0%} of them have a neighbour that fits)")
    near, far = np.percentile(g[used], [95.0, 5.0])
    if near < (1.0 + FLOOR_MIN_RANGE) * far:
        raise NoFloor(f"the floor is seen over too narrow a band ({1 / near:.2f} to {1 / far:.2f} m) to fix a scale")
    return ScaleShiftFit(scale, shift, used, _robust_sigma((scale * p + shift - g)[used]))
