"""What the decoding workers of ``edgedepth label`` do: decode, cover, crop, encode the small JPEG; batches cross to
the main process as one tensor of crops (and one of depths)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import resize_image
from edgedepth.core.sizes import format_size
from edgedepth.data.sources import SourceItem
from edgedepth.label.recipe import (
    JPEG_QUALITY,
    Recipe,
    cover_and_crop,
    cover_interpolation,
    cover_size,
    crop_box_in_source,
    crop_origin,
)


@dataclass
class Prepared:
    item: SourceItem
    crop: np.ndarray | None  # uint8 crop_h x crop_w x 3; moved into the batch's tensor by _collate
    depth: np.ndarray | None  # float32 metres, crop_h x crop_w, for a teacher that reads depth
    jpeg: bytes
    meta: dict[str, Any]


@dataclass
class Skipped:
    item: SourceItem
    reason: str


class Prepare(Dataset):
    """Item ``i`` decoded, covered, cropped, and its training-size JPEG encoded; or why it could not be."""

    def __init__(self, items: list[SourceItem], recipe: Recipe, with_depth: bool) -> None:
        self.items, self.recipe, self.with_depth = items, recipe, with_depth

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prepared | Skipped:
        item = self.items[index]
        try:
            return self._prepare(item)
        except (EdgedepthError, OSError, ValueError, cv2.error) as exc:
            return Skipped(item, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

    def _prepare(self, item: SourceItem) -> Prepared:
        recipe = self.recipe
        image = item.load_image()
        image_size = (image.shape[1], image.shape[0])
        cover = cover_size(image_size, recipe.crop)
        origin = crop_origin(recipe.seed, item.key, cover, recipe.crop)
        crop = cover_and_crop(image, origin, cover, recipe.crop, cover_interpolation(image_size, cover))
        depth = None
        if self.with_depth:
            metres = item.load_depth()
            if metres.shape != image.shape[:2]:
                raise EdgedepthError(
                    f"{item.origin}: depth map is {metres.shape[1]}x{metres.shape[0]}, the image {format_size(image_size)}"
                )
            depth = cover_and_crop(metres, origin, cover, recipe.crop, "nearest")
        small = resize_image(crop, recipe.size, "area")
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        if not ok:
            raise EdgedepthError(f"{item.origin}: JPEG encoding failed")
        meta = {
            "crop_box": crop_box_in_source(origin, recipe.crop, cover, image_size),
            "source": item.origin,
            "source_size": list(image_size),
        }
        return Prepared(item, crop, depth, jpeg.tobytes(), meta)


@dataclass
class Batch:
    """What a worker hands over: the entries in input order, and the crops (and depths) stacked in one tensor
    each, so a batch crosses to the main process as two shared-memory blocks rather than two per image."""

    entries: list[Prepared | Skipped]
    crops: torch.Tensor | None
    depths: torch.Tensor | None


def collate(entries: list[Prepared | Skipped]) -> Batch:
    ready = [entry for entry in entries if isinstance(entry, Prepared)]
    # A worker's entries hold their arrays until here (None only once moved into a batch's tensor)
    crops = torch.from_numpy(np.stack(cast("list[np.ndarray]", [e.crop for e in ready]))) if ready else None
    with_depth = ready and ready[0].depth is not None
    depths = torch.from_numpy(np.stack(cast("list[np.ndarray]", [e.depth for e in ready]))) if with_depth else None
    for entry in ready:
        entry.crop = entry.depth = None
    return Batch(entries, crops, depths)


def start_loader(loader: DataLoader) -> Iterator[Batch]:
    """Start the loader's workers (fork) with OpenCV's threading off, so that they inherit it off.

    A worker forked after this process used OpenCV's pthreads pool inherits a pool whose threads do not exist:
    its first parallel call, or ``cv2.setNumThreads``, then waits for them forever. Workers forked with 0
    threads run OpenCV sequentially (one core each, as wanted) and never touch the pool.
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        return iter(loader)
    finally:
        cv2.setNumThreads(threads)
