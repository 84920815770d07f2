"""Ray-solid intersections and surface frames, in each solid's local frame: the ray caster's geometry.

``o`` is the ray origin (3 scalars: the camera or a light), ``d`` three float32 arrays of direction components of any
shape. Each intersection returns the ray parameter of the first entering hit (``t > 0``), ``inf`` where the ray
misses. Divisions by zero are meant (errstate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def corners(half: Sequence[float]) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return signs * np.asarray(half, dtype=np.float64)


def hit_room(
    low: Sequence[float], high: Sequence[float], o: np.ndarray, d: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Exit of the inside of an axis-aligned box: ``(t, face)`` with face ``2 * axis + (1 on the high side)``.

    From inside, per axis one of ``(low - o) / d`` and ``(high - o) / d`` is the exit and the other is negative,
    so the larger is the exit (a ray parallel to the axis, ``d = ±0``, gets ``+inf``).
    """
    t: np.ndarray | None = None
    face: np.ndarray | None = None
    for axis in range(3):
        t_axis = np.maximum(np.float32(low[axis] - o[axis]) / d[axis], np.float32(high[axis] - o[axis]) / d[axis])
        face_axis = (d[axis] > 0).astype(np.int16) + np.int16(2 * axis)
        if t is None or face is None:
            t, face = t_axis, face_axis
        else:
            np.copyto(face, face_axis, where=t_axis < t)
            np.minimum(t, t_axis, out=t)
    assert t is not None and face is not None  # set by the first axis
    return t, face


def hit_box(o: np.ndarray, d: Sequence[np.ndarray], half: Sequence[float]) -> np.ndarray:
    """Slab test; ``(±h - o) / d`` stays correct for rays parallel to a slab (``d = ±0`` gives ``±inf``)."""
    near: np.ndarray | None = None
    far: np.ndarray | None = None
    for axis in range(3):
        inv = 1.0 / d[axis]
        t1 = np.float32(-half[axis] - o[axis]) * inv
        t2 = np.float32(half[axis] - o[axis]) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        near = lo if near is None else np.maximum(near, lo)
        far = hi if far is None else np.minimum(far, hi)
    assert near is not None and far is not None  # set by the first axis
    np.copyto(near, np.float32(np.inf), where=(near > far) | (near <= 0))
    return near


def hit_sphere(o: np.ndarray, d: Sequence[np.ndarray], radius: float) -> np.ndarray:
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = np.float32(o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - radius * radius)
    t = (-b - np.sqrt(b * b - a * c)) / a  # NaN where the ray misses: ~(t > 0) is then True
    np.copyto(t, np.float32(np.inf), where=~(t > 0))
    return t


def hit_cylinder(o: np.ndarray, d: Sequence[np.ndarray], radius: float, half_height: float) -> np.ndarray:
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


def surface_box(p: np.ndarray, half: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward normal and texture coordinates of local hit points ``p`` (3 x n): the face is the largest |p|/h."""
    axis = np.argmax(np.abs(p) / np.asarray(half, dtype=np.float32)[:, None], axis=0)
    columns = np.arange(p.shape[1])
    normal = np.zeros_like(p)
    normal[axis, columns] = np.sign(p[axis, columns])
    return normal, np.where(axis == 0, p[1], p[0]), np.where(axis == 2, p[1], p[2])


def surface_cylinder(p: np.ndarray, radius: float, half_height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rho = np.sqrt(p[0] * p[0] + p[1] * p[1])
    cap = np.abs(p[2]) * radius > rho * half_height
    safe = np.maximum(rho, np.float32(1e-6))
    normal = np.where(cap, [[0.0], [0.0], [1.0]] * np.sign(p[2]), np.stack([p[0] / safe, p[1] / safe, 0 * rho]))
    u = np.where(cap, p[0], np.arctan2(p[1], p[0]) * np.float32(radius))
    return normal.astype(np.float32), u, np.where(cap, p[1], p[2])


def room_surface(face: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inward normal and texture coordinates on a room face: floor and ceiling use (x, y), walls (along, z)."""
    axis = face // 2
    normal = np.zeros(3, dtype=np.float32)
    normal[axis] = 1.0 if face % 2 == 0 else -1.0
    u, v = (p[0], p[1]) if axis == 2 else (p[1 - axis], p[2])
    return np.broadcast_to(normal[:, None], p.shape), u, v
