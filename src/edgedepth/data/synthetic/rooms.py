"""Random indoor scenes: rooms with furniture-like solids and lights, and scene ``k`` of a seed."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from edgedepth.data.synthetic.rendering import render
from edgedepth.data.synthetic.scene import (
    Box,
    Camera,
    Cylinder,
    Light,
    Material,
    Room,
    Scene,
    SceneDescription,
    Solid,
    Sphere,
    Texture,
    Vec3,
    rotation_matrix,
)

#: Horizontal field of view of the random cameras, degrees (NYU's Kinect: about 58).
HFOV_RANGE = (54.0, 62.0)


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
        on_wall = layout.wall_spot(rng, along, depth)
        if on_wall is None:
            return []
        x, y, yaw = on_wall
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
