"""LiteRT: ``export --format litert`` (through litert-torch) and the XNNPACK runtime, against PyTorch on the same batch."""

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
from edgedepth.export.graph import export_model
from edgedepth.models import create_model, prepare_for_inference, save_weights
from edgedepth.runtime.litert import LiteRtPredictor
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
    path = tmp_path_factory.mktemp("litert") / "student.tflite"
    export_model(student, path, "litert", SIZE)
    return path


def scene_batch(model: nn.Module) -> np.ndarray:
    images = [render_scene(40 + k, (320, 240)).image for k in range(2)]
    return np.concatenate([preprocess([image], SIZE, model.card.mean, model.card.std) for image in images])


def test_an_fp32_export_computes_what_pytorch_computes(student: nn.Module, exported: Path) -> None:
    """Two files: the graph and the card LiteRT files keep beside them; the same numbers as eager PyTorch within
    1e-4 of the output's peak on real-looking scenes (measured: under 1e-6)."""
    assert sorted(p.name for p in exported.parent.iterdir()) == ["student.json", "student.tflite"]
    predictor = load_predictor(exported, threads=1)
    assert isinstance(predictor, LiteRtPredictor) and predictor.export.runtime == "litert"
    assert predictor.card.name == "fastdepth_v3" and predictor.size == SIZE and predictor.fit == "letterbox"
    batch = scene_batch(student)
    with torch.no_grad():
        expected = prepare_for_inference(student, copy=True)(torch.from_numpy(batch)).numpy()
    actual = predictor.infer(batch)
    assert actual.shape == expected.shape == (2, 1, 192, 256)
    assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()


def test_predict_and_bench_take_a_litert_file(exported: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "room.png"
    from edgedepth.core.imageio import write_png

    write_png(image, render_scene(7, (200, 150)).image)
    assert main(["predict", str(image), "--weights", str(exported), "--out", str(tmp_path / "out"), "--npy"]) == 0
    assert np.load(tmp_path / "out" / "room.npy").shape == (150, 200)
    capsys.readouterr()
    assert main(["bench", "--files", str(exported), "--threads", "1", "--runs", "2", "--warmup", "0", "--out",
                 str(tmp_path / "bench")]) == 0
    assert "| fastdepth_v3 | litert | 1 |" in capsys.readouterr().out


def test_the_cli_exports_litert_and_refuses_int8(student: nn.Module, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.safetensors"
    save_weights(student, weights)
    out = tmp_path / "cli.tflite"
    assert main(["export", "--weights", str(weights), "--format", "litert", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("exported ") and "(litert, fp32; max |diff| vs PyTorch" in printed, printed
    assert json.loads(out.with_suffix(".json").read_text())["format"] == "edgedepth.export/1"
    assert main(["export", "--weights", str(weights), "--format", "litert", "--out", str(tmp_path / "q.tflite"),
                 "--int8", "--calib", str(tmp_path)]) == 2
    assert "not litert: LiteRT INT8" in capsys.readouterr().err
    assert not (tmp_path / "q.tflite").exists()


def test_an_incomplete_export_is_one_line(exported: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.tflite"
    lonely.write_bytes(exported.read_bytes())
    with pytest.raises(EdgedepthError, match=r"edgedepth metadata \(\.json\) lonely\.json is missing"):
        load_predictor(lonely)
    lonely.with_suffix(".json").write_text("{")
    with pytest.raises(EdgedepthError, match="corrupt edgedepth metadata"):
        load_predictor(lonely)


@pytest.mark.slow
def test_a_network_the_converter_cannot_take_is_one_line(tmp_path: Path) -> None:
    """litert-torch fails on ZipDepth's global-context block: its error becomes one line, and nothing is written."""
    model = create_model("zipdepth_base", card={"input_size": SIZE}).eval()
    with pytest.raises(EdgedepthError, match=r"^LiteRT's converter \(litert-torch\) cannot convert this network \("):
        export_model(model, tmp_path / "zip.tflite", "litert")
    assert list(tmp_path.iterdir()) == []
