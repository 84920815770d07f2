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

import logging
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgedepth.core.depth import UnscorableImage
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_output_folder, write_npy
from edgedepth.core.version import __version__
from edgedepth.data.marigold import (
    EVAL_SETS,
    EvalArchive,
    EvalSet,
    load_sample,
    read_sample_list,
)
from edgedepth.data.nyu import NyuLabeled, read_splits
from edgedepth.eval import report
from edgedepth.eval.config import ZeroShotConfig
from edgedepth.eval.metrics import mean_metrics
from edgedepth.eval.models import open_model
from edgedepth.eval.nyu import EvalProtocol, evaluate_frames
from edgedepth.eval.rows import PREDICTIONS_FORMAT, PREDICTIONS_INFO, ModelRow, PredictionsRow, Row
from edgedepth.eval.zeroshot_metrics import (
    score_zero_shot,
)
from edgedepth.eval.zeroshot_protocols import PROTOCOLS, ZeroShotProtocol, prepare_frame, set_settings
from edgedepth.eval.zeroshot_report import MARIGOLD_ALIGNMENT, grid, headline, per_image_csv, set_table
from edgedepth.eval.zeroshot_results import OpenedSet, SampleResult, row_means

logger = logging.getLogger(__name__)


#: Skipped samples named one warning each, per set; the rest are counted in one line (all are in metrics.json).
SKIP_WARNINGS = 10


# ---------------------------------------------------------------------------------------------------------------
# The job




@dataclass(frozen=True)
class ZeroShotSummary:
    table: str
    scored: int
    skipped: int
    seconds: float
    files: list[Path]


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
    grids = {s.settings.evalset.name: grid(s, rows) for s in sets}
    seconds = time.perf_counter() - start
    skipped = sum(r.metrics is None for s in sets for results in s.results.values() for r in results)
    table = headline(sets, rows, protocol, mat_scores)
    files: dict[str, bytes | str] = {"table.md": table}
    for opened in sets:
        name = opened.settings.evalset.name
        files[f"{name}/table.md"] = set_table(opened, rows)
        png = grids[name]
        if png is not None:
            files[f"{name}/grid.png"] = png
    files["metrics.json"] = report.to_json(_summary_json(cfg, protocol, sets, rows, mat_scores, seconds))
    files["per_image.csv"] = per_image_csv(sets, rows)
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


def _open_set(cfg: ZeroShotConfig, protocol: ZeroShotProtocol, name: str) -> OpenedSet:
    evalset = EVAL_SETS[name]
    split_file = cfg.split_files.get(name, evalset.split_path())
    entries = read_sample_list(split_file, evalset)
    archive = EvalArchive(_locate(cfg, evalset), f"{evalset.title}, Marigold's {Path(evalset.archive).name}")
    entries = entries[: cfg.limit] if cfg.limit is not None else entries
    return OpenedSet(set_settings(protocol, evalset, cfg.alignment_max_res), archive, split_file, entries)


def _open_rows(cfg: ZeroShotConfig) -> list[Row]:
    """Every row, opened now: a model that will not load is an error before any work."""
    rows: list[Row] = []
    slugs: set[str] = set()
    specs: list[tuple[dict[str, Any], str]] = [({"weights": w}, w.stem) for w in cfg.weights]
    specs += [({"teacher": t}, t) for t in cfg.teachers] + [({"baseline": b}, b) for b in cfg.baselines]
    for spec, name in specs:
        model, label, training_data = open_model(size=cfg.size, device=cfg.device, **spec)
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


def _evaluate_set(opened: OpenedSet, rows: list[Row], cfg: ZeroShotConfig) -> None:
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
                results = evaluate_frames(row.model, labeled, indices, EvalProtocol(),
                                                   progress=cfg.progress)
                scored = [r.metrics for r in results if r.metrics is not None]
                scores[i] = {"metrics": mean_metrics(scored) if scored else None, "scored": len(scored),
                             "skipped": len(results) - len(scored)}
    return scores


def _summary_json(cfg: ZeroShotConfig, protocol: ZeroShotProtocol, sets: list[OpenedSet], rows: list[Row],
                  mat: dict[int, dict] | None, seconds: float) -> dict[str, Any]:
    datasets = {}
    for opened in sets:
        per_row = {}
        for i, row in enumerate(rows):
            results = opened.results[i]
            per_row[row.label] = {
                "metrics": row_means(results),
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
