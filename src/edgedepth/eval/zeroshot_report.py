"""The zero-shot suite's report: the headline table (AbsRel and δ1 per set, as papers print them), each set's full
table and picture grid, and ``per_image.csv``; rendered in memory, written by the suite (which also writes ``metrics.json``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgedepth.data.marigold import crop_array, load_sample
from edgedepth.eval import report
from edgedepth.eval.rows import Row
from edgedepth.eval.zeroshot_metrics import ZERO_SHOT_METRIC_NAMES, zero_shot_depth, zero_shot_fit
from edgedepth.eval.zeroshot_protocols import ZeroShotProtocol, prepare_frame
from edgedepth.eval.zeroshot_results import OpenedSet, SampleResult, row_means

#: Least-squares alignment names as Marigold's eval.py takes them (``--alignment``), for the report.
MARIGOLD_ALIGNMENT = {"disparity": "least_square_disparity", "depth": "least_square"}

#: Widest picture of a grid panel: ETH3D's 6048-pixel frames are shown nearest-downscaled.
GRID_WIDTH = 480


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def headline(sets: list[OpenedSet], rows: list[Row], protocol: ZeroShotProtocol, mat: dict[int, dict] | None) -> str:
    header = ["method", "alignment"]
    for opened in sets:
        header += [f"{opened.settings.evalset.title} AbsRel", f"{opened.settings.evalset.title} δ1"]
    if mat is not None:
        header += ["NYU .mat (seed) AbsRel", "NYU .mat (seed) δ1"]
    lines = []
    for i, row in enumerate(rows):
        cells = [row.label, MARIGOLD_ALIGNMENT[row.kind]]
        for opened in sets:
            means = row_means(opened.results[i])
            cells += [_cell(means["abs_rel"] if means else None), _cell(means["delta1"] if means else None)]
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


def set_table(opened: OpenedSet, rows: list[Row]) -> str:
    header = ("method", "alignment", "scored", "skipped", "AbsRel", "SqRel", "RMSE", "RMSE log", "log10", "δ1", "δ2",
              "δ3", "i_rmse", "silog_rmse")
    order = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3", "i_rmse", "silog_rmse")
    lines = []
    for i, row in enumerate(rows):
        results = opened.results[i]
        means = row_means(results)
        scored = sum(r.metrics is not None for r in results)
        lines.append((row.label, MARIGOLD_ALIGNMENT[row.kind], str(scored), str(len(results) - scored),
                      *(_cell(means[name] if means else None) for name in order)))
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


def per_image_csv(sets: list[OpenedSet], rows: list[Row]) -> str:
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


def grid(opened: OpenedSet, rows: list[Row]) -> bytes | None:
    """The best, median and worst samples of the first row that scored any, with every row's aligned prediction;
    loaded and predicted again (nothing is kept from the loop), shown at most :data:`GRID_WIDTH` wide."""
    ranked_row = next((i for i in range(len(rows)) if row_means(opened.results[i]) is not None), None)
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
