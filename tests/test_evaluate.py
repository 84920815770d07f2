"""``edgedepth eval`` end to end: a real student, oracle models with known answers, bad inputs."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedepth.cli import main
from edgedepth.data.nyu import write_labeled_mat, write_splits_mat
from edgedepth.eval import nyu as evaluate
from edgedepth.models import create_model, load_model, save_weights

HEIGHT, WIDTH = 480, 640
COUNT = 5
TEST_INDICES = [1, 2, 3, 4]  # zero-based; frame 0 is the training split


def _scene(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame k: a tilted plane (1 to 7.5 m), raw depth with holes, an over-range patch and an eigen-only ring."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    depth = 1.0 + 0.5 * k + 3.0 * y / HEIGHT + 2.0 * x / WIDTH
    raw = depth.copy()
    raw[::9, :] = 0.0  # sensor holes
    raw[200:220, 300:340] = 12.0  # beyond 10 m: never valid
    raw[44, 40:601] *= 1.5  # row 44 and column 40 lie inside the eigen crop only, and disagree with depths
    raw[44:471, 40] *= 1.5
    image = np.stack([(x * 0.3) % 256, (y * 0.5) % 256, np.full_like(x, 40 * k)], axis=-1).astype(np.uint8)
    image[0, 0] = k  # the oracle model reads the frame number here
    return image, depth, raw


@pytest.fixture(scope="module")
def nyu(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("nyu")
    frames = [_scene(k) for k in range(COUNT)]
    data, splits = folder / "nyu_depth_v2_labeled.mat", folder / "splits.mat"
    write_labeled_mat(data, *(np.stack(parts) for parts in zip(*frames)))
    write_splits_mat(splits, train_indices=[0], test_indices=TEST_INDICES)
    return data, splits


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("fastdepth_v3")
    for module in model.modules():  # random BN statistics: an image-dependent, non-constant output
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "student.safetensors"
    save_weights(model, path, training_data="random init")
    return path


class OracleModel:
    """Predicts ``0.3 / depth - 0.02`` of the frame's filled depth: exact up to scale and shift."""

    name = "oracle"
    size = (256, 192)

    def __init__(self, broken: dict[int, str] | None = None, depth_of: Callable[[int], np.ndarray] | None = None):
        self.broken = broken or {}
        self.depth_of = depth_of or (lambda k: _scene(k)[1])

    def predict_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for image in images:
            k = int(image[0, 0, 0])
            prediction = 0.3 / self.depth_of(k) - 0.02
            if self.broken.get(k) == "constant":
                prediction = np.full_like(prediction, 0.5)
            elif self.broken.get(k) == "nan":
                prediction[10:20, 10:20] = np.nan
            out.append(prediction)
        return np.stack(out)[:, None]


def _use_model(monkeypatch: pytest.MonkeyPatch, model: OracleModel) -> None:
    monkeypatch.setattr(evaluate, "open_model", lambda *args, **kwargs: (model, "oracle", "exact depth"))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _independent_seed_eval(model: torch.nn.Module, image: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """The seed's evaluation of one frame written out with cv2, torch and numpy (not our modules)."""
    resized = cv2.resize(image / 255.0, (256, 192), interpolation=cv2.INTER_CUBIC)
    batch = torch.from_numpy(((resized - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        disparity = F.interpolate(model(batch), size=(HEIGHT, WIDTH), mode="bicubic", align_corners=False)
    disparity = disparity[0, 0].double().numpy()
    mask = np.zeros_like(raw, dtype=bool)
    mask[45:471, 41:601] = True
    mask &= (raw > 0) & (raw < 10)
    design = np.stack([disparity[mask], np.ones(mask.sum())], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, 1.0 / raw[mask].astype(np.float64), rcond=None)
    pred = 1.0 / np.maximum(scale * disparity[mask] + shift, 0.1)
    gt = raw[mask].astype(np.float64)
    ratio = np.maximum(pred / gt, gt / pred)
    return {
        "abs_rel": np.mean(np.abs(pred - gt) / gt),
        "sq_rel": np.mean((pred - gt) ** 2 / gt),
        "rmse": np.sqrt(np.mean((pred - gt) ** 2)),
        "rmse_log": np.sqrt(np.mean(np.log(pred / gt) ** 2)),
        "delta1": np.mean(ratio < 1.25),
    }


@pytest.mark.slow  # a real network on 480x640 frames: ~5 s on an idle 2-core machine, more when it is shared
def test_student_through_the_seed_config(
    tmp_path: Path, nyu: tuple[Path, Path], weights: Path, capsys: pytest.CaptureFixture
) -> None:
    data, splits = nyu
    config = tmp_path / "config.yaml"
    config.write_text(
        f"nyu_data_path: {data}\nnyu_split_path: {splits}\nbest_model: {weights}\n"
        "height: 192\nwidth: 256\nbatch_size: 16\nlr: 0.001\ntest_flag: true\n"
    )
    out = tmp_path / "report"
    assert main(["eval", "nyu", "--config", str(config), "--limit", "3", "--batch-size", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "ignoring keys that eval does not use: batch_size, lr, test_flag" in captured.err
    assert "evaluated 3 image(s)" in captured.out and "images/s" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "metrics.json", "per_image.csv", "table.md"]

    table = (out / "table.md").read_text()
    assert table.splitlines()[0] == (
        "| method | input size | training data | AbsRel | SqRel | RMSE log | RMSE | δ1 | δ2 | δ3 |"
    )
    assert "| fastdepth_v3 (student.safetensors) | 256x192 | random init |" in table
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["images"] == {"scored": 3, "skipped": 0, "total": 3}
    assert summary["protocol"]["name"] == "seed" and summary["protocol"]["crop_box"] == [45, 471, 41, 601]

    rows = _read_csv(out / "per_image.csv")
    assert [int(r["nyu_index"]) for r in rows] == [2, 3, 4]  # one-based, the first three test frames
    for name in ("abs_rel", "rmse", "delta1"):
        assert summary["metrics"][name] == pytest.approx(np.mean([float(r[name]) for r in rows]), rel=1e-5)
    # Every digit of the table checked against an independent implementation of the seed's protocol.
    model = load_model(weights)
    expected = [_independent_seed_eval(model, *_scene(k)[::2]) for k in TEST_INDICES[:3]]
    for name in expected[0]:
        assert summary["metrics"][name] == pytest.approx(np.mean([e[name] for e in expected]), rel=1e-4, abs=1e-6)
    assert f"{summary['metrics']['abs_rel']:.3f}" in table

    grid = cv2.imread(str(out / "grid.png"))
    assert grid is not None and grid.shape[0] > 500 and grid.shape[1] > 1000


def test_oracle_is_perfect_on_the_seed_protocol(
    tmp_path: Path, nyu: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_model(monkeypatch, OracleModel())
    data, splits = nyu
    out = tmp_path / "out"
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--weights", "unused", "--out", str(out)]) == 0
    # rawDepths inside rows 45:471, cols 41:601 equal the filled depths: exact up to float64 rounding.
    seed = json.loads((out / "metrics.json").read_text())["metrics"]
    assert seed["abs_rel"] < 1e-6 and seed["rmse"] < 1e-5 and seed["delta1"] == 1.0


def test_repeated_and_shared_split_indices_warn_and_score_each_frame_once(
    tmp_path: Path, nyu: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Frame 3 listed three times would weigh triple in the mean: it is scored once, and eval says so."""
    # Off on frame 3 only (zero-based 2: depth^1.3, not affine in disparity), so its weight shows in the mean.
    _use_model(monkeypatch, OracleModel(depth_of=lambda k: _scene(k)[1] ** (1.3 if k == 2 else 1.0)))
    data, _ = nyu
    splits, clean = tmp_path / "splits.mat", tmp_path / "clean.mat"
    write_splits_mat(splits, train_indices=[0, 1], test_indices=[1, 2, 2, 2, 3])
    write_splits_mat(clean, train_indices=[0], test_indices=[1, 2, 3])
    out, out_clean = tmp_path / "out", tmp_path / "out_clean"
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--weights", "x", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"edgedepth: warning: {splits}: 2 duplicate test indices (e.g. frame 3); each frame counts once" in err
    assert f"edgedepth: warning: {splits}: 1 test index also in the train split (e.g. frame 2)" in err
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(clean), "--weights", "x", "--out", str(out_clean)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert [row["nyu_index"] for row in _read_csv(out / "per_image.csv")] == ["2", "3", "4"]
    metrics, expected = (json.loads((o / "metrics.json").read_text()) for o in (out, out_clean))
    assert metrics["images"] == expected["images"] == {"scored": 3, "skipped": 0, "total": 3}
    assert metrics["metrics"] == expected["metrics"] and metrics["metrics"]["abs_rel"] > 1e-3


@pytest.mark.parametrize(
    ("overrides", "low", "high"),
    [
        ({}, 0.0, 1e-6),  # the seed's protocol, through the job's loop rather than the command
        ({"crop": "eigen"}, 1e-3, 1.0),  # row 44 and column 40 join, where rawDepths disagree by 50 %
        ({"crop": "eigen", "ground_truth": "depths"}, 0.0, 1e-6),  # the filled depths agree everywhere
        ({"crop": "none", "ground_truth": "depths"}, 0.0, 1e-6),
        ({"alignment": "median-depth"}, 1e-3, 1.0),  # one scale cannot undo the oracle's shift in disparity
        ({"alignment": "none"}, 0.3, 10.0),  # 0.3 / d - 0.02 read as metric inverse depth is far off
    ],
)
def test_protocol_variants_on_the_oracle(nyu: tuple[Path, Path], overrides: dict, low: float, high: float) -> None:
    from dataclasses import replace

    from edgedepth.data.nyu import NyuLabeled
    from edgedepth.eval.metrics import mean_metrics

    protocol = replace(evaluate.PROTOCOLS["seed"], **overrides)
    with NyuLabeled(nyu[0]) as labeled:
        results = evaluate.evaluate_frames(OracleModel(), labeled, np.array(TEST_INDICES), protocol, progress=False)
    assert all(r.metrics is not None for r in results)
    assert low <= mean_metrics([r.metrics for r in results])["abs_rel"] < high


def test_broken_predictions_are_skipped_with_warnings(
    tmp_path: Path, nyu: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _use_model(monkeypatch, OracleModel(broken={2: "constant", 3: "nan"}))
    data, splits = nyu
    out = tmp_path / "out"
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--weights", "x", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: frame 3: constant prediction" in captured.err
    assert "warning: frame 4: prediction has 100 non-finite value(s)" in captured.err
    assert "skipped 2" in captured.out
    summary = json.loads((out / "metrics.json").read_text())  # strict JSON: NaN would not parse back as a number
    assert summary["images"] == {"scored": 2, "skipped": 2, "total": 4}
    assert [s["nyu_index"] for s in summary["skipped"]] == [3, 4]
    assert summary["metrics"]["delta1"] == 1.0
    assert "nan" not in (out / "table.md").read_text().lower()
    statuses = {int(r["nyu_index"]): r["status"] for r in _read_csv(out / "per_image.csv")}
    assert statuses == {2: "ok", 3: "skipped", 4: "skipped", 5: "ok"}


def test_nothing_scorable_is_an_error_and_writes_nothing(
    tmp_path: Path, nyu: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _use_model(monkeypatch, OracleModel(broken={k: "constant" for k in range(COUNT)}))
    data, splits = nyu
    out = tmp_path / "out"
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--weights", "x", "--out", str(out)]) == 2
    assert "no frame could be scored (4 skipped" in capsys.readouterr().err
    assert not out.exists()


def _bad_inputs(tmp: Path, data: Path, splits: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp / "text.mat"
    text.write_text("hello")
    truncated = tmp / "truncated.mat"
    truncated.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    no_depths = tmp / "no_depths.mat"
    with h5py.File(no_depths, "w") as handle:
        handle["images"] = np.zeros((1, 3, 8, 6), dtype=np.uint8)
    out_of_range = tmp / "splits_range.mat"
    write_splits_mat(out_of_range, [0], [1, COUNT])  # zero-based COUNT is one past the end
    small, small_splits = tmp / "small.mat", tmp / "small_splits.mat"
    write_labeled_mat(small, np.zeros((2, 48, 64, 3), np.uint8), np.ones((2, 48, 64), np.float32),
                      np.ones((2, 48, 64), np.float32))
    write_splits_mat(small_splits, [0], [1])
    return {
        "missing data": (["--data", str(tmp / "none.mat"), "--splits", str(splits)], "none.mat: no such file"),
        "not HDF5": (["--data", str(text), "--splits", str(splits)], "not a MATLAB v7.3 (HDF5) file"),
        "truncated": (["--data", str(truncated), "--splits", str(splits)], "truncated or corrupt"),
        "no datasets": (["--data", str(no_depths), "--splits", str(splits)], "missing dataset(s) depths, rawDepths"),
        "swapped": (["--data", str(splits), "--splits", str(data)], "were --data and --splits swapped?"),
        "out of range": (["--data", str(data), "--splits", str(out_of_range)], "index 6 out of range (1..5"),
        "missing splits": (["--data", str(data), "--splits", str(tmp / "s.mat")], "s.mat: no such file"),
        "crop vs frame": (["--data", str(small), "--splits", str(small_splits)], "crop seed is defined on the 640x480"),
        "no data flag": (["--splits", str(splits)], "pass --data"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing data", "not HDF5", "truncated", "no datasets", "swapped", "out of range", "missing splits",
     "crop vs frame", "no data flag"],
)
def test_bad_inputs_give_one_line_and_exit_2(
    tmp_path: Path, nyu: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, case: str
) -> None:
    _use_model(monkeypatch, OracleModel())
    flags, message = _bad_inputs(tmp_path, *nyu)[case]
    out = tmp_path / "out"
    assert main(["eval", "nyu", *flags, "--weights", "x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_small_frames_evaluate_without_crop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    data, splits = tmp_path / "small.mat", tmp_path / "splits.mat"
    images = np.zeros((2, 48, 64, 3), np.uint8)  # frame number 0 in pixel (0, 0) for the oracle
    depths = np.broadcast_to(np.linspace(1, 5, 64, dtype=np.float32), (2, 48, 64))
    write_labeled_mat(data, images, depths, depths)
    write_splits_mat(splits, [0], [1])
    _use_model(monkeypatch, OracleModel(depth_of=lambda k: depths[k]))
    out = tmp_path / "out"
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--weights", "x", "--crop", "none",
                 "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"]["abs_rel"] < 1e-6


def test_teacher_and_pickled_weights_are_clear_errors(
    tmp_path: Path, nyu: tuple[Path, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, splits = nyu
    base = ["eval", "nyu", "--data", str(data), "--splits", str(splits), "--out", str(tmp_path / "out")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main([*base, "--teacher", "depth-anything-v2-small"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hub" in err and "unreachable" in err
    assert main([*base, "--teacher", "oracle"]) == 2
    assert "ground truth itself" in capsys.readouterr().err
    checkpoint = tmp_path / "model_0.449.pth"
    torch.save({"weight": torch.zeros(1)}, checkpoint)
    config = tmp_path / "config.yaml"
    config.write_text(f"best_model: {checkpoint}\n")
    assert main([*base, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"convert it first: edgedepth convert {checkpoint}" in err
    assert main([*base]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class _SumNet(torch.nn.Module):
    """A stand-in teacher network: inverse depth = a fixed positive function of the normalised image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x.sum(dim=1, keepdim=True))


@pytest.mark.filterwarnings("ignore:.*TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")  # the same exporter's internals
def test_a_teacher_is_evaluated_like_a_student(
    tmp_path: Path, nyu: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    data, splits = nyu
    model_path = tmp_path / "teacher.onnx"
    torch.onnx.export(_SumNet(), (torch.zeros(1, 3, 96, 128),), str(model_path), opset_version=17, dynamo=False,
                      input_names=["image"], output_names=["inverse_depth"])
    out = tmp_path / "out"
    spec = f"onnx:{model_path}"
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--teacher", spec, "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert 0 < summary["metrics"]["abs_rel"] < 10
    table = (out / "table.md").read_text()
    assert spec in table and "128x96" in table


# ---------------------------------------------------------------------------------------------------------------
# Model-free baselines


def test_ramp_baseline_is_exact_on_a_scene_whose_inverse_depth_is_a_vertical_ramp(tmp_path: Path) -> None:
    y = np.mgrid[0:HEIGHT, 0:WIDTH][0].astype(np.float32)
    depth = 1.0 / (0.12 + 0.8 * y / HEIGHT)  # 1.1 m (bottom) to 8.3 m (top): inverse depth linear in the row
    images = np.zeros((2, HEIGHT, WIDTH, 3), np.uint8)
    data, splits = tmp_path / "ramp.mat", tmp_path / "splits.mat"
    write_labeled_mat(data, images, np.stack([depth, depth]), np.stack([depth, depth]))
    write_splits_mat(splits, train_indices=[0], test_indices=[1])
    summary = evaluate.run(evaluate.EvalConfig(data=data, splits=splits, baseline="ramp", out=tmp_path / "out"))
    assert summary.metrics["abs_rel"] < 1e-6 and summary.metrics["delta1"] == 1.0


def test_constant_baseline_is_the_ground_truth_median(nyu: tuple[Path, Path], tmp_path: Path) -> None:
    from edgedepth.data.nyu import NYU_CROPS
    from edgedepth.eval.metrics import valid_mask

    data, splits = nyu
    summary = evaluate.run(evaluate.EvalConfig(data=data, splits=splits, baseline="constant", out=tmp_path / "c"))
    expected = []
    for k in TEST_INDICES:
        _, _, raw = _scene(k)
        mask = valid_mask(raw, 0.0, 10.0, NYU_CROPS["seed"])
        truth = raw[mask].astype(np.float64)
        expected.append(np.mean(np.abs(np.median(truth) - truth) / truth))
    assert summary.metrics["abs_rel"] == pytest.approx(np.mean(expected), rel=1e-9)
    table = (tmp_path / "c" / "table.md").read_text()
    assert "constant depth, the ground truth's median (oracle)" in table and "| - |" in table


def test_ramp_baseline_from_the_command_line(nyu: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data, splits = nyu
    assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--baseline", "ramp",
                 "--out", str(tmp_path / "r")]) == 0  # fmt: skip
    assert "vertical ramp (no image input)" in capsys.readouterr().out
