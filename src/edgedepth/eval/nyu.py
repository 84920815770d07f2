"""``edgedepth eval``: score a model on the NYU Depth v2 test split with the seed's protocol (or a variant).

The job reads ``nyu_depth_v2_labeled.mat`` lazily, a few frames at a time, predicts relative inverse depth
through a Predictor (the one pre- and post-processing: RGB / 255, bicubic resize to the model input,
normalisation, bicubic upsampling back to 640 x 480), aligns and scores every frame with
:mod:`edgedepth.eval.metrics`, and writes ``table.md``, ``metrics.json``, ``per_image.csv`` and ``grid.png``
into the output folder only once everything has been computed.

Anything with ``name``, ``size`` and ``predict_batch(images) -> N x 1 x H x W`` inverse depth at the image
size can be evaluated (:class:`~edgedepth.eval.models.DepthModel`): our weights and exports, teachers, baselines.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from edgedepth.core.depth import UnscorableImage
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_input_file, check_output_folder
from edgedepth.core.sizes import SIZE_MULTIPLE, format_size, parse_size
from edgedepth.core.version import __version__
from edgedepth.data.nyu import NYU_CROPS, NyuLabeled, read_splits
from edgedepth.eval import report
from edgedepth.eval.config import PROTOCOLS, EvalConfig, EvalProtocol
from edgedepth.eval.metrics import METRIC_NAMES, mean_metrics, score_prediction, valid_mask
from edgedepth.eval.models import DepthModel, open_model

logger = logging.getLogger(__name__)


#: Keys of the seed's ``config.yaml`` that ``eval`` uses, and the field each one fills.
SEED_CONFIG_KEYS = {"nyu_data_path": "data", "nyu_split_path": "splits", "best_model": "weights"}










@dataclass(frozen=True)
class ImageResult:
    """The outcome of one frame: metrics, or the reason it was skipped."""

    index: int  # zero-based index into the labeled set
    valid_pixels: int
    metrics: dict[str, float] | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class EvalSummary:
    metrics: dict[str, float]
    evaluated: int
    skipped: int
    seconds: float
    table: str
    files: list[Path]

    @property
    def images_per_second(self) -> float:
        return (self.evaluated + self.skipped) / self.seconds if self.seconds > 0 else 0.0


def apply_seed_config(cfg: EvalConfig) -> tuple[EvalConfig, list[str]]:
    """Fill the fields that ``cfg`` leaves unset from the seed's ``config.yaml``; returns notes to print.

    Flags given on the command line win over the file. Keys that ``eval`` does not use are ignored with a note.
    """
    if cfg.config_file is None:
        return cfg, []
    path = check_input_file(cfg.config_file, "the seed's config.yaml", "no such config file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EdgedepthError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(values, dict):
        raise EdgedepthError(f"{path}: expected a mapping of keys to values (the seed's config.yaml)")
    updates: dict[str, Any] = {}
    for key, name in SEED_CONFIG_KEYS.items():
        if key in values and getattr(cfg, name) is None and values[key] is not None:
            updates[name] = Path(str(values[key])).expanduser()
    if cfg.size is None and ("width" in values or "height" in values):
        try:
            updates["size"] = parse_size(f"{values.get('width')}x{values.get('height')}", SIZE_MULTIPLE)
        except EdgedepthError as exc:
            raise EdgedepthError(f"{path}: width/height: {exc}") from exc
    if cfg.teacher is not None:
        updates.pop("weights", None)
    used = {*SEED_CONFIG_KEYS, "width", "height"}
    ignored = sorted(str(key) for key in values if key not in used)
    notes = [f"note: {path}: ignoring keys that eval does not use: {', '.join(ignored)}"] if ignored else []
    return replace(cfg, **updates), notes


def select_indices(cfg: EvalConfig, num_images: int) -> np.ndarray:
    """Zero-based indices of the frames to score: the split, optionally its first ``limit`` frames."""
    assert cfg.splits is not None
    splits = read_splits(cfg.splits, num_images)
    indices = splits.test if cfg.split == "test" else splits.train
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise EdgedepthError(f"--limit must be at least 1, got {cfg.limit}")
        indices = indices[: cfg.limit]
    return indices


def evaluate_frames(
    model: DepthModel,
    labeled: NyuLabeled,
    indices: np.ndarray,
    protocol: EvalProtocol,
    batch_size: int = 4,
    progress: bool = True,
) -> list[ImageResult]:
    """Predict and score the given frames, ``batch_size`` at a time; unscorable frames are skipped with a warning."""
    crop = NYU_CROPS[protocol.crop]
    results: list[ImageResult] = []
    with tqdm(total=len(indices), desc="eval", unit="img", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(indices), batch_size):
            batch = [int(i) for i in indices[start : start + batch_size]]
            images = [labeled.image(i) for i in batch]
            predictions = model.predict_batch(images)[:, 0]
            for index, prediction in zip(batch, predictions):
                depth = labeled.depth(index, protocol.ground_truth)
                mask = valid_mask(depth, protocol.min_depth, protocol.max_depth, crop)
                try:
                    metrics, _ = score_prediction(prediction, depth, mask, protocol.alignment, protocol.max_depth)
                except UnscorableImage as exc:
                    logger.warning(f"frame {index + 1}: {exc}; skipped")
                    results.append(ImageResult(index, int(mask.sum()), skipped=str(exc)))
                else:
                    results.append(ImageResult(index, int(mask.sum()), metrics=metrics))
            bar.update(len(batch))
    return results


def run(cfg: EvalConfig) -> EvalSummary:
    """Evaluate ``cfg``'s model on NYU Depth v2 and write the report into ``cfg.out``."""
    cfg, notes = apply_seed_config(cfg)
    for note in notes:
        logger.info(note)
    if cfg.data is None or cfg.splits is None:
        raise EdgedepthError("pass --data nyu_depth_v2_labeled.mat and --splits splits.mat (or a --config with them)")
    if cfg.batch_size < 1:
        raise EdgedepthError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    check_output_folder(cfg.out)  # now, not once every frame has been scored
    if cfg.baseline == "constant":  # median scaling turns the constant into the ground truth's median
        cfg = replace(cfg, protocol=replace(cfg.protocol, alignment="median-depth"))
    start = time.perf_counter()
    assert cfg.data is not None  # checked above (the protocol's replace keeps it)
    with NyuLabeled(cfg.data) as labeled:
        indices = select_indices(cfg, len(labeled))
        _check_crop_fits(cfg.protocol, labeled.frame_size)
        model, method, training_data = open_model(cfg.weights, cfg.teacher, cfg.baseline, cfg.size, cfg.device,
                                                  cfg.training_data)
        results = evaluate_frames(model, labeled, indices, cfg.protocol, cfg.batch_size)
        scored = [r for r in results if r.metrics is not None]
        if not scored:
            raise EdgedepthError(f"no frame could be scored ({len(results)} skipped, see warnings); nothing written")
        grid = _grid_rows(model, labeled, scored, cfg.protocol)
    seconds = time.perf_counter() - start
    means = mean_metrics([r.metrics for r in scored if r.metrics is not None])
    size = format_size(tuple(model.size)) if model.size else "-"  # type: ignore[arg-type]
    skipped = len(results) - len(scored)
    notes_md = (
        f"NYU Depth v2 {cfg.split} split: {len(scored)} images scored, {skipped} skipped. "
        f"Protocol {_protocol_name(cfg.protocol)}: {cfg.protocol.describe()}. "
        "RMSE in metres; RMSE log in natural log (the seed's table swaps these two labels)."
    )
    table = report.table_markdown(method, size, training_data, means, notes_md)
    summary_json = {
        "method": method,
        "model": model.name,
        "weights": str(cfg.weights) if cfg.weights else None,
        "input_size": size,
        "training_data": training_data,
        "data": str(cfg.data),
        "splits": str(cfg.splits),
        "split": cfg.split,
        "protocol": {
            "name": _protocol_name(cfg.protocol),
            **asdict(cfg.protocol),
            "crop_box": NYU_CROPS[cfg.protocol.crop],
        },
        "images": {"scored": len(scored), "skipped": skipped, "total": len(results)},
        "metrics": means,
        "skipped": [{"nyu_index": r.index + 1, "reason": r.skipped} for r in results if r.skipped],
        "seconds": round(seconds, 3),
        "device": cfg.device,
        "edgedepth_version": __version__,
    }
    columns = ("nyu_index", "status", "valid_pixels", *METRIC_NAMES, "reason")
    rows = [
        {"nyu_index": r.index + 1, "status": "skipped" if r.skipped else "ok", "valid_pixels": r.valid_pixels,
         **(r.metrics or {}), "reason": r.skipped}
        for r in results
    ]
    files = report.write_report(
        cfg.out,
        {
            "table.md": table,
            "metrics.json": report.to_json(summary_json),
            "per_image.csv": report.per_image_csv(rows, columns),
            "grid.png": report.picture_grid(grid, cfg.protocol.max_depth),
        },
    )
    return EvalSummary(means, len(scored), skipped, seconds, table, files)


def _protocol_name(protocol: EvalProtocol) -> str:
    for name, known in PROTOCOLS.items():
        if protocol == known:
            return name
    return "custom"


def _check_crop_fits(protocol: EvalProtocol, frame_size: tuple[int, int]) -> None:
    box = NYU_CROPS[protocol.crop]
    if box is not None and (box[1] > frame_size[1] or box[3] > frame_size[0]):
        raise EdgedepthError(
            f"crop {protocol.crop} is defined on the 640x480 NYU frame; these frames are {format_size(frame_size)} "
            "(use --crop none)"
        )


def _grid_rows(
    model: DepthModel, labeled: NyuLabeled, scored: list[ImageResult], protocol: EvalProtocol
) -> list[report.GridRow]:
    """Best, median and worst scored frames by AbsRel, predicted again in one batch (not kept from the loop)."""
    ranked = sorted(scored, key=lambda r: r.metrics["abs_rel"] if r.metrics else 0.0)
    picks = {"best": ranked[0], "median": ranked[len(ranked) // 2], "worst": ranked[-1]}
    images = [labeled.image(result.index) for result in picks.values()]
    predictions = model.predict_batch(images)[:, 0]
    rows = []
    crop = NYU_CROPS[protocol.crop]
    for (label, result), image, prediction in zip(picks.items(), images, predictions):
        depth = labeled.depth(result.index, protocol.ground_truth)
        mask = valid_mask(depth, protocol.min_depth, protocol.max_depth, crop)
        _, predicted_depth = score_prediction(prediction, depth, mask, protocol.alignment, protocol.max_depth)
        title = f"{label}: frame {result.index + 1}, AbsRel {result.metrics['abs_rel']:.3f}"  # type: ignore[index]
        rows.append(report.GridRow(title, image, depth, predicted_depth, mask))
    return rows
