"""Camera geometry, pure: pinhole intrinsics, the floor plane's inverse depth, back-projection, PLY point clouds.

Conventions (the same as :mod:`edgedepth.data.synthetic`, whose cameras these are):

* Camera frame: OpenCV's, ``x`` right, ``y`` down, ``z`` forward, metres. Pixel (row ``v``, column ``u``) has its
  centre at ``(u, v)``; its ray is ``r = ((u - cx) / fx, (v - cy) / fy, 1)``, so a point at depth ``z`` (along the
  optical axis, not along the ray) is ``z * r``.
* Attitude: ``pitch`` is the angle of the optical axis below the horizontal (positive: looking down), ``roll``
  turns the camera about its optical axis (positive: the image's right side dips), both in degrees. In the camera
  frame the direction of gravity is then ``n = (sin roll cos pitch, cos roll cos pitch, sin pitch)``.

On any plane ``n . P = h`` the inverse depth of pixel ``(u, v)`` is ``n . r / h``: affine in the pixel coordinates.
For the floor under a camera at height ``h``, with ``n`` the direction of gravity, that is
:func:`floor_inverse_depth`; for a level camera it is ``(v - cy) / (fy * h)``, linear in the row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path

#: How far the principal point may lie from the image's centre, as a fraction of the image's width (for ``cx``) and
#: height (``cy``). Real cameras keep it within a few per cent; intrinsics of another resolution put it far off.
PRINCIPAL_POINT_TOLERANCE = 0.15
#: Horizontal fields of view a pinhole camera may have, degrees (outside: ``fx`` belongs to another resolution).
FOV_RANGE = (5.0, 175.0)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (pixel centres at integer coordinates, as OpenCV)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        """The 3 x 3 camera matrix ``K``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_hfov(cls, hfov_deg: float, size: tuple[int, int]) -> Intrinsics:
        """Square pixels, principal point at the image centre, ``hfov_deg`` from the left to the right edge."""
        width, height = size
        focal = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(fx=focal, fy=focal, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)

    def to_dict(self) -> dict[str, float]:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}

    def __str__(self) -> str:
        return f"{self.fx:g},{self.fy:g},{self.cx:g},{self.cy:g}"


def parse_intrinsics(text: str) -> Intrinsics:
    """``fx,fy,cx,cy`` in pixels (``--intrinsics``); anything else is an EdgedepthError saying what to give."""
    parts = text.replace(" ", "").split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise EdgedepthError(f"--intrinsics {text!r}: give four numbers fx,fy,cx,cy in pixels, "
                             "e.g. 525,525,319.5,239.5")
    if values[0] <= 0 or values[1] <= 0:
        raise EdgedepthError(f"--intrinsics {text!r}: the focal lengths fx and fy must be positive")
    return Intrinsics(*values)


def check_intrinsics(intrinsics: Intrinsics, size: tuple[int, int], origin: str) -> None:
    """Refuse intrinsics that cannot be this ``size = (width, height)`` image's: an EdgedepthError naming ``origin``.

    The principal point must lie within :data:`PRINCIPAL_POINT_TOLERANCE` of the centre and the horizontal field of
    view within :data:`FOV_RANGE`; intrinsics given for another resolution (the usual mistake: a resized image)
    fail one or the other.
    """
    width, height = size
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    far = (abs(intrinsics.cx - centre[0]) > PRINCIPAL_POINT_TOLERANCE * width
           or abs(intrinsics.cy - centre[1]) > PRINCIPAL_POINT_TOLERANCE * height)
    fov = math.degrees(2.0 * math.atan(width / (2.0 * intrinsics.fx)))
    if far or not FOV_RANGE[0] <= fov <= FOV_RANGE[1]:
        why = (f"the principal point ({intrinsics.cx:g}, {intrinsics.cy:g}) is far from its centre "
               f"({centre[0]:g}, {centre[1]:g})" if far
               else f"fx {intrinsics.fx:g} makes a {fov:.1f} degree field of view")
        raise EdgedepthError(
            f"{origin}: intrinsics {intrinsics} do not match its {width}x{height} pixels: {why}; give the intrinsics "
            "at this image's resolution (scale fx, fy, cx, cy by the factor it was resized by) or --fov DEG"
        )


def gravity_direction(pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """The unit direction of gravity in the camera frame of a camera with this attitude (see the module docstring)."""
    pitch, roll = math.radians(pitch_deg), math.radians(roll_deg)
    return np.array([math.sin(roll) * math.cos(pitch), math.cos(roll) * math.cos(pitch), math.sin(pitch)])


def plane_inverse_depth(
    normal: np.ndarray, distance: float, intrinsics: Intrinsics, size: tuple[int, int]
) -> np.ndarray:
    """Inverse depth (1 / metres) of the plane ``normal . P = distance`` at every pixel: ``normal . r / distance``.

    ``H x W`` float64; zero or negative where the pixel's ray does not meet the plane in front of the camera.
    """
    width, height = size
    a = normal[0] / (intrinsics.fx * distance)
    b = normal[1] / (intrinsics.fy * distance)
    c = (normal[2] - normal[0] * intrinsics.cx / intrinsics.fx - normal[1] * intrinsics.cy / intrinsics.fy) / distance
    return a * np.arange(width, dtype=np.float64)[None, :] + b * np.arange(height, dtype=np.float64)[:, None] + c


def floor_inverse_depth(
    intrinsics: Intrinsics, size: tuple[int, int], camera_height: float, pitch_deg: float = 0.0, roll_deg: float = 0.0
) -> np.ndarray:
    """Inverse depth of a flat floor ``camera_height`` metres under the camera, at every pixel (``H x W``).

    Positive below the horizon, zero or negative above it. Level camera: ``(v - cy) / (fy * camera_height)``.
    """
    return plane_inverse_depth(gravity_direction(pitch_deg, roll_deg), camera_height, intrinsics, size)


def backproject(depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """``H x W x 3`` camera-frame points (metres) of a z-depth map: ``(x, y, z) = z * r`` per pixel."""
    height, width = depth.shape
    z = np.asarray(depth, dtype=np.float64)
    x = (np.arange(width, dtype=np.float64)[None, :] - intrinsics.cx) / intrinsics.fx * z
    y = (np.arange(height, dtype=np.float64)[:, None] - intrinsics.cy) / intrinsics.fy * z
    return np.stack([x, y, z], axis=-1)


def ray_lengths(points_uv: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """``|r|`` for pixels ``(u, v)`` (``n x 2``): a distance along the ray over this is the depth along the axis."""
    u = (points_uv[:, 0] - intrinsics.cx) / intrinsics.fx
    v = (points_uv[:, 1] - intrinsics.cy) / intrinsics.fy
    return np.sqrt(1.0 + u * u + v * v)


_PLY_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def encode_ply(depth: np.ndarray, image: np.ndarray, intrinsics: Intrinsics) -> bytes:
    """A binary little-endian PLY of the pixels with a depth (``depth > 0``), coloured by ``image`` (RGB uint8).

    Vertices ``x, y, z`` (float32, metres, the camera frame above) and ``red, green, blue`` (uchar), row by row;
    pixels whose depth is 0 (none, or past the far limit) give no point.
    """
    valid = np.asarray(depth) > 0
    points = backproject(depth, intrinsics)[valid]
    vertices = np.empty(points.shape[0], dtype=_PLY_VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = image[..., channel][valid]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment edgedepth point cloud: camera frame x right, y down, z forward, "
        f"metres\nelement vertex {vertices.size}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    return header.encode("ascii") + vertices.tobytes()


def write_ply(path: str | Path, depth: np.ndarray, image: np.ndarray, intrinsics: Intrinsics) -> None:
    """:func:`encode_ply`, written atomically."""
    data = encode_ply(depth, image, intrinsics)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
