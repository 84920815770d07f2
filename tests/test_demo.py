"""A fast version of ``edgedepth demo``: every step runs for real on tiny counts, and a rerun reuses the work."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgedepth.demo import run as demo
from edgedepth.demo.config import DemoConfig
from edgedepth.demo.run import run


def _tiny(out: Path) -> DemoConfig:
    """Every step of the demo, on counts and sizes that take seconds."""
    return DemoConfig(out=out, train_scenes=16, test_scenes=4, scene_size=(160, 120), crop=(128, 96),
                      train_size=(64, 64), epochs=1, batch_size=4, bench_runs=3, progress=False)


@pytest.mark.slow
def test_tiny_demo_end_to_end_and_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _tiny(tmp_path / "demo")
    report = run(cfg)
    page = report.read_text()
    printed = capsys.readouterr().out
    for section in ('id="metrics"', 'id="loss"', 'id="latency"', 'id="timings"', 'id="grid"', "untrained", "trained",
                    "vertical ramp, no image input", "median (oracle)"):
        assert section in page
    assert page.count("data:image/png;base64,") >= 3  # loss curve, latency chart and an evaluation grid
    assert (tmp_path / "demo" / "student.onnx").is_file() and "onnx" in (tmp_path / "demo" / "bench" / "bench.md").read_text()
    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert isinstance(summary["metrics"]["untrained"], dict) and 0 < summary["metrics"]["untrained"]["abs_rel"]
    assert set(summary["metrics"]) == {"trained", "untrained", "ramp", "constant"}
    assert summary["verdict"] and html.escape(summary["verdict"]) in page
    assert all(0 < summary["metrics"][row]["abs_rel"] < 1 for row in ("ramp", "constant"))
    # The terminal shows the report's metrics table and verdict at the end, figures as in demo.json.
    ending = printed[printed.index("demo: metrics on the held-out test scenes"):]
    assert "| model | AbsRel | SqRel | RMSE log | RMSE | δ1 | δ2 | δ3 |" in ending
    ramp = summary["metrics"]["ramp"]
    assert f"| vertical ramp, no image input (the positional prior) | {ramp['abs_rel']:.3f} |" in ending
    assert summary["verdict"] in ending and ending.rstrip().endswith(f"demo: report -> {report}")
    # The bench section is an HTML table, not markdown source.
    latency = page[page.index('id="latency"'):page.index('id="timings"')]
    assert "<table><tr><th>model</th><th>runtime</th>" in latency and "<td>onnx</td>" in latency
    assert "<pre>" not in page and "|---" not in page and "| model |" not in page
    assert (tmp_path / "demo" / "run" / "final.safetensors").is_file()

    again = _tiny(cfg.out)
    run(again)
    rendering = [seconds for step, seconds in again.timings.items() if step.startswith("render")]
    assert max(rendering) < 1.0  # scenes are reused, not rendered again


def test_results_table_is_the_reports_metrics_in_the_seeds_columns() -> None:
    metrics: dict[str, dict[str, float] | str] = {"trained": "a constant map",
                                                   "ramp": dict.fromkeys(demo.METRIC_KEYS, 0.5)}
    table = demo.results_table(metrics).splitlines()
    assert table[0] == "| model | AbsRel | SqRel | RMSE log | RMSE | δ1 | δ2 | δ3 |"
    assert table[2:] == ["| trained student | not scored |  |  |  |  |  |  |",
                         "| vertical ramp, no image input (the positional prior) | " + " | ".join(["0.500"] * 7) + " |"]


def test_report_renders_the_bench_markdown_as_html(tmp_path: Path) -> None:
    """Headings, paragraphs, lists and the pipe table of bench.md become HTML, every piece escaped."""
    from edgedepth.train import loop as train

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / train.LOG).write_text('{"step": 1, "loss": 0.5}\n')
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.md").write_text(
        "# edgedepth bench: batch 1\n\nCPU: x86 <AVX2> & more\n\n| model | runtime | median ms |\n|---|---|---|\n"
        "| fastdepth_v3 | torch | 1.5 |\n| fastdepth_v3 | onnx | failed: a < b |\n\n- best FP32 onnx 1.2 ms\n")
    page = demo.write_report(tmp_path, {"ramp": dict.fromkeys(demo.METRIC_KEYS, 0.5)}, {"train": 1.0}).read_text()
    latency = page[page.index('id="latency"'):page.index('id="timings"')]
    assert "<h3>edgedepth bench: batch 1</h3>" in latency and "<p>CPU: x86 &lt;AVX2&gt; &amp; more</p>" in latency
    assert ("<table><tr><th>model</th><th>runtime</th><th>median ms</th></tr><tr><td>fastdepth_v3</td><td>torch</td>"
            "<td>1.5</td></tr><tr><td>fastdepth_v3</td><td>onnx</td><td>failed: a &lt; b</td></tr></table>") in latency
    assert "<ul><li>best FP32 onnx 1.2 ms</li></ul>" in latency and "<pre>" not in page and "|" not in latency


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_report_renders_its_images_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (make test installs Debian's chromium when run as root)")
    cfg = _tiny(tmp_path / "demo")
    page = run(cfg).read_text()
    # Count, after the page has loaded, the images that actually decoded (naturalWidth > 0).
    probe = (
        "<script>window.addEventListener('load', () => {"
        "const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;"
        "document.body.dataset.imagesOk = ok; document.body.dataset.images = document.images.length;});</script>"
    )
    checked = tmp_path / "check.html"
    checked.write_text(page.replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", checked.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    found = re.search(r'data-images-ok="(\d+)" data-images="(\d+)"', dom)
    assert found, dom[:500]
    ok, total = int(found.group(1)), int(found.group(2))
    assert total >= 2 and ok == total


def test_each_step_announces_the_time_left_from_the_speed_so_far(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = iter([0.0, 120.0, 120.0, 120.0])  # the first step (render train, a tenth of the demo) takes 2 minutes
    monkeypatch.setattr(demo.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(demo, "STEP_SHARES", {"render train": 0.1, "train": 0.9})
    steps = demo._Steps({})
    with steps("render train", "render"):
        pass
    with steps("train", "train"):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["== demo: render", "== demo: train (about 18 min left)"]  # 0.9 of the work at 2 min per 0.1
