"""Rendering a scene: primary rays, surfaces, shadows and shading (Blinn-Phong), then the camera's development
(vignetting, sensor noise) and the raw depth's holes."""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgedepth.core.depth import DEFAULT_MAX_DEPTH
from edgedepth.data.synthetic.raycast import hit_room, room_surface
from edgedepth.data.synthetic.scene import (
    ROOM_FACES,
    Camera,
    Scene,
    SceneDescription,
    Solid,
)
from edgedepth.data.synthetic.textures import Noise, material_albedo

#: Kinect-like sensor limits that punch holes in ``raw_depth`` (metres, cosine, linear albedo, radiance).
RAW_MAX_DEPTH = DEFAULT_MAX_DEPTH  # the Kinect's, NYU Depth v2's far limit
RAW_MIN_DEPTH = 0.45
RAW_MIN_INCIDENCE_COS = math.cos(math.radians(78.0))
RAW_DARK_ALBEDO = 0.02
RAW_SPECULAR = 0.12

SHININESS_SQUARINGS = 5  # Blinn-Phong exponent 2**5 = 32, by repeated squaring
LIGHT_RANGE = 3.0  # metres at which a light's irradiance has halved: 1 / (1 + (d / range)^2)
SHADOW_EPS = 1e-3  # fraction of the light-to-point segment left out at the point's end (no self-shadowing)


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
    depth, ids = hit_room(scene.room.low, scene.room.high, camera.position.astype(np.float32), rays)
    for number, solid in enumerate(scene.solids):
        rect = _screen_rect(solid, camera)
        if rect is None:
            continue
        y0, y1, x0, x1 = rect
        to_local = solid.rotation.T
        o = (to_local @ (camera.position - np.asarray(solid.center))).astype(np.float32)
        t = solid.hit(o, _grid_directions(to_local @ camera.rotation, u[x0:x1], v[y0:y1]))
        window = depth[y0:y1, x0:x1]
        np.copyto(ids[y0:y1, x0:x1], np.int16(ROOM_FACES + number), where=t < window)
        np.minimum(window, t, out=window)
    return depth, ids, rays


def _surfaces(
    scene: SceneDescription, points: np.ndarray, bounds: np.ndarray, noise: Noise
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
        if group < ROOM_FACES:
            material = scene.room.face_material(group)
            normals[:, span], tu, tv = room_surface(group, p)
        else:
            solid = scene.solids[group - ROOM_FACES]
            material = solid.material
            rotation = solid.rotation.astype(np.float32)
            normal, tu, tv = solid.surface(rotation.T @ (p - np.asarray(solid.center, dtype=np.float32)[:, None]))
            normals[:, span] = rotation @ normal
        albedo[:, span] = material_albedo(material, tu, tv, noise)
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
        shadowed[index[t < 1.0 - SHADOW_EPS]] = True
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
        strength = np.maximum(cos_light, 0.0) / (1.0 + (distance * np.float32(1.0 / LIGHT_RANGE)) ** 2)
        if scene.shadows and scene.solids:
            lit = np.flatnonzero(cos_light > 0)
            strength[lit[_shadowed(scene, position, np.take(to_light, lit, axis=1), distance[lit])]] = 0.0
        irradiance += color * strength
        if glossy.size:
            half = np.take(to_light, glossy, axis=1) + to_eye
            highlight = np.maximum(np.sum(glossy_normals * half, axis=0), 0.0) / np.sqrt(np.sum(half * half, axis=0))
            for _ in range(SHININESS_SQUARINGS):
                highlight *= highlight
            visible = strength[glossy] > 0
            falloff = 1.0 / (1.0 + (distance[glossy] * np.float32(1.0 / LIGHT_RANGE)) ** 2)
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
    noise = Noise.make(rng)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        depth, ids, rays = _cast_primary(scene, camera, u, v)
        order = np.argsort(ids.ravel(), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(ids.ravel(), minlength=ROOM_FACES + len(scene.solids)))])
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
