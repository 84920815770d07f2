"""The real-time loop: ``edgedepth predict --video`` end to end, its overlay, and its errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.cli import main
from edgedepth.core.viz import colorize
from edgedepth.data.synthetic import render_scene
from edgedepth.predict.video import draw_fps
from edgedepth.runtime.predictor import load_predictor

FRAMES, WIDTH, HEIGHT = 6, 320, 240


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "scenes.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT))
    for k in range(FRAMES):
        writer.write(cv2.cvtColor(render_scene(k, (WIDTH, HEIGHT)).image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_video_loop_writes_colour_mapped_depth(
    tmp_path: Path, video: Path, weights: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "depth.mp4"
    assert main(["predict", "--video", str(video), "--weights", str(weights), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"video: {FRAMES} frame(s)" in printed and "FPS end to end" in printed and str(out) in printed
    written, inputs = _frames(out), _frames(video)
    assert len(written) == FRAMES and written[0].shape == (HEIGHT, WIDTH, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["depth.mp4"]
    # Each written frame is the colour map of that frame's prediction (the video codec is lossy: compare means),
    # away from the FPS overlay in the top-left corner.
    predictor = load_predictor(weights)
    for frame, depth in zip(inputs[:2], written[:2]):
        expected = colorize(predictor(frame)).astype(np.float32)
        assert np.abs(depth[40:].astype(np.float32) - expected[40:]).mean() < 6.0
        other = colorize(predictor(np.ascontiguousarray(frame[::-1]))).astype(np.float32)
        assert np.abs(depth[40:].astype(np.float32) - other[40:]).mean() > 6.0  # the test can tell frames apart


def test_fps_overlay_touches_only_its_corner() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    draw_fps(image, 29.97)
    assert image[:40, :120].max() == 255 and image[40:].max() == 0 and image[:, 120:].max() == 0


def test_loop_errors_are_one_line(
    tmp_path: Path, video: Path, weights: Path, capsys: pytest.CaptureFixture
) -> None:
    cases = {
        "missing video": (["--video", str(tmp_path / "none.mp4")], "none.mp4: video cannot be opened"),
        "no camera": (["--camera", "97"], "camera 97 cannot be opened"),
        "out folder": (["--video", str(video), "--out", str(tmp_path / "folder")], "names the .mp4 file"),
        "two sources": (["--video", str(video), "--camera", "0"], "pass one source"),
        "headless show": (["--video", str(video), "--show", "--limit", "1"], "--show needs OpenCV with a GUI"),
    }
    for flags, message in cases.values():
        assert main(["predict", *flags, "--weights", str(weights)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgedepth: error: ") and err.count("\n") == 1 and message in err, err
    assert main(["predict", "--weights", str(weights)]) == 2
    assert "nothing to predict" in capsys.readouterr().err


def _pipeline_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("edgedepth-")]


def test_loop_stops_at_limit_and_reports_each_stage(video: Path, weights: Path) -> None:
    from edgedepth.predict.video import run_loop

    summary = run_loop(load_predictor(weights), str(video), limit=2)
    assert summary.frames == 2
    assert min(summary.read_seconds, summary.model_seconds, summary.post_seconds) > 0
    assert summary.model_seconds < summary.seconds
    assert summary.overhead == pytest.approx(summary.seconds / summary.model_seconds - 1)
    assert _pipeline_threads() == []  # every stage has stopped


def test_an_error_in_a_stage_reaches_the_caller(video: Path, weights: Path) -> None:
    from edgedepth.core.errors import EdgedepthError
    from edgedepth.predict.video import run_loop

    predictor = load_predictor(weights)
    calls = []

    def failing_infer(batch: object) -> object:
        calls.append(batch)
        if len(calls) == 3:
            raise EdgedepthError("the network failed on frame 3")
        return type(predictor).infer(predictor, batch)

    predictor.infer = failing_infer  # type: ignore[method-assign]
    with pytest.raises(EdgedepthError, match="the network failed on frame 3"):
        run_loop(predictor, str(video))
    assert _pipeline_threads() == []


def test_a_camera_slot_keeps_only_the_newest_frame() -> None:
    import threading

    from edgedepth.predict.pipeline import END as _END
    from edgedepth.predict.pipeline import Slot as _Slot

    stop = threading.Event()
    live, file = _Slot(stop, latest=True), _Slot(stop)
    live.put("frame 1")
    live.put("frame 2")  # replaces frame 1: a slow network drops frames instead of falling behind
    assert live.get() == "frame 2"
    file.put("frame 1")
    threading.Timer(0.2, stop.set).start()
    file.put("frame 2")  # a file's reader waits instead (here until stopped): no frame is dropped
    assert file.get() == "frame 1"
    assert file.get() is _END  # stopped and empty


def test_the_loop_sizes_its_threads_to_share_the_cores(
    tmp_path: Path, video: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default the network gets every core this process may use but its idle threads sleep, and OpenCV runs on
    one thread per stage: the stages are the parallelism (a spinning network pool ran the loop 30 % slower)."""
    from edgedepth.export.graph import export_model
    from edgedepth.models import load_model
    from edgedepth.predict import video as loop
    from edgedepth.runtime import predictor as predictors

    onnx = tmp_path / "student.onnx"
    export_model(load_model(weights), onnx, "onnx")
    opened: list[predictors.Predictor] = []
    real = predictors.load_predictor
    monkeypatch.setattr(predictors, "load_predictor", lambda *a, **k: opened.append(real(*a, **k)) or opened[-1])
    monkeypatch.setattr(loop, "available_cores", lambda: 3)
    before = cv2.getNumThreads()
    try:
        summary = loop.run(loop.VideoConfig(weights=onnx, source=str(video), limit=2))
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
    options = opened[0].session.get_session_options()  # type: ignore[attr-defined]
    assert (summary.threads, options.intra_op_num_threads) == (3, 3)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # Elsewhere (predict, bench, serve) the network has the cores to itself, and spinning saves a wake-up per operator:
    # ONNX Runtime's default, which has no entry to read back.
    with pytest.raises(RuntimeError, match="does not have configuration"):
        load_predictor(onnx, threads=1).session.get_session_options().get_session_config_entry(  # type: ignore[attr-defined]
            "session.intra_op.allow_spinning")
