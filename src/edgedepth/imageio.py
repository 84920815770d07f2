"""Reading images and writing outputs: robust decoding, atomic writes.

Every image that enters edgedepth comes through :func:`read_rgb`, so grayscale, 16-bit, palette and RGBA
files, EXIF rotation and truncated files are handled in one place.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgedepth.errors import EdgedepthError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def read_rgb(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """Decode an image file to an ``H x W x 3`` uint8 RGB array.

    Grayscale is replicated to three channels, alpha is dropped, 16-bit samples keep their high byte,
    and the EXIF orientation is applied. A missing, unreadable or truncated file raises
    :class:`EdgedepthError` naming the file. ``data``, when given, is the file's content already in memory
    (a member of a tar shard); ``path`` then only names it in errors.
    """
    path = Path(path)
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            image = ImageOps.exif_transpose(image)
            array = _to_uint8_rgb(image)
    except FileNotFoundError:
        raise EdgedepthError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise EdgedepthError(f"{path}: not an image file (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL reports truncation and corruption as OSError
        raise EdgedepthError(f"{path}: unreadable image ({exc})") from None
    return array


def _to_uint8_rgb(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode to uint8 RGB; 16- and 32-bit integer modes are scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        gray = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as uint8 RGB arrays, one at a time (no unbounded buffering)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise EdgedepthError(f"{path}: cannot open video (unsupported codec or not a video file)")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def video_info(path: str | Path) -> tuple[int, float]:
    """Return ``(frame_count, fps)`` of a video as its container reports them (count may be 0 if unknown)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise EdgedepthError(f"{path}: cannot open video (unsupported codec or not a video file)")
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only if the block succeeds.

    A crash or a full disk never leaves a half-written file under the final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the file open()'s usual mode
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def encode_png(image: np.ndarray) -> bytes:
    """An RGB uint8, gray uint8 or gray uint16 array as PNG file bytes."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise EdgedepthError(f"PNG encoding failed for a {image.dtype} array of shape {image.shape}")
    return encoded.tobytes()


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB uint8, gray uint8 or gray uint16 array as PNG, atomically."""
    data = encode_png(image)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write a NumPy array atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
