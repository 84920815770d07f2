"""The evaluation report rendered to bytes: markdown table, JSON, per-image CSV and a picture grid.

Everything here renders in memory; :func:`write_report` writes the files only once all of them exist,
each atomically, so a failure leaves no half-written report.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edgedepth.core.files import atomic_path

#: The seed's column order (its RMSE and RMSE-log headers are swapped in the paper; ours are labelled right).
TABLE_COLUMNS = ("AbsRel", "SqRel", "RMSE log", "RMSE", "δ1", "δ2", "δ3")
_TABLE_KEYS = ("abs_rel", "sq_rel", "rmse_log", "rmse", "delta1", "delta2", "delta3")

#: Error panel colour range: AbsRel 0 (black) to this value and above (bright).
ERROR_VMAX = 0.5


@dataclass(frozen=True)
class GridRow:
    """One row of the picture grid: an image, its ground truth and the aligned metric prediction."""

    title: str
    rgb: np.ndarray  # H x W x 3 uint8
    depth: np.ndarray  # H x W metres
    prediction: np.ndarray  # H x W metres, aligned
    mask: np.ndarray  # H x W bool, the scored pixels


def table_markdown(method: str, input_size: str, training_data: str, metrics: dict[str, float], notes: str) -> str:
    """One-row markdown table in the seed's column order, 3 decimals, followed by ``notes``."""
    header = ("method", "input size", "training data", *TABLE_COLUMNS)
    row = (method, input_size, training_data, *(f"{metrics[key]:.3f}" for key in _TABLE_KEYS))
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        "| " + " | ".join(row) + " |",
    ]
    return "\n".join(lines) + "\n\n" + notes.strip() + "\n"


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A markdown table of already formatted cells (no trailing notes)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def per_image_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Rows of per-image results as CSV text with a header; missing values are empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    return buffer.getvalue()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def to_json(data: dict[str, Any]) -> str:
    """Pretty JSON; refuses NaN and infinity, which are not JSON and must never reach a report."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def picture_grid(rows: list[GridRow], max_depth: float) -> bytes:
    """PNG bytes of a grid: one row per image; RGB, ground truth, prediction, AbsRel error.

    Depths share one colour scale (0 to ``max_depth`` m, near = bright); pixels outside the mask are grey.
    """
    figure = Figure(figsize=(13.0, 2.6 * len(rows) + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), 4, squeeze=False)
    depth_cmap, error_cmap = _cmap("magma_r"), _cmap("inferno")
    for (rgb_ax, gt_ax, pred_ax, err_ax), row in zip(axes, rows):
        rgb_ax.imshow(row.rgb)
        rgb_ax.set_title(row.title, fontsize=9)
        depth_image = gt_ax.imshow(np.ma.masked_where(~row.mask, row.depth), cmap=depth_cmap, vmin=0, vmax=max_depth)
        gt_ax.set_title("ground truth (m)", fontsize=9)
        pred_ax.imshow(row.prediction, cmap=depth_cmap, vmin=0, vmax=max_depth)
        pred_ax.set_title("prediction, aligned (m)", fontsize=9)
        error = np.abs(row.prediction - row.depth) / np.where(row.mask, row.depth, 1.0)
        error_image = err_ax.imshow(np.ma.masked_where(~row.mask, error), cmap=error_cmap, vmin=0, vmax=ERROR_VMAX)
        err_ax.set_title("|pred - gt| / gt", fontsize=9)
        figure.colorbar(depth_image, ax=[gt_ax, pred_ax], shrink=0.8)
        figure.colorbar(error_image, ax=err_ax, shrink=0.8)
        for ax in (rgb_ax, gt_ax, pred_ax, err_ax):
            ax.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _cmap(name: str) -> Any:
    """A copy of a matplotlib colour map that draws masked pixels grey."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="0.6")


def write_report(out: Path, files: dict[str, bytes | str]) -> list[Path]:
    """Write already rendered files into ``out``, each atomically; returns their paths."""
    written = []
    for name, content in files.items():
        path = out / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        written.append(path)
    return written
