"""Training pairs: an image and its teacher's inverse depth, read as the student trains on them.

A sample is a dict: ``image`` (``3 x H x W`` float32, normalised as the student expects), ``target``
(``1 x H x W`` float32, the teacher's inverse depth min-max normalised to [0, 1] per image, near = 1), ``mask``
(``1 x H x W`` bool, the target pixels that count) and ``key`` (the pair's name, for error messages).

Sources:
- a folder in the seed's layout, ``<name>.jpg`` beside a 16-bit ``<name>.png`` (:class:`FolderPairs`);
- the label shards of ``edgedepth label`` (WebDataset tars), read in place by member offset (:class:`ShardPairs`).

A pair that cannot be read (a truncated or empty image, an image above the pixel limit, a corrupt depth PNG, a
sample cut short in its shard) is skipped with a one-line warning, once per process, and the next readable pair
takes its place, so batches keep their size and one bad file among thousands does not stop a long run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edgedepth.core.depth import normalize_inverse_depth
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import read_rgb
from edgedepth.core.processing import preprocess, resize_image
from edgedepth.core.sizes import format_size
from edgedepth.data.shards import IMAGE_EXT, LABEL_EXT, META_EXT, decode_label_sample, read_index
from edgedepth.data.sources import MM_PER_M, Blob, list_tar_members, split_member_name
from edgedepth.train.config import DataConfig, PngMeaning

logger = logging.getLogger(__name__)

Sample = dict[str, torch.Tensor | str]


def read_png_target(path: Path, meaning: PngMeaning) -> np.ndarray:
    """Read a 16-bit (or 8-bit) one-channel PNG as float32 inverse depth, NaN where invalid.

    ``inverse_depth``: the values are the teacher's (relative) inverse depth at any scale, all valid (the seed
    stores MiDaS's output and reads it as ``png / 1000``; the scale vanishes in the normalisation).
    ``depth_mm``: depth in millimetres, 0 = no measurement; inverted to 1/m.
    """
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise EdgedepthError(f"{path}: missing or unreadable PNG")
    if raw.ndim != 2:
        raise EdgedepthError(f"{path}: expected a one-channel 16-bit depth PNG, got {raw.ndim} dimensions")
    values = raw.astype(np.float32)
    if meaning == "inverse_depth":
        return values
    with np.errstate(divide="ignore"):
        return np.where(values > 0, MM_PER_M / values, np.nan).astype(np.float32)


def resize_target(target: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a map with NaN holes to ``size = (width, height)`` by area averaging of the valid pixels.

    An output pixel is valid only if every input pixel under it is; invalid pixels stay NaN.
    """
    valid = np.isfinite(target).astype(np.float32)
    if (target.shape[1], target.shape[0]) == tuple(size):
        return target
    summed = resize_image(np.where(valid > 0, target, 0.0).astype(np.float32), size, "area")
    coverage = resize_image(valid, size, "area")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(coverage > 1.0 - 1e-4, summed / coverage, np.nan).astype(np.float32)


def make_sample(
    image: np.ndarray, target: np.ndarray, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], key: str
) -> Sample:
    """Turn an RGB image and its inverse depth (NaN = invalid) into a training sample at ``size``.

    The image goes through :func:`edgedepth.core.processing.preprocess` (area resize, the student's normalisation);
    the target is resized (:func:`resize_target`) and then min-max normalised to [0, 1] over its valid pixels.
    """
    if image.shape[:2] != target.shape[:2]:
        raise EdgedepthError(
            f"{key}: image is {image.shape[1]}x{image.shape[0]} but its depth is {target.shape[1]}x{target.shape[0]}"
        )
    resized = resize_target(target, size)
    valid = np.isfinite(resized)
    normalized = normalize_inverse_depth(resized)
    return {
        "image": torch.from_numpy(preprocess([image], size, mean, std, interpolation="area")[0]),
        "target": torch.from_numpy(normalized)[None],
        "mask": torch.from_numpy(valid)[None],
        "key": key,
    }


class _Pairs(Dataset[Sample]):
    """Training pairs by index; an unreadable pair is skipped with a warning and the next readable one stands in."""

    root: Path

    def __init__(self) -> None:
        self._warned: set[int] = set()  # per process (each loader worker has its own)

    def load(self, index: int) -> Sample:
        """Pair ``index`` as a sample; EdgedepthError naming its file when it cannot be read."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        count = len(self)  # type: ignore[arg-type]
        for step in range(count):
            current = (index + step) % count
            try:
                return self.load(current)
            except EdgedepthError as exc:
                if current not in self._warned:
                    self._warned.add(current)
                    logger.warning(f"{exc}; skipped (the next readable pair takes its place)")
        raise EdgedepthError(f"{self.root}: no training pair could be read (see the warnings)")


class FolderPairs(_Pairs):
    """``<name>.jpg`` beside ``<name>.png`` anywhere under a folder (the seed's layout), sorted by path."""

    def __init__(
        self, root: str | Path, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], png: PngMeaning
    ) -> None:
        super().__init__()
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise EdgedepthError(
                f"{self.root}: a file, not a folder; data.path names a folder of <name>.jpg + <name>.png pairs "
                "(or of label shards, with data.format=shards)"
            )
        if not self.root.is_dir():
            raise EdgedepthError(f"{self.root}: training data folder does not exist")
        self.images = sorted(p for p in self.root.rglob("*.jpg") if p.with_suffix(".png").is_file())
        if not self.images:
            raise EdgedepthError(f"{self.root}: no training pairs (<name>.jpg beside a 16-bit <name>.png) found")
        self.size, self.mean, self.std, self.png = size, tuple(mean), tuple(std), png

    def __len__(self) -> int:
        return len(self.images)

    def key(self, index: int) -> str:
        return self.images[index].relative_to(self.root).with_suffix("").as_posix()

    def load(self, index: int) -> Sample:
        path = self.images[index]
        target = read_png_target(path.with_suffix(".png"), self.png)
        return make_sample(read_rgb(path), target, self.size, self.mean, self.std, self.key(index))


class ShardPairs(_Pairs):
    """The samples of a finished ``edgedepth label`` folder, by index, read in place from the tars.

    Opening scans the tar headers once (no member is unpacked); a sample is then three seeks and reads. Being
    indexable, it shuffles, splits over DDP processes and resumes mid-epoch exactly as a folder does.
    """

    def __init__(self, root: str | Path, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.root = Path(root)
        index = read_index(self.root)
        if not index.get("complete"):
            raise EdgedepthError(f"{self.root}: label run not finished; rerun the same `edgedepth label` command")
        labelled = tuple(index["recipe"]["size"])
        if labelled != tuple(size):
            raise EdgedepthError(
                f"{self.root}: labels are {format_size(labelled)} but data.input_size is {format_size(size)}; "
                "train at the labels' size or label again with --size"
            )
        self.samples: list[tuple[str, dict[str, Blob]]] = []
        for shard in index["shards"]:
            self.samples.extend(_tar_members(self.root / shard["name"], alone=len(index["shards"]) == 1))
        if not self.samples:
            raise EdgedepthError(f"{self.root}: the label shards hold no sample")
        width, height = size
        self.size, self.mean, self.std = (width, height), tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.samples)

    def key(self, index: int) -> str:
        return self.samples[index][0]

    def load(self, index: int) -> Sample:
        key, blobs = self.samples[index]
        origin = f"{next(iter(blobs.values())).path}:{key}"  # the shard and the sample's key
        try:
            files = {ext: blob.read() for ext, blob in blobs.items()}
        except (EdgedepthError, OSError):
            raise EdgedepthError(f"{origin}: sample cut short (truncated tar)") from None
        _, image, inverse_depth, _ = decode_label_sample(origin, files)
        return make_sample(image, inverse_depth, self.size, self.mean, self.std, key)


def _tar_members(path: Path, alone: bool = True) -> list[tuple[str, dict[str, Blob]]]:
    """``(key, {extension: where its bytes are})`` for every sample of a tar, in the tar's order.

    Of a truncated shard, the samples before the cut (the one it cut through is dropped whole, with the warning of
    :func:`~edgedepth.data.sources.list_tar_members`); an unreadable shard among several is skipped with a warning.
    """
    samples: dict[str, dict[str, Blob]] = {}
    members, cut = list_tar_members(path, alone, what="label shard")
    for member in members:
        key, extension = split_member_name(member.name)
        samples.setdefault(key, {})[extension] = Blob(str(path), member.offset_data, member.size)
    last = next(reversed(samples), None)
    if cut and last is not None and set(samples[last]) != {IMAGE_EXT, LABEL_EXT, META_EXT}:
        del samples[last]  # the sample the cut went through: some of its members are whole, not all
    return list(samples.items())


def build_dataset(cfg: DataConfig, mean: Sequence[float], std: Sequence[float]) -> Dataset[Sample]:
    """The training pairs a data config names: a folder in the seed's layout, or label shards."""
    if not cfg.path:
        raise EdgedepthError("no training data given: set data.path (e.g. data.path=/data/places_midas)")
    if cfg.format == "folder":
        return FolderPairs(cfg.path, cfg.input_size, mean, std, cfg.png)
    return ShardPairs(cfg.path, cfg.input_size, mean, std)
