"""``edgedepth predict --metric FROM``: where a frame's scale and shift to metres come from, and the metric outputs.

A prediction is relative inverse depth; per frame, a scale and shift fitted in inverse depth make it metric
(the fits are :mod:`edgedepth.eval.metrics`', the one place where depth becomes metric). The reference is one of:

* ``points.json``: two or more pixels with known depth, ``[{"x": 320, "y": 400, "depth": 1.5}, ...]`` (or
  ``{"points": [...]}``): ``x`` the column and ``y`` the row at the image's resolution, ``depth`` metres along the
  optical axis, or ``distance`` metres along the pixel's ray (converted with the intrinsics). Least squares; points
  all at one depth leave the shift undetermined, so then a scale alone is fitted, with a warning.
* ``sparse.npy`` (metres) or ``sparse.png`` (16-bit millimetres): a sparse depth map at the image's size, 0 where
  missing (a LiDAR scan, a depth sensor). Robust least squares: a few wrong returns do not move the fit.
* ``ground``: the floor under a camera at a known height (``--camera-height``), attitude (``--pitch``, ``--roll``)
  and intrinsics: :func:`edgedepth.robot.fits.fit_to_floor`.

Each metric frame writes ``NAME.metric.png`` (uint16 millimetres), ``NAME.metric.npy`` (float32 metres), both 0
where there is no depth (past ``--max-depth``), ``NAME.metric.json`` (the fit: scale, shift, residual, points used)
and with ``--pointcloud`` ``NAME.ply``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgedepth.core.depth import DEFAULT_MAX_DEPTH, UnscorableImage, fit_scale_shift, inverse_to_depth_or_zero
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_input_file, write_json, write_npy
from edgedepth.core.imageio import write_png
from edgedepth.robot.fits import fit_scale_shift_robust, fit_to_floor
from edgedepth.robot.geometry import Intrinsics, check_intrinsics, floor_inverse_depth, ray_lengths, write_ply

logger = logging.getLogger(__name__)

#: Known depths whose spread is below this fraction of their mean are "all at one depth".
_SAME_DEPTH = 1e-3


class MetricFitError(EdgedepthError):
    """This frame's prediction cannot be brought to metres (no floor in view, points outside it, ...)."""


@dataclass(frozen=True)
class Points:
    """Known depths at pixels: ``uv`` (``n x 2`` column, row), ``depth`` or ``distance`` (metres, NaN if not given)."""

    origin: str
    uv: np.ndarray
    depth: np.ndarray
    distance: np.ndarray


@dataclass(frozen=True)
class Sparse:
    """A sparse depth map in metres (0 = missing), fitted robustly."""

    origin: str
    depth: np.ndarray


@dataclass(frozen=True)
class Ground:
    """The floor under the camera."""

    camera_height: float
    pitch_deg: float = 0.0
    roll_deg: float = 0.0


Reference = Points | Sparse | Ground


@dataclass(frozen=True)
class MetricConfig:
    """What ``predict`` was asked for: ``--metric`` with its camera, ``--pointcloud``, ``--max-depth``.

    ``intrinsics`` (pixels) or ``fov`` (horizontal, degrees: square pixels, centred principal point) describe the
    camera; ``ground`` needs one of them and ``camera_height``, and so does ``pointcloud``.
    """

    metric: str | None = None
    camera_height: float | None = None
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    intrinsics: Intrinsics | None = None
    fov: float | None = None
    max_depth: float = DEFAULT_MAX_DEPTH
    pointcloud: bool = False

    def camera(self, size: tuple[int, int], origin: str) -> Intrinsics:
        """This image's intrinsics, checked against its ``size``."""
        if self.intrinsics is None:
            if self.fov is None:
                raise EdgedepthError("the camera is unknown: give --intrinsics fx,fy,cx,cy or --fov DEG")
            return Intrinsics.from_hfov(self.fov, size)
        check_intrinsics(self.intrinsics, size, origin)
        return self.intrinsics


@dataclass(frozen=True)
class MetricFit:
    """One frame's fit: metric inverse depth = ``scale * prediction + shift``.

    ``residual``: root mean square of (fitted - reference) / reference depth on the ``points`` used (of
    ``candidates`` offered: known points, sparse samples or pixels below the horizon).
    """

    source: str
    scale: float
    shift: float
    residual: float
    points: int
    candidates: int

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "scale": self.scale, "shift": self.shift, "residual": self.residual,
                "points": self.points, "candidates": self.candidates,
                "meaning": "metric inverse depth (1/m) = scale * prediction + shift"}


def check_config(cfg: MetricConfig, live: bool = False, camera_known: bool = False) -> None:
    """Refuse impossible combinations at once, before any model loads, naming the flag that is missing.

    ``camera_known``: the camera comes from the input itself (a bag's camera info), not only from the flags."""
    if cfg.intrinsics is not None and cfg.fov is not None:
        raise EdgedepthError("give the camera once: --intrinsics fx,fy,cx,cy or --fov DEG, not both")
    if cfg.fov is not None and not 0 < cfg.fov < 180:
        raise EdgedepthError(f"--fov {cfg.fov:g}: give the horizontal field of view in degrees, between 0 and 180")
    if not cfg.max_depth > 0:
        raise EdgedepthError(f"--max-depth {cfg.max_depth:g}: give a positive number of metres")
    if live and (cfg.metric is not None or cfg.pointcloud):
        raise EdgedepthError("--metric and --pointcloud write files per frame: give the video as the input "
                             "(edgedepth predict clip.mp4 --metric ...), not --video/--camera")
    if cfg.pointcloud and cfg.metric is None:
        raise EdgedepthError("--pointcloud needs metric depth: add --metric points.json, --metric sparse.npy|.png "
                             "or --metric ground --camera-height H")
    camera = camera_known or cfg.intrinsics is not None or cfg.fov is not None
    if cfg.pointcloud and not camera:
        raise EdgedepthError("--pointcloud needs the camera: add --intrinsics fx,fy,cx,cy or --fov DEG")
    if cfg.metric == "ground":
        if cfg.camera_height is None:
            raise EdgedepthError("--metric ground needs --camera-height H (metres from the floor to the camera)")
        if not cfg.camera_height > 0:
            raise EdgedepthError(f"--camera-height {cfg.camera_height:g}: give a positive number of metres")
        if not camera:
            raise EdgedepthError("--metric ground needs the camera: add --intrinsics fx,fy,cx,cy or --fov DEG")
        if not -90 < cfg.pitch_deg < 90:
            raise EdgedepthError(f"--pitch {cfg.pitch_deg:g}: give degrees below the horizontal, between -90 and 90")
    elif cfg.metric is None and (cfg.camera_height is not None or cfg.pitch_deg or cfg.roll_deg):
        raise EdgedepthError("--camera-height, --pitch and --roll describe the floor for --metric ground: add it")


def load_reference(cfg: MetricConfig) -> Reference:
    """Read ``--metric``'s reference (a points file, a sparse map, or ``ground``); a bad file is an EdgedepthError."""
    text = cfg.metric
    assert text is not None
    if text == "ground":
        assert cfg.camera_height is not None
        return Ground(cfg.camera_height, cfg.pitch_deg, cfg.roll_deg)
    suffix = Path(text).suffix.lower()
    if suffix not in (".json", ".npy", ".png"):
        raise EdgedepthError(f"--metric {text}: give points.json, a sparse depth map (.npy in metres, .png in "
                             "16-bit millimetres) or ground")
    path = check_input_file(text, "a --metric reference", "no such file (--metric)")
    if suffix == ".json":
        return _read_points(path, cfg)
    return _read_sparse(path)


def _read_points(path: Path, cfg: MetricConfig) -> Points:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EdgedepthError(f"{path}: not a readable JSON points file ({exc})") from exc
    items = data.get("points") if isinstance(data, dict) else data
    example = '[{"x": 320, "y": 400, "depth": 1.5}, ...]'
    if not isinstance(items, list):
        raise EdgedepthError(f"{path}: expected a list of points such as {example}")
    uv: list[list[float]] = []
    depth: list[float] = []
    distance: list[float] = []
    for number, item in enumerate(items):
        given = [key for key in ("depth", "distance") if isinstance(item, dict) and key in item]
        values: list[Any] = [item.get(key) for key in ("x", "y", *given)] if isinstance(item, dict) else []
        if len(given) != 1 or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise EdgedepthError(f"{path}: point {number}: give numbers x (column), y (row) and one of depth or "
                                 f"distance (metres), e.g. {example}")
        if values[2] <= 0:
            raise EdgedepthError(f"{path}: point {number}: {given[0]} {values[2]:g} m; give a positive distance")
        uv.append(values[:2])
        depth.append(values[2] if given[0] == "depth" else math.nan)
        distance.append(values[2] if given[0] == "distance" else math.nan)
    if len(items) < 2:
        raise EdgedepthError(f"{path}: {len(items)} point(s); a scale and a shift need at least 2 points at known "
                             "distances, at two or more distances")
    if not np.all(np.isnan(distance)) and cfg.intrinsics is None and cfg.fov is None:
        raise EdgedepthError(f"{path}: points given by distance along the ray need the camera: add --intrinsics "
                             "fx,fy,cx,cy or --fov DEG (or give their depth along the optical axis)")
    known = np.where(np.isnan(depth), distance, depth)
    if np.ptp(known) <= _SAME_DEPTH * np.mean(known):
        logger.warning(f"{path}: all {len(items)} points are at one distance ({np.mean(known):.3g} m), which leaves the shift "
             "undetermined: only a scale is fitted (shift 0); add a point at another distance for a full fit")
    return Points(str(path), np.array(uv, dtype=np.float64), np.array(depth), np.array(distance))


def _read_sparse(path: Path) -> Sparse:
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise EdgedepthError(f"{path}: not a readable .npy file ({exc})") from exc
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise EdgedepthError(f"{path}: a sparse depth map is an H x W array of metres, not {depth.dtype} "
                                 f"{list(depth.shape)}")
        depth = depth.astype(np.float64)
    else:
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise EdgedepthError(f"{path}: not a readable PNG")
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise EdgedepthError(f"{path}: a sparse depth PNG is one 16-bit channel of millimetres, not "
                                 f"{depth.ndim if depth.ndim == 2 else depth.shape[2]} channel(s) of {depth.dtype}")
        depth = depth.astype(np.float64) / 1000.0
    with np.errstate(invalid="ignore"):
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)
    valid = depth[depth > 0]
    if valid.size < 2:
        raise EdgedepthError(f"{path}: {valid.size} pixel(s) with a depth; a scale and a shift need at least 2")
    if np.ptp(valid) <= _SAME_DEPTH * np.mean(valid):
        logger.warning(f"{path}: all {valid.size} depths are one ({np.mean(valid):.3g} m), which leaves the shift undetermined: "
             "only a scale is fitted (shift 0)")
    return Sparse(str(path), depth)


def _scale_only(p: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least squares ``target ≈ scale * p`` (no shift), for references all at one depth."""
    scale = float(np.dot(p, target) / np.dot(p, p)) if np.dot(p, p) > 0 else 0.0
    return scale, 0.0


def _residual(fitted: np.ndarray, reference: np.ndarray) -> float:
    """RMS of (fitted - reference) / reference depth, from inverse depths; an inverse depth <= 0 counts as 100 %."""
    with np.errstate(divide="ignore"):
        relative = np.where(fitted > 0, reference / fitted - 1.0, 1.0)
    return float(np.sqrt(np.mean(relative**2)))


def fit(prediction: np.ndarray, reference: Reference, cfg: MetricConfig, origin: str) -> MetricFit:
    """Fit this frame's prediction (``H x W`` relative inverse depth) to the reference; MetricFitError if it cannot."""
    height, width = prediction.shape
    p = np.asarray(prediction, dtype=np.float64)
    try:
        if isinstance(reference, Ground):
            floor = floor_inverse_depth(cfg.camera((width, height), origin), (width, height), reference.camera_height,
                                        reference.pitch_deg, reference.roll_deg)
            found = fit_to_floor(p, floor, cfg.max_depth)
            fitted = found.scale * p[found.used] + found.shift
            return MetricFit("ground", found.scale, found.shift, _residual(fitted, floor[found.used]),
                             int(np.count_nonzero(found.used)), int(np.count_nonzero(floor > 1.0 / cfg.max_depth)))
        if isinstance(reference, Sparse):
            if reference.depth.shape != p.shape:
                raise MetricFitError(f"{reference.origin}: a {reference.depth.shape[1]}x{reference.depth.shape[0]} "
                                     f"sparse map for the {width}x{height} image {origin}; give one at its size")
            mask = reference.depth > 0
            target = np.where(mask, 1.0 / np.where(mask, reference.depth, 1.0), 0.0)
            if np.ptp(target[mask]) <= _SAME_DEPTH * np.mean(target[mask]):
                scale, shift = _scale_only(p[mask], target[mask])
                used = mask
            else:
                robust = fit_scale_shift_robust(p, target, mask)
                scale, shift, used = robust.scale, robust.shift, robust.used
            return MetricFit(reference.origin, scale, shift, _residual(scale * p[used] + shift, target[used]),
                             int(np.count_nonzero(used)), int(np.count_nonzero(mask)))
        return _fit_points(p, reference, cfg, origin)
    except UnscorableImage as exc:
        raise MetricFitError(f"{origin}: no metric scale: {exc}") from exc


def _fit_points(p: np.ndarray, points: Points, cfg: MetricConfig, origin: str) -> MetricFit:
    height, width = p.shape
    columns, rows = np.round(points.uv[:, 0]).astype(int), np.round(points.uv[:, 1]).astype(int)
    outside = np.flatnonzero((columns < 0) | (columns >= width) | (rows < 0) | (rows >= height))
    if outside.size:
        x, y = points.uv[outside[0]]
        raise MetricFitError(f"{points.origin}: point {outside[0]} ({x:g}, {y:g}) lies outside the {width}x{height} "
                             f"image {origin}; give pixel coordinates at the image's resolution")
    depth = points.depth
    if np.isnan(depth).any():
        depth = np.where(np.isnan(depth), points.distance / ray_lengths(points.uv, cfg.camera((width, height), origin)),
                         depth)
    target, values = 1.0 / depth, p[rows, columns]
    if np.ptp(target) <= _SAME_DEPTH * np.mean(target):
        scale, shift = _scale_only(values, target)
    else:
        scale, shift = fit_scale_shift(values, target, np.ones(values.size, dtype=bool))
    if not scale > 0:
        raise MetricFitError(f"{origin}: no metric scale: the prediction at the {values.size} points of "
                             f"{points.origin} does not grow with their inverse depth (scale {scale:.3g}); check the "
                             "points' coordinates and depths")
    return MetricFit(points.origin, scale, shift, _residual(scale * values + shift, target), values.size, values.size)


def write_outputs(
    base: Path,
    prediction: np.ndarray,
    found: MetricFit,
    cfg: MetricConfig,
    image: np.ndarray,
    camera: Intrinsics | None,
) -> None:
    """Write one frame's metric outputs beside ``base`` (``base.metric.png``, ``.npy``, ``.json``, ``base.ply``)."""
    depth = inverse_to_depth_or_zero(found.scale * np.asarray(prediction, np.float64) + found.shift, cfg.max_depth)
    stem = base.name
    millimetres = np.round(depth * 1000.0)
    write_png(base.with_name(stem + ".metric.png"),
              np.where(millimetres <= 65535, millimetres, 0).astype(np.uint16))
    write_npy(base.with_name(stem + ".metric.npy"), depth)
    record = {**found.to_dict(), "max_depth": cfg.max_depth,
              "files": "metric.png: uint16 mm, metric.npy: float32 m; 0 = no depth"}
    if camera is not None:
        record["intrinsics"] = camera.to_dict()
    write_json(base.with_name(stem + ".metric.json"), record, indent=2)
    if cfg.pointcloud:
        assert camera is not None
        write_ply(base.with_name(stem + ".ply"), depth, image, camera)
