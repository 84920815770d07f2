"""The seed's label recipe, pure: the covering resize, the random crop drawn from ``(seed, key)``, the 16-bit label.

Per image: resize keeping the aspect so the image covers the crop (512x384), take a random crop of that size, run the
teacher on the crop, then bring the image (area interpolation) and the label to the training size (256x192). The crop
is drawn from a NumPy generator seeded by ``(seed, key)``, so it is the same on every rerun, on any rank, whatever
the batch. The label is resized as float inverse depth with area interpolation, then min-max normalised into a
16-bit PNG; its min and max go into the sample's JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import resize_image
from edgedepth.core.sizes import DEFAULT_INPUT_SIZE
from edgedepth.core.viz import to_uint16

#: The crop the teacher sees, ``(width, height)``: the seed's Places labels (twice the training size).
SEED_CROP = (512, 384)
JPEG_QUALITY = 95

#: zlib level of the 16-bit label PNGs: lossless at any level; 1 is the fastest.
PNG_COMPRESSION = 1

#: Covering resizes that shrink the image below this scale use area interpolation, the others linear.
AREA_BELOW_SCALE = 0.5


@dataclass(frozen=True)
class Recipe:
    """The seed's crop-and-resize recipe: crop ``(width, height)`` for the teacher, ``size`` for training."""

    crop: tuple[int, int] = SEED_CROP
    size: tuple[int, int] = DEFAULT_INPUT_SIZE
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """Everything that decides a label's bytes, for ``index.json`` (a rerun must match it)."""
        return {
            "crop": list(self.crop),
            "size": list(self.size),
            "seed": self.seed,
            "cover_interpolation": f"area below scale {AREA_BELOW_SCALE}, linear above",
            "crop_offset": "numpy default_rng(blake2b-64(f'{seed}/{key}')), x then y, uniform",
            "image_interpolation": "area",
            "label_interpolation": "area, on float32 inverse depth",
            "depth_interpolation": "nearest",
            "jpeg_quality": JPEG_QUALITY,
            "label_png": "uint16, inverse depth min-max normalised per image (near = 65535)",
        }


def cover_size(image_size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """The smallest ``(width, height)`` with the image's aspect that covers ``crop``."""
    width, height = image_size
    scale = max(crop[0] / width, crop[1] / height)
    return max(crop[0], round(width * scale)), max(crop[1], round(height * scale))


def cover_interpolation(image_size: tuple[int, int], cover: tuple[int, int]) -> str:
    """How the image is resized to cover the crop: area when it shrinks by more than 1 / AREA_BELOW_SCALE
    (linear would alias), linear otherwise (near 1:1 both are alike, and linear is six times faster)."""
    return "area" if cover[0] < AREA_BELOW_SCALE * image_size[0] else "linear"


def crop_origin(seed: int, key: str, cover: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left ``(x, y)`` of the crop in the covering image: uniform, and a pure function of seed and key."""
    digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    x = int(rng.integers(0, cover[0] - crop[0] + 1))
    y = int(rng.integers(0, cover[1] - crop[1] + 1))
    return x, y


def crop_box_in_source(
    origin: tuple[int, int], crop: tuple[int, int], cover: tuple[int, int], image_size: tuple[int, int]
) -> list[float]:
    """The crop as ``[x0, y0, x1, y1]`` in the source image's pixels (pixel edges, floats)."""
    scale_x, scale_y = image_size[0] / cover[0], image_size[1] / cover[1]
    x, y = origin
    return [x * scale_x, y * scale_y, (x + crop[0]) * scale_x, (y + crop[1]) * scale_y]


def cover_and_crop(
    image: np.ndarray, origin: tuple[int, int], cover: tuple[int, int], crop: tuple[int, int], interpolation: str
) -> np.ndarray:
    """Resize ``image`` to ``cover`` and cut the ``crop`` at ``origin``."""
    covered = resize_image(image, cover, interpolation)  # type: ignore[arg-type]
    x, y = origin
    return np.ascontiguousarray(covered[y : y + crop[1], x : x + crop[0]])


def label_to_png(label: np.ndarray) -> tuple[bytes, float, float]:
    """Encode float inverse depth as a min-max normalised 16-bit PNG; returns the bytes, min and max."""
    ok, encoded = cv2.imencode(".png", to_uint16(label), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise EdgedepthError("16-bit PNG encoding failed")
    return encoded.tobytes(), float(label.min()), float(label.max())
