"""``edgedepth predict``: inverse depth for images, folders, globs and videos, written at full resolution.

For each image ``<name>`` it writes ``<name>.color.png`` (magma, near = bright), ``<name>.depth.png``
(16-bit min-max normalised inverse depth) and, with ``save_npy``, ``<name>.npy`` (raw float32 prediction).
``<name>`` is the image's path relative to its input (a folder, a glob's folder, an image's own folder) without its
suffix; images of all the inputs that share a name but not a suffix keep it (``a_jpg``, ``a_png``), and two that would
still write the same name (``x.jpg`` in two folders) are a one-line error before any work. A file given twice is
predicted once. Video frames go to ``<video name>/<frame number>.*``; a video is the only input of its run. An
image above the pixel limit is refused like any unreadable one (skipped with a warning among several, an error
when it is the one input).

With ``metric`` (``--metric``) each frame is also brought to metres, and with ``pointcloud`` to a PLY
(:mod:`edgedepth.robot.metric_scale`); a frame whose fit fails is refused like an unreadable image. With ``stabilize``
the frames of a video are stabilised in time (:class:`edgedepth.robot.stabilize.Stabilizer`).
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_output_folder, write_npy
from edgedepth.core.imageio import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    iter_video_frames,
    read_rgb,
    video_info,
    write_png,
)
from edgedepth.core.processing import upsample_prediction
from edgedepth.core.viz import colorize, to_uint16
from edgedepth.robot import metric_scale
from edgedepth.robot.stabilize import Stabilizer
from edgedepth.runtime.predictor import Predictor, load_predictor

logger = logging.getLogger(__name__)

MISSING_WEIGHTS_HINT = (
    "predict needs a network: --model NAME for released weights (e.g. --model zipdepth_base, downloaded once), or "
    "--weights FILE for your own (edgedepth train, or a checkpoint converted with edgedepth convert)"
)


@dataclass(frozen=True)
class PredictConfig:
    """What ``edgedepth predict`` was asked to do: ``sources`` are images, folders and globs, or one video."""

    sources: tuple[str, ...]
    weights: Path
    out: Path = Path("predict_out")
    size: tuple[int, int] | None = None
    device: str = "cpu"
    save_npy: bool = False
    #: Images with more pixels are refused (None or 0: no limit): :data:`~edgedepth.core.imageio.DEFAULT_MAX_IMAGE_PIXELS`.
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    #: ``--metric``, its camera, ``--pointcloud`` and ``--max-depth``.
    metric: metric_scale.MetricConfig = field(default_factory=metric_scale.MetricConfig)
    #: Stabilise the frames of videos in time (``--stabilize``).
    stabilize: bool = False


@dataclass(frozen=True)
class PredictSummary:
    """What a run did: ``seconds`` times the inputs only (read, predict, write); ``load_seconds`` the model's
    loading and its warm-up run, a start-up cost that says nothing about the rate."""

    processed: int
    skipped: int
    seconds: float
    load_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Inputs:
    images: list[tuple[Path, Path]]  # (file, output stem relative to OUT)
    videos: list[tuple[Path, Path]]
    ignored: list[Path]  # files in a folder or glob that are neither images nor videos


def _has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _output_stems(files: list[Path], roots: list[Path]) -> list[Path]:
    """Output stems, each file's relative to its root; files that share a stem but not a suffix (``a.jpg``,
    ``a.png``) keep their suffix, and two that would still write the same stem are a one-line error."""
    stems = [f.relative_to(r).with_suffix("") if f.is_relative_to(r) else Path(f.stem) for f, r in zip(files, roots)]
    suffixes: dict[Path, set[str]] = {}
    for stem, file in zip(stems, files):
        suffixes.setdefault(stem, set()).add(file.suffix)
    stems = [s.with_name(f"{s.name}_{f.suffix.lstrip('.')}") if len(suffixes[s]) > 1 else s
             for s, f in zip(stems, files)]
    writer: dict[Path, Path] = {}
    for file, stem in zip(files, stems):
        if stem in writer:
            raise EdgedepthError(f"{writer[stem]} and {file} would both write {stem}.*: predict them in separate runs "
                                 "with different --out folders")
        writer[stem] = file
    return stems


def _expand(source: str) -> tuple[list[Path], Path]:
    """The files of a folder (recursive) or a glob, sorted, and the folder their output stems are relative to."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")), path
    if _has_magic(source):
        prefix = Path(source.split("*")[0].split("?")[0].split("[")[0])
        files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        return files, prefix if prefix.is_dir() else prefix.parent
    raise EdgedepthError(f"{source}: no such file or folder")


def collect_inputs(sources: Sequence[str]) -> _Inputs:
    """Resolve images, folders (recursive) and globs, or one video, into the files to process (see the module
    docstring for their output names)."""
    images: dict[Path, tuple[Path, Path]] = {}  # resolved path: (file, root); a file given twice counts once
    ignored: dict[Path, Path] = {}
    for source in sources:
        path = Path(source)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            if len(sources) > 1:
                raise EdgedepthError(f"{source}: a video is predicted on its own; give it as the only input")
            return _Inputs([], [(path, Path(path.stem))], [])
        if path.is_file():  # named on its own: read as an image whatever its suffix
            images.setdefault(path.resolve(), (path, path.parent))
            continue
        files, root = _expand(source)
        if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
            raise EdgedepthError(f"{source}: no images found ({len(files)} files, none with an image suffix)")
        for file in files:
            if file.suffix.lower() in IMAGE_SUFFIXES:
                images.setdefault(file.resolve(), (file, root))
            else:
                ignored.setdefault(file.resolve(), file)
    files, roots = [file for file, _ in images.values()], [root for _, root in images.values()]
    return _Inputs(list(zip(files, _output_stems(files, roots))), [], list(ignored.values()))


def _write_outputs(out: Path, stem: Path, inverse_depth: np.ndarray, save_npy: bool) -> None:
    base = out / stem
    write_png(base.with_name(base.name + ".color.png"), colorize(inverse_depth))
    write_png(base.with_name(base.name + ".depth.png"), to_uint16(inverse_depth))
    if save_npy:
        write_npy(base.with_name(base.name + ".npy"), inverse_depth.astype(np.float32))


def _frame(
    cfg: PredictConfig, reference: metric_scale.Reference | None, stem: Path, image: np.ndarray,
    inverse_depth: np.ndarray, origin: str,
) -> None:
    """Write one frame's outputs; its metric fit comes first, so a frame that has none leaves no file."""
    found = camera = None
    if reference is not None:
        height, width = inverse_depth.shape
        if cfg.metric.intrinsics is not None or cfg.metric.fov is not None:
            camera = cfg.metric.camera((width, height), origin)
        found = metric_scale.fit(inverse_depth, reference, cfg.metric, origin)
    _write_outputs(cfg.out, stem, inverse_depth, cfg.save_npy)
    if found is not None:
        metric_scale.write_outputs(cfg.out / stem, inverse_depth, found, cfg.metric, image, camera)


def run(cfg: PredictConfig) -> PredictSummary:
    """Predict every input of ``cfg.sources`` and write the outputs under ``cfg.out``."""
    inputs = collect_inputs(cfg.sources)
    named = cfg.sources[0] if len(cfg.sources) == 1 else f"{len(cfg.sources)} inputs"
    check_output_folder(cfg.out)
    metric_scale.check_config(cfg.metric)
    if cfg.stabilize and not inputs.videos:
        raise EdgedepthError(f"{named}: --stabilize smooths the frames of a video; give a video file")
    reference = metric_scale.load_reference(cfg.metric) if cfg.metric.metric is not None else None
    single = len(cfg.sources) == 1 and len(inputs.images) == 1 and Path(cfg.sources[0]).is_file()
    # A single image is read before the model loads: an unreadable one fails at once.
    read_start = time.perf_counter()
    first = read_rgb(inputs.images[0][0], max_pixels=cfg.max_image_pixels) if single else None
    first_read = time.perf_counter() - read_start
    load_start = time.perf_counter()
    predictor: Predictor = load_predictor(cfg.weights, cfg.size, cfg.device)
    # One untimed run at the network's size: the first call of a runtime sets itself up (kernel selection,
    # allocation), which is start-up, not the cost of an image.
    predictor(np.zeros((predictor.size[1], predictor.size[0], 3), dtype=np.uint8))
    load_seconds = time.perf_counter() - load_start
    for ignored in inputs.ignored:
        logger.warning(f"{ignored}: not an image, skipped")
    skipped = len(inputs.ignored)
    processed = 0
    start = time.perf_counter()

    if inputs.images:
        for file, stem in tqdm(inputs.images, desc="predict", unit="img", disable=single):
            try:
                image = first if first is not None else read_rgb(file, max_pixels=cfg.max_image_pixels)
                _frame(cfg, reference, stem, image, predictor(image), str(file))
            except EdgedepthError as exc:
                if single:
                    raise
                logger.warning(f"{exc}; skipped")
                skipped += 1
                continue
            processed += 1

    for video, stem in inputs.videos:
        frame_count, _ = video_info(video)
        stabilizer = Stabilizer() if cfg.stabilize else None
        decoded = 0
        for index, frame in enumerate(tqdm(iter_video_frames(video), desc=video.name, unit="frame", total=frame_count or None)):
            decoded += 1
            if stabilizer is None:
                inverse_depth = predictor(frame)
            else:  # at the network's size, then up: the stabiliser's cost does not grow with the frame
                low = stabilizer(predictor.network_output([frame])[0, 0])
                inverse_depth = upsample_prediction(low[None, None], frame.shape[1::-1])[0, 0]
            try:
                _frame(cfg, reference, stem / f"{index:06d}", frame, inverse_depth, f"{video} frame {index}")
            except metric_scale.MetricFitError as exc:
                logger.warning(f"{exc}; frame skipped")
                skipped += 1
                continue
            processed += 1
        if decoded == 0:
            raise EdgedepthError(f"{video}: no frame could be decoded")

    if processed == 0:
        raise EdgedepthError(f"{named}: nothing predicted, all {skipped} input(s) skipped (see the warnings)")
    return PredictSummary(processed, skipped, time.perf_counter() - start + first_read, load_seconds)
