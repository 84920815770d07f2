"""Images and videos in and out: robust decoding of every image that enters edgedepth, video frames, PNGs.

Every image comes through :func:`read_rgb` (a file) or :func:`decode_rgb` (a file's bytes), so grayscale,
16-bit, palette, RGBA and CMYK files, EXIF rotation, truncated and empty files and the pixel limit are handled
in one place. PNGs are written atomically (:func:`edgedepth.core.files.atomic_path`).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
#: ROS 2 bags on their own: one MCAP or SQLite file (a rosbag2 folder holds ``metadata.yaml`` and such files).
BAG_SUFFIXES = frozenset({".mcap", ".db3"})

#: The most pixels (width x height) an image may have: Pillow's own default guard against decompression bombs
#: (about 89.5 megapixels, e.g. 10,000 x 8,948; 268 MB as 8-bit RGB). Pillow only warns between one and two
#: times its limit; here the limit is exact. ``--max-image-pixels`` (predict, serve) changes it, 0 lifts it.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

#: OpenCV's own decoding limit (``CV_IO_MAX_IMAGE_PIXELS``, 2**30 by default): larger images go to Pillow.
_OPENCV_MAX_PIXELS = 1 << 30

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"

#: Pillow's guard is one process-wide number (``PIL.Image.MAX_IMAGE_PIXELS``), read by ``Image.open`` and again
#: while frames and tiles load. Each decode sets it to its own limit under this lock and puts it back after, so
#: concurrent requests of a server cannot see each other's limit and nothing outlives the call.
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageTooLargeError(EdgedepthError):
    """An image above the pixel limit: refused before its pixels are decoded (``serve`` answers 413)."""


def _check_pixels(origin: str | Path, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{origin}: {width}x{height} is {width * height:,} pixels, above the pixel limit of {max_pixels:,} "
            "(a guard against decompression bombs); raise it with --max-image-pixels N, 0 for no limit"
        )


@contextmanager
def _open_limited(source: str | Path | BinaryIO, origin: str | Path, max_pixels: int | None) -> Iterator[Image.Image]:
    """``Image.open`` with an exact pixel limit checked on the header, and Pillow's guard at that limit after."""
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        try:
            # The header alone: our exact check replaces Pillow's (which warns up to twice its limit) here ...
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(source) as image:
                _check_pixels(origin, image.size, max_pixels)
                # ... and Pillow keeps guarding what loading discovers (GIF frames, TIFF tiles) at the same limit.
                Image.MAX_IMAGE_PIXELS = max_pixels or None
                yield image
        except Image.DecompressionBombError as exc:  # a frame or tile above the limit, found while loading
            raise ImageTooLargeError(
                f"{origin}: above the pixel limit of {max_pixels:,} ({exc}); raise it with --max-image-pixels N, "
                "0 for no limit"
            ) from exc
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def read_rgb(
    path: str | Path,
    data: bytes | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    orient: bool = True,
) -> np.ndarray:
    """Decode an image file to an ``H x W x 3`` uint8 RGB array, as it is displayed.

    The EXIF orientation is applied; grayscale is replicated to three channels, alpha is dropped, CMYK and
    palette images are converted, 16-bit samples keep their high byte (see :func:`_to_uint8_rgb`). A missing,
    unreadable, truncated or empty file raises :class:`EdgedepthError` naming the file; one with more than
    ``max_pixels`` pixels (``None`` or 0: no limit) raises :class:`ImageTooLargeError` before its pixels are
    decoded. ``data``, when given, is the file's content already in memory (a member of a tar shard, a posted
    body); ``path`` then only names it in errors. ``orient=False`` keeps the stored pixel grid (no EXIF turn): a
    dataset's depth map is registered to the stored pixels, as its own loaders read them.
    """
    path = Path(path)
    if data == b"" if data is not None else path.is_file() and path.stat().st_size == 0:
        raise EdgedepthError(f"{path}: empty file (0 bytes), not an image")
    try:
        with _open_limited(io.BytesIO(data) if data is not None else path, path, max_pixels) as image:
            array = _to_uint8_rgb(ImageOps.exif_transpose(image) if orient else image)
    except FileNotFoundError:
        raise EdgedepthError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EdgedepthError(f"{path}: a folder, not an image file") from None
    except UnidentifiedImageError:
        raise EdgedepthError(f"{path}: not an image file (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL reports truncation and corruption as OSError
        raise EdgedepthError(f"{path}: unreadable image ({exc})") from exc
    return array


def decode_rgb(
    data: bytes, origin: str, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS, orient: bool = True
) -> np.ndarray:
    """An image file's bytes to ``H x W x 3`` uint8 RGB, with :func:`read_rgb`'s semantics, pixel limit and ``orient``.

    Complete JPEGs (they start with SOI and end with EOI) take OpenCV's decoder, which gives the same pixels
    as Pillow's (both are libjpeg-turbo with the same settings; EXIF orientation applied) in two thirds of
    the time, after the same pixel check on the header; everything else, truncated JPEGs and JPEGs above
    OpenCV's own limit included, goes through :func:`read_rgb`.
    """
    if data.startswith(_JPEG_START) and data.rstrip(b"\0").endswith(_JPEG_END):
        try:
            with _open_limited(io.BytesIO(data), origin, max_pixels) as image:
                width, height = image.size
        except (OSError, ValueError, SyntaxError):  # an unreadable header: read_rgb below says why
            width = height = 0
        if 0 < width * height <= _OPENCV_MAX_PIXELS:
            flags = cv2.IMREAD_COLOR if orient else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            if decoded is not None:
                return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return read_rgb(origin, data, max_pixels=max_pixels, orient=orient)


def _to_uint8_rgb(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode to uint8 RGB.

    16-bit samples keep their high byte, whatever the container: PNG and TIFF open as ``I;16*``, PGM as
    ``I`` (Pillow scales its maxval to 65535), 16-bit RGB as ``RGB`` (Pillow keeps the high byte itself), so a
    16-bit file gives what its 8-bit equivalent gives. ``I`` is taken as 16-bit (values above 65535 saturate):
    guessing from the values would read a dark 16-bit image as a bright 8-bit one. ``F`` (float TIFF) has no
    declared range: up to 255 it is taken as 8-bit, above as 16-bit.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image)
        gray = (np.clip(values, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
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


def is_bag(path: str | Path) -> bool:
    """Whether ``path`` is a ROS 2 bag: an ``.mcap`` or ``.db3`` file, or a folder holding ``metadata.yaml`` or such
    files (a recording whose metadata was never written). Decided from names alone, before rosbags is imported."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in BAG_SUFFIXES
    if not path.is_dir():
        return False
    return (path / "metadata.yaml").is_file() or any(
        child.is_file() and child.suffix.lower() in BAG_SUFFIXES for child in path.iterdir())
