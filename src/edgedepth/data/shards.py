"""Label shards: WebDataset-style tar files of (image, teacher inverse depth, metadata), written and streamed.

Layout of a label folder (what ``edgedepth label`` writes):

* ``shard-NNNNNN.tar``: per sample ``<key>.jpg`` (the image at the label size), ``<key>.depth.png`` (16-bit:
  the teacher's inverse depth min-max normalised per image to [0, 65535], near = 65535) and ``<key>.json``
  (teacher, ``label_min`` / ``label_max`` before normalisation, crop box in source pixels, source path),
  in this order, consecutive, as WebDataset groups members by key.
* ``shard-NNNNNN.json``: the shard's record (sample count, skipped inputs with reasons).
* ``index.json``: the run's identity (teacher, recipe, source) and the list of shards with their counts.

Tars are written deterministically (fixed member order, mtime 0, no owner), so the same labels give the same
bytes; a shard exists under its final name only once it is complete (:func:`edgedepth.core.files.atomic_path`).
Reading streams each tar front to back (``tarfile`` in ``r|`` mode): nothing is unpacked to disk and only one
sample is held in memory at a time.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path

INDEX_NAME = "index.json"
#: What ``index.json`` says it describes; a folder whose index says otherwise is not a label folder.
FORMAT = "edgedepth-label-shards"
#: Bumped whenever the bytes a recipe writes would change.
FORMAT_VERSION = 1

#: Extensions of a sample's members, in the order they are written.
IMAGE_EXT, LABEL_EXT, META_EXT = "jpg", "depth.png", "json"
#: The 16-bit label's full scale: ``inverse_depth_normalised = png / LABEL_SCALE``.
LABEL_SCALE = 65535.0

#: A decoded sample: key, uint8 RGB ``H x W x 3``, inverse depth ``H x W`` float32 in [0, 1], the sample's JSON.
LabelSample = tuple[str, np.ndarray, np.ndarray, dict[str, Any]]


def shard_name(index: int) -> str:
    """File name of shard ``index``: the same whatever the number of ranks that write them."""
    return f"shard-{index:06d}.tar"


def shard_record_path(shard: Path) -> Path:
    """The JSON record written beside a finished shard (``shard-000003.tar`` -> ``shard-000003.json``)."""
    return shard.with_suffix(".json")


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class ShardWriter:
    """Writes one tar shard, atomically: ``with ShardWriter(path) as w: w.write(key, files)``.

    On a clean exit the tar is renamed to ``path``; on any exception (a full disk, a kill) the temporary file
    is removed and nothing appears under ``path``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._stack = ExitStack()
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> Self:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._tar = self._stack.enter_context(tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT))
        return self

    def write(self, key: str, files: dict[str, bytes]) -> None:
        """Add one sample: ``files`` maps extensions (``"jpg"``) to bytes, written as ``<key>.<ext>`` in order."""
        assert self._tar is not None, "ShardWriter.write outside its with-block"
        for extension, data in files.items():
            self._tar.addfile(_tarinfo(f"{key}.{extension}", len(data)), io.BytesIO(data))
        self.count += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, traceback)


def iter_tar_samples(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream a WebDataset tar: ``(key, {extension: bytes})`` per sample, members grouped by consecutive key."""
    from edgedepth.data.sources import split_member_name

    key: str | None = None
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                member_key, extension = split_member_name(member.name)
                if member_key != key and files:
                    yield key, files  # type: ignore[misc]
                    files = {}
                key = member_key
                handle = archive.extractfile(member)
                files[extension] = handle.read() if handle is not None else b""
    except tarfile.TarError as exc:
        raise EdgedepthError(f"{path}: not a readable tar shard ({exc})") from exc
    if files:
        yield key, files  # type: ignore[misc]


def decode_label_sample(key: str, files: dict[str, bytes]) -> LabelSample:
    """Decode one sample of a label shard to (key, RGB uint8, inverse depth in [0, 1] float32, metadata)."""
    missing = [ext for ext in (IMAGE_EXT, LABEL_EXT, META_EXT) if ext not in files]
    if missing:
        raise EdgedepthError(f"{key}: label sample without its .{missing[0]} member")
    image = cv2.imdecode(np.frombuffer(files[IMAGE_EXT], np.uint8), cv2.IMREAD_COLOR)
    label = cv2.imdecode(np.frombuffer(files[LABEL_EXT], np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or label is None or label.dtype != np.uint16:
        raise EdgedepthError(f"{key}: corrupt label sample (undecodable image or non-16-bit label)")
    inverse_depth = label.astype(np.float32) / LABEL_SCALE
    try:
        meta = json.loads(files[META_EXT])
    except ValueError:
        raise EdgedepthError(f"{key}: corrupt label sample (its .{META_EXT} member is not JSON)") from None
    return key, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), inverse_depth, meta


def read_index(root: str | Path) -> dict[str, Any]:
    """The ``index.json`` of a label folder; EdgedepthError if there is none or it is not one of ours."""
    path = Path(root) / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgedepthError(f"{root}: not a label folder (no {INDEX_NAME}); make one with `edgedepth label`") from None
    except (OSError, ValueError) as exc:
        raise EdgedepthError(f"{path}: unreadable label index ({exc})") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise EdgedepthError(f"{path}: not an edgedepth label index")
    if index.get("version") != FORMAT_VERSION:
        raise EdgedepthError(
            f"{path}: label format version {index.get('version')}, this edgedepth reads {FORMAT_VERSION}"
        )
    return index


class LabelShards(IterableDataset):
    """Streams the samples of a finished label folder as :data:`LabelSample` tuples.

    Shards are split over DDP ranks (when ``torch.distributed`` is initialised) and DataLoader workers:
    reader ``r`` of ``R`` takes shards ``r, r + R, ...``, so every sample is read once per epoch. With
    ``shuffle`` the shard order is drawn per epoch from ``seed`` and :meth:`set_epoch` (samples within a shard
    keep their order; a shuffle buffer, if wanted, belongs to the consumer).
    """

    def __init__(self, root: str | Path, shuffle: bool = False, seed: int = 0) -> None:
        self.root = Path(root)
        self.index = read_index(self.root)
        if not self.index.get("complete"):
            raise EdgedepthError(f"{self.root}: label run not finished; rerun the same `edgedepth label` command")
        self.shards = [self.root / shard["name"] for shard in self.index["shards"]]
        self.size: tuple[int, int] = tuple(self.index["recipe"]["size"])
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def __len__(self) -> int:
        return int(self.index["count"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_shards(self) -> list[Path]:
        shards = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(shards)
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        reader, readers = rank * workers + worker_id, world * workers
        return shards[reader::readers]

    def __iter__(self) -> Iterator[LabelSample]:
        for shard in self._my_shards():
            for key, files in iter_tar_samples(shard):
                yield decode_label_sample(key, files)
