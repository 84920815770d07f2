"""``edgedepth eval zeroshot``: every set's crop and mask, each protocol's alignment by hand, models and saved
predictions alike, the round trip through Marigold's layout, bad samples skipped and counted."""

from __future__ import annotations

import csv
import io
import json
import math
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from zeroshot_sets import DIODE_NEAR_PATCH, VALID_PIXELS, entries, image, oracle_depth, write_oracle, write_set

from edgedepth.cli import main
from edgedepth.core.errors import EdgedepthError
from edgedepth.data.marigold import EVAL_SETS, EvalSetWriter, SampleEntry
from edgedepth.eval import nyu as evaluate
from edgedepth.eval import report, zeroshot
from edgedepth.models import create_model, save_weights

COUNT = 2
SETS = tuple(EVAL_SETS)
#: The real picture grid (matplotlib: most of a run's time here); only the command-line test draws it.
PICTURE_GRID = report.picture_grid


@pytest.fixture(autouse=True)
def _no_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "picture_grid", lambda rows, top: b"PNG")


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory, randomize_batchnorm: Callable[..., torch.nn.Module]) -> Path:
    """A student that builds in milliseconds (timm's test EfficientNet under our decoder), image-dependent output."""
    torch.manual_seed(0)
    return save_weights(randomize_batchnorm(create_model("fastdepth_test_efficientnet"), 0),
                        tmp_path_factory.mktemp("student") / "student.safetensors")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Marigold's base data folder with two samples of each set."""
    folder = tmp_path_factory.mktemp("data")
    for name in SETS:
        write_set(folder, name, COUNT)
    return folder


@pytest.fixture(scope="module")
def oracles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of predictions exact up to scale and shift, in disparity and in depth."""
    folders = {}
    for kind in ("disparity", "depth"):
        folders[kind] = tmp_path_factory.mktemp(f"oracle_{kind}")
        for name in SETS:
            write_oracle(folders[kind], name, COUNT, kind)
    return folders


def _run(root: Path, out: Path, **fields: object) -> dict:
    fields.setdefault("limit", COUNT)
    zeroshot.run(zeroshot.ZeroShotConfig(data_root=root, out=out, progress=False, **fields))  # type: ignore[arg-type]
    return json.loads((out / "metrics.json").read_text())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("protocol", ["marigold", "zipdepth"])
@pytest.mark.parametrize("kind", ["disparity", "depth"])
def test_oracle_predictions_score_zero_where_the_protocol_does_not_clip(
    root: Path, oracles: dict[str, Path], tmp_path: Path, protocol: str, kind: str
) -> None:
    summary = _run(root, tmp_path / "out", predictions=(oracles[kind],), prediction_kind=kind, protocol=protocol)
    assert summary["rows"][0]["alignment"] == {"disparity": "least_square_disparity", "depth": "least_square"}[kind]
    per_image = _rows(tmp_path / "out" / "per_image.csv")
    for name in SETS:
        result = next(iter(summary["datasets"][name]["results"].values()))
        assert (result["scored"], result["skipped"]) == (COUNT, 0), (name, result)
        # each set's crop, mask and range, counted by hand (see zeroshot_sets.VALID_PIXELS)
        pixels = {int(row["valid_pixels"]) for row in per_image if row["dataset"] == name}
        assert pixels == {VALID_PIXELS[protocol][name]}, name
        metrics = result["metrics"]
        if name == "diode" and protocol == "marigold":
            continue  # below: its mask is the mask file alone, and the range clips the 0.5 m patch
        assert metrics["abs_rel"] < 1e-6 and metrics["rmse"] < 1e-4 and metrics["silog_rmse"] < 1e-3, (name, metrics)
        assert metrics["delta1"] == 1.0


def test_marigold_scores_diodes_mask_file_alone_and_clips_to_its_range(root: Path, oracles: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """Inside DIODE's mask, Marigold scores a 0.5 m patch (below its 0.6 m minimum) with the prediction clipped at
    0.6 m: 20 of the 2688 valid pixels are off by 0.1 m, the rest exact."""
    summary = _run(root, tmp_path / "out", predictions=(oracles["disparity"],), prediction_kind="disparity",
                   datasets=("diode",))
    metrics = summary["datasets"]["diode"]["results"][oracles["disparity"].name]["metrics"]
    patch = (DIODE_NEAR_PATCH[0].stop - DIODE_NEAR_PATCH[0].start) * (DIODE_NEAR_PATCH[1].stop - DIODE_NEAR_PATCH[1].start)
    valid = VALID_PIXELS["marigold"]["diode"]
    share = patch / valid  # 20 / 2688
    log_ratio = math.log(0.6 / 0.5)
    expected = {
        "abs_rel": share * 0.1 / 0.5, "sq_rel": share * 0.01 / 0.5, "rmse": math.sqrt(share * 0.01),
        "rmse_log": math.sqrt(share) * log_ratio, "log10": share * log_ratio / math.log(10), "delta1": 1.0,
        "i_rmse": math.sqrt(share) * (1 / 0.5 - 1 / 0.6),
        "silog_rmse": 100 * math.sqrt(share * log_ratio**2 - (share * log_ratio) ** 2),
    }
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-9, abs=2e-7), name  # float32 maps: a few ulps each


def _one_sample_set(folder: Path, depth_mm: np.ndarray, prediction: np.ndarray) -> tuple[Path, Path, Path]:
    """A ScanNet-layout tar of one frame, its list, and a predictions folder for it."""
    entry = SampleEntry(1, "scene0000_00/color/000000.jpg", "scene0000_00/depth/000000.png")
    tar, split = folder / "scannet.tar", folder / "list.txt"
    with EvalSetWriter(tar, EVAL_SETS["scannet"]) as writer:
        writer.add_member(entry.rgb, cv2.imencode(".jpg", np.zeros((*depth_mm.shape, 3), np.uint8))[1].tobytes())
        writer.add_member(entry.depth, cv2.imencode(".png", depth_mm.astype(np.uint16))[1].tobytes())
    split.write_text(f"{entry.rgb} {entry.depth}\n")
    predictions = folder / "predictions"
    (predictions / "scannet" / "scene0000_00" / "color").mkdir(parents=True)
    np.save(predictions / "scannet" / "scene0000_00" / "color" / "pred_000000.npy", prediction)
    return tar, split, predictions


@pytest.mark.parametrize("kind", ["disparity", "depth"])
def test_alignment_and_metrics_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    """Three pixels: depth 1, 0.5, 0.5 m, prediction 1, 2, 3.

    disparity: 1 / depth = 1, 2, 2 against 1, 2, 3: centred, cov = 1, var = 2, so scale 1/2, shift 5/3 - 1 = 2/3;
    aligned disparity 7/6, 5/3, 13/6, depth 6/7, 3/5, 6/13. depth: depth against 1, 2, 3: cov = -1/2, var = 2, so
    scale -1/4, shift 2/3 + 1/2 = 7/6; aligned depth 11/12, 2/3, 5/12.
    """
    tar, split, predictions = _one_sample_set(tmp_path, np.array([[1000, 500, 500]]), np.array([[1.0, 2.0, 3.0]]))
    summary = _run(None, tmp_path / "out", predictions=(predictions,), prediction_kind=kind, datasets=("scannet",),  # type: ignore[arg-type]
                   archives={"scannet": tar}, split_files={"scannet": split})
    metrics = summary["datasets"]["scannet"]["results"]["predictions"]["metrics"]
    gt = [1.0, 0.5, 0.5]
    pred = [6 / 7, 3 / 5, 6 / 13] if kind == "disparity" else [11 / 12, 2 / 3, 5 / 12]
    logs = [math.log(p / g) for p, g in zip(pred, gt)]
    ratios = [max(p / g, g / p) for p, g in zip(pred, gt)]
    expected = {
        "abs_rel": sum(abs(p - g) / g for p, g in zip(pred, gt)) / 3,
        "sq_rel": sum((p - g) ** 2 / g for p, g in zip(pred, gt)) / 3,
        "rmse": math.sqrt(sum((p - g) ** 2 for p, g in zip(pred, gt)) / 3),
        "rmse_log": math.sqrt(sum(v * v for v in logs) / 3),
        "delta1": sum(r < 1.25 for r in ratios) / 3,
        "delta2": sum(r < 1.25**2 for r in ratios) / 3,
        "i_rmse": math.sqrt(sum((1 / p - 1 / g) ** 2 for p, g in zip(pred, gt)) / 3),
        "silog_rmse": 100 * math.sqrt(sum(v * v for v in logs) / 3 - (sum(logs) / 3) ** 2),
    }
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    if kind == "disparity":  # ratios 7/6, 6/5, 13/12: all below 1.25
        assert expected["delta1"] == 1.0
    else:  # ratios 12/11, 4/3, 6/5
        assert expected["delta1"] == pytest.approx(2 / 3)
    # ZipDepth's evaluator scores no frame with fewer than 10 valid pixels: nothing left, so nothing is written
    with pytest.raises(EdgedepthError, match="no sample could be scored"):
        _run(None, tmp_path / "zip", predictions=(predictions,), prediction_kind=kind, datasets=("scannet",),  # type: ignore[arg-type]
             archives={"scannet": tar}, split_files={"scannet": split}, protocol="zipdepth")
    assert f"{tar}:scene0000_00/color/000000.jpg: 3 valid ground-truth pixel(s), fewer than 10" in capsys.readouterr().err
    assert not (tmp_path / "zip").exists()


def test_disparity_alignment_ignores_non_positive_predictions_and_clips_far_disparity(tmp_path: Path) -> None:
    """Marigold fits disparity only where the prediction is positive; an aligned disparity below 1e-3 becomes 1000 m,
    clipped to the set's 10 m. Depth 1, 0.5, 0.5, 2 m against 1, 2, 3, -5: the fit is that of the test above, and
    the fourth pixel's aligned disparity -5/2 + 2/3 < 0 gives 10 m against 2 m."""
    tar, split, predictions = _one_sample_set(tmp_path, np.array([[1000, 500, 500, 2000]]),
                                              np.array([[1.0, 2.0, 3.0, -5.0]]))
    summary = _run(None, tmp_path / "out", predictions=(predictions,), prediction_kind="disparity",  # type: ignore[arg-type]
                   datasets=("scannet",), archives={"scannet": tar}, split_files={"scannet": split})
    metrics = summary["datasets"]["scannet"]["results"]["predictions"]["metrics"]
    gt, pred = [1.0, 0.5, 0.5, 2.0], [6 / 7, 3 / 5, 6 / 13, 10.0]
    assert metrics["abs_rel"] == pytest.approx(sum(abs(p - g) / g for p, g in zip(pred, gt)) / 4, rel=1e-12)


def test_eth3d_fit_on_marigolds_column_subsample(root: Path, tmp_path: Path) -> None:
    """``--alignment-max-res 16`` on 64 x 48 frames: Marigold's 1-D nearest subsampling keeps all 48 rows and columns
    0, 4, ..., 60 (factor min(16/48, 16/64) = 1/4, width 16); the fit is np.linalg.lstsq on those pixels, as
    Marigold solves it, and the metrics use every valid pixel."""
    name, evalset = "eth3d", EVAL_SETS["eth3d"]
    rng = np.random.default_rng(3)
    folder = tmp_path / "noisy"
    for index, entry in enumerate(entries(name, COUNT)):
        prediction = (0.3 / oracle_depth(name, index) + 0.002) * rng.uniform(0.8, 1.2, (48, 64))
        path = folder / name / evalset.prediction_path(entry.rgb)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, prediction.astype(np.float32))
    summary = _run(root, tmp_path / "out", predictions=(folder,), prediction_kind="disparity", datasets=(name,),
                   alignment_max_res=16)
    expected = []
    for index, entry in enumerate(entries(name, COUNT)):
        prediction = np.load(folder / name / evalset.prediction_path(entry.rgb)).astype(np.float64)
        depth = oracle_depth(name, index).astype(np.float32).astype(np.float64)
        depth[:, :10] = 0.0  # ETH3D's inf: not valid
        valid = depth > 1e-5
        fit = valid[:, ::4] & (prediction[:, ::4] > 0)
        design = np.stack([prediction[:, ::4][fit], np.ones(fit.sum())], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, 1.0 / depth[:, ::4][fit], rcond=None)
        aligned = 1.0 / np.maximum(scale * prediction[valid] + shift, 1e-3)
        expected.append(np.mean(np.abs(aligned - depth[valid]) / depth[valid]))
    metrics = summary["datasets"][name]["results"]["noisy"]["metrics"]
    assert metrics["abs_rel"] == pytest.approx(np.mean(expected), rel=1e-9)
    full = _run(root, tmp_path / "full", predictions=(folder,), prediction_kind="disparity", datasets=(name,),
                alignment_max_res=0)
    assert full["datasets"][name]["results"]["noisy"]["metrics"]["abs_rel"] != pytest.approx(metrics["abs_rel"])
    assert full["datasets"][name]["alignment_max_res"] is None and summary["datasets"][name]["alignment_max_res"] == 16


class Probe:
    """A model that records the images it is given and answers a ramp (rising to the right) at their size."""

    name = "probe"
    size = (64, 48)

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def predict_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.shapes += [image.shape for image in images]
        height, width = images[0].shape[:2]
        ramp = np.linspace(0.1, 1.0, width, dtype=np.float32)[None, :]
        return np.ascontiguousarray(np.broadcast_to(ramp, (len(images), 1, height, width)))


@pytest.mark.parametrize(("protocol", "seen"), [("marigold", (352, 1216, 3)), ("zipdepth", (375, 1242, 3))])
def test_kitti_is_cropped_before_inference_for_marigold_after_it_for_zipdepth(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str, seen: tuple[int, ...]
) -> None:
    probe = Probe()
    monkeypatch.setattr(zeroshot, "open_model", lambda **kwargs: (probe, "probe", "none"))
    saved = tmp_path / "saved"
    _run(root, tmp_path / "out", weights=(Path("probe.safetensors"),), datasets=("kitti",), protocol=protocol,
         save_predictions=saved)
    assert len(probe.shapes) >= COUNT and set(probe.shapes) == {seen}  # the grid predicts its samples again
    for entry in entries("kitti", COUNT):  # saved at the ground truth's size: the benchmark crop
        prediction = np.load(saved / "probe" / "kitti" / EVAL_SETS["kitti"].prediction_path(entry.rgb))
        assert prediction.shape == (352, 1216) and prediction.dtype == np.float32
    if protocol == "zipdepth":  # the ramp over 1242 columns, cropped at column 13
        np.testing.assert_allclose(prediction[0, :3], np.linspace(0.1, 1.0, 1242)[13:16], rtol=1e-6)


def test_saved_predictions_score_back_to_the_same_table(root: Path, tmp_path: Path, student: Path) -> None:
    """``--save-predictions`` then ``--predictions``: the same numbers, and a folder Marigold's eval.py can read."""
    saved = tmp_path / "saved"
    first = _run(root, tmp_path / "first", weights=(student,), baselines=("ramp",), save_predictions=saved,
                 size=(64, 64))
    assert sorted(p.name for p in saved.iterdir()) == ["ramp", "student"]
    info = json.loads((saved / "student" / zeroshot.PREDICTIONS_INFO).read_text())
    assert info["kind"] == "disparity" and info["method"] == "fastdepth_test_efficientnet (student.safetensors)"
    assert (saved / "student" / "nyu" / "test" / "kitchen_0004" / "pred_0001.npy").is_file()
    again = _run(root, tmp_path / "again", predictions=(saved / "student", saved / "ramp"))
    for name in SETS:
        before = list(first["datasets"][name]["results"].values())
        after = list(again["datasets"][name]["results"].values())
        assert [r["metrics"] for r in before] == [r["metrics"] for r in after], name  # exactly: the same float32 maps
    table = (tmp_path / "again" / "table.md").read_text().splitlines()
    assert table[2].startswith("| fastdepth_test_efficientnet (student.safetensors) | least_square_disparity |")
    assert [line.split("|")[3:] for line in table[2:4]] == [
        line.split("|")[3:] for line in (tmp_path / "first" / "table.md").read_text().splitlines()[2:4]]


def test_bad_samples_are_skipped_with_a_warning_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Of 14 listed NYU samples the tar holds 3, one of them with a corrupt depth PNG: 2 are scored; the first 10
    skipped are named in a warning each and the other 2 counted in one line; all 12 are in metrics.json."""
    evalset = EVAL_SETS["nyu"]
    chosen = entries("nyu", 14)
    tar = tmp_path / "nyu.tar"
    with EvalSetWriter(tar, evalset) as writer:
        for index in (0, 5):
            depth = oracle_depth("nyu", index)
            writer.add(chosen[index], image("nyu", index), depth)
        writer.add_member(chosen[9].rgb, cv2.imencode(".png", image("nyu", 9))[1].tobytes())
        writer.add_member(chosen[9].depth, b"\x89PNG\r\n\x1a\n cut short")
    out = tmp_path / "out"
    assert main(["eval", "zeroshot", "--tar", f"nyu={tar}", "--datasets", "nyu", "--baseline", "ramp",
                 "--out", str(out), "--limit", "14"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("edgedepth: warning: ")]
    assert len(warnings) == 11 and "2 more skipped sample(s) not shown" in warnings[-1]
    assert f"{tar}:{chosen[1].rgb}: not in the tar; skipped" in warnings[0]
    assert any(f"{tar}:{chosen[9].depth}: unreadable depth PNG; skipped" in line for line in warnings)
    assert "skipped 12 (see warnings)" in captured.out
    result = json.loads((out / "metrics.json").read_text())["datasets"]["nyu"]["results"]
    ramp = result["vertical ramp (no image input)"]
    assert (ramp["scored"], ramp["skipped"], len(ramp["skipped_samples"])) == (2, 12, 12)


def test_a_truncated_tar_scores_the_samples_before_the_cut(root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    evalset = EVAL_SETS["scannet"]
    cut = tmp_path / "scannet.tar"
    data = (root / evalset.archive).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        last = archive.getmembers()[-1]
    cut.write_bytes(data[: last.offset_data + last.size // 2])
    out = tmp_path / "out"
    assert main(["eval", "zeroshot", "--tar", f"scannet={cut}", "--datasets", "scannet", "--baseline", "ramp", "--out", str(out),
                 "--limit", "2"]) == 0
    err = capsys.readouterr().err
    assert f"{cut}:{entries('scannet', 2)[1].depth}: cut short (truncated tar); skipped" in err
    ramp = json.loads((out / "metrics.json").read_text())["datasets"]["scannet"]["results"]
    assert next(iter(ramp.values()))["scored"] == 1


def test_the_command_line_writes_one_table_and_a_report_per_set(
    root: Path, tmp_path: Path, student: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_bad_input import _onnx_model

    monkeypatch.setattr(report, "picture_grid", PICTURE_GRID)
    teacher = _onnx_model(tmp_path / "teacher.onnx")
    out = tmp_path / "report"
    assert main(["eval", "zeroshot", "--data-root", str(root), "--weights", str(student),
                 "--teacher", f"onnx:{teacher}", "--baseline", "ramp", "--limit", "1", "--size", "64x64",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["diode/grid.png", "diode/table.md", "eth3d/grid.png", "eth3d/table.md", "kitti/grid.png",
                     "kitti/table.md", "metrics.json", "nyu/grid.png", "nyu/table.md", "per_image.csv",
                     "scannet/grid.png", "scannet/table.md", "table.md"]
    table = (out / "table.md").read_text()
    assert table.splitlines()[0] == (
        "| method | alignment | NYUv2 AbsRel | NYUv2 δ1 | KITTI AbsRel | KITTI δ1 | ETH3D AbsRel | ETH3D δ1 | "
        "ScanNet AbsRel | ScanNet δ1 | DIODE AbsRel | DIODE δ1 |")
    assert len(table.split("\n\n")[0].splitlines()) == 5  # header, rule, three rows
    assert captured.out.startswith(table) and "zero-shot suite: 15 sample score(s)" in captured.out, captured.err
    assert "warning" not in captured.err
    per_set = (out / "kitti" / "table.md").read_text()
    assert "| method | alignment | scored | skipped | AbsRel |" in per_set and "i_rmse | silog_rmse |" in per_set
    grid = cv2.imread(str(out / "eth3d" / "grid.png"))
    assert grid is not None and grid.shape[0] > 300


def test_the_seed_mat_protocol_as_a_sixth_column(root: Path, tmp_path: Path) -> None:
    from edgedepth.data.nyu import write_labeled_mat, write_splits_mat

    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 5, (2, 480, 640)).astype(np.float32)
    data, splits = tmp_path / "nyu.mat", tmp_path / "splits.mat"
    write_labeled_mat(data, np.zeros((2, 480, 640, 3), np.uint8), depth, depth)
    write_splits_mat(splits, [0], [1])
    _run(root, tmp_path / "suite", baselines=("ramp",), datasets=("scannet",), nyu_mat=data, nyu_splits=splits)
    seed = evaluate.run(evaluate.EvalConfig(data=data, splits=splits, baseline="ramp", out=tmp_path / "seed"))
    header, _, row = (tmp_path / "suite" / "table.md").read_text().splitlines()[:3]
    assert header.endswith("| NYU .mat (seed) AbsRel | NYU .mat (seed) δ1 |")
    assert row.endswith(f"| {seed.metrics['abs_rel']:.3f} | {seed.metrics['delta1']:.3f} |")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--datasets", "nyu,mars"], "unknown evaluation set 'mars'"),
        (["--protocol", "seed"], "unknown zero-shot protocol 'seed'; use one of marigold, zipdepth"),
        (["--prediction-kind", "depth"], "--prediction-kind says what --predictions folders hold"),
        (["--tar", "x.tar"], "--tar x.tar: say which set it is for, e.g. --tar nyu=x.tar"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--data", "nyu.mat"], "the NYU .mat column needs both --data"),
    ],
)
def test_flags_the_suite_refuses(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                 message: str) -> None:
    out = tmp_path / "out"
    assert main(["eval", "zeroshot", "--data-root", str(root), "--baseline", "ramp", "--out", str(out),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_several_models_need_the_suite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "nyu", "--data", "a.mat", "--splits", "s.mat", "--weights", "a.onnx", "b.onnx"]) == 2
    assert "pass one (eval zeroshot takes several)" in capsys.readouterr().err


@pytest.mark.parametrize(("old", "new"), [
    (["eval", "--data", "a.mat", "--splits", "s.mat", "--baseline", "ramp"],
     "edgedepth eval nyu --data a.mat --splits s.mat --baseline ramp"),
    (["eval", "--suite", "zero-shot", "--data-root", "d", "--weights", "w.onnx"],
     "edgedepth eval zeroshot --data-root d --weights w.onnx"),
    (["eval", "--tar", "nyu=t.tar", "--baseline", "ramp"], "edgedepth eval zeroshot --tar nyu=t.tar --baseline ramp"),
])
def test_the_old_eval_spelling_names_the_new_command(old: list[str], new: str, capsys: pytest.CaptureFixture) -> None:
    assert main(old) == 2
    err = capsys.readouterr().err
    assert err == f"edgedepth: error: edgedepth eval takes the benchmark first: {new}\n"


def test_a_set_missing_from_the_data_root_is_an_error_before_any_work(root: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    partial = tmp_path / "partial"
    write_set(partial, "nyu", 1)
    out = tmp_path / "out"
    assert main(["eval", "zeroshot", "--data-root", str(partial), "--baseline", "ramp",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{partial / 'kitti' / 'kitti_eigen_split_test.tar'}: no such file" in err
    assert "leave kitti out of --datasets or pass --tar kitti=PATH" in err and not out.exists()
    unpacked = partial / "nyuv2" / "nyu_labeled_extracted"  # the same layout unpacked is found too
    with tarfile.open(partial / "nyuv2" / "nyu_labeled_extracted.tar") as archive:
        archive.extractall(unpacked, filter="data")
    (partial / "nyuv2" / "nyu_labeled_extracted.tar").unlink()
    assert main(["eval", "zeroshot", "--data-root", str(partial), "--datasets", "nyu", "--baseline", "ramp", "--limit", "1",
                 "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["datasets"]["nyu"]["source"] == str(unpacked)


@pytest.mark.slow  # a 6048 x 4032 ETH3D frame: ~100 MB of depth written, read and scored (a few seconds)
def test_a_full_size_eth3d_frame_is_scored_in_bounded_memory(tmp_path: Path) -> None:
    """The fit and the metrics of ETH3D's 24-megapixel frames run on a million pixels at a time: scoring one frame
    allocates a few frame-sized arrays, not the dozen float64 copies a vectorised evaluation would."""
    import tracemalloc

    evalset = EVAL_SETS["eth3d"]
    entry = entries("eth3d", 1)[0]
    height, width = 4032, 6048
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 1.0 + 20.0 * y / height + 5.0 * x / width
    depth[:, :600] = 0.0  # inf in the file
    with EvalSetWriter(tmp_path / evalset.archive, evalset) as writer:
        writer.add(entry, np.zeros((height, width, 3), np.uint8), depth)
    predictions = tmp_path / "predictions" / "eth3d" / evalset.prediction_path(entry.rgb)
    predictions.parent.mkdir(parents=True)
    np.save(predictions, (1.0 / (depth + 1.0)).astype(np.float32))
    del x, y, depth
    tracemalloc.start()
    summary = _run(tmp_path, tmp_path / "out", predictions=(tmp_path / "predictions",), prediction_kind="disparity",
                   datasets=("eth3d",), limit=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert next(iter(summary["datasets"]["eth3d"]["results"].values()))["scored"] == 1
    frame = height * width * 4  # one float32 map: 97.5 MB
    assert peak < 8 * frame, f"peak {peak / 1e6:.0f} MB"
