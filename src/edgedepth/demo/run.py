"""The demo's steps, in order; :class:`~edgedepth.demo.config.DemoConfig` sizes them."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgedepth.bench import run as bench
from edgedepth.bench.config import BenchConfig
from edgedepth.core.config import load_config
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, write_json
from edgedepth.core.viz import plot_loss_curve
from edgedepth.data import nyu, synthetic
from edgedepth.demo.config import DemoConfig
from edgedepth.eval import nyu as evaluate
from edgedepth.eval.report import TABLE_COLUMNS, markdown_table
from edgedepth.export import job as export
from edgedepth.label import job as label
from edgedepth.label import recipe
from edgedepth.models import create_model, save_weights
from edgedepth.train import loop as train
from edgedepth.train.config import TrainConfig

#: Each step's share of a whole demo's wall time, measured on a 2-core CPU (see benchmarks/README.md); the estimate
#: of the time left scales the shares still to come by how fast this machine ran the ones done.
STEP_SHARES = {"render train": 0.14, "render test": 0.035, "label": 0.015, "train": 0.75, "evaluate": 0.03,
               "export": 0.002, "bench": 0.028}


class _Steps:
    """Announces each step with the time left (estimated), and records each step's wall time."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.done_share = 0.0
        self.done_seconds = 0.0

    @contextmanager
    def __call__(self, kind: str, name: str, share_of_kind: float = 1.0) -> Iterator[None]:
        share = STEP_SHARES[kind] * share_of_kind
        left = ""
        if self.done_share > 0.05 and self.done_seconds > 1.0:
            remaining = (1.0 - self.done_share) * self.done_seconds / self.done_share
            left = f" (about {max(1, round(remaining / 60))} min left)"
        print(f"== demo: {name}{left}", flush=True)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings[name] = seconds
        if seconds > 1.0:  # a step reused from an earlier run says nothing about this machine's speed
            self.done_share += share
            self.done_seconds += seconds


def _train_config(cfg: DemoConfig, labels: Path) -> TrainConfig:
    return load_config(
        TrainConfig,
        overrides=[
            "model.pretrained=false",
            f"data.path={labels}",
            "data.format=shards",
            f"data.input_size={cfg.train_size[0]}x{cfg.train_size[1]}",
            "data.num_workers=1",
            f"optim.batch_size={cfg.batch_size}",
            "schedule.name=cosine",
            f"schedule.epochs={cfg.epochs}",
            "schedule.warmup_steps=20",
            f"run.dir={cfg.out / 'run'}",
            "run.checkpoint_every_steps=50",
            "run.device=cpu",
            f"run.seed={cfg.seed}",
            f"logging.progress_bar={str(cfg.progress).lower()}",
            "logging.tensorboard=false",
        ],
    )


#: The report's rows: the trained student, then what it must beat.
ROWS = ("trained", "untrained", "ramp", "constant")
ROW_TITLES = {
    "trained": "trained student",
    "untrained": "untrained student (random init)",
    "ramp": "vertical ramp, no image input (the positional prior)",
    "constant": "constant depth, the ground truth's median (oracle)",
}


def run(cfg: DemoConfig) -> Path:
    """Run every step under ``cfg.out``, then print each step's time, the metrics table and the verdict (what the
    report holds, so that a run in a terminal shows its results); returns the report's path."""
    out, timings = cfg.out, cfg.timings
    step = _Steps(timings)
    train_scenes, test_scenes = out / "scenes_train", out / "scenes_test"
    labels = out / "labels"
    with step("render train", f"render {cfg.train_scenes} training scenes"):
        synthetic.write_folder(train_scenes, cfg.train_scenes, cfg.scene_size, cfg.seed, progress=cfg.progress)
    with step("render test", f"render {cfg.test_scenes} test scenes in NYU Depth v2's layout"):
        synthetic.write_folder(test_scenes, cfg.test_scenes, nyu.NYU_FRAME_SIZE, cfg.seed + 1, nyu_mat=True,
                               progress=cfg.progress)
    with step("label", "label them with the oracle teacher (label shards)"):
        label.run(label.LabelConfig(source=str(train_scenes), out=labels, teacher="oracle",
                                    recipe=recipe.Recipe(crop=cfg.crop, size=cfg.train_size, seed=cfg.seed),
                                    workers=1, progress=cfg.progress))
    steps = cfg.epochs * (cfg.train_scenes // cfg.batch_size)
    size = f"{cfg.train_size[0]}x{cfg.train_size[1]}"
    with step("train", f"train fastdepth_v3 from scratch at {size} for {steps} steps ({cfg.epochs} epochs)"):
        result = train.run(_train_config(cfg, labels))
        trained = result.weights or out / "run" / train.FINAL_WEIGHTS
    untrained = out / "untrained.safetensors"
    if not untrained.exists():
        model = create_model("fastdepth_v3", card={"input_size": cfg.train_size})  # scored as the trained one is
        save_weights(model, untrained, training_data="none (random init)")
    metrics: dict[str, dict[str, float] | str] = {}
    for row in ROWS:
        with step("evaluate", f"evaluate: {ROW_TITLES[row]} (seed protocol)", 1 / len(ROWS)):
            metrics[row] = _evaluate(cfg, row, trained, untrained)
    onnx_path = out / "student.onnx"
    with step("export", "export the trained student to ONNX"):
        if not onnx_path.exists():
            export.run(export.ExportConfig(weights=trained, fmt="onnx", out=onnx_path))
    with step("bench", "bench fastdepth_v3: PyTorch vs ONNX Runtime, one thread"):
        bench.run(BenchConfig(models=("fastdepth_v3",), runtimes=("torch", "onnx"), threads=(1,),
                                    size=cfg.train_size, runs=cfg.bench_runs, out=out / "bench", chart=True))
    report = write_report(out, metrics, timings)
    print("demo: wall time per step")
    for name, seconds in timings.items():
        print(f"  {seconds:7.1f} s  {name}")
    print("demo: metrics on the held-out test scenes (seed protocol)")
    print(results_table(metrics) + _verdict(metrics))
    print(f"demo: report -> {report}", flush=True)
    return report


def _evaluate(cfg: DemoConfig, row: str, trained: Path, untrained: Path) -> dict[str, float] | str:
    """Score one row of the report on the held-out scenes; a row that cannot be scored says why instead."""
    test_scenes = cfg.out / "scenes_test"
    students = {"trained": trained, "untrained": untrained}
    try:
        summary = evaluate.run(
            evaluate.EvalConfig(
                data=test_scenes / "nyu_depth_v2_labeled.mat",
                splits=test_scenes / "splits.mat",
                weights=students.get(row),
                baseline=None if row in students else row,  # type: ignore[arg-type]
                out=cfg.out / f"eval_{row}",
                training_data={"trained": "synthetic scenes"}.get(row, "none"),
            )
        )
    except EdgedepthError as exc:  # e.g. a student too briefly trained to give anything but a constant
        print(f"edgedepth: warning: {exc}", flush=True)
        return str(exc)
    return summary.metrics


#: The metrics of the report, in the seed's column order (:data:`edgedepth.eval.report.TABLE_COLUMNS`).
METRIC_KEYS = ("abs_rel", "sq_rel", "rmse_log", "rmse", "delta1", "delta2", "delta3")


def results_table(metrics: dict[str, dict[str, float] | str]) -> str:
    """The report's metrics table in markdown, for the terminal; a row that could not be scored says so (its
    reason was printed as a warning when it was evaluated)."""
    rows = []
    for row, values in metrics.items():
        if isinstance(values, dict):
            cells = [f"{values[key]:.3f}" for key in METRIC_KEYS]
        else:
            cells = ["not scored", *[""] * (len(METRIC_KEYS) - 1)]
        rows.append((ROW_TITLES.get(row, row), *cells))
    return markdown_table(("model", *TABLE_COLUMNS), rows)


def markdown_html(text: str) -> str:
    """A markdown report of ``edgedepth bench`` (headings, paragraphs, bullet lists, pipe tables) as HTML, every
    piece of text escaped: the report shows a real table, not markdown source."""
    parts = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        if lines[0].startswith("|"):
            cells = [[html.escape(cell.strip()) for cell in line.strip().split("|")[1:-1]] for line in lines
                     if not set(line) <= set("|-: ")]  # the separator row under the header
            head = "".join(f"<th>{cell}</th>" for cell in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in cells[1:])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif lines[0].startswith("#"):
            parts.append(f"<h3>{html.escape(block.lstrip('#').strip())}</h3>")
        elif all(line.startswith("- ") for line in lines):
            parts.append("<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines) + "</ul>")
        else:
            parts.append(f"<p>{html.escape(block)}</p>")
    return "\n".join(parts)


def _embed_png(path: Path) -> str:
    if not path.is_file():
        return "<p>(missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _verdict(metrics: dict[str, dict[str, float] | str]) -> str:
    """One sentence: how far the trained student beats the positional prior (the vertical ramp)."""
    trained, ramp = metrics.get("trained"), metrics.get("ramp")
    if not isinstance(trained, dict) or not isinstance(ramp, dict):
        return "The trained student or the ramp could not be scored (see above)."
    ratio = trained["abs_rel"] / ramp["abs_rel"]
    learned = "learned more than" if ratio <= 0.8 else "did not clearly beat"
    return (f"The trained student's AbsRel is {ratio:.2f}x the vertical ramp's: it {learned} where things usually "
            "are in a room (the ramp sees no image; 0.8x or less is the demo's bar).")


def write_report(out: Path, metrics: dict[str, dict[str, float] | str], timings: dict[str, float]) -> Path:
    """``report.html``: metrics table (trained vs untrained), loss curve, step timings, evaluation grids."""
    loss_png = out / "loss.png"
    plot_loss_curve(out / "run" / train.LOG, loss_png)
    bench_md = out / "bench" / "bench.md"
    bench_report = markdown_html(bench_md.read_text()) if bench_md.is_file() else "<p>(no benchmark)</p>"
    rows = "".join(
        f"<tr><td>{html.escape(ROW_TITLES.get(student, student))}</td>"
        + (
            "".join(f"<td>{values[key]:.3f}</td>" for key in METRIC_KEYS)
            if isinstance(values, dict)
            else f'<td colspan="{len(METRIC_KEYS)}">not scored: {html.escape(values)}</td>'
        )
        + "</tr>"
        for student, values in metrics.items()
    )
    verdict = _verdict(metrics)
    timing_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in timings.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgedepth demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:4px 10px;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>edgedepth demo</h1>
<p>fastdepth_v3 trained from scratch on synthetic scenes, labelled by the oracle teacher (their exact depth standing
in for MiDaS) through the label pipeline, evaluated with the seed's NYU protocol on held-out synthetic scenes. This shows the pipeline working, not a useful model.</p>
<h2 id="metrics">Metrics</h2>
<table><tr><th>model</th>{''.join(f'<th>{key}</th>' for key in METRIC_KEYS)}</tr>{rows}</table>
<p>{html.escape(verdict)}</p>
<h2 id="loss">Training loss</h2>{_embed_png(loss_png)}
<h2 id="latency">Latency of fastdepth_v3 at the training size, batch 1, one thread</h2>{_embed_png(out / 'bench' / 'bench.png')}
{bench_report}
<h2 id="timings">Wall time per step (this run; a step reused from an earlier run takes about 0 s)</h2><table>{timing_rows}</table>
<h2 id="grid">Test scenes (best, median, worst): image, ground truth, prediction, error</h2>
<h3>trained</h3>{_embed_png(out / 'eval_trained' / 'grid.png')}
<h3>untrained</h3>{_embed_png(out / 'eval_untrained' / 'grid.png')}
</body></html>
"""
    report = out / "report.html"
    with atomic_path(report) as tmp:
        tmp.write_text(page)
    write_json(out / "demo.json", {"metrics": metrics, "verdict": verdict, "timings_s": timings}, indent=2)
    return report
