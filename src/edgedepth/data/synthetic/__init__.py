"""Synthetic indoor scenes with exact depth: a small vectorised ray caster in NumPy, no OpenGL and no GPU.

A scene is a room (floor, four walls, ceiling) with procedural textures, furniture-like boxes, cylinders and
spheres, one or two point lights plus ambient, optional cast shadows, seen by a pinhole camera whose
horizontal field of view is near NYU's Kinect (about 58 degrees). The image gets mild vignetting and sensor
noise; the depth is exact.

Conventions, one place for each:

* World: metres, ``z`` up; the room is the axis-aligned box ``[low, high]``, floor at ``low[2]``.
* Camera: OpenCV pinhole, ``x`` right, ``y`` down, ``z`` forward; pixel (row ``i``, column ``j``) has its
  centre at ``(x, y) = (j, i)``, so ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` back-projects the depth.
* Depth: the **z-distance along the optical axis** in metres (NYU's convention), *not* the length of the ray:
  a camera facing a wall 3 m away sees 3.0 in every pixel, corners included. The ray of pixel ``(x, y)`` is
  cast as ``((x - cx) / fx, (y - cy) / fy, 1)`` in camera coordinates, so the ray parameter of a hit *is* its
  depth, with no conversion anywhere.
* ``raw_depth`` is ``depth`` with Kinect-like holes set to 0: too far or too near for the sensor, grazing
  incidence, dark (IR-absorbing) materials and specular highlights.

A folder written by :func:`write_folder` holds ``<key>.jpg`` (RGB) beside ``<key>.png`` (exact depth, uint16
millimetres, 0 = invalid): the seed's own layout for its Places data, so the training reader and the oracle
teacher read it as they read any ``<name>.jpg`` / ``<name>.png`` pair. Scene ``k`` of a folder made with seed
``S`` is ``render_scene(scene_seed(S, k))`` whatever the count, and folders with different seeds share no scene.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm import tqdm

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, make_folder
from edgedepth.core.imageio import write_png
from edgedepth.core.sizes import format_size
from edgedepth.data import nyu
from edgedepth.data.marigold import EVAL_SETS, EvalSetWriter, read_sample_list
from edgedepth.robot.geometry import Intrinsics

#: Bumped whenever a seed would render a different scene; recorded in each folder's ``index.json``.
GENERATOR_VERSION = 1

#: Kinect-like sensor limits that punch holes in ``raw_depth`` (metres, cosine, linear albedo, radiance).
RAW_MAX_DEPTH = 10.0
RAW_MIN_DEPTH = 0.45
RAW_MIN_INCIDENCE_COS = math.cos(math.radians(78.0))
RAW_DARK_ALBEDO = 0.02
RAW_SPECULAR = 0.12

#: Horizontal field of view of the random cameras, degrees (NYU's Kinect: about 58).
HFOV_RANGE = (54.0, 62.0)

Texture = Literal["plain", "wood", "tiles", "plaster", "fabric", "stripes"]
Vec3 = tuple[float, float, float]

_ROOM_FACES = 6  # ids 0..5 of the id map: x-low, x-high, y-low, y-high walls, floor, ceiling; solids follow
_SHININESS_SQUARINGS = 5  # Blinn-Phong exponent 2**5 = 32, by repeated squaring
_LIGHT_RANGE = 3.0  # metres at which a light's irradiance has halved: 1 / (1 + (d / range)^2)
_SHADOW_EPS = 1e-3  # fraction of the light-to-point segment left out at the point's end (no self-shadowing)
_NOISE_TILE = 64  # texels per side of the periodic smooth-noise tile used by the textures


# ---------------------------------------------------------------------------------------------------------------
# Scene description


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: ``rotation`` is world-from-camera, its columns the camera's right, down and forward."""

    position: np.ndarray
    rotation: np.ndarray
    intrinsics: Intrinsics
    size: tuple[int, int]

    @classmethod
    def look_at(
        cls,
        position: Sequence[float],
        target: Sequence[float],
        hfov_deg: float,
        size: tuple[int, int],
        roll_deg: float = 0.0,
    ) -> Camera:
        """A camera at ``position`` looking at ``target`` with the world's ``z`` up, then rolled by ``roll_deg``."""
        eye = np.asarray(position, dtype=np.float64)
        forward = np.asarray(target, dtype=np.float64) - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, (0.0, 0.0, 1.0))
        if np.linalg.norm(right) < 1e-9:
            raise ValueError("look_at: the view direction is vertical, the roll is undefined")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        roll = math.radians(roll_deg)
        right, down = math.cos(roll) * right + math.sin(roll) * down, -math.sin(roll) * right + math.cos(roll) * down
        return cls(eye, np.column_stack([right, down, forward]), Intrinsics.from_hfov(hfov_deg, size), size)

    def metadata(self, floor_z: float = 0.0) -> dict[str, object]:
        """What ``predict --metric ground`` needs to know of this camera over the floor at height ``floor_z``.

        ``camera_height`` in metres, ``pitch_deg`` and ``roll_deg`` as :mod:`edgedepth.robot.geometry` defines them
        (recovered from the rotation: gravity in the camera frame is ``-rotation[2]``), and the intrinsics.
        """
        gravity = -self.rotation[2]
        return {
            "intrinsics": self.intrinsics.to_dict(),
            "camera_height": float(self.position[2] - floor_z),
            "pitch_deg": math.degrees(math.asin(float(np.clip(gravity[2], -1.0, 1.0)))),
            "roll_deg": math.degrees(math.atan2(float(gravity[0]), float(gravity[1]))),
        }


@dataclass(frozen=True)
class Material:
    """A procedural surface: ``base`` and ``accent`` are linear RGB albedos in [0, 1].

    ``scale`` is the texture's period in metres (plank width, tile size, stripe period, weave period);
    ``gloss`` scales a Blinn-Phong highlight (0 = matte); ``turn`` swaps the texture's two axes.
    """

    texture: Texture
    base: Vec3
    accent: Vec3 = (0.0, 0.0, 0.0)
    scale: float = 0.2
    gloss: float = 0.0
    turn: bool = False


@dataclass(frozen=True)
class Room:
    """The axis-aligned box ``[low, high]`` seen from inside; ``walls`` are x-low, x-high, y-low, y-high."""

    low: Vec3
    high: Vec3
    floor: Material
    ceiling: Material
    walls: tuple[Material, Material, Material, Material]

    def face_material(self, face: int) -> Material:
        return self.walls[face] if face < 4 else (self.floor if face == 4 else self.ceiling)


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """World-from-local rotation: ``roll`` about x, then ``pitch`` about y, then ``yaw`` about z (radians)."""
    cy, sy, cp, sp, cr, sr = (
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(roll),
        math.sin(roll),
    )
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx


@dataclass(frozen=True, eq=False)
class Box:
    """A box of half extents ``half`` centred at ``center``; ``rotation`` is world-from-local."""

    center: Vec3
    half: Vec3
    material: Material
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def local_corners(self) -> np.ndarray:
        return _corners(self.half)

    def hit(self, o: np.ndarray, d: Sequence[np.ndarray]) -> np.ndarray:
        return _hit_box(o, d, self.half)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _surface_box(p, self.half)


@dataclass(frozen=True, eq=False)
class Sphere:
    """A sphere of ``radius`` centred at ``center``."""

    center: Vec3
    radius: float
    material: Material
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def local_corners(self) -> np.ndarray:
        return _corners((self.radius,) * 3)

    def hit(self, o: np.ndarray, d: Sequence[np.ndarray]) -> np.ndarray:
        return _hit_sphere(o, d, self.radius)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return p / np.float32(self.radius), np.arctan2(p[1], p[0]) * np.float32(self.radius), p[2]


@dataclass(frozen=True, eq=False)
class Cylinder:
    """A capped cylinder along its local ``z``: ``radius``, ``half_height``; ``rotation`` is world-from-local."""

    center: Vec3
    radius: float
    half_height: float
    material: Material
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def local_corners(self) -> np.ndarray:
        return _corners((self.radius, self.radius, self.half_height))

    def hit(self, o: np.ndarray, d: Sequence[np.ndarray]) -> np.ndarray:
        return _hit_cylinder(o, d, self.radius, self.half_height)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _surface_cylinder(p, self.radius, self.half_height)


Solid = Box | Sphere | Cylinder


@dataclass(frozen=True)
class Light:
    """A point light; ``color`` is its linear RGB strength at zero distance."""

    position: Vec3
    color: Vec3


@dataclass(frozen=True)
class SceneDescription:
    """Everything :func:`render` needs besides the camera; ``noise_seed`` drives texture noise and sensor noise."""

    room: Room
    solids: tuple[Solid, ...] = ()
    lights: tuple[Light, ...] = ()
    ambient: float = 0.25
    shadows: bool = True
    sensor_noise: float = 0.0
    vignette: float = 0.0
    noise_seed: int = 0
    #: Seeds the sensor noise alone; None: it continues ``noise_seed``'s generator after the textures (as scenes
    #: always did). The frames of a sequence keep their textures and draw new sensor noise each.
    sensor_seed: int | None = None


@dataclass(frozen=True, eq=False)
class Scene:
    """A rendered scene.

    Attributes:
        image: ``H x W x 3`` uint8 RGB.
        depth: ``H x W`` float32 exact z-depth in metres (distance along the optical axis, not along the ray).
        raw_depth: ``depth`` with Kinect-like holes set to 0.
        intrinsics: the camera's pinhole intrinsics in pixels.
    """

    image: np.ndarray
    depth: np.ndarray
    raw_depth: np.ndarray
    intrinsics: Intrinsics


# ---------------------------------------------------------------------------------------------------------------
# Ray-solid intersections in the solid's local frame. ``o`` is the ray origin (3 scalars: the camera or a
# light), ``d`` three float32 arrays of direction components of any shape. Each returns the ray parameter of
# the first entering hit (``t > 0``), ``inf`` where the ray misses. Divisions by zero are meant (errstate).


def _corners(half: Sequence[float]) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return signs * np.asarray(half, dtype=np.float64)


def _hit_room(
    low: Sequence[float], high: Sequence[float], o: np.ndarray, d: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Exit of the inside of an axis-aligned box: ``(t, face)`` with face ``2 * axis + (1 on the high side)``.

    From inside, per axis one of ``(low - o) / d`` and ``(high - o) / d`` is the exit and the other is negative,
    so the larger is the exit (a ray parallel to the axis, ``d = ±0``, gets ``+inf``).
    """
    t = face = None
    for axis in range(3):
        t_axis = np.maximum(np.float32(low[axis] - o[axis]) / d[axis], np.float32(high[axis] - o[axis]) / d[axis])
        face_axis = (d[axis] > 0).astype(np.int16) + np.int16(2 * axis)
        if t is None:
            t, face = t_axis, face_axis
        else:
            np.copyto(face, face_axis, where=t_axis < t)
            np.minimum(t, t_axis, out=t)
    return t, face


def _hit_box(o: np.ndarray, d: Sequence[np.ndarray], half: Sequence[float]) -> np.ndarray:
    """Slab test; ``(±h - o) / d`` stays correct for rays parallel to a slab (``d = ±0`` gives ``±inf``)."""
    near = far = None
    for axis in range(3):
        inv = 1.0 / d[axis]
        t1 = np.float32(-half[axis] - o[axis]) * inv
        t2 = np.float32(half[axis] - o[axis]) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        near = lo if near is None else np.maximum(near, lo)
        far = hi if far is None else np.minimum(far, hi)
    np.copyto(near, np.float32(np.inf), where=(near > far) | (near <= 0))
    return near


def _hit_sphere(o: np.ndarray, d: Sequence[np.ndarray], radius: float) -> np.ndarray:
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = np.float32(o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - radius * radius)
    t = (-b - np.sqrt(b * b - a * c)) / a  # NaN where the ray misses: ~(t > 0) is then True
    np.copyto(t, np.float32(np.inf), where=~(t > 0))
    return t


def _hit_cylinder(o: np.ndarray, d: Sequence[np.ndarray], radius: float, half_height: float) -> np.ndarray:
    """Side (a quadratic in x, y) and the cap facing the ray (a plane); the nearer valid one wins."""
    a = d[0] * d[0] + d[1] * d[1]
    b = o[0] * d[0] + o[1] * d[1]
    c = np.float32(o[0] * o[0] + o[1] * o[1] - radius * radius)
    t_side = (-b - np.sqrt(b * b - a * c)) / a
    z_side = o[2] + t_side * d[2]
    np.copyto(t_side, np.float32(np.inf), where=~((t_side > 0) & (np.abs(z_side) <= half_height)))
    # the cap facing the ray is the nearer of the two planes; from outside the cylinder it is the only candidate
    t_cap = np.minimum(np.float32(half_height - o[2]) / d[2], np.float32(-half_height - o[2]) / d[2])
    x_cap, y_cap = o[0] + t_cap * d[0], o[1] + t_cap * d[1]
    cap = (t_cap > 0) & (x_cap * x_cap + y_cap * y_cap <= radius * radius)
    np.copyto(t_side, t_cap, where=cap & (t_cap < t_side))
    return t_side


def _surface_box(p: np.ndarray, half: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward normal and texture coordinates of local hit points ``p`` (3 x n): the face is the largest |p|/h."""
    axis = np.argmax(np.abs(p) / np.asarray(half, dtype=np.float32)[:, None], axis=0)
    columns = np.arange(p.shape[1])
    normal = np.zeros_like(p)
    normal[axis, columns] = np.sign(p[axis, columns])
    return normal, np.where(axis == 0, p[1], p[0]), np.where(axis == 2, p[1], p[2])


def _surface_cylinder(p: np.ndarray, radius: float, half_height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rho = np.sqrt(p[0] * p[0] + p[1] * p[1])
    cap = np.abs(p[2]) * radius > rho * half_height
    safe = np.maximum(rho, np.float32(1e-6))
    normal = np.where(cap, [[0.0], [0.0], [1.0]] * np.sign(p[2]), np.stack([p[0] / safe, p[1] / safe, 0 * rho]))
    u = np.where(cap, p[0], np.arctan2(p[1], p[0]) * np.float32(radius))
    return normal.astype(np.float32), u, np.where(cap, p[1], p[2])


def _room_surface(face: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inward normal and texture coordinates on a room face: floor and ceiling use (x, y), walls (along, z)."""
    axis = face // 2
    normal = np.zeros(3, dtype=np.float32)
    normal[axis] = 1.0 if face % 2 == 0 else -1.0
    u, v = (p[0], p[1]) if axis == 2 else (p[1 - axis], p[2])
    return np.broadcast_to(normal[:, None], p.shape), u, v


# ---------------------------------------------------------------------------------------------------------------
# Procedural textures


@dataclass(frozen=True, eq=False)
class _Noise:
    """Per-scene noise: a periodic smooth tile (unit std) and a table of white values for per-tile jitter."""

    smooth: np.ndarray
    white: np.ndarray

    @classmethod
    def make(cls, rng: np.random.Generator) -> _Noise:
        white = rng.standard_normal((_NOISE_TILE, _NOISE_TILE))
        freq = np.fft.fftfreq(_NOISE_TILE) * _NOISE_TILE
        falloff = np.exp(-(freq[:, None] ** 2 + freq[None, :] ** 2) / (2 * 4.0**2))
        smooth = np.fft.ifft2(np.fft.fft2(white) * falloff).real
        smooth = (smooth - smooth.mean()) / smooth.std()
        return cls(smooth.astype(np.float32).ravel(), rng.standard_normal(256).astype(np.float32))

    def sample(self, u: np.ndarray, v: np.ndarray, texels_per_metre: float) -> np.ndarray:
        """Bilinear lookup of the smooth tile, wrapped, at ``texels_per_metre``."""
        x, y = u * np.float32(texels_per_metre), v * np.float32(texels_per_metre)
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        mask = _NOISE_TILE - 1
        ix, iy = x0.astype(np.int32) & mask, y0.astype(np.int32) & mask
        ix1, iy1 = (ix + 1) & mask, (iy + 1) & mask
        row, row1 = iy * _NOISE_TILE, iy1 * _NOISE_TILE
        s = self.smooth
        a, b, c, e = s[row + ix], s[row + ix1], s[row1 + ix], s[row1 + ix1]
        top = a + fx * (b - a)
        return top + fy * (c + fx * (e - c) - top)

    def jitter(self, cell: np.ndarray) -> np.ndarray:
        """A white value per integer cell index (planks, tiles)."""
        return self.white[cell.astype(np.int32) & 255]


def _albedo(material: Material, u: np.ndarray, v: np.ndarray, noise: _Noise) -> np.ndarray:
    """Linear RGB albedo (3 x n) of ``material`` at texture coordinates ``(u, v)`` in metres."""
    if material.turn:
        u, v = v, u
    scale = np.float32(material.scale)
    mix: np.ndarray | float = 0.0
    shade: np.ndarray | float = 1.0
    if material.texture == "plaster":
        shade = 1.0 + 0.07 * noise.sample(u, v, 6.0) + 0.03 * noise.sample(u, v, 45.0)
    elif material.texture == "wood":
        across = v / scale
        plank = np.floor(across)
        grain = np.sin(
            np.float32(2 * math.pi) * (across * 3.0 + 0.8 * noise.sample(u, v, 3.0)) + 5.0 * noise.jitter(plank)
        )
        mix = 0.35 + 0.3 * grain + 0.15 * noise.sample(u, v, 24.0)
        seam = (across - plank) < 0.04
        shade = np.where(seam, np.float32(0.45), 1.0 + 0.12 * noise.jitter(plank * 7.0 + np.floor(u / (6 * scale))))
    elif material.texture == "tiles":
        gu, gv = u / scale, v / scale
        cu, cv = np.floor(gu), np.floor(gv)
        grout = np.minimum(gu - cu, gv - cv) < 0.05
        mix = grout.astype(np.float32)
        shade = 1.0 + 0.06 * noise.jitter(cu * 31.0 + cv * 17.0) + 0.02 * noise.sample(u, v, 30.0)
    elif material.texture == "fabric":
        weave = np.sin(np.float32(2 * math.pi) * u / scale) * np.sin(np.float32(2 * math.pi) * v / scale)
        mix = 0.3 + 0.25 * weave + 0.2 * noise.sample(u, v, 25.0)
        shade = 1.0 + 0.1 * noise.sample(u, v, 4.0)
    elif material.texture == "stripes":
        phase = u / scale
        mix = ((phase - np.floor(phase)) < 0.5).astype(np.float32)
        shade = 1.0 + 0.03 * noise.sample(u, v, 20.0)
    base = np.asarray(material.base, dtype=np.float32)[:, None]
    accent = np.asarray(material.accent, dtype=np.float32)[:, None]
    albedo = (base + (accent - base) * mix) * shade
    return np.clip(np.broadcast_to(albedo, (3, u.shape[0])), 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _screen_rect(solid: Solid, camera: Camera) -> tuple[int, int, int, int] | None:
    """Pixel window ``(y0, y1, x0, x1)`` that contains the solid's projection, or None if it is behind the camera.

    The projection of a convex body lies inside the box of its bounding corners' projections whenever all
    corners are in front of the camera; otherwise the whole image is searched.
    """
    width, height = camera.size
    k = camera.intrinsics
    corners = solid.local_corners() @ solid.rotation.T + np.asarray(solid.center)
    local = (corners - camera.position) @ camera.rotation
    z = local[:, 2]
    if np.all(z <= 0):
        return None
    if np.any(z <= 1e-6):
        return 0, height, 0, width
    x = k.fx * local[:, 0] / z + k.cx
    y = k.fy * local[:, 1] / z + k.cy
    x0, x1 = max(0, math.floor(x.min())), min(width, math.ceil(x.max()) + 1)
    y0, y1 = max(0, math.floor(y.min())), min(height, math.ceil(y.max()) + 1)
    return (y0, y1, x0, x1) if x0 < x1 and y0 < y1 else None


def _grid_directions(matrix: np.ndarray, u: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """``matrix @ (u, v, 1)`` over the grid of column offsets ``u`` and row offsets ``v``, per component."""
    m = matrix.astype(np.float32)
    return [(m[a, 0] * u)[None, :] + (m[a, 1] * v + m[a, 2])[:, None] for a in range(3)]


def _cast_primary(
    scene: SceneDescription, camera: Camera, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Depth map, id map (room faces 0..5, then solids) and world ray directions (camera-z component 1)."""
    rays = _grid_directions(camera.rotation, u, v)
    depth, ids = _hit_room(scene.room.low, scene.room.high, camera.position.astype(np.float32), rays)
    for number, solid in enumerate(scene.solids):
        rect = _screen_rect(solid, camera)
        if rect is None:
            continue
        y0, y1, x0, x1 = rect
        to_local = solid.rotation.T
        o = (to_local @ (camera.position - np.asarray(solid.center))).astype(np.float32)
        t = solid.hit(o, _grid_directions(to_local @ camera.rotation, u[x0:x1], v[y0:y1]))
        window = depth[y0:y1, x0:x1]
        np.copyto(ids[y0:y1, x0:x1], np.int16(_ROOM_FACES + number), where=t < window)
        np.minimum(window, t, out=window)
    return depth, ids, rays


def _surfaces(
    scene: SceneDescription, points: np.ndarray, bounds: np.ndarray, noise: _Noise
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World normals (3 x n), linear albedo (3 x n) and gloss (n) of hit points grouped by surface.

    Surface ``g`` (room face, then solid) owns the points ``bounds[g]:bounds[g + 1]``.
    """
    count = points.shape[1]
    normals = np.empty((3, count), dtype=np.float32)
    albedo = np.empty((3, count), dtype=np.float32)
    gloss = np.zeros(count, dtype=np.float32)
    for group in range(len(bounds) - 1):
        span = slice(bounds[group], bounds[group + 1])
        if span.start == span.stop:
            continue
        p = points[:, span]
        if group < _ROOM_FACES:
            material = scene.room.face_material(group)
            normals[:, span], tu, tv = _room_surface(group, p)
        else:
            solid = scene.solids[group - _ROOM_FACES]
            material = solid.material
            rotation = solid.rotation.astype(np.float32)
            normal, tu, tv = solid.surface(rotation.T @ (p - np.asarray(solid.center, dtype=np.float32)[:, None]))
            normals[:, span] = rotation @ normal
        albedo[:, span] = _albedo(material, tu, tv, noise)
        gloss[span] = material.gloss
    return normals, albedo, gloss


def _shadow_candidates(solid: Solid, light: np.ndarray, to_light: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Indices of the points that ``solid`` may shade from ``light``: a superset of its shadow, found cheaply.

    Kept: points farther from the light than the solid's near side, inside the cone of its bounding sphere,
    then inside the box that its corners span as seen from the light (a central projection of a convex body
    lies within the box of its corners' projections).
    """
    center = np.asarray(solid.center)
    corners = solid.local_corners() @ solid.rotation.T + center - light
    offset = center - light
    reach = float(np.linalg.norm(offset))
    radius = float(np.linalg.norm(corners - offset, axis=1).max())
    if reach <= radius:  # the light is inside the bounding sphere: every farther point
        return np.flatnonzero(distance > reach - radius)
    axis = offset / reach
    side = np.cross(axis, (1.0, 0.0, 0.0) if abs(axis[0]) < 0.9 else (0.0, 1.0, 0.0))
    side /= np.linalg.norm(side)
    frame = np.stack([side, np.cross(axis, side), axis])  # rows: light-space x, y, z (z towards the solid)
    seen = corners @ frame.T
    low, high = (seen[:, :2] / seen[:, 2:]).min(axis=0), (seen[:, :2] / seen[:, 2:]).max(axis=0)
    toward = -frame.astype(np.float32)  # ``to_light`` points at the light: flip the frame to light -> point
    z = toward[2, 0] * to_light[0] + toward[2, 1] * to_light[1] + toward[2, 2] * to_light[2]
    index = np.flatnonzero((z >= math.sqrt(1.0 - (radius / reach) ** 2)) & (distance > reach - radius))
    z = z[index]
    for row in range(2):
        w = toward[row]
        lateral = w[0] * to_light[0, index] + w[1] * to_light[1, index] + w[2] * to_light[2, index]
        inside = (lateral >= low[row] * z) & (lateral <= high[row] * z)
        index, z = index[inside], z[inside]
    return index


def _shadowed(scene: SceneDescription, light: np.ndarray, to_light: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Which points, given by the unit vectors ``to_light`` (3 x m) and distances to the light, are in shadow.

    Each shadow ray runs from the light to its point (``t = 1`` at the point) through the same intersection
    code as the camera's rays, for the candidates of :func:`_shadow_candidates` only.
    """
    shadowed = np.zeros(distance.shape, dtype=bool)
    for solid in scene.solids:
        index = _shadow_candidates(solid, light, to_light, distance)
        if index.size == 0:
            continue
        direction = np.take(to_light, index, axis=1) * -distance[index]
        to_local = solid.rotation.T
        t = solid.hit(
            (to_local @ (light - np.asarray(solid.center))).astype(np.float32), to_local.astype(np.float32) @ direction
        )
        shadowed[index[t < 1.0 - _SHADOW_EPS]] = True
    return shadowed


def _shade(
    scene: SceneDescription,
    eye: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    albedo: np.ndarray,
    gloss: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Linear radiance (3 x n): ambient plus Lambertian and Blinn-Phong terms of each light, with cast shadows.

    Also returns the luminance of the specular highlights (n), from which raw depth gets its specular holes.
    """
    irradiance = np.full(albedo.shape, np.float32(scene.ambient), dtype=np.float32)
    glossy = np.flatnonzero(gloss)
    specular = np.zeros((3, glossy.size), dtype=np.float32)
    if glossy.size:
        to_eye = eye.astype(np.float32)[:, None] - np.take(points, glossy, axis=1)
        to_eye /= np.sqrt(np.sum(to_eye * to_eye, axis=0))
        glossy_normals = np.take(normals, glossy, axis=1)
    for light in scene.lights:
        position = np.asarray(light.position, dtype=np.float32)
        color = np.asarray(light.color, dtype=np.float32)[:, None]
        to_light = position[:, None] - points
        distance = np.sqrt(to_light[0] * to_light[0] + to_light[1] * to_light[1] + to_light[2] * to_light[2])
        to_light /= distance
        cos_light = normals[0] * to_light[0] + normals[1] * to_light[1] + normals[2] * to_light[2]
        strength = np.maximum(cos_light, 0.0) / (1.0 + (distance * np.float32(1.0 / _LIGHT_RANGE)) ** 2)
        if scene.shadows and scene.solids:
            lit = np.flatnonzero(cos_light > 0)
            strength[lit[_shadowed(scene, position, np.take(to_light, lit, axis=1), distance[lit])]] = 0.0
        irradiance += color * strength
        if glossy.size:
            half = np.take(to_light, glossy, axis=1) + to_eye
            highlight = np.maximum(np.sum(glossy_normals * half, axis=0), 0.0) / np.sqrt(np.sum(half * half, axis=0))
            for _ in range(_SHININESS_SQUARINGS):
                highlight *= highlight
            visible = strength[glossy] > 0
            falloff = 1.0 / (1.0 + (distance[glossy] * np.float32(1.0 / _LIGHT_RANGE)) ** 2)
            specular += color * (gloss[glossy] * highlight * falloff * visible)
    radiance = albedo * irradiance
    radiance[:, glossy] += specular
    highlight_luminance = np.zeros(gloss.shape, dtype=np.float32)
    highlight_luminance[glossy] = 0.2126 * specular[0] + 0.7152 * specular[1] + 0.0722 * specular[2]
    return radiance, highlight_luminance


def render(scene: SceneDescription, camera: Camera) -> Scene:
    """Ray-cast ``scene`` through ``camera``: image, exact z-depth and Kinect-like raw depth.

    Primary rays are cast on the pixel grid (each solid only inside its projected window); then pixels are
    grouped by the surface they hit, so texturing and shading run on contiguous slices, and put back at the end.
    The camera must be inside the room (every ray then hits a face of it) and outside every solid.
    """
    width, height = camera.size
    room = scene.room
    if not all(lo < p < hi for lo, p, hi in zip(room.low, camera.position, room.high, strict=True)):
        raise ValueError(f"camera at {camera.position} is outside the room {room.low}..{room.high}")
    k = camera.intrinsics
    u = ((np.arange(width) - k.cx) / k.fx).astype(np.float32)
    v = ((np.arange(height) - k.cy) / k.fy).astype(np.float32)
    rng = np.random.default_rng(scene.noise_seed)
    noise = _Noise.make(rng)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        depth, ids, rays = _cast_primary(scene, camera, u, v)
        order = np.argsort(ids.ravel(), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(ids.ravel(), minlength=_ROOM_FACES + len(scene.solids)))])
        depth_sorted = depth.ravel()[order]
        rays_sorted = np.stack([ray.ravel()[order] for ray in rays])
        points = camera.position.astype(np.float32)[:, None] + depth_sorted * rays_sorted
        normals, albedo, gloss = _surfaces(scene, points, bounds, noise)
        radiance, highlight = _shade(scene, camera.position, points, normals, albedo, gloss)

        ray_length = np.sqrt(np.sum(rays_sorted * rays_sorted, axis=0))
        cos_view = np.abs(np.sum(normals * rays_sorted, axis=0)) / ray_length
        holes = (
            (depth_sorted > RAW_MAX_DEPTH)
            | (depth_sorted < RAW_MIN_DEPTH)
            | (cos_view < RAW_MIN_INCIDENCE_COS)
            | (0.2126 * albedo[0] + 0.7152 * albedo[1] + 0.0722 * albedo[2] < RAW_DARK_ALBEDO)
            | (highlight > RAW_SPECULAR)
        )
    raw_depth = np.empty(width * height, dtype=np.float32)
    raw_depth[order] = np.where(holes, np.float32(0.0), depth_sorted)
    image = np.empty((3, width * height), dtype=np.float32)
    for channel in range(3):
        image[channel, order] = radiance[channel]
    sensor = rng if scene.sensor_seed is None else np.random.default_rng(scene.sensor_seed)
    image = _develop(image.reshape(3, height, width), u, v, scene, sensor)
    return Scene(image=image, depth=depth, raw_depth=raw_depth.reshape(height, width), intrinsics=camera.intrinsics)


def _develop(
    radiance: np.ndarray, u: np.ndarray, v: np.ndarray, scene: SceneDescription, rng: np.random.Generator
) -> np.ndarray:
    """Linear radiance (3 x H x W) to an 8-bit RGB photo: auto exposure, vignetting, slight blur, gamma 2, noise.

    Only the image gets these; depth stays exact. The noise is uniform with standard deviation ``sensor_noise``.
    """
    luminance = 0.2126 * radiance[0, ::4, ::4] + 0.7152 * radiance[1, ::4, ::4] + 0.0722 * radiance[2, ::4, ::4]
    exposure = 0.7 / max(float(np.percentile(luminance, 95)), 1e-6)
    radius2 = (u * u)[None, :] + (v * v)[:, None]
    gain = np.float32(exposure) * (1.0 - np.float32(scene.vignette) * radius2 / max(float(radius2.max()), 1e-12))
    channels = []
    for channel in radiance:
        value = cv2.GaussianBlur(channel * gain, (3, 3), 0.6)
        np.sqrt(np.maximum(value, 0.0, out=value), out=value)
        if scene.sensor_noise > 0:
            value += (rng.random(value.shape, dtype=np.float32) - 0.5) * np.float32(
                math.sqrt(12.0) * scene.sensor_noise
            )
        channels.append(np.clip(value * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8))
    return cv2.merge(channels)


# ---------------------------------------------------------------------------------------------------------------
# Random indoor scenes


def _linear_rgb(hue: float, saturation: float, value: float) -> Vec3:
    """An HSV colour as display values, squared to linear albedo (undone by the gamma-2 development)."""
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (r * r, g * g, b * b)


def _material(rng: np.random.Generator, texture: Texture, dark: bool = False, gloss: float = 0.0) -> Material:
    """A random material of a kind; ``dark`` ones fall under :data:`RAW_DARK_ALBEDO` (holes in raw depth)."""
    uniform = rng.uniform
    value = (lambda low, high: uniform(0.04, 0.13)) if dark else uniform
    hue = uniform(0.0, 1.0)
    if texture == "wood":
        hue = uniform(0.04, 0.11)
        base, accent = (
            _linear_rgb(hue, uniform(0.35, 0.7), value(0.4, 0.8)),
            _linear_rgb(hue, uniform(0.5, 0.8), value(0.2, 0.45)),
        )
        scale = uniform(0.08, 0.25)
    elif texture == "tiles":
        base, accent = (
            _linear_rgb(hue, uniform(0.0, 0.35), value(0.55, 0.95)),
            _linear_rgb(hue, uniform(0.0, 0.1), value(0.3, 0.8)),
        )
        scale = uniform(0.15, 0.6)
    elif texture == "fabric":
        saturation, brightness = uniform(0.15, 0.7), value(0.3, 0.85)
        base, accent = _linear_rgb(hue, saturation, brightness), _linear_rgb(hue, saturation, 0.6 * brightness)
        scale = uniform(0.01, 0.03)
    elif texture == "stripes":
        base = _linear_rgb(hue, uniform(0.0, 0.5), value(0.5, 0.95))
        accent = _linear_rgb(hue + uniform(-0.2, 0.2), uniform(0.1, 0.6), value(0.3, 0.9))
        scale = uniform(0.06, 0.5)
    elif texture == "plaster":
        base = accent = _linear_rgb(hue, uniform(0.0, 0.25), value(0.6, 0.95))
        scale = 1.0
    else:
        base = accent = _linear_rgb(hue, uniform(0.0, 0.8), value(0.15, 0.95))
        scale = 1.0
    return Material(texture, base, accent, scale, gloss, bool(rng.random() < 0.5))


@dataclass
class _Layout:
    """What the generator has placed so far: floor footprints (x, y, radius) and flat tops (x, y, z, room)."""

    room_low: Vec3
    room_high: Vec3
    camera_xy: tuple[float, float]
    forward_xy: tuple[float, float]
    half_fov: float
    footprints: list[tuple[float, float, float]] = field(default_factory=list)
    tops: list[tuple[float, float, float, float]] = field(default_factory=list)

    def free(self, x: float, y: float, radius: float) -> bool:
        return all(math.hypot(x - fx, y - fy) >= radius + fr for fx, fy, fr in self.footprints)

    def in_view(self, x: float, y: float) -> bool:
        """Whether a floor position is roughly in the camera's view: in its horizontal field, not at its feet."""
        dx, dy = x - self.camera_xy[0], y - self.camera_xy[1]
        distance = math.hypot(dx, dy)
        cos = (dx * self.forward_xy[0] + dy * self.forward_xy[1]) / max(distance, 1e-9)
        return distance >= 1.0 and cos >= math.cos(self.half_fov + math.radians(10.0))

    def spot(self, rng: np.random.Generator, radius: float) -> tuple[float, float] | None:
        """A free floor position for a footprint of ``radius``, in front of the camera most of the time."""
        (x0, y0, _), (x1, y1, _) = self.room_low, self.room_high
        if 2 * radius >= min(x1 - x0, y1 - y0):
            return None
        want_view = rng.random() < 0.8
        for _ in range(30):
            x, y = rng.uniform(x0 + radius, x1 - radius), rng.uniform(y0 + radius, y1 - radius)
            if self.free(x, y, radius) and (not want_view or self.in_view(x, y)):
                self.footprints.append((x, y, radius))
                return x, y
        return None

    def wall_spot(self, rng: np.random.Generator, along: float, depth: float) -> tuple[float, float, float] | None:
        """A free position with the back of a box (half extents ``along`` x ``depth``) against a wall; with yaw."""
        (x0, y0, _), (x1, y1, _) = self.room_low, self.room_high
        radius = math.hypot(along, depth)
        for _ in range(30):
            wall = int(rng.integers(4))
            if wall < 2:
                if 2 * along >= y1 - y0:
                    continue
                x, y, yaw = (
                    (x0 + depth + 0.01 if wall == 0 else x1 - depth - 0.01),
                    rng.uniform(y0 + along, y1 - along),
                    math.pi / 2,
                )
            else:
                if 2 * along >= x1 - x0:
                    continue
                x, y, yaw = (
                    rng.uniform(x0 + along, x1 - along),
                    (y0 + depth + 0.01 if wall == 2 else y1 - depth - 0.01),
                    0.0,
                )
            if self.free(x, y, radius) and self.in_view(x, y):
                self.footprints.append((x, y, radius))
                return x, y, yaw
        return None


def _furniture(rng: np.random.Generator, layout: _Layout, kind: str) -> list[Solid]:
    """One piece of furniture-like geometry of ``kind`` resting on the floor (or a sphere on a top)."""
    uniform = rng.uniform
    dark = bool(rng.random() < 0.12)
    if kind in ("cabinet", "bed"):
        along, depth, half_z = (
            (uniform(0.3, 1.0), uniform(0.2, 0.35), uniform(0.4, 1.05))
            if kind == "cabinet"
            else (uniform(0.7, 1.1), uniform(0.4, 1.0), uniform(0.2, 0.4))
        )
        placed = layout.wall_spot(rng, along, depth)
        if placed is None:
            return []
        x, y, yaw = placed
        texture = rng.choice(["wood", "plain", "stripes"]) if kind == "cabinet" else rng.choice(["fabric", "plain"])
        material = _material(rng, texture, dark, gloss=uniform(0.1, 0.4) if rng.random() < 0.3 else 0.0)
        layout.tops.append((x, y, 2 * half_z, min(along, depth)))
        return [Box((x, y, half_z), (along, depth, half_z), material, rotation_matrix(yaw))]
    if kind == "table":
        half_x, half_y, height, thick, leg = (
            uniform(0.4, 0.9),
            uniform(0.35, 0.6),
            uniform(0.68, 0.78),
            uniform(0.015, 0.03),
            uniform(0.02, 0.035),
        )
        placed = layout.spot(rng, math.hypot(half_x, half_y))
        if placed is None:
            return []
        x, y = placed
        yaw = uniform(0.0, math.pi)
        rotation = rotation_matrix(yaw)
        top = _material(
            rng, rng.choice(["wood", "plain"]), dark, gloss=uniform(0.1, 0.5) if rng.random() < 0.4 else 0.0
        )
        legs = _material(rng, "plain", bool(rng.random() < 0.3))
        solids: list[Solid] = [Box((x, y, height - thick), (half_x, half_y, thick), top, rotation)]
        leg_half = (height - 2 * thick) / 2
        for sx in (-1, 1):
            for sy in (-1, 1):
                offset = rotation @ np.array([sx * (half_x - 0.06), sy * (half_y - 0.06), 0.0])
                solids.append(Cylinder((x + offset[0], y + offset[1], leg_half), leg, leg_half, legs))
        layout.tops.append((x, y, height, min(half_x, half_y)))
        return solids
    if kind == "crate":
        half = (uniform(0.12, 0.4), uniform(0.12, 0.4), uniform(0.12, 0.4))
        placed = layout.spot(rng, math.hypot(half[0], half[1]))
        if placed is None:
            return []
        material = _material(rng, rng.choice(["wood", "plain", "stripes", "fabric"]), dark)
        layout.tops.append((*placed, 2 * half[2], min(half[0], half[1])))
        return [Box((*placed, half[2]), half, material, rotation_matrix(uniform(0.0, math.pi)))]
    if kind == "cylinder":
        radius, half_height = uniform(0.08, 0.3), uniform(0.15, 0.6)
        lying = bool(rng.random() < 0.3)
        placed = layout.spot(rng, max(radius, half_height) if lying else radius)
        if placed is None:
            return []
        material = _material(
            rng, rng.choice(["plain", "stripes", "wood"]), dark, gloss=uniform(0.2, 0.8) if rng.random() < 0.4 else 0.0
        )
        rotation = rotation_matrix(uniform(0.0, math.pi), math.pi / 2 if lying else 0.0)
        return [Cylinder((*placed, radius if lying else half_height), radius, half_height, material, rotation)]
    # sphere: on a top when one has room and stays clear of the ceiling, else on the floor
    radius = uniform(0.08, 0.35)
    material = _material(
        rng, rng.choice(["plain", "stripes", "fabric"]), dark, gloss=uniform(0.3, 0.9) if rng.random() < 0.5 else 0.0
    )
    tops = [t for t in layout.tops if t[3] >= radius and t[2] + 2 * radius < layout.room_high[2] - 0.4]
    if tops and rng.random() < 0.5:
        x, y, z, _ = tops[int(rng.integers(len(tops)))]
        return [Sphere((x, y, z + radius), radius, material)]
    placed = layout.spot(rng, radius)
    return [] if placed is None else [Sphere((*placed, radius), radius, material)]


_FURNITURE_KINDS = ("cabinet", "bed", "table", "crate", "cylinder", "sphere")
_FURNITURE_ODDS = (0.18, 0.08, 0.14, 0.25, 0.17, 0.18)


def random_scene(rng: np.random.Generator, size: tuple[int, int] = (640, 480)) -> tuple[SceneDescription, Camera]:
    """Draw a random indoor scene and a camera inside it from ``rng``."""
    uniform = rng.uniform
    width = uniform(2.8, 7.0)
    corridor = bool(rng.random() < 0.15)  # a long room seen lengthwise: its far end is past RAW_MAX_DEPTH
    length = uniform(10.0, 14.0) if corridor else uniform(3.0, 9.0)
    height = uniform(2.4, 3.2)
    floor_texture = rng.choice(["wood", "tiles", "fabric"], p=[0.5, 0.3, 0.2])
    floor = _material(
        rng, floor_texture, gloss=uniform(0.1, 0.5) if floor_texture != "fabric" and rng.random() < 0.5 else 0.0
    )
    walls = [_material(rng, rng.choice(["plaster", "stripes", "tiles", "plain"], p=[0.5, 0.2, 0.1, 0.2]))] * 4
    if rng.random() < 0.3:
        walls[int(rng.integers(4))] = _material(rng, rng.choice(["plaster", "stripes", "plain"]))
    ceiling = Material("plaster", _linear_rgb(0.1, uniform(0.0, 0.1), uniform(0.8, 0.95)))
    room = Room((0.0, 0.0, 0.0), (width, length, height), floor, ceiling, (walls[0], walls[1], walls[2], walls[3]))

    eye = np.array([uniform(0.4, width - 0.4), uniform(0.4, 1.5 if corridor else length - 0.4), uniform(1.0, 1.7)])
    target = eye
    for _ in range(4):  # the farthest of a few targets: views across the room more often than into a wall
        candidate = np.array(
            [uniform(0.3, width - 0.3), uniform(0.6 * length if corridor else 0.3, length - 0.3), uniform(0.3, 1.4)]
        )
        if math.hypot(*(candidate - eye)[:2]) > math.hypot(*(target - eye)[:2]):
            target = candidate
    hfov = uniform(*HFOV_RANGE)
    camera = Camera.look_at(eye, target, hfov, size, roll_deg=uniform(-4.0, 4.0))
    forward = (target - eye)[:2] / math.hypot(*(target - eye)[:2])
    layout = _Layout(room.low, room.high, (eye[0], eye[1]), (forward[0], forward[1]), math.radians(hfov) / 2)
    layout.footprints.append((eye[0], eye[1], 0.45))  # keeps solids out of the camera's way

    solids: list[Solid] = []
    for _ in range(int(rng.integers(4, 11))):
        solids += _furniture(rng, layout, str(rng.choice(_FURNITURE_KINDS, p=_FURNITURE_ODDS)))

    lights = []
    for strength in (1.0, uniform(0.3, 0.8))[: int(rng.integers(1, 3))]:
        position = (uniform(0.3, width - 0.3), uniform(0.3, length - 0.3), height - 0.15)
        lights.append(Light(position, (strength, strength * uniform(0.85, 1.0), strength * uniform(0.65, 0.95))))
    description = SceneDescription(
        room=room,
        solids=tuple(solids),
        lights=tuple(lights),
        ambient=uniform(0.12, 0.35),
        shadows=bool(rng.random() < 0.8),
        sensor_noise=uniform(0.004, 0.015),
        vignette=uniform(0.1, 0.35),
        noise_seed=int(rng.integers(2**63)),
    )
    return description, camera


def scene_camera(seed: int, size: tuple[int, int] = (640, 480)) -> dict[str, object]:
    """:meth:`Camera.metadata` of the scene of ``seed``, without rendering it (drawing it takes a millisecond)."""
    description, camera = random_scene(np.random.default_rng(seed), size)
    return camera.metadata(description.room.low[2])


def render_scene(seed: int, size: tuple[int, int] = (640, 480)) -> Scene:
    """Render the random scene of ``seed`` at ``size = (width, height)``; the same seed gives the same scene."""
    return render(*random_scene(np.random.default_rng(seed), size))


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` of a folder made with ``seed``: independent of the count, and folders with
    different seeds share no scene (unlike ``seed + index``)."""
    return int(np.random.SeedSequence((seed, index)).generate_state(1, np.uint64)[0])


# ---------------------------------------------------------------------------------------------------------------
# Folders of scenes

INDEX_NAME = "index.json"
#: ``{key: camera}`` for every scene or frame of a folder: :meth:`Camera.metadata` (intrinsics, height, pitch, roll).
CAMERAS_NAME = "cameras.json"
LABELED_MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_MAT_NAME = "splits.mat"

#: NYU Depth v2's official split has 795 train and 654 test frames of 1449; ``--nyu-mat`` keeps that proportion.
NYU_TRAIN_FRACTION = 795 / 1449

_JPEG_QUALITY = 95


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_folder` did: scenes rendered and written, scenes already there, wall time."""

    rendered: int
    written: int
    skipped: int
    seconds: float
    nyu_mat: tuple[int, int] | None = None  # (train, test) frame counts when the .mat pair was written
    nyu_tar: Path | None = None  # Marigold's NYU evaluation tar, when written (or already there)

    @property
    def scenes_per_second(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0


def scene_key(index: int) -> str:
    """File stem of scene ``index`` in a folder: ``<key>.jpg`` and ``<key>.png``."""
    return f"{index:06d}"


def nyu_split(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-based (train, test) indices for ``count`` scenes: the first :data:`NYU_TRAIN_FRACTION` train, the
    rest test, at least one of each. Scenes are drawn independently, so any fixed rule is a fair split."""
    train = min(count - 1, max(1, round(count * NYU_TRAIN_FRACTION)))
    return np.arange(train), np.arange(train, count)


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """Depth in metres to uint16 millimetres; 0 (invalid) where the depth is 0, not finite or past 65.535 m."""
    millimetres = np.round(np.nan_to_num(depth, nan=0.0, posinf=0.0) * 1000.0)
    return np.where((millimetres > 0) & (millimetres <= 65535), millimetres, 0).astype(np.uint16)


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
    )
    if not ok:
        raise EdgedepthError(f"{path}: JPEG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _write_json(path: Path, value: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2) + "\n")


def _describe(identity: dict) -> str:
    """``seed S, size WxH, generator vN`` of a folder's identity, whatever a foreign index.json holds."""
    size = identity.get("size")
    size = format_size(tuple(size)) if isinstance(size, list) and len(size) == 2 else size
    return f"seed {identity.get('seed')}, size {size}, generator v{identity.get('version')}"


def _open_index(out: Path, seed: int, size: tuple[int, int], count: int) -> dict:
    """Read or create ``index.json``; refuse a folder made with another seed, size or generator version."""
    identity = {"generator": "edgedepth.data.synthetic", "version": GENERATOR_VERSION, "seed": seed, "size": list(size)}
    path = out / INDEX_NAME
    if path.is_dir():
        raise EdgedepthError(f"{path}: a folder, not a file; remove it or choose another folder")
    if path.exists():
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EdgedepthError(f"{path}: unreadable ({exc}); remove the folder or choose another") from exc
        theirs = {key: index.get(key) for key in identity}
        if theirs != identity:
            raise EdgedepthError(
                f"{out}: holds scenes made with {_describe(theirs)}, not {_describe(identity)}; choose another folder"
            )
        index["count"] = max(int(index.get("count", 0)), count)
    else:
        if out.exists() and any(out.iterdir()):
            raise EdgedepthError(f"{out}: not empty and has no {INDEX_NAME}; choose a new or empty folder")
        index = {**identity, "count": count, "files": "<key>.jpg RGB beside <key>.png depth (uint16 mm, 0 = invalid)"}
    _write_json(path, index)
    return index


@dataclass(frozen=True, eq=False)
class _Frames:
    """Disk-backed arrays (``.npy`` memory maps) for the frames of a labeled ``.mat``: bounded memory at any count."""

    images: np.ndarray
    depths: np.ndarray
    raw_depths: np.ndarray

    @classmethod
    def create(cls, folder: Path, count: int, size: tuple[int, int]) -> _Frames:
        width, height = size
        open_memmap = np.lib.format.open_memmap
        return cls(
            open_memmap(folder / "images.npy", "w+", np.uint8, (count, height, width, 3)),
            open_memmap(folder / "depths.npy", "w+", np.float32, (count, height, width)),
            open_memmap(folder / "raw_depths.npy", "w+", np.float32, (count, height, width)),
        )


def _render_into(
    out: Path, count: int, size: tuple[int, int], seed: int, frames: _Frames | None, progress: bool
) -> tuple[int, int, int]:
    """Write the missing ``<key>.jpg`` / ``<key>.png`` pairs; with ``frames``, render every scene into them too.

    Returns (rendered, written, skipped).
    """
    rendered = written = skipped = 0
    for number in tqdm(range(count), desc="synth", unit="scene", disable=not progress):
        image_path, depth_path = out / f"{scene_key(number)}.jpg", out / f"{scene_key(number)}.png"
        present = image_path.is_file() and depth_path.is_file()
        if present and frames is None:
            skipped += 1
            continue
        scene = render_scene(scene_seed(seed, number), size)
        rendered += 1
        if present:
            skipped += 1
        else:  # depth first: a JPEG on disk always has its depth beside it
            write_png(depth_path, depth_to_png16(scene.depth))
            _write_jpeg(image_path, scene.image)
            written += 1
        if frames is not None:
            frames.images[number], frames.depths[number], frames.raw_depths[number] = (
                scene.image,
                scene.depth,
                scene.raw_depth,
            )
    return rendered, written, skipped


def write_nyu_tar(path: Path, count: int, seed: int = 0, progress: bool = True) -> None:
    """Scenes ``0 .. count - 1`` of ``seed`` (640x480) as Marigold's NYU evaluation tar, atomically.

    Scene ``k`` takes the ``k``-th sample of the shipped NYU test list: its RGB (PNG), its raw depth with the
    sensor's holes (the depth Marigold scores) and its exact depth as the filled one, each as NYU's 16-bit
    millimetres, so ``edgedepth eval --suite zero-shot --datasets nyu --limit <count>`` scores it through the
    same reader as the published tar. Scenes are rendered again from their seeds.
    """
    evalset = EVAL_SETS["nyu"]
    entries = read_sample_list(evalset.split_path(), evalset)
    if count > len(entries):
        raise EdgedepthError(f"--nyu-tar names its scenes after the {len(entries)} samples of NYU's test list; "
                             f"--count {count} is more")
    with EvalSetWriter(path, evalset) as writer:
        for number in tqdm(range(count), desc="synth nyu tar", unit="scene", disable=not progress):
            scene = render_scene(scene_seed(seed, number), nyu.NYU_FRAME_SIZE)
            writer.add(entries[number], scene.image, scene.raw_depth, filled=scene.depth)


def write_folder(
    out: str | Path,
    count: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    nyu_mat: bool = False,
    progress: bool = True,
    nyu_tar: bool = False,
) -> SynthSummary:
    """Render scenes ``0 .. count - 1`` of ``seed`` into ``out``: ``<key>.jpg`` beside ``<key>.png`` (depth, mm).

    Resumable: scenes whose two files exist are skipped, every file is written atomically, and a rerun may ask
    for more scenes. ``index.json`` records the seed, size and generator version; a folder made with others
    is refused. With ``nyu_mat`` (640x480 only) the folder also gets ``nyu_depth_v2_labeled.mat`` and
    ``splits.mat`` in the official layouts (``depths`` exact, ``rawDepths`` with the sensor's holes, the split
    of :func:`nyu_split`), from frames rendered again from their seeds rather than read back from the lossy
    JPEGs; that step is skipped when the index says it was done for this count. With ``nyu_tar`` (640x480 only)
    it also gets Marigold's NYU evaluation tar (:func:`write_nyu_tar`) where Marigold's base data folder has it,
    likewise once.
    """
    out = Path(out)
    if count <= 0:
        raise EdgedepthError(f"--count must be a positive number of scenes, got {count}")
    if seed < 0:
        raise EdgedepthError(f"--seed must be non-negative, got {seed}")
    size = (int(size[0]), int(size[1]))
    if size[0] <= 0 or size[1] <= 0:
        raise EdgedepthError(f"size {format_size(size)} must be positive")
    if nyu_mat and size != nyu.NYU_FRAME_SIZE:
        raise EdgedepthError(
            f"--nyu-mat needs NYU's frame size {format_size(nyu.NYU_FRAME_SIZE)}, not {format_size(size)}"
        )
    if nyu_mat and count < 2:
        raise EdgedepthError("--nyu-mat needs at least 2 scenes (one train, one test)")
    if nyu_tar and size != nyu.NYU_FRAME_SIZE:
        raise EdgedepthError(
            f"--nyu-tar needs NYU's frame size {format_size(nyu.NYU_FRAME_SIZE)}, not {format_size(size)}"
        )
    if out.exists() and not out.is_dir():
        raise EdgedepthError(f"{out}: is a file; synth writes a folder")
    make_folder(out)
    index = _open_index(out, seed, size, count)

    start = time.perf_counter()
    mat_done = index.get("nyu_mat", {}).get("count") == count and all(
        (out / name).is_file() for name in (LABELED_MAT_NAME, SPLITS_MAT_NAME)
    )
    if nyu_mat and not mat_done:
        with tempfile.TemporaryDirectory(dir=out, prefix=".synth-") as scratch:
            frames = _Frames.create(Path(scratch), count, size)
            rendered, written, skipped = _render_into(out, count, size, seed, frames, progress)
            train, test = nyu_split(count)
            nyu.write_labeled_mat(out / LABELED_MAT_NAME, frames.images, frames.depths, frames.raw_depths)
            nyu.write_splits_mat(out / SPLITS_MAT_NAME, train, test)
            del frames
        index["nyu_mat"] = {"count": count, "train": int(train.size), "test": int(test.size)}
        _write_json(out / INDEX_NAME, index)
    else:
        rendered, written, skipped = _render_into(out, count, size, seed, None, progress)
    _write_json(out / CAMERAS_NAME, {scene_key(k): scene_camera(scene_seed(seed, k), size) for k in range(count)})
    split = (index["nyu_mat"]["train"], index["nyu_mat"]["test"]) if nyu_mat else None
    tar = out / EVAL_SETS["nyu"].archive if nyu_tar else None
    if tar is not None and not (index.get("nyu_tar", {}).get("count") == count and tar.is_file()):
        write_nyu_tar(tar, count, seed, progress)
        index["nyu_tar"] = {"count": count}
        _write_json(out / INDEX_NAME, index)
    return SynthSummary(rendered, written, skipped, time.perf_counter() - start, split, tar)


# ---------------------------------------------------------------------------------------------------------------
# A camera moving through one room

SEQUENCE_VIDEO = "video.mp4"
SEQUENCE_DEPTH = "depth"
#: Frame rate of a sequence, the speed of its camera at the middle of its path (m/s), the amplitude (degrees) and
#: period (s) of its yaw swing: a wheeled robot's pace. Frame ``k`` of a seed is the same whatever the length.
SEQUENCE_FPS = 30.0
SEQUENCE_SPEED = 0.3
SEQUENCE_YAW_SWING = (8.0, 6.0)
#: Camera heights (m) and downward pitches (degrees) a sequence draws from: a robot's camera, level to looking down.
SEQUENCE_HEIGHT_RANGE = (0.4, 1.5)
SEQUENCE_PITCH_RANGE = (5.0, 25.0)
_PATH_MARGIN = 1.0  # metres the path's far end keeps from the walls
_PATH_CLEARANCE = 0.45  # metres between the path and any solid's footprint
_PATH_LONGEST = 2.5  # metres


@dataclass(frozen=True)
class SequenceSummary:
    """What :func:`write_sequence` did: frames rendered (0 when the folder was already complete), wall time."""

    frames: int
    rendered: int
    seconds: float


def _footprint(solid: Solid) -> tuple[float, float, float]:
    """``(x, y, radius)`` of a circle on the floor that contains the solid's footprint."""
    corners = solid.local_corners() @ solid.rotation.T
    return solid.center[0], solid.center[1], float(np.hypot(corners[:, 0], corners[:, 1]).max())


def sequence_cameras(
    seed: int, frames: int, size: tuple[int, int] = (640, 480)
) -> tuple[SceneDescription, list[Camera]]:
    """One random room and ``frames`` cameras moving through it at a robot's pace, at a fixed height and pitch.

    The camera goes back and forth along a straight, clear path (solids on it are taken out of the room), starting
    from its middle at :data:`SEQUENCE_SPEED` and slowing towards its ends (a sine), and swings its yaw slowly; its
    roll is 0.
    """
    rng = np.random.default_rng(np.random.SeedSequence((seed, 0x5E9)))
    description, start = random_scene(rng, size)
    room = description.room
    height = float(rng.uniform(*SEQUENCE_HEIGHT_RANGE))
    pitch = math.radians(rng.uniform(*SEQUENCE_PITCH_RANGE))
    forward = start.rotation[:, 2]
    heading = math.atan2(forward[1], forward[0])
    origin = np.array([start.position[0], start.position[1]])
    direction = np.array([math.cos(heading), math.sin(heading)])
    with np.errstate(divide="ignore"):
        to_walls = [(np.array(bound)[:2] - origin) / direction for bound in (room.low, room.high)]
    reach = float(np.min(np.where(np.maximum(*to_walls) > 0, np.maximum(*to_walls), np.inf)))
    length = float(np.clip(reach - _PATH_MARGIN, 0.0, _PATH_LONGEST))

    def clear(solid: Solid) -> bool:  # the solid's footprint keeps its distance from the path segment
        x, y, radius = _footprint(solid)
        along = float(np.clip(np.dot((x, y) - origin, direction), 0.0, length))
        return float(np.hypot(*((x, y) - origin - along * direction))) > radius + _PATH_CLEARANCE

    description = dataclasses.replace(description, solids=tuple(filter(clear, description.solids)))
    omega = 2.0 * SEQUENCE_SPEED / (SEQUENCE_FPS * length) if length > 0 else 0.0
    swing, period = math.radians(SEQUENCE_YAW_SWING[0]), SEQUENCE_YAW_SWING[1] * SEQUENCE_FPS
    hfov = math.degrees(2.0 * math.atan(size[0] / (2.0 * start.intrinsics.fx)))
    cameras = []
    for k in range(frames):
        x, y = origin + direction * (length / 2.0) * (1.0 + math.sin(omega * k))
        yaw = heading + swing * math.sin(2.0 * math.pi * k / period)
        eye = (x, y, room.low[2] + height)
        look = (math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), -math.sin(pitch))
        cameras.append(Camera.look_at(eye, np.add(eye, look), hfov, size))
    return description, cameras


def write_sequence(
    out: str | Path, frames: int, size: tuple[int, int] = (640, 480), seed: int = 0, progress: bool = True
) -> SequenceSummary:
    """Render :func:`sequence_cameras` into ``out``: ``video.mp4``, ``depth/<key>.png`` (exact depth, uint16 mm),
    ``cameras.json`` (each frame's :meth:`Camera.metadata`) and ``index.json``.

    Each frame draws its own sensor noise (its textures stay). The video is written atomically, last, so a folder
    with ``video.mp4`` and an ``index.json`` of the same seed, size and length is complete and is left as it is;
    a folder made otherwise is refused.
    """
    out = Path(out)
    if frames < 2:
        raise EdgedepthError(f"--sequence must be at least 2 frames, got {frames}")
    if seed < 0:
        raise EdgedepthError(f"--seed must be non-negative, got {seed}")
    size = (int(size[0]), int(size[1]))
    if size[0] <= 0 or size[1] <= 0 or size[0] % 2 or size[1] % 2:
        raise EdgedepthError(f"size {format_size(size)}: a video needs positive, even sides")
    if out.exists() and not out.is_dir():
        raise EdgedepthError(f"{out}: a file, not a folder; synth writes a folder")
    make_folder(out)
    identity = {"generator": "edgedepth.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
                "size": list(size), "sequence": frames, "fps": SEQUENCE_FPS}
    index_path = out / INDEX_NAME
    if index_path.is_dir():
        raise EdgedepthError(f"{index_path}: a folder, not a file; remove it or choose another folder")
    if index_path.is_file():
        try:
            theirs = json.loads(index_path.read_text())
        except (OSError, ValueError) as exc:
            raise EdgedepthError(f"{index_path}: unreadable ({exc}); remove the folder or choose another") from exc
        if {key: theirs.get(key) for key in identity} != identity:
            raise EdgedepthError(f"{out}: holds another synth output ({_describe(theirs)}, sequence "
                                 f"{theirs.get('sequence')}); choose another folder")
        if (out / SEQUENCE_VIDEO).is_file() and (out / CAMERAS_NAME).is_file():
            return SequenceSummary(frames, 0, 0.0)
    elif any(out.iterdir()):
        raise EdgedepthError(f"{out}: not empty and has no {INDEX_NAME}; choose a new or empty folder")
    _write_json(index_path, {**identity, "files": f"{SEQUENCE_VIDEO} RGB frames; {SEQUENCE_DEPTH}/<key>.png depth "
                             f"(uint16 mm, 0 = invalid); {CAMERAS_NAME} each frame's camera"})
    start = time.perf_counter()
    description, cameras = sequence_cameras(seed, frames, size)
    floor = description.room.low[2]
    with atomic_path(out / SEQUENCE_VIDEO) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), SEQUENCE_FPS, size)
        if not writer.isOpened():
            raise EdgedepthError(f"{out / SEQUENCE_VIDEO}: OpenCV cannot write an MP4 video here")
        try:
            for k, camera in enumerate(tqdm(cameras, desc="synth", unit="frame", disable=not progress)):
                sensor = int(np.random.SeedSequence((seed, 0x5E9, k)).generate_state(1, np.uint64)[0])
                scene = render(dataclasses.replace(description, sensor_seed=sensor), camera)
                write_png(out / SEQUENCE_DEPTH / f"{scene_key(k)}.png", depth_to_png16(scene.depth))
                writer.write(cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        _write_json(out / CAMERAS_NAME, {scene_key(k): camera.metadata(floor) for k, camera in enumerate(cameras)})
    return SequenceSummary(frames, frames, time.perf_counter() - start)
