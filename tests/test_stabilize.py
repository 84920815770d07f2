"""--stabilize: flicker measured on a synthetic sequence with exact depth, halved at least, without smearing motion;
in the video loop and in predict's per-frame video outputs, with no extra network run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgedepth.cli import main
from edgedepth.data import synthetic
from edgedepth.eval.metrics import frame_flicker, score_prediction, valid_mask
from edgedepth.predict.video import run_loop
from edgedepth.robot.stabilize import Stabilizer
from edgedepth.runtime.predictor import load_predictor

FRAMES, SIZE = 12, (96, 72)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sequence")
    synthetic.write_sequence(out, FRAMES, SIZE, seed=3, progress=False)
    return out


@pytest.fixture(scope="module")
def depths() -> list[np.ndarray]:
    description, cameras = synthetic.sequence_cameras(3, FRAMES, SIZE)
    return [synthetic.render(description, camera).depth.astype(np.float64) for camera in cameras]


def _flicker(maps: list[np.ndarray], depths: list[np.ndarray]) -> float:
    return float(np.mean([frame_flicker(a, b, da, db) for a, b, da, db in zip(maps, maps[1:], depths, depths[1:])]))


def _abs_rel(maps: list[np.ndarray], depths: list[np.ndarray]) -> float:
    scores = [score_prediction(m, d, valid_mask(d, 0.0, 10.0))[0]["abs_rel"] for m, d in zip(maps, depths)]
    return float(np.mean(scores))


def test_stabilizing_halves_the_flicker_of_a_flickering_model_and_costs_no_accuracy(depths: list[np.ndarray]) -> None:
    """A model that gets each frame right up to its own scale and shift, with 3 % noise: per-frame output flickers."""
    rng = np.random.default_rng(0)
    per_frame = [(1.0 / d) * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05) for d in depths]
    per_frame = [m * (1.0 + 0.03 * rng.standard_normal(m.shape)) for m in per_frame]
    stabilizer = Stabilizer()
    stable = [stabilizer(m).astype(np.float64) for m in per_frame]
    raw, smooth = _flicker(per_frame, depths), _flicker(stable, depths)
    truth = _flicker([1.0 / d for d in depths], depths)  # what the camera's own motion leaves at "static" pixels
    assert truth < smooth < raw / 2, (truth, smooth, raw)
    assert _abs_rel(stable, depths) <= _abs_rel(per_frame, depths) + 0.005


def test_motion_is_followed_not_smeared() -> None:
    """Noise within the fit's residuals is averaged; a pixel whose depth jumps (something moved) takes its new value."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 1.0, (48, 64)).astype(np.float32)
    stabilizer = Stabilizer()
    for _ in range(5):
        stabilizer(base * (1 + 0.01 * rng.standard_normal(base.shape)).astype(np.float32))
    moved = base.copy()
    moved[10:20, 10:20] += 1.0  # an object comes near
    out = stabilizer(2.0 * moved + 0.3)  # and the model's scale and shift changed too
    np.testing.assert_allclose(out[10:20, 10:20], moved[10:20, 10:20], rtol=0.03)  # aligned back, and not smeared
    still = np.ones_like(base, bool)
    still[8:22, 8:22] = False
    np.testing.assert_allclose(out[still], base[still], rtol=0.03)


def test_a_new_size_or_a_constant_frame_starts_anew() -> None:
    stabilizer = Stabilizer()
    first = np.random.default_rng(2).random((24, 32)).astype(np.float32) + 0.5
    np.testing.assert_array_equal(stabilizer(first), first)
    other = np.random.default_rng(3).random((12, 16)).astype(np.float32)
    np.testing.assert_array_equal(stabilizer(other), other)
    flat = np.full((12, 16), 0.5, np.float32)
    np.testing.assert_array_equal(stabilizer(flat), flat)


def test_predict_stabilizes_video_frames_with_one_network_run_each(
    tmp_path: Path, sequence: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgedepth.runtime.predictor import Predictor

    runs = []
    infer = Predictor.network_output
    monkeypatch.setattr(Predictor, "network_output", lambda self, images: runs.append(1) or infer(self, images))
    video = sequence / synthetic.SEQUENCE_VIDEO
    for name, flags in (("plain", []), ("stable", ["--stabilize"])):
        argv = ["predict", str(video), "--weights", str(weights), "--out", str(tmp_path / name), "--npy", *flags]
        assert main(argv) == 0
    assert len(runs) == 1 + FRAMES + 1 + FRAMES  # each run: one warm-up, then one per frame
    plain = [np.load(tmp_path / "plain" / "video" / f"{k:06d}.npy") for k in range(FRAMES)]
    stable = [np.load(tmp_path / "stable" / "video" / f"{k:06d}.npy") for k in range(FRAMES)]
    np.testing.assert_array_equal(plain[0], stable[0])  # the first frame is the estimate's start
    assert not np.array_equal(plain[-1], stable[-1]) and stable[-1].shape == (SIZE[1], SIZE[0])


def test_the_video_loop_stabilizes_and_reports_its_cost(sequence: Path, weights: Path) -> None:
    summary = run_loop(load_predictor(weights), str(sequence / synthetic.SEQUENCE_VIDEO), stabilize=True)
    assert summary.frames == FRAMES and 0 < summary.stabilize_seconds < summary.post_seconds
    assert run_loop(load_predictor(weights), str(sequence / synthetic.SEQUENCE_VIDEO), limit=2).stabilize_seconds == 0


def test_stabilize_needs_a_video(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    assert main(["predict", str(image), "--weights", str(weights), "--stabilize", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: ") and "--stabilize smooths the frames of a video" in err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()
