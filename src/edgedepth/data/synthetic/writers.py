"""Folders of scenes (``<key>.jpg`` beside ``<key>.png``), and NYU Depth v2's ``.mat`` pair and Marigold's NYU tar
written from them."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, make_folder, write_json
from edgedepth.core.imageio import write_png
from edgedepth.core.sizes import format_size
from edgedepth.data import nyu
from edgedepth.data.marigold import EVAL_SETS, EvalSetWriter, read_sample_list
from edgedepth.data.synthetic.rooms import render_scene, scene_camera, scene_seed

INDEX_NAME = "index.json"
#: ``{key: camera}`` for every scene or frame of a folder: :meth:`Camera.metadata` (intrinsics, height, pitch, roll).
CAMERAS_NAME = "cameras.json"
LABELED_MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_MAT_NAME = "splits.mat"

#: NYU Depth v2's official split has 795 train and 654 test frames of 1449; ``--nyu-mat`` keeps that proportion.
NYU_TRAIN_FRACTION = 795 / 1449

_JPEG_QUALITY = 95

#: Bumped whenever a seed would render a different scene; recorded in each folder's ``index.json``.
GENERATOR_VERSION = 1


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


def describe(identity: dict) -> str:
    """``seed S, size WxH, generator vN`` of a folder's identity, whatever a foreign index.json holds."""
    size = identity.get("size")
    size = format_size(tuple(size)) if isinstance(size, list) and len(size) == 2 else size
    return f"seed {identity.get('seed')}, size {size}, generator v{identity.get('version')}"


def folder_identity(seed: int, size: tuple[int, int], **more: object) -> dict[str, Any]:
    """What makes two synth outputs the same: the generator and its version, the seed, the size, and ``more``."""
    return {"generator": "edgedepth.data.synthetic", "version": GENERATOR_VERSION, "seed": seed, "size": list(size),
            **more}


def read_index(path: Path) -> dict[str, Any] | None:
    """A synth folder's ``index.json``, or None where there is none yet; a folder in its place or an unreadable
    file is an EdgedepthError that says what to do."""
    if path.is_dir():
        raise EdgedepthError(f"{path}: a folder, not a file; remove it or choose another folder")
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgedepthError(f"{path}: unreadable ({exc}); remove the folder or choose another") from exc
    return index if isinstance(index, dict) else {}


def _open_index(out: Path, seed: int, size: tuple[int, int], count: int) -> dict:
    """Read or create ``index.json``; refuse a folder made with another seed, size or generator version."""
    identity = folder_identity(seed, size)
    path = out / INDEX_NAME
    index = read_index(path)
    if index is not None:
        theirs = {key: index.get(key) for key in identity}
        if theirs != identity:
            raise EdgedepthError(
                f"{out}: holds scenes made with {describe(theirs)}, not {describe(identity)}; choose another folder"
            )
        index["count"] = max(int(index.get("count", 0)), count)
    else:
        if out.exists() and any(out.iterdir()):
            raise EdgedepthError(f"{out}: not empty and has no {INDEX_NAME}; choose a new or empty folder")
        index = {**identity, "count": count, "files": "<key>.jpg RGB beside <key>.png depth (uint16 mm, 0 = invalid)"}
    write_json(path, index, indent=2)
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
        write_json(out / INDEX_NAME, index, indent=2)
    else:
        rendered, written, skipped = _render_into(out, count, size, seed, None, progress)
    write_json(out / CAMERAS_NAME, {scene_key(k): scene_camera(scene_seed(seed, k), size) for k in range(count)}, indent=2)
    split = (index["nyu_mat"]["train"], index["nyu_mat"]["test"]) if nyu_mat else None
    tar = out / EVAL_SETS["nyu"].archive if nyu_tar else None
    if tar is not None and not (index.get("nyu_tar", {}).get("count") == count and tar.is_file()):
        write_nyu_tar(tar, count, seed, progress)
        index["nyu_tar"] = {"count": count}
        write_json(out / INDEX_NAME, index, indent=2)
    return SynthSummary(rendered, written, skipped, time.perf_counter() - start, split, tar)
