"""Colour maps for inverse depth (perceptually uniform magma, near = bright) and figures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edgedepth.core.depth import normalize_inverse_depth

#: Magma as a 256-entry lookup table (``256 x 1 x 3``), RGB and BGR: index 0 is the farthest, 255 the nearest.
_MAGMA_BGR = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_MAGMA)
_MAGMA_RGB = np.ascontiguousarray(_MAGMA_BGR[:, :, ::-1])


def colorize(inverse_depth: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Map a relative inverse depth ``H x W`` to a uint8 colour image with magma; larger (nearer) is brighter.

    The map is min-max normalised to [0, 255] as :func:`edgedepth.core.depth.normalize_inverse_depth` defines
    (non-finite values count as farthest); RGB by default, BGR (OpenCV's order, for video) with ``bgr=True``.
    A finite map, the usual case, takes one OpenCV pass per step: this runs on every frame of the video loop.
    """
    values = np.asarray(inverse_depth, dtype=np.float32)
    if np.isfinite(values).all():
        gray = cv2.normalize(values, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    else:
        gray = np.round(normalize_inverse_depth(values) * 255.0).astype(np.uint8)
    return cv2.applyColorMap(gray, _MAGMA_BGR if bgr else _MAGMA_RGB)


def to_uint16(inverse_depth: np.ndarray) -> np.ndarray:
    """Min-max normalised inverse depth as uint16 (0 = farthest, 65535 = nearest), for 16-bit PNGs."""
    return np.round(normalize_inverse_depth(inverse_depth) * 65535.0).astype(np.uint16)


def plot_loss_curve(log_jsonl: Path, out_png: Path) -> None:
    """Plot the loss and its parts from a training log (one JSON object per logged step) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgedepth.core.files import atomic_path

    records = [json.loads(line) for line in Path(log_jsonl).read_text().splitlines() if line.strip()]
    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=100)
    not_losses = {"step", "epoch", "lr", "images_per_second", "data_wait_share"}
    keys = sorted({key for record in records for key in record if key not in not_losses})
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        axes.plot([p[0] for p in points], [p[1] for p in points], ".-", label=key)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    if keys:
        axes.legend()
    figure.tight_layout()
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
