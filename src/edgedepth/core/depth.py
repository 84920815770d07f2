"""The depth representation: relative inverse depth, its least-squares alignment, its conversion to metres.

Every network predicts relative inverse depth (disparity up to an unknown scale and shift). It becomes metric
only through a scale and shift fitted against a reference (:func:`fit_scale_shift`; the evaluation's alignment in
:mod:`edgedepth.eval.metrics`, predict's metric references and stabilisation in :mod:`edgedepth.robot`), and
metric inverse depth becomes metres in one of two ways whose names say the difference: clamped at the far limit
for scoring (:func:`inverse_to_depth_clamped`, the seed's), or 0 where there is no depth for outputs
(:func:`inverse_to_depth_or_zero`). :func:`normalize_inverse_depth` is for display and 16-bit PNGs only.
"""

from __future__ import annotations

import numpy as np

#: Metres beyond which indoor depth is no depth: NYU Depth v2's far limit (its toolbox's, the seed's evaluation's),
#: the synthetic rooms' sensor range, and predict's ``--max-depth`` default.
DEFAULT_MAX_DEPTH = 10.0

#: Pixels per chunk of the float64 sums behind fits and metrics: bounded memory on ETH3D's 24-megapixel frames.
CHUNK_PIXELS = 1 << 20

# A prediction whose spread over the valid pixels is below this fraction of its magnitude is constant:
# the least-squares scale is then undetermined (the seed's solver returns scale = shift = 0 there).
_RELATIVE_VARIANCE_FLOOR = 1e-12


class UnscorableImage(ValueError):
    """This image's prediction cannot be aligned or scored; the message says why (one line)."""


def chunks(count: int) -> list[slice]:
    """Slices of at most :data:`CHUNK_PIXELS` covering ``range(count)``."""
    return [slice(start, start + CHUNK_PIXELS) for start in range(0, count, CHUNK_PIXELS)]


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
    parts = chunks(p.size)
    p_mean = sum(float(np.sum(p[c], dtype=np.float64)) for c in parts) / p.size
    t_mean = sum(float(np.sum(t[c], dtype=np.float64)) for c in parts) / p.size
    variance = covariance = square = 0.0
    for c in parts:
        p_chunk = p[c].astype(np.float64)
        p_centred = p_chunk - p_mean
        variance += float(np.dot(p_centred, p_centred))
        covariance += float(np.dot(p_centred, t[c].astype(np.float64) - t_mean))
        square += float(np.dot(p_chunk, p_chunk))
    if variance <= _RELATIVE_VARIANCE_FLOOR * square:
        raise UnscorableImage("constant prediction over the valid pixels, scale and shift undetermined")
    scale = covariance / variance
    return scale, t_mean - scale * p_mean


def inverse_to_depth_clamped(inverse_depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Metric inverse depth (1 / m) to depth in metres for scoring: the inverse depth clamped below at
    ``1 / max_depth`` as the seed does, so every pixel has a depth in ``(0, max_depth]``.

    Non-positive inverse depths (beyond the affine horizon of a fit) thereby become ``max_depth``. Float64.
    """
    return 1.0 / np.maximum(np.asarray(inverse_depth, dtype=np.float64), 1.0 / max_depth)


def inverse_to_depth_or_zero(inverse_depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Metric inverse depth (1 / m) to depth in metres for outputs, 0 where there is none: at or beyond ``max_depth``, or where
    the inverse depth is not positive (past the horizon of the fit) or not finite. Float32, for outputs."""
    disparity = np.asarray(inverse_depth, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = 1.0 / disparity
        return np.where(np.isfinite(depth) & (disparity > 1.0 / max_depth), depth, 0.0).astype(np.float32)


def normalize_inverse_depth(inverse_depth: np.ndarray) -> np.ndarray:
    """Min-max normalise a relative inverse depth map to [0, 1] (near = 1); non-finite values become 0.

    A constant map becomes all zeros. Used for display and for 16-bit PNGs; nothing metric is implied.
    """
    values = np.asarray(inverse_depth, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    low, high = float(values[finite].min()), float(values[finite].max())
    if high - low <= 0:
        return np.zeros_like(values)
    normalized = (values - low) / (high - low)
    return np.where(finite, np.clip(normalized, 0.0, 1.0), 0.0).astype(np.float32)
