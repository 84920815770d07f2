"""``edgedepth eval --suite zero-shot``: the zero-shot benchmark the field reports, one table for many models.

Five evaluation sets (NYUv2, KITTI, ETH3D, ScanNet, DIODE; :mod:`edgedepth.data.marigold`) are read from the tars
Marigold publishes, in place, one sample at a time. Every row of the table is a model that eval can open (a
student, an exported FP32 / INT8 file, a teacher spec, the ramp baseline) or a folder of predictions saved in
Marigold's layout by anyone. Each prediction is aligned to the ground truth and scored as the protocol's own
evaluator does (:data:`PROTOCOLS`; the maths is :func:`edgedepth.eval.zeroshot_metrics.score_zero_shot`), and the report is
written into the output folder only once everything has been computed:

* ``table.md``: rows are models, columns each set's AbsRel and δ1, as papers print them;
* ``<set>/table.md`` (every metric) and ``<set>/grid.png`` (the first row's best, median and worst samples);
* ``metrics.json`` (everything, with the skipped samples and why) and ``per_image.csv``.

``--save-predictions DIR`` writes each row's raw predictions as Marigold's inference script names them, so that
Marigold's ``script/depth/eval.py`` can score them; ``--predictions DIR`` scores such a folder.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edgedepth import __version__
from edgedepth.core.depth import UnscorableImage
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_output_folder, write_npy
from edgedepth.core.sizes import Crop
from edgedepth.data.marigold import (
    EVAL_SETS,
    EvalArchive,
    EvalSet,
    Sample,
    SampleEntry,
    crop_array,
    eval_crop_box,
    kb_crop_box,
    load_sample,
    read_sample_list,
)
from edgedepth.data.nyu import NyuLabeled, read_splits
from edgedepth.eval import nyu as evaluate
from edgedepth.eval import report
from edgedepth.eval.metrics import mean_metrics, valid_mask
from edgedepth.eval.zeroshot_metrics import (
    ALIGNMENT_SPACES,
    ZERO_SHOT_METRIC_NAMES,
    AlignmentSpace,
    Evaluator,
    score_zero_shot,
    zero_shot_depth,
    zero_shot_fit,
)

logger = logging.getLogger(__name__)

#: The file beside saved predictions that says what they are (read back by ``--predictions``).
PREDICTIONS_INFO = "edgedepth_predictions.json"
PREDICTIONS_FORMAT = "edgedepth.predictions/1"

#: Least-squares alignment names as Marigold's eval.py takes them (``--alignment``), for the report.
MARIGOLD_ALIGNMENT = {"disparity": "least_square_disparity", "depth": "least_square"}

#: Widest picture of a grid panel: ETH3D's 6048-pixel frames are shown nearest-downscaled.
GRID_WIDTH = 480

#: Skipped samples named one warning each, per set; the rest are counted in one line (all are in metrics.json).
SKIP_WARNINGS = 10


@dataclass(frozen=True)
class ZeroShotProtocol:
    """How an evaluator scores the five sets, beyond what :class:`~edgedepth.data.marigold.EvalSet` says.

    Attributes:
        depth_ranges: valid range and clip range per set where they differ from Marigold's.
        range_cuts_mask_file: whether the range also cuts a set's mask file (DIODE); Marigold's mask is the file.
        crop_after_inference: KITTI's benchmark crop of the prediction of the whole image, instead of the input.
        alignment_max_res: per set, the ``--alignment-max-res`` its published scripts pass.
        evaluator: whose evaluator's details to follow (the fit's subsampling, the float32 of its δ ratios;
            :data:`edgedepth.eval.zeroshot_metrics.Evaluator`).
        min_pixels: fewest valid pixels of a frame that is scored.
    """

    name: str
    description: str
    depth_ranges: dict[str, tuple[float, float]]
    range_cuts_mask_file: bool
    crop_after_inference: bool
    alignment_max_res: dict[str, int]
    evaluator: Evaluator
    min_pixels: int


PROTOCOLS: dict[str, ZeroShotProtocol] = {
    "marigold": ZeroShotProtocol(
        "marigold",
        "Marigold's script/depth/eval.py: least-squares scale and shift (in disparity against 1/depth for inverse "
        "depth; in depth for affine-invariant depth), aligned disparity clipped at 1e-3 and inverted, depth clipped "
        "to the set's range; KITTI's benchmark crop before inference; ETH3D's fit on a subsample at most 1024 "
        "columns wide (--alignment_max_res 1024, Marigold's nearest-neighbour subsampling)",
        {}, False, False, {"eth3d": 1024}, "marigold", 1,
    ),
    "zipdepth": ZeroShotProtocol(
        "zipdepth",
        "ZipDepth's scripts/eval.py: Marigold's alignment with ZipDepth's depth caps (KITTI 1e-3 to 80 m, ETH3D "
        "up to 60 m, DIODE its mask within 0.6 to 80 m), KITTI cropped after inference on the whole image, the fit "
        "at full resolution, frames with fewer than 10 valid pixels not scored",
        {"kitti": (1e-3, 80.0), "eth3d": (1e-5, 60.0), "diode": (0.6, 80.0)}, True, True, {}, "zipdepth", 10,
    ),
}


@dataclass(frozen=True)
class SetSettings:
    """One set under one protocol: its valid and clip range and the fit's subsampling."""

    evalset: EvalSet
    protocol: ZeroShotProtocol
    min_depth: float
    max_depth: float
    alignment_max_res: int | None

    def describe(self) -> dict[str, Any]:
        return {"min_depth": self.min_depth, "max_depth": self.max_depth if np.isfinite(self.max_depth) else "inf",
                "alignment_max_res": self.alignment_max_res}


def set_settings(protocol: ZeroShotProtocol, evalset: EvalSet, alignment_max_res: int | None) -> SetSettings:
    """``evalset`` under ``protocol``; ``alignment_max_res`` (None: the protocol's own; 0: full resolution)."""
    low, high = protocol.depth_ranges.get(evalset.name, (evalset.min_depth, evalset.max_depth))
    max_res = protocol.alignment_max_res.get(evalset.name) if alignment_max_res is None else alignment_max_res
    return SetSettings(evalset, protocol, low, high, max_res or None)


@dataclass(frozen=True)
class Frame:
    """A sample as it is scored: the network's input, the ground truth, its valid pixels and, for a prediction of
    the whole image, the crop that brings it to the ground truth's frame."""

    sample: Sample
    image: np.ndarray | None
    depth: np.ndarray
    valid: np.ndarray
    prediction_crop: Crop | None = None


def prepare_frame(sample: Sample, settings: SetSettings) -> Frame:
    """Crop and mask ``sample`` as ``settings`` say (KITTI's benchmark crop, the evaluation crop, the range)."""
    evalset, protocol = settings.evalset, settings.protocol
    image, depth, mask_file = sample.image, sample.depth, sample.mask
    prediction_crop = None
    if evalset.benchmark_crop:
        box = kb_crop_box(*depth.shape)
        depth = crop_array(depth, box)
        mask_file = crop_array(mask_file, box) if mask_file is not None else None
        if protocol.crop_after_inference:
            prediction_crop = box
        elif image is not None:
            image = np.ascontiguousarray(crop_array(image, box))
    box = eval_crop_box(evalset.eval_crop, *depth.shape)
    if mask_file is None or protocol.range_cuts_mask_file:
        valid = valid_mask(depth, settings.min_depth, settings.max_depth, box)
    else:  # Marigold's DIODE: the mask file alone, less pixels without a positive depth (Marigold divides by them)
        valid = valid_mask(depth, 0.0, np.inf, box)
    if mask_file is not None:
        valid &= mask_file
    return Frame(sample, image, depth, valid, prediction_crop)


# ---------------------------------------------------------------------------------------------------------------
# Rows of the table: models and folders of saved predictions


class Row(ABC):
    """One row of the table: a label, what its predictions are (``kind``) and where they come from."""

    label: str
    kind: AlignmentSpace
    source: str
    slug: str  # its folder name under --save-predictions

    @property
    def needs_image(self) -> bool:
        return True

    @abstractmethod
    def predict(self, frame: Frame, evalset: EvalSet) -> np.ndarray:
        """The raw prediction of the frame, ``H x W`` at the ground truth's (cropped) size."""


class ModelRow(Row):
    """A model eval opens (:func:`edgedepth.eval.nyu.open_model`): relative inverse depth, aligned in disparity."""

    kind: AlignmentSpace = "disparity"

    def __init__(self, model: evaluate.DepthModel, label: str, source: str, slug: str, training_data: str) -> None:
        self.model, self.label, self.source, self.slug, self.training_data = model, label, source, slug, training_data

    def predict(self, frame: Frame, evalset: EvalSet) -> np.ndarray:
        assert frame.image is not None
        prediction = self.model.predict_batch([frame.image])[0, 0].numpy()
        return crop_array(prediction, frame.prediction_crop) if frame.prediction_crop else prediction


class PredictionsRow(Row):
    """A folder of saved predictions: ``<folder>/<set>/<Marigold's prediction path>``, float ``.npy``."""

    def __init__(self, folder: Path, kind: AlignmentSpace | None, slug: str) -> None:
        if not folder.exists():
            raise EdgedepthError(f"{folder}: no such folder of predictions")
        if not folder.is_dir():
            raise EdgedepthError(f"{folder}: a file, not a folder; --predictions takes a folder with <set>/ folders")
        info = _read_predictions_info(folder)
        kind = kind or info.get("kind")
        if kind not in ALIGNMENT_SPACES:
            raise EdgedepthError(
                f"{folder}: no {PREDICTIONS_INFO} says what these predictions are; pass --prediction-kind depth "
                "(affine-invariant depth, e.g. Marigold's) or disparity (inverse depth, e.g. Depth Anything's)"
            )
        self.folder, self.kind, self.slug = folder, kind, slug
        self.label = str(info.get("method") or folder.name)
        self.source = str(folder)

    @property
    def needs_image(self) -> bool:
        return False

    def has_set(self, evalset: EvalSet) -> bool:
        return (self.folder / evalset.name).is_dir()

    def predict(self, frame: Frame, evalset: EvalSet) -> np.ndarray:
        path = self.folder / evalset.name / evalset.prediction_path(frame.sample.entry.rgb)
        if not path.is_file():
            raise EdgedepthError(f"{path}: no such prediction")
        try:
            prediction = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise EdgedepthError(f"{path}: unreadable .npy ({exc})") from exc
        squeezed = [side for side in prediction.shape if side != 1]  # 1 x H x W and H x W alike, as Marigold's
        if squeezed != [side for side in frame.depth.shape if side != 1] or not np.issubdtype(prediction.dtype,
                                                                                               np.number):
            height, width = frame.depth.shape
            raise EdgedepthError(f"{path}: {prediction.dtype} {prediction.shape}, expected {height} x {width} numbers "
                                 "(the ground truth's size)")
        return prediction.reshape(frame.depth.shape).astype(np.float32, copy=False)  # as Marigold's eval.py reads it


def _read_predictions_info(folder: Path) -> dict[str, Any]:
    path = folder / PREDICTIONS_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgedepthError(f"{path}: unreadable ({exc}); remove it and pass --prediction-kind") from exc
    return info if isinstance(info, dict) else {}


# ---------------------------------------------------------------------------------------------------------------
# The job


@dataclass(frozen=True)
class ZeroShotConfig:
    """What ``edgedepth eval --suite zero-shot`` was asked to do."""

    data_root: Path | None = None
    archives: dict[str, Path] = field(default_factory=dict)  # --tar NAME=PATH, over the data root's
    split_files: dict[str, Path] = field(default_factory=dict)  # --split-file NAME=PATH, over the shipped lists
    datasets: tuple[str, ...] = tuple(EVAL_SETS)
    weights: tuple[Path, ...] = ()
    teachers: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()
    predictions: tuple[Path, ...] = ()
    prediction_kind: AlignmentSpace | None = None
    protocol: str = "marigold"
    alignment_max_res: int | None = None
    save_predictions: Path | None = None
    nyu_mat: Path | None = None  # the seed's NYU .mat protocol as one more column
    nyu_splits: Path | None = None
    size: tuple[int, int] | None = None
    device: str = "cpu"
    limit: int | None = None
    out: Path = Path("eval_out")
    progress: bool = True


@dataclass(frozen=True)
class SampleResult:
    """One row's outcome on one sample: metrics, or why it was skipped."""

    sample: str  # the RGB's path in the set
    valid_pixels: int
    metrics: dict[str, float] | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class ZeroShotSummary:
    table: str
    scored: int
    skipped: int
    seconds: float
    files: list[Path]


@dataclass
class _Set:
    """A set opened for the run: settings, where it is read from, its samples, and per row its results."""

    settings: SetSettings
    archive: EvalArchive
    split_file: Path
    entries: list[SampleEntry]
    results: dict[int, list[SampleResult]] = field(default_factory=dict)


def run(cfg: ZeroShotConfig) -> ZeroShotSummary:
    """Score every row on every asked set and write the report into ``cfg.out``. Bad input fails here, before
    the work; a bad sample or prediction during it is skipped with a warning and counted."""
    protocol = _check_config(cfg)
    check_output_folder(cfg.out)
    if cfg.save_predictions is not None:
        check_output_folder(cfg.save_predictions)
    sets = [_open_set(cfg, protocol, name) for name in cfg.datasets]
    rows = _open_rows(cfg)
    nyu_mat = _open_nyu_mat(cfg)
    start = time.perf_counter()
    for opened in sets:
        _evaluate_set(opened, rows, cfg)
    mat_scores = _score_nyu_mat(nyu_mat, rows, cfg) if nyu_mat is not None else None
    scored = sum(r.metrics is not None for s in sets for results in s.results.values() for r in results)
    if not scored:
        raise EdgedepthError("no sample could be scored (see warnings); nothing written")
    grids = {s.settings.evalset.name: _grid(s, rows) for s in sets}
    seconds = time.perf_counter() - start
    skipped = sum(r.metrics is None for s in sets for results in s.results.values() for r in results)
    table = _headline(sets, rows, protocol, mat_scores)
    files: dict[str, bytes | str] = {"table.md": table}
    for opened in sets:
        name = opened.settings.evalset.name
        files[f"{name}/table.md"] = _set_table(opened, rows)
        if grids[name] is not None:
            files[f"{name}/grid.png"] = grids[name]
    files["metrics.json"] = report.to_json(_summary_json(cfg, protocol, sets, rows, mat_scores, seconds))
    files["per_image.csv"] = _per_image_csv(sets, rows)
    if cfg.save_predictions is not None:
        for row in rows:
            if isinstance(row, ModelRow):
                info = {"format": PREDICTIONS_FORMAT, "method": row.label, "kind": row.kind, "source": row.source,
                        "protocol": protocol.name, "datasets": list(cfg.datasets),
                        "layout": "<set>/<the RGB's folder>/pred_<id>.npy, float32 at the ground truth's size"}
                report.write_report(cfg.save_predictions / row.slug, {PREDICTIONS_INFO: report.to_json(info)})
    return ZeroShotSummary(table, scored, skipped, seconds, report.write_report(cfg.out, files))


def _check_config(cfg: ZeroShotConfig) -> ZeroShotProtocol:
    if cfg.protocol not in PROTOCOLS:
        raise EdgedepthError(f"unknown zero-shot protocol {cfg.protocol!r}; use one of {', '.join(PROTOCOLS)}")
    unknown = [name for name in (*cfg.datasets, *cfg.archives, *cfg.split_files) if name not in EVAL_SETS]
    if unknown:
        raise EdgedepthError(f"unknown evaluation set {unknown[0]!r}; use {', '.join(EVAL_SETS)}")
    if not cfg.datasets or len(set(cfg.datasets)) != len(cfg.datasets):
        raise EdgedepthError(f"--datasets must name each set once, of {', '.join(EVAL_SETS)}")
    for name in (*cfg.archives, *cfg.split_files):
        if name not in cfg.datasets:
            raise EdgedepthError(f"{name} is not among --datasets {','.join(cfg.datasets)}")
    if cfg.limit is not None and cfg.limit < 1:
        raise EdgedepthError(f"--limit must be at least 1, got {cfg.limit}")
    if cfg.alignment_max_res is not None and cfg.alignment_max_res < 0:
        raise EdgedepthError(f"--alignment-max-res must be 0 (full resolution) or more, got {cfg.alignment_max_res}")
    if not (cfg.weights or cfg.teachers or cfg.baselines or cfg.predictions):
        raise EdgedepthError("nothing to evaluate: pass --weights, --teacher, --baseline ramp or --predictions DIR")
    if "constant" in cfg.baselines:
        raise EdgedepthError("--baseline constant needs median scaling, which the zero-shot protocols do not use")
    if cfg.prediction_kind is not None and not cfg.predictions:
        raise EdgedepthError("--prediction-kind says what --predictions folders hold; pass --predictions DIR")
    if (cfg.nyu_mat is None) != (cfg.nyu_splits is None):
        raise EdgedepthError("the NYU .mat column needs both --data nyu_depth_v2_labeled.mat and --splits splits.mat")
    return PROTOCOLS[cfg.protocol]


def _locate(cfg: ZeroShotConfig, evalset: EvalSet) -> Path:
    """Where a set is: ``--tar NAME=PATH``, else its Marigold path under the data root (tar or unpacked folder)."""
    if evalset.name in cfg.archives:
        return cfg.archives[evalset.name]
    root = cfg.data_root
    if root is None:
        raise EdgedepthError(f"where is {evalset.title}? pass --data-root DIR (Marigold's base data folder, holding "
                             f"{evalset.archive}) or --tar {evalset.name}=PATH")
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else "no such folder"
        raise EdgedepthError(f"{root}: {what}; --data-root is the folder that holds nyuv2/, kitti/, eth3d/, ...")
    tar = root / evalset.archive
    folder = tar.with_suffix("")
    if folder.is_dir() and not tar.exists():
        return folder
    if not tar.exists():
        raise EdgedepthError(f"{tar}: no such file (nor {folder.name}/ unpacked from it), where Marigold's layout has "
                             f"{evalset.title}; leave {evalset.name} out of --datasets or pass --tar {evalset.name}=PATH")
    return tar


def _open_set(cfg: ZeroShotConfig, protocol: ZeroShotProtocol, name: str) -> _Set:
    evalset = EVAL_SETS[name]
    split_file = cfg.split_files.get(name, evalset.split_path())
    entries = read_sample_list(split_file, evalset)
    archive = EvalArchive(_locate(cfg, evalset), f"{evalset.title}, Marigold's {Path(evalset.archive).name}")
    entries = entries[: cfg.limit] if cfg.limit is not None else entries
    return _Set(set_settings(protocol, evalset, cfg.alignment_max_res), archive, split_file, entries)


def _open_rows(cfg: ZeroShotConfig) -> list[Row]:
    """Every row, opened now: a model that will not load is an error before any work."""
    rows: list[Row] = []
    slugs: set[str] = set()
    specs: list[tuple[dict[str, Any], str]] = [({"weights": w}, w.stem) for w in cfg.weights]
    specs += [({"teacher": t}, t) for t in cfg.teachers] + [({"baseline": b}, b) for b in cfg.baselines]
    for spec, name in specs:
        model, label, training_data = evaluate.open_model(evaluate.EvalConfig(size=cfg.size, device=cfg.device, **spec))
        source = str(spec.get("weights") or spec.get("teacher") or f"baseline {spec.get('baseline')}")
        rows.append(ModelRow(model, label, source, _unique_slug(name, slugs), training_data))
    for folder in cfg.predictions:
        rows.append(PredictionsRow(folder, cfg.prediction_kind, _unique_slug(folder.name, slugs)))
    labels = [row.label for row in rows]
    for index, row in enumerate(rows):
        if labels.count(row.label) > 1:
            row.label = f"{row.label} #{labels[:index].count(row.label) + 1}"
    return rows


def _unique_slug(name: str, taken: set[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    candidate, number = slug, 2
    while candidate in taken:
        candidate, number = f"{slug}_{number}", number + 1
    taken.add(candidate)
    return candidate


def _evaluate_set(opened: _Set, rows: list[Row], cfg: ZeroShotConfig) -> None:
    """Score every row on every sample of one set, one sample in memory at a time."""
    settings = opened.settings
    evalset, protocol = settings.evalset, settings.protocol
    active = [i for i, row in enumerate(rows) if not isinstance(row, PredictionsRow) or row.has_set(evalset)]
    for i, row in enumerate(rows):
        opened.results[i] = []
        if i not in active:
            logger.warning(f"{row.source}: no {evalset.name}/ folder of predictions; its {evalset.title} cells stay empty")
    with_image = any(rows[i].needs_image for i in active)
    warnings = 0

    def skip(message: str) -> None:
        nonlocal warnings
        warnings += 1
        if warnings <= SKIP_WARNINGS:
            logger.warning(message)

    bar = tqdm(opened.entries, desc=evalset.title, unit="sample", disable=not (cfg.progress and active),
               file=sys.stderr)
    for entry in bar if active else ():
        try:
            frame = prepare_frame(load_sample(evalset, opened.archive, entry, with_image), settings)
        except EdgedepthError as exc:
            skip(f"{exc}; skipped")
            for i in active:
                opened.results[i].append(SampleResult(entry.rgb, 0, skipped=str(exc)))
            continue
        pixels = int(np.count_nonzero(frame.valid))
        for i in active:
            row = rows[i]
            try:
                prediction = row.predict(frame, evalset)
                if cfg.save_predictions is not None and isinstance(row, ModelRow):
                    path = cfg.save_predictions / row.slug / evalset.name / evalset.prediction_path(entry.rgb)
                    write_npy(path, prediction.astype(np.float32))
                metrics = score_zero_shot(prediction, frame.depth, frame.valid, row.kind, settings.min_depth,
                                          settings.max_depth, settings.alignment_max_res, protocol.evaluator,
                                          protocol.min_pixels)
            except UnscorableImage as exc:
                skip(f"{frame.sample.origin}: {exc} ({row.label}); skipped")
                opened.results[i].append(SampleResult(entry.rgb, pixels, skipped=str(exc)))
            except EdgedepthError as exc:
                skip(f"{exc}; skipped")
                opened.results[i].append(SampleResult(entry.rgb, pixels, skipped=str(exc)))
            else:
                opened.results[i].append(SampleResult(entry.rgb, pixels, metrics=metrics))
    bar.close()
    if warnings > SKIP_WARNINGS:
        logger.warning(f"{evalset.title}: {warnings - SKIP_WARNINGS} more skipped sample(s) not shown; metrics.json and "
             "per_image.csv name each with its reason")


def _means(results: list[SampleResult]) -> dict[str, float] | None:
    scored = [r.metrics for r in results if r.metrics is not None]
    return mean_metrics(scored, ZERO_SHOT_METRIC_NAMES) if scored else None


# ---------------------------------------------------------------------------------------------------------------
# The seed's NYU .mat protocol as one more column


def _open_nyu_mat(cfg: ZeroShotConfig) -> tuple[NyuLabeled, np.ndarray] | None:
    if cfg.nyu_mat is None or cfg.nyu_splits is None:
        return None
    labeled = NyuLabeled(cfg.nyu_mat)
    try:
        indices = read_splits(cfg.nyu_splits, len(labeled)).test
    except Exception:
        labeled.close()
        raise
    return labeled, indices[: cfg.limit] if cfg.limit is not None else indices


def _score_nyu_mat(opened: tuple[NyuLabeled, np.ndarray], rows: list[Row], cfg: ZeroShotConfig) -> dict[int, dict]:
    """Each model row's means under the seed's protocol (:mod:`edgedepth.eval.nyu`), on the ``.mat`` test split."""
    labeled, indices = opened
    scores = {}
    with labeled:
        for i, row in enumerate(rows):
            if isinstance(row, ModelRow):
                results = evaluate.evaluate_frames(row.model, labeled, indices, evaluate.EvalProtocol(),
                                                   progress=cfg.progress)
                scored = [r.metrics for r in results if r.metrics is not None]
                scores[i] = {"metrics": mean_metrics(scored) if scored else None, "scored": len(scored),
                             "skipped": len(results) - len(scored)}
    return scores


# ---------------------------------------------------------------------------------------------------------------
# The report


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _headline(sets: list[_Set], rows: list[Row], protocol: ZeroShotProtocol, mat: dict[int, dict] | None) -> str:
    header = ["method", "alignment"]
    for opened in sets:
        header += [f"{opened.settings.evalset.title} AbsRel", f"{opened.settings.evalset.title} δ1"]
    if mat is not None:
        header += ["NYU .mat (seed) AbsRel", "NYU .mat (seed) δ1"]
    lines = []
    for i, row in enumerate(rows):
        cells = [row.label, MARIGOLD_ALIGNMENT[row.kind]]
        for opened in sets:
            means = _means(opened.results[i])
            cells += [_cell(means and means["abs_rel"]), _cell(means and means["delta1"])]
        if mat is not None:
            means = mat.get(i, {}).get("metrics")
            cells += [_cell(means and means["abs_rel"]), _cell(means and means["delta1"])]
        lines.append(tuple(cells))
    counts = "; ".join(
        f"{s.settings.evalset.title} {len(s.entries)} ("
        + ", ".join(f"{rows[i].label}: {_count(s.results[i])}" for i in range(len(rows)))
        + ")"
        for s in sets
    )
    notes = (
        f"Zero-shot protocol {protocol.name}: {protocol.description}. Metrics averaged per sample. Samples per set, "
        f"and per row scored / skipped: {counts}."
    )
    if mat is not None:
        notes += " NYU .mat (seed): the seed's protocol on the official .mat test split (see eval without --suite)."
    return report.markdown_table(tuple(header), lines) + "\n" + notes + "\n"


def _count(results: list[SampleResult]) -> str:
    scored = sum(r.metrics is not None for r in results)
    return f"{scored} / {len(results) - scored}" if results else "no predictions"


def _set_table(opened: _Set, rows: list[Row]) -> str:
    header = ("method", "alignment", "scored", "skipped", "AbsRel", "SqRel", "RMSE", "RMSE log", "log10", "δ1", "δ2",
              "δ3", "i_rmse", "silog_rmse")
    order = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3", "i_rmse", "silog_rmse")
    lines = []
    for i, row in enumerate(rows):
        results = opened.results[i]
        means = _means(results)
        scored = sum(r.metrics is not None for r in results)
        lines.append((row.label, MARIGOLD_ALIGNMENT[row.kind], str(scored), str(len(results) - scored),
                      *(_cell(means and means[name]) for name in order)))
    settings = opened.settings
    evalset = settings.evalset
    notes = (
        f"{evalset.title}, protocol {settings.protocol.name}: valid depth {settings.min_depth:g} < d < "
        f"{settings.max_depth:g} m, predictions clipped to that range"
        + (f", fit subsampled to at most {settings.alignment_max_res} px" if settings.alignment_max_res else "")
        + f". Samples from {opened.split_file}, read from {opened.archive.path}. RMSE in metres, i_rmse in 1/m, "
        "silog_rmse x 100."
    )
    return report.markdown_table(header, lines) + "\n" + notes + "\n"


def _summary_json(cfg: ZeroShotConfig, protocol: ZeroShotProtocol, sets: list[_Set], rows: list[Row],
                  mat: dict[int, dict] | None, seconds: float) -> dict[str, Any]:
    datasets = {}
    for opened in sets:
        per_row = {}
        for i, row in enumerate(rows):
            results = opened.results[i]
            per_row[row.label] = {
                "metrics": _means(results),
                "scored": sum(r.metrics is not None for r in results),
                "skipped": sum(r.metrics is None for r in results),
                "skipped_samples": [{"sample": r.sample, "reason": r.skipped} for r in results if r.skipped],
            }
        datasets[opened.settings.evalset.name] = {
            "title": opened.settings.evalset.title,
            "source": str(opened.archive.path),
            "split_file": str(opened.split_file),
            "samples": len(opened.entries),
            **opened.settings.describe(),
            "results": per_row,
        }
    return {
        "suite": "zero-shot",
        "protocol": {key: value for key, value in asdict(protocol).items() if key != "depth_ranges"},
        "rows": [{"method": row.label, "source": row.source, "kind": row.kind, "alignment": MARIGOLD_ALIGNMENT[row.kind],
                  "training_data": row.training_data if isinstance(row, ModelRow) else None} for row in rows],
        "datasets": datasets,
        "nyu_mat": None if mat is None else {
            "data": str(cfg.nyu_mat), "splits": str(cfg.nyu_splits), "protocol": "seed",
            "results": {rows[i].label: score for i, score in mat.items()},
        },
        "save_predictions": str(cfg.save_predictions) if cfg.save_predictions else None,
        "seconds": round(seconds, 3),
        "device": cfg.device,
        "edgedepth_version": __version__,
    }


def _per_image_csv(sets: list[_Set], rows: list[Row]) -> str:
    columns = ("dataset", "method", "sample", "status", "valid_pixels", *ZERO_SHOT_METRIC_NAMES, "reason")
    lines = [
        {"dataset": opened.settings.evalset.name, "method": rows[i].label, "sample": r.sample,
         "status": "skipped" if r.skipped else "ok", "valid_pixels": r.valid_pixels, **(r.metrics or {}),
         "reason": r.skipped}
        for opened in sets
        for i in range(len(rows))
        for r in opened.results[i]
    ]
    return report.per_image_csv(lines, columns)


def _grid(opened: _Set, rows: list[Row]) -> bytes | None:
    """The best, median and worst samples of the first row that scored any, with every row's aligned prediction;
    loaded and predicted again (nothing is kept from the loop), shown at most :data:`GRID_WIDTH` wide."""
    ranked_row = next((i for i in range(len(rows)) if _means(opened.results[i]) is not None), None)
    if ranked_row is None:
        return None
    settings = opened.settings
    scored = [r for r in opened.results[ranked_row] if r.metrics is not None]
    scored.sort(key=lambda r: r.metrics["abs_rel"])  # type: ignore[index]
    picks: dict[str, SampleResult] = {}
    for pick, result in (("best", scored[0]), ("median", scored[len(scored) // 2]), ("worst", scored[-1])):
        if result not in picks.values():  # a set of one or two samples shows each once
            picks[pick] = result
    entries = {entry.rgb: entry for entry in opened.entries}
    grid_rows = []
    for pick, result in picks.items():
        frame = prepare_frame(load_sample(settings.evalset, opened.archive, entries[result.sample]), settings)
        for i, row in enumerate(rows):
            mine = next((r for r in opened.results[i] if r.sample == result.sample and r.metrics), None)
            if mine is None:
                continue
            prediction = row.predict(frame, settings.evalset)
            scale, shift = zero_shot_fit(prediction, frame.depth, frame.valid, row.kind, settings.alignment_max_res,
                                         settings.protocol.evaluator)
            assert frame.image is not None
            image = frame.image if frame.prediction_crop is None else crop_array(frame.image, frame.prediction_crop)
            image, depth, prediction, valid = _shrunk(image, frame.depth, prediction, frame.valid)
            aligned = zero_shot_depth(prediction, scale, shift, row.kind, settings.min_depth, settings.max_depth)
            abs_rel = mine.metrics["abs_rel"]  # type: ignore[index]
            title = f"{pick}: {Path(result.sample).name}\n{row.label[:48]}: AbsRel {abs_rel:.3f}"
            grid_rows.append(report.GridRow(title, image, depth, aligned, valid))
    depths = np.concatenate([row.depth[row.mask] for row in grid_rows])
    top = float(np.percentile(depths, 99)) if depths.size else 1.0
    return report.picture_grid(grid_rows, top)


def _shrunk(
    image: np.ndarray, depth: np.ndarray, prediction: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The frame at most :data:`GRID_WIDTH` wide for the picture: the image area-averaged, the maps nearest."""
    height, width = depth.shape
    if width <= GRID_WIDTH:
        return image, depth, prediction, valid
    size = (GRID_WIDTH, max(1, round(height * GRID_WIDTH / width)))
    nearest = cv2.INTER_NEAREST
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_AREA),
        cv2.resize(depth, size, interpolation=nearest),
        cv2.resize(prediction.astype(np.float32), size, interpolation=nearest),
        cv2.resize(valid.astype(np.uint8), size, interpolation=nearest).astype(bool),
    )
