"""A synthetic scene's description: the room, its solids, materials and lights, the pinhole camera, and what a
render returns (image, exact depth, Kinect-like raw depth, intrinsics)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgedepth.data.synthetic.raycast import corners, hit_box, hit_cylinder, hit_sphere, surface_box, surface_cylinder
from edgedepth.robot.geometry import Intrinsics

Texture = Literal["plain", "wood", "tiles", "plaster", "fabric", "stripes"]
Vec3 = tuple[float, float, float]

ROOM_FACES = 6  # ids 0..5 of the id map: x-low, x-high, y-low, y-high walls, floor, ceiling; solids follow


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
        position: Sequence[float] | np.ndarray,
        target: Sequence[float] | np.ndarray,
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
        return corners(self.half)

    def hit(self, o: np.ndarray, d: Sequence[np.ndarray]) -> np.ndarray:
        return hit_box(o, d, self.half)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return surface_box(p, self.half)


@dataclass(frozen=True, eq=False)
class Sphere:
    """A sphere of ``radius`` centred at ``center``."""

    center: Vec3
    radius: float
    material: Material
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def local_corners(self) -> np.ndarray:
        return corners((self.radius,) * 3)

    def hit(self, o: np.ndarray, d: Sequence[np.ndarray]) -> np.ndarray:
        return hit_sphere(o, d, self.radius)

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
        return corners((self.radius, self.radius, self.half_height))

    def hit(self, o: np.ndarray, d: Sequence[np.ndarray]) -> np.ndarray:
        return hit_cylinder(o, d, self.radius, self.half_height)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return surface_cylinder(p, self.radius, self.half_height)


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
