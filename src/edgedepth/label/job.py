"""``edgedepth label``: a teacher's inverse depth for a collection of images, written as label shards.

Per image, the seed's recipe (:mod:`edgedepth.label.recipe`: a covering resize, a 512x384 crop for the teacher drawn
from ``(seed, key)``, image and label at the 256x192 training size, the label a min-max normalised 16-bit PNG whose
min and max go into the sample's JSON, so ``label_min + png / 65535 * (label_max - label_min)`` gives the teacher's
values back within 16-bit quantisation). Depth for the oracle is resized with nearest neighbour (no invented depths
at edges) and cropped exactly as the image.

Scale and resumption: the sorted inputs are cut into shards of ``shard_size``; shard ``i`` is written by rank
``i % world_size`` (under ``torchrun``) to ``shard-<i>.tar``, atomically, then recorded in ``shard-<i>.json``.
A rerun of the same command skips the shards that have both files and redoes the others, so nothing is lost or
written twice, with any number of ranks. Rank 0 merges the records into ``index.json`` and ``skipped.jsonl``
at the end. Decoding, cropping and JPEG encoding run in a DataLoader worker pool; the main process runs the
teacher (fp16 autocast on CUDA) and writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from edgedepth.core.cores import loader_workers
from edgedepth.core.distributed import Place, place, process_group, under_torchrun
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, make_folder, write_json
from edgedepth.core.processing import resize_image
from edgedepth.core.threads import WorkerInit, set_compute_threads
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
from edgedepth.label.config import LabelConfig
from edgedepth.label.recipe import Recipe, label_to_png
from edgedepth.label.workers import Batch, Prepare, Prepared, Skipped, collate, start_loader
from edgedepth.teachers import Teacher, create_teacher

logger = logging.getLogger(__name__)

SKIPPED_NAME = "skipped.jsonl"
#: Threads that turn teacher outputs into label PNGs in the main process.
FINISHING_THREADS = 4




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

    def __call__(self, batch: Batch) -> Iterator[tuple[SourceItem, dict[str, bytes] | str]]:
        ready = [entry for entry in batch.entries if isinstance(entry, Prepared)]
        labels: list[np.ndarray] = []
        if batch.crops is not None:
            depths = list(batch.depths.numpy()) if batch.depths is not None else None
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
                output = self.teacher.predict_batch(list(batch.crops.numpy()), depths=depths)
            labels = list(output[:, 0])
        finished = iter(self.pool.map(self._finish, ready, labels))
        for entry in batch.entries:
            yield (entry.item, entry.reason) if isinstance(entry, Skipped) else (entry.item, next(finished))

    def _finish(self, entry: Prepared, label: np.ndarray) -> dict[str, bytes] | str:
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
    here = place()
    _check_config(cfg)
    with process_group(here, "gloo"):  # its collectives carry CPU tensors, whatever the teacher runs on
        return _run(cfg, here)


def _check_config(cfg: LabelConfig) -> None:
    for name, value in (("--batch", cfg.batch_size), ("--shard-size", cfg.shard_size)):
        if value <= 0:
            raise EdgedepthError(f"{name} must be a positive number, got {value}")
    if cfg.workers < 0:
        raise EdgedepthError(f"--workers must be 0 (decode in the main process) or more, got {cfg.workers}")
    if cfg.recipe.seed < 0:
        raise EdgedepthError(f"--seed must be non-negative, got {cfg.recipe.seed}")


def _run(cfg: LabelConfig, here: Place) -> LabelSummary:
    rank, world_size = here.rank, here.world_size
    start = time.perf_counter()
    out, recipe = Path(cfg.out), cfg.recipe
    device = f"cuda:{here.local_rank}" if cfg.device == "cuda" and world_size > 1 else cfg.device
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
            write_json(out / INDEX_NAME, {**identity, "complete": False, "shards": []})
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
    if cfg.device == "cpu" and not under_torchrun():
        set_compute_threads(busy_workers=workers)
    loader = DataLoader(
        Prepare(items, cfg.recipe, teacher.requires_depth),
        batch_size=cfg.batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=False,
        worker_init_fn=WorkerInit() if workers > 0 else None,
    )
    pool = ThreadPoolExecutor(max_workers=FINISHING_THREADS)
    label = _Labeller(teacher, cfg.recipe, cfg.device, pool)
    results = (result for batch in start_loader(loader) for result in label(batch))
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
                write_json(shard_record_path(path), {"name": shard.name, "count": writer.count, "skipped": skips})
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
    write_json(out / INDEX_NAME, index)
    return total
