"""The formats ARM boards run, ncnn (through pnnx) and LiteRT (through litert-torch): ``export --format`` and their
runtimes against PyTorch on the same batch, each format through the same tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgedepth.cli import main
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import write_png
from edgedepth.core.processing import preprocess
from edgedepth.data.synthetic import render_scene
from edgedepth.export.graph import export_model, pearson_correlation
from edgedepth.models import create_model, prepare_for_inference, save_weights
from edgedepth.runtime.litert import LiteRtPredictor
from edgedepth.runtime.ncnn import NcnnPredictor
from edgedepth.runtime.predictor import Predictor, load_predictor

SIZE = (256, 192)


@dataclass(frozen=True)
class Format:
    """What differs between the formats: the file names, the Predictor, how close FP32 must be to PyTorch (relative
    to the output's peak), and why INT8 is refused."""

    suffix: str
    files: tuple[str, ...]
    predictor: type[Predictor]
    fp32_bar: float
    no_int8: str


FORMATS = {
    # ncnn: the export's own FP32 bar. Measured 3.4e-4 (ONNX Runtime: under 1e-5): a small uniform offset that ncnn's
    # Winograd, SGEMM and packed layouts do not cause (all off: the same), so ncnn is not held to 1e-4.
    "ncnn": Format(".param", ("student.bin", "student.json", "student.param"), NcnnPredictor, 1e-3,
                   "not ncnn: ncnn's own INT8 tools"),
    # LiteRT: measured under 1e-6.
    "litert": Format(".tflite", ("student.json", "student.tflite"), LiteRtPredictor, 1e-4, "not litert: LiteRT INT8"),
}


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


@pytest.fixture(scope="module", params=list(FORMATS))
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def exported(student: nn.Module, fmt: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp(fmt) / f"student{FORMATS[fmt].suffix}"
    export_model(student, path, fmt, SIZE)
    return path


def scene_batch(model: nn.Module) -> np.ndarray:
    images = [render_scene(40 + k, (320, 240)).image for k in range(2)]
    return np.concatenate([preprocess([image], SIZE, model.card.mean, model.card.std) for image in images])


def test_an_fp32_export_computes_what_pytorch_computes(student: nn.Module, fmt: str, exported: Path) -> None:
    """The graph, beside it the card these formats have no place for (and ncnn's weights); the same numbers as eager
    PyTorch on real-looking scenes, within the format's bar (see FORMATS)."""
    assert sorted(p.name for p in exported.parent.iterdir()) == list(FORMATS[fmt].files)
    predictor = load_predictor(exported, threads=1)
    assert isinstance(predictor, FORMATS[fmt].predictor) and predictor.export.runtime == fmt
    assert predictor.card.name == "fastdepth_v3" and predictor.size == SIZE and predictor.fit == "letterbox"
    batch = scene_batch(student)
    with torch.no_grad():
        expected = prepare_for_inference(student, copy=True)(torch.from_numpy(batch)).numpy()
    actual = predictor.infer(batch)
    assert actual.shape == expected.shape == (2, 1, 192, 256)
    assert np.abs(actual - expected).max() <= FORMATS[fmt].fp32_bar * np.abs(expected).max()
    assert pearson_correlation(actual, expected) > 0.9999


@pytest.mark.parametrize("fmt", ["ncnn"], indirect=True)
def test_ncnn_fp16_runs_the_same_file_in_reduced_precision(student: nn.Module, exported: Path) -> None:
    batch = scene_batch(student)
    fp32 = load_predictor(exported, threads=1).infer(batch)
    fp16 = load_predictor(exported, threads=1, runtime="ncnn-fp16").infer(batch)
    assert pearson_correlation(fp16, fp32) > 0.99


def test_predict_and_bench_take_the_file(fmt: str, exported: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "room.png"
    write_png(image, render_scene(7, (200, 150)).image)
    assert main(["predict", str(image), "--weights", str(exported), "--out", str(tmp_path / "out"), "--npy"]) == 0
    assert np.load(tmp_path / "out" / "room.npy").shape == (150, 200)
    capsys.readouterr()
    assert main(["bench", "--files", str(exported), "--threads", "1", "--runs", "2", "--warmup", "0", "--out",
                 str(tmp_path / "bench")]) == 0
    assert f"| fastdepth_v3 | {fmt} | 1 |" in capsys.readouterr().out


def test_the_cli_exports_and_refuses_int8(student: nn.Module, fmt: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.safetensors"
    save_weights(student, weights)
    suffix = FORMATS[fmt].suffix
    out = tmp_path / f"cli{suffix}"
    assert main(["export", "--weights", str(weights), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("exported ") and f"({fmt}, fp32; max |diff| vs PyTorch" in printed, printed
    assert json.loads(out.with_suffix(".json").read_text())["format"] == "edgedepth.export/1"
    assert main(["export", "--weights", str(weights), "--format", fmt, "--out", str(tmp_path / f"q{suffix}"),
                 "--int8", "--calib", str(tmp_path)]) == 2
    assert FORMATS[fmt].no_int8 in capsys.readouterr().err
    assert not (tmp_path / f"q{suffix}").exists()


def test_an_incomplete_export_is_one_line(fmt: str, exported: Path, tmp_path: Path) -> None:
    lonely = tmp_path / f"lonely{FORMATS[fmt].suffix}"
    lonely.write_bytes(exported.read_bytes())
    if fmt == "ncnn":
        with pytest.raises(EdgedepthError, match=r"its ncnn weights \(\.bin\) lonely\.bin is missing beside it"):
            load_predictor(lonely)
        lonely.with_suffix(".bin").write_bytes(exported.with_suffix(".bin").read_bytes())
    with pytest.raises(EdgedepthError, match=r"edgedepth metadata \(\.json\) lonely\.json is missing"):
        load_predictor(lonely)
    lonely.with_suffix(".json").write_text("{")
    with pytest.raises(EdgedepthError, match="corrupt edgedepth metadata"):
        load_predictor(lonely)


@pytest.mark.slow
@pytest.mark.parametrize(("target", "refusal"), [
    # ZipDepth's convex upsampling (an unfold) comes out of pnnx as a two-channel output: the export's own check
    # runs the file and refuses it.
    ("ncnn", r"^ncnn export: ncnn's output is \[2, 192, 256\], not one depth map"),
    # litert-torch fails on ZipDepth's global-context block: its error becomes one line.
    ("litert", r"^LiteRT's converter \(litert-torch\) cannot convert this network \("),
])
def test_a_network_the_converter_does_not_keep_is_refused_in_one_line(target: str, refusal: str,
                                                                     tmp_path: Path) -> None:
    model = create_model("zipdepth_base", card={"input_size": SIZE}).eval()
    with pytest.raises(EdgedepthError, match=refusal):
        export_model(model, tmp_path / f"zip{FORMATS[target].suffix}", target)
    assert list(tmp_path.iterdir()) == []
