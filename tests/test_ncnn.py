"""ncnn: ``export --format ncnn`` (through pnnx) and the ncnn runtime, against PyTorch on the same batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgedepth.cli import main
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import preprocess
from edgedepth.data.synthetic import render_scene
from edgedepth.export.graph import export_model, pearson_correlation
from edgedepth.models import create_model, prepare_for_inference, save_weights
from edgedepth.runtime.ncnn import NcnnPredictor
from edgedepth.runtime.predictor import load_predictor

SIZE = (256, 192)


@pytest.fixture(scope="module")
def student() -> nn.Module:
    """``fastdepth_v3`` with perturbed BatchNorm statistics, so that its output depends on the image."""
    torch.manual_seed(5)
    model = create_model("fastdepth_v3").eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def exported(student: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ncnn") / "student.param"
    export_model(student, path, "ncnn", SIZE)
    return path


def scene_batch(model: nn.Module) -> np.ndarray:
    images = [render_scene(40 + k, (320, 240)).image for k in range(2)]
    return np.concatenate([preprocess([image], SIZE, model.card.mean, model.card.std) for image in images])


def test_an_fp32_export_computes_what_pytorch_computes(student: nn.Module, exported: Path) -> None:
    """Three files: the graph, its weights, and the card ncnn has no place for; the same numbers as eager PyTorch
    within the export's FP32 bar, 1e-3 of the output's peak, on real-looking scenes. Measured 3.4e-4 (ONNX Runtime:
    under 1e-5): a small uniform offset that ncnn's Winograd, SGEMM and packed layouts do not cause (all off: the
    same), so ncnn's FP32 is not held to the 1e-4 the ONNX files meet."""
    assert sorted(p.name for p in exported.parent.iterdir()) == ["student.bin", "student.json", "student.param"]
    predictor = load_predictor(exported, threads=1)
    assert isinstance(predictor, NcnnPredictor) and predictor.export.runtime == "ncnn"
    assert predictor.card.name == "fastdepth_v3" and predictor.size == SIZE and predictor.fit == "letterbox"
    batch = scene_batch(student)
    with torch.no_grad():
        expected = prepare_for_inference(student, copy=True)(torch.from_numpy(batch)).numpy()
    actual = predictor.infer(batch)
    assert actual.shape == expected.shape == (2, 1, 192, 256)
    assert np.abs(actual - expected).max() <= 1e-3 * np.abs(expected).max()
    assert pearson_correlation(actual, expected) > 0.9999


def test_fp16_runs_the_same_file_in_reduced_precision(student: nn.Module, exported: Path) -> None:
    batch = scene_batch(student)
    fp32 = load_predictor(exported, threads=1).infer(batch)
    fp16 = load_predictor(exported, threads=1, runtime="ncnn-fp16").infer(batch)
    assert pearson_correlation(fp16, fp32) > 0.99


def test_predict_and_bench_take_an_ncnn_file(exported: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "room.png"
    from edgedepth.core.imageio import write_png

    write_png(image, render_scene(7, (200, 150)).image)
    assert main(["predict", str(image), "--weights", str(exported), "--out", str(tmp_path / "out"), "--npy"]) == 0
    assert np.load(tmp_path / "out" / "room.npy").shape == (150, 200)
    capsys.readouterr()
    assert main(["bench", "--files", str(exported), "--threads", "1", "--runs", "2", "--warmup", "0", "--out",
                 str(tmp_path / "bench")]) == 0
    assert "| fastdepth_v3 | ncnn | 1 |" in capsys.readouterr().out


def test_the_cli_exports_ncnn_and_refuses_int8(student: nn.Module, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.safetensors"
    save_weights(student, weights)
    out = tmp_path / "cli.param"
    assert main(["export", "--weights", str(weights), "--format", "ncnn", "--out", str(out)]) == 0
    assert "(ncnn, fp32; max |diff| vs PyTorch" in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["format"] == "edgedepth.export/1"
    assert main(["export", "--weights", str(weights), "--format", "ncnn", "--out", str(tmp_path / "q.param"),
                 "--int8", "--calib", str(tmp_path)]) == 2
    assert "not ncnn: ncnn's own INT8 tools" in capsys.readouterr().err
    assert not (tmp_path / "q.param").exists()


def test_an_incomplete_export_is_one_line(exported: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.param"
    lonely.write_bytes(exported.read_bytes())
    with pytest.raises(EdgedepthError, match=r"its ncnn weights \(\.bin\) lonely\.bin is missing beside it"):
        load_predictor(lonely)
    lonely.with_suffix(".bin").write_bytes(exported.with_suffix(".bin").read_bytes())
    with pytest.raises(EdgedepthError, match=r"edgedepth metadata \(\.json\) lonely\.json is missing"):
        load_predictor(lonely)
    lonely.with_suffix(".json").write_text("{")
    with pytest.raises(EdgedepthError, match="corrupt edgedepth metadata"):
        load_predictor(lonely)


@pytest.mark.slow
def test_a_network_pnnx_does_not_keep_is_refused_in_one_line(tmp_path: Path) -> None:
    """ZipDepth's convex upsampling (an unfold) comes out of pnnx as a two-channel output: the export's own check
    runs the file and refuses it; nothing is written."""
    model = create_model("zipdepth_base", card={"input_size": SIZE}).eval()
    with pytest.raises(EdgedepthError, match=r"^ncnn export: ncnn's output is \[2, 192, 256\], not one depth map"):
        export_model(model, tmp_path / "zip.param", "ncnn")
    assert list(tmp_path.iterdir()) == []
