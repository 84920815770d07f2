"""A camera moving through one room: the frames of a video with each frame's exact depth and camera."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, make_folder, write_json
from edgedepth.core.imageio import write_png
from edgedepth.core.sizes import format_size
from edgedepth.data.synthetic.rendering import render
from edgedepth.data.synthetic.rooms import random_scene
from edgedepth.data.synthetic.scene import Camera, SceneDescription, Solid
from edgedepth.data.synthetic.writers import (
    CAMERAS_NAME,
    INDEX_NAME,
    depth_to_png16,
    describe,
    folder_identity,
    read_index,
    scene_key,
)

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
    identity = folder_identity(seed, size, sequence=frames, fps=SEQUENCE_FPS)
    index_path = out / INDEX_NAME
    theirs = read_index(index_path)
    if theirs is not None:
        if {key: theirs.get(key) for key in identity} != identity:
            raise EdgedepthError(f"{out}: holds another synth output ({describe(theirs)}, sequence "
                                 f"{theirs.get('sequence')}); choose another folder")
        if (out / SEQUENCE_VIDEO).is_file() and (out / CAMERAS_NAME).is_file():
            return SequenceSummary(frames, 0, 0.0)
    elif any(out.iterdir()):
        raise EdgedepthError(f"{out}: not empty and has no {INDEX_NAME}; choose a new or empty folder")
    write_json(index_path, {**identity, "files": f"{SEQUENCE_VIDEO} RGB frames; {SEQUENCE_DEPTH}/<key>.png depth "
                            f"(uint16 mm, 0 = invalid); {CAMERAS_NAME} each frame's camera"}, indent=2)
    start = time.perf_counter()
    description, cameras = sequence_cameras(seed, frames, size)
    floor = description.room.low[2]
    with atomic_path(out / SEQUENCE_VIDEO) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), SEQUENCE_FPS, size)
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
        write_json(out / CAMERAS_NAME, {scene_key(k): camera.metadata(floor) for k, camera in enumerate(cameras)}, indent=2)
    return SequenceSummary(frames, frames, time.perf_counter() - start)
