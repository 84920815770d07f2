"""``edgedepth label``: a teacher's inverse depth for a collection of images, written as label shards.

Per image, the seed's recipe (its Places labels): resize keeping the aspect so the image covers the crop
(512x384), take a random crop of that size, run the teacher on the crop, then bring the image (area
interpolation) and the label to the training size (256x192). The crop is drawn from a NumPy generator seeded by
``(seed, key)``, so it is the same on every rerun, on any rank, whatever the batch. The label is resized as
float inverse depth with area interpolation (the mean of the teacher's values over each output pixel, which
for the 2x of the seed's recipe is the mean of 2x2 blocks), then min-max normalised into a 16-bit PNG; its
min and max go into the sample's JSON, so ``label_min + png / 65535 * (label_max - label_min)`` gives the
teacher's values back within 16-bit quantisation. Depth for the oracle is resized with nearest neighbour
(no invented depths at edges) and cropped exactly as the image.

Scale and resumption: the sorted inputs are cut into shards of ``shard_size``; shard ``i`` is written by rank
``i % world_size`` (under ``torchrun``) to ``shard-<i>.tar``, atomically, then recorded in ``shard-<i>.json``.
A rerun of the same command skips the shards that have both files and redoes the others, so nothing is lost or
written twice, with any number of ranks. Rank 0 merges the records into ``index.json`` and ``skipped.jsonl``
at the end. Decoding, cropping and JPEG encoding run in a DataLoader worker pool; the main process runs the
teacher (fp16 autocast on CUDA) and writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from edgedepth.core.cores import WorkerInit, loader_workers, set_compute_threads
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, make_folder
from edgedepth.core.processing import resize_image
from edgedepth.core.sizes import DEFAULT_INPUT_SIZE, format_size
from edgedepth.core.viz import to_uint16
from edgedepth.data.shards import (
    FORMAT,
    FORMAT_VERSION,
    IMAGE_EXT,
    INDEX_NAME,
    LABEL_EXT,
    META_EXT,
    ShardWriter,
    shard_name,
    shard_record_path,
)
from edgedepth.data.sources import Source, SourceItem, open_source
from edgedepth.teachers import Teacher, create_teacher

logger = logging.getLogger(__name__)

SKIPPED_NAME = "skipped.jsonl"
JPEG_QUALITY = 95
#: zlib level of the 16-bit label PNGs: lossless at any level; 1 is the fastest.
PNG_COMPRESSION = 1
#: Covering resizes that shrink the image below this scale use area interpolation, the others linear.
AREA_BELOW_SCALE = 0.5
#: Threads that turn teacher outputs into label PNGs in the main process.
FINISHING_THREADS = 4


# ---------------------------------------------------------------------------------------------------------------
# The recipe: pure functions


@dataclass(frozen=True)
class Recipe:
    """The seed's crop-and-resize recipe: crop ``(width, height)`` for the teacher, ``size`` for training."""

    crop: tuple[int, int] = (512, 384)
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


# ---------------------------------------------------------------------------------------------------------------
# Workers: decode, cover, crop, small JPEG


@dataclass
class _Prepared:
    item: SourceItem
    crop: np.ndarray | None  # uint8 crop_h x crop_w x 3; moved into the batch's tensor by _collate
    depth: np.ndarray | None  # float32 metres, crop_h x crop_w, for a teacher that reads depth
    jpeg: bytes
    meta: dict[str, Any]


@dataclass
class _Skipped:
    item: SourceItem
    reason: str


class _Prepare(Dataset):
    """Item ``i`` decoded, covered, cropped, and its training-size JPEG encoded; or why it could not be."""

    def __init__(self, items: list[SourceItem], recipe: Recipe, with_depth: bool) -> None:
        self.items, self.recipe, self.with_depth = items, recipe, with_depth

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> _Prepared | _Skipped:
        item = self.items[index]
        try:
            return self._prepare(item)
        except (EdgedepthError, OSError, ValueError, cv2.error) as exc:
            return _Skipped(item, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

    def _prepare(self, item: SourceItem) -> _Prepared:
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
        return _Prepared(item, crop, depth, jpeg.tobytes(), meta)


@dataclass
class _Batch:
    """What a worker hands over: the entries in input order, and the crops (and depths) stacked in one tensor
    each, so a batch crosses to the main process as two shared-memory blocks rather than two per image."""

    entries: list[_Prepared | _Skipped]
    crops: torch.Tensor | None
    depths: torch.Tensor | None


def _collate(entries: list[_Prepared | _Skipped]) -> _Batch:
    ready = [entry for entry in entries if isinstance(entry, _Prepared)]
    crops = torch.from_numpy(np.stack([entry.crop for entry in ready])) if ready else None
    with_depth = ready and ready[0].depth is not None
    depths = torch.from_numpy(np.stack([entry.depth for entry in ready])) if with_depth else None
    for entry in ready:
        entry.crop = entry.depth = None
    return _Batch(entries, crops, depths)


def _start(loader: DataLoader) -> Iterator[_Batch]:
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


# ---------------------------------------------------------------------------------------------------------------
# The job


@dataclass(frozen=True)
class LabelConfig:
    """What ``edgedepth label`` was asked to do."""

    source: str
    out: Path
    teacher: str
    recipe: Recipe = field(default_factory=Recipe)
    batch_size: int = 8
    shard_size: int = 1000
    workers: int = 4
    device: str = "cpu"
    progress: bool = True


@dataclass(frozen=True)
class LabelSummary:
    """What a label run did (over all ranks); ``main`` is True on the rank that should report it."""

    processed: int
    skipped: int
    shards_written: int
    shards_already_done: int
    total: int  # samples in the whole folder after this run
    seconds: float
    main: bool = True

    @property
    def images_per_second(self) -> float:
        return (self.processed + self.skipped) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Shard:
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return shard_name(self.index)


def plan_shards(count: int, shard_size: int) -> list[_Shard]:
    """Cut ``count`` sorted inputs into consecutive shards of ``shard_size`` (the last one shorter)."""
    return [_Shard(i, start, min(start + shard_size, count)) for i, start in enumerate(range(0, count, shard_size))]


def _identity(source: Source, teacher: Teacher, recipe: Recipe, shard_size: int) -> dict[str, Any]:
    """What makes two runs the same run: a folder holds exactly one."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "teacher": teacher.describe(),
        "recipe": recipe.describe(),
        "shard_size": shard_size,
        "source": {"inputs": len(source.items), "fingerprint": source.fingerprint(), "description": source.description},
    }


def _check_out(out: Path, identity: dict[str, Any]) -> bool:
    """Whether ``out`` already holds this run (raise if it holds another, or something else)."""
    index_path = out / INDEX_NAME
    if not index_path.is_file():
        if out.exists() and (not out.is_dir() or any(not p.name.startswith(".") for p in out.iterdir())):
            raise EdgedepthError(
                f"{out}: exists and is not a label folder (no {INDEX_NAME}); pick a new or empty folder"
            )
        return False
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgedepthError(f"{index_path}: unreadable ({exc}); pick a new folder") from exc
    hint = f"label into a new folder (or delete {out} to start over)"
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise EdgedepthError(
            f"{out}: is not a label folder (its {INDEX_NAME} is another tool's); pick a new or empty folder"
        )
    if index.get("version") != FORMAT_VERSION:
        raise EdgedepthError(
            f"{out}: holds labels of format version {index.get('version')}, not {FORMAT_VERSION}; {hint}"
        )
    if index["teacher"] != identity["teacher"]:
        raise EdgedepthError(
            f"{out}: holds labels from teacher {index['teacher'].get('name')!r}, not {identity['teacher']['name']!r}; {hint}"
        )
    for name, value in identity["recipe"].items():
        if index["recipe"].get(name) != value:
            raise EdgedepthError(
                f"{out}: holds labels made with another recipe ({name} {index['recipe'].get(name)} there, {value} now); {hint}"
            )
    if index["shard_size"] != identity["shard_size"]:
        raise EdgedepthError(
            f"{out}: was cut into shards of {index['shard_size']}, not {identity['shard_size']}; {hint}"
        )
    old, new = index["source"], identity["source"]
    if old["fingerprint"] != new["fingerprint"]:
        raise EdgedepthError(
            f"{out}: was labelled from other images ({old['inputs']} inputs then, {new['inputs']} now, "
            f"from {old['description']}); {hint}"
        )
    return True


def _write_json(path: Path, value: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1) + "\n")


def _shard_done(out: Path, shard: _Shard) -> bool:
    path = out / shard.name
    return path.is_file() and shard_record_path(path).is_file()


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary shards of a killed run (``atomic_path`` could not clean up after a SIGKILL)."""
    for stale in out.glob(".shard-*.part.*"):
        stale.unlink(missing_ok=True)


class _Labeller:
    """The teacher over batches of prepared crops: each input becomes its shard files, or a reason to skip it.

    The per-image work after the teacher (label resize, 16-bit PNG) runs on ``pool``'s threads (OpenCV releases
    the GIL), so this process keeps up with the decoding workers; outcomes come back in input order.
    """

    def __init__(self, teacher: Teacher, recipe: Recipe, device: str, pool: ThreadPoolExecutor) -> None:
        self.teacher, self.recipe, self.pool = teacher, recipe, pool
        self.use_amp = device.startswith("cuda")

    def __call__(self, batch: _Batch) -> Iterator[tuple[SourceItem, dict[str, bytes] | str]]:
        ready = [entry for entry in batch.entries if isinstance(entry, _Prepared)]
        labels: list[np.ndarray] = []
        if batch.crops is not None:
            depths = list(batch.depths.numpy()) if batch.depths is not None else None
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
                output = self.teacher.predict_batch(list(batch.crops.numpy()), depths=depths)
            labels = list(output[:, 0].float().numpy())
        finished = iter(self.pool.map(self._finish, ready, labels))
        for entry in batch.entries:
            yield (entry.item, entry.reason) if isinstance(entry, _Skipped) else (entry.item, next(finished))

    def _finish(self, entry: _Prepared, label: np.ndarray) -> dict[str, bytes] | str:
        """The sample's files, or why it is skipped."""
        if not np.isfinite(label).all():
            return f"teacher {self.teacher.name} returned non-finite values"
        png, low, high = label_to_png(resize_image(label, self.recipe.size, "area"))
        meta = {"key": entry.item.key, "teacher": self.teacher.name, "label_min": low, "label_max": high, **entry.meta}
        return {IMAGE_EXT: entry.jpeg, LABEL_EXT: png, META_EXT: json.dumps(meta, sort_keys=True).encode()}


def run(cfg: LabelConfig) -> LabelSummary:
    """Label ``cfg.source`` into ``cfg.out`` as ``cfg`` says, resuming what a previous run of it left.

    Under ``torchrun`` (``WORLD_SIZE > 1``) this joins a gloo process group (CPU tensors only: a barrier, a
    gather of the sources' fingerprints and a sum of the counts) and writes this rank's shards.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    _check_config(cfg)
    joined = world_size > 1 and not dist.is_initialized()
    if joined:
        dist.init_process_group("gloo")
    try:
        return _run(cfg, rank, world_size, local_rank)
    finally:
        if joined:
            dist.destroy_process_group()


def _check_config(cfg: LabelConfig) -> None:
    for name, value in (("--batch", cfg.batch_size), ("--shard-size", cfg.shard_size)):
        if value <= 0:
            raise EdgedepthError(f"{name} must be a positive number, got {value}")
    if cfg.workers < 0:
        raise EdgedepthError(f"--workers must be 0 (decode in the main process) or more, got {cfg.workers}")
    if cfg.recipe.seed < 0:
        raise EdgedepthError(f"--seed must be non-negative, got {cfg.recipe.seed}")


def _run(cfg: LabelConfig, rank: int, world_size: int, local_rank: int) -> LabelSummary:
    start = time.perf_counter()
    out, recipe = Path(cfg.out), cfg.recipe
    device = f"cuda:{local_rank}" if cfg.device == "cuda" and world_size > 1 else cfg.device
    source = open_source(cfg.source)
    teacher = create_teacher(cfg.teacher, device)
    if teacher.requires_depth and not source.has_depth:
        raise EdgedepthError(
            f"teacher {teacher.name} needs depth with each image, and {source.description} has none "
            "(a 16-bit <name>.png beside <name>.jpg, as `edgedepth synth` writes); pick a network teacher"
        )
    identity = _identity(source, teacher, recipe, cfg.shard_size)
    if world_size > 1:
        fingerprints: list[Any] = [None] * world_size
        dist.all_gather_object(fingerprints, identity["source"]["fingerprint"])
        if len(set(fingerprints)) > 1:
            raise EdgedepthError(f"the ranks see different inputs in {cfg.source}; every rank must see the same SOURCE")
    resumed = _check_out(out, identity)
    if rank == 0:
        make_folder(out)
        _remove_stale_temporaries(out)
        if not resumed:
            _write_json(out / INDEX_NAME, {**identity, "complete": False, "shards": []})
    if world_size > 1:
        dist.barrier()

    shards = plan_shards(len(source.items), cfg.shard_size)
    mine = [shard for shard in shards if shard.index % world_size == rank]
    todo = [shard for shard in mine if not _shard_done(out, shard)]
    items = [item for shard in todo for item in source.items[shard.start : shard.stop]]
    processed, skipped = _write_shards(cfg, out, todo, items, teacher, rank)

    counts = torch.tensor([processed, skipped, len(todo), len(mine) - len(todo)], dtype=torch.int64)
    if world_size > 1:
        dist.all_reduce(counts)
        dist.barrier()
    total = _write_index(out, identity, shards) if rank == 0 else 0
    processed, skipped, written, already = (int(value) for value in counts)
    return LabelSummary(processed, skipped, written, already, total, time.perf_counter() - start, main=rank == 0)


def _write_shards(
    cfg: LabelConfig, out: Path, todo: list[_Shard], items: list[SourceItem], teacher: Teacher, rank: int
) -> tuple[int, int]:
    """Write this rank's unfinished shards; returns (samples written, inputs skipped)."""
    workers = loader_workers(cfg.workers)  # decoding workers beside the teacher, each on a core of its own
    if cfg.device == "cpu" and "WORLD_SIZE" not in os.environ:
        set_compute_threads(busy_workers=workers)
    loader = DataLoader(
        _Prepare(items, cfg.recipe, teacher.requires_depth),
        batch_size=cfg.batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=False,
        worker_init_fn=WorkerInit() if workers > 0 else None,
    )
    pool = ThreadPoolExecutor(max_workers=FINISHING_THREADS)
    label = _Labeller(teacher, cfg.recipe, cfg.device, pool)
    results = (result for batch in _start(loader) for result in label(batch))
    processed = skipped = 0
    with (
        pool,
        tqdm(total=len(items), desc="label", unit="img", disable=not cfg.progress or rank != 0, smoothing=0.05) as bar,
    ):
        for shard in todo:
            path = out / shard.name
            skips: list[dict[str, str]] = []
            try:
                with ShardWriter(path) as writer:
                    for _ in range(shard.stop - shard.start):
                        item, outcome = next(results)
                        if isinstance(outcome, str):
                            skips.append({"key": item.key, "source": item.origin, "reason": outcome})
                            logger.warning(f"skipped {item.origin}: {outcome}")
                        else:
                            writer.write(item.key, outcome)
                        bar.update(1)
                _write_json(shard_record_path(path), {"name": shard.name, "count": writer.count, "skipped": skips})
            except OSError as exc:
                raise EdgedepthError(
                    f"{path}: writing failed ({exc.strerror or exc}); the unfinished shard was removed, "
                    "free space and rerun the same command to resume"
                ) from exc
            processed += writer.count
            skipped += len(skips)
    return processed, skipped


def _write_index(out: Path, identity: dict[str, Any], shards: list[_Shard]) -> int:
    """Merge the shard records into ``index.json`` and ``skipped.jsonl``; returns the samples in the folder."""
    records = []
    for shard in shards:
        record_path = shard_record_path(out / shard.name)
        if _shard_done(out, shard):
            records.append(json.loads(record_path.read_text()))
    complete = len(records) == len(shards)
    with atomic_path(out / SKIPPED_NAME) as tmp:
        tmp.write_text(
            "".join(json.dumps(skip, sort_keys=True) + "\n" for record in records for skip in record["skipped"])
        )
    total = sum(record["count"] for record in records)
    index = {
        **identity,
        "complete": complete,
        "count": total,
        "skipped": sum(len(record["skipped"]) for record in records),
        "shards": [{"name": r["name"], "count": r["count"], "skipped": len(r["skipped"])} for r in records],
    }
    _write_json(out / INDEX_NAME, index)
    return total
