"""The formats ARM boards run, ncnn (through pnnx) and LiteRT (through litert-torch): ``export --format`` and their
runtimes against PyTorch on the same batch, each format through the same tests; LiteRT's INT8 (ai-edge-quantizer)."""

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
    #: Why INT8 is refused (``None``: the format has INT8).
    no_int8: str | None


FORMATS = {
    # ncnn: measured 4e-7 (pnnx told to keep float32 weights; its default float16 weights gave 3e-4).
    "ncnn": Format(".param", ("student.bin", "student.json", "student.param"), NcnnPredictor, 1e-4,
                   "not ncnn: ncnn's own INT8 tools"),
    # LiteRT: measured under 1e-6.
    "litert": Format(".tflite", ("student.json", "student.tflite"), LiteRtPredictor, 1e-4, None),
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


def test_the_cli_exports_fp32_and_int8_or_refuses_int8(student: nn.Module, fmt: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.safetensors"
    save_weights(student, weights)
    suffix = FORMATS[fmt].suffix
    out = tmp_path / f"cli{suffix}"
    assert main(["export", "--weights", str(weights), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("exported ") and f"({fmt}, fp32; max |diff| vs PyTorch" in printed, printed
    assert json.loads(out.with_suffix(".json").read_text())["format"] == "edgedepth.export/1"
    calib = tmp_path / "calib"
    calib.mkdir()
    for k in range(4):
        write_png(calib / f"{k}.png", render_scene(300 + k, (320, 240)).image)
    int8 = tmp_path / f"q{suffix}"
    code = main(["export", "--weights", str(weights), "--format", fmt, "--out", str(int8), "--int8", "--calib",
                 str(calib)])
    written = capsys.readouterr()
    refusal = FORMATS[fmt].no_int8
    if refusal is not None:
        assert code == 2 and refusal in written.err and not int8.exists()
        return
    assert code == 0, written.err
    assert f"({fmt}, int8 by ai-edge-quantizer on 4 image(s), 8-bit weights; correlation with FP32 0.9" in written.out
    assert "x the speed of FP32" in written.out
    assert load_predictor(int8).export.precision == "int8"


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


def _litert_int8(model: nn.Module, path: Path, batches: list[np.ndarray], min_correlation: float = 0.9) -> Path:
    """``model`` exported to LiteRT INT8 at its calibration batches' size, checked against FP32 at ``min_correlation``."""
    size = (batches[0].shape[3], batches[0].shape[2])
    export_model(model, path, "litert", size, calibration=batches, min_correlation=min_correlation)
    return path


def test_litert_int8_keeps_fp32s_output_and_runs_whole_in_xnnpack(student: nn.Module, tmp_path: Path) -> None:
    """XNNPACK's scheme from LiteRT's quantiser: correlates with FP32 on scenes; 8-bit weights; and every operator
    runs inside XNNPACK (one delegate partition: the operators left float are those XNNPACK has no INT8 kernel for,
    which would otherwise fall back to TensorFlow Lite's kernels piece by piece)."""
    from ai_edge_litert.interpreter import Interpreter

    calibration = [preprocess([render_scene(500 + k, (320, 240)).image], SIZE, student.card.mean, student.card.std)
                   for k in range(8)]
    path = _litert_int8(student, tmp_path / "int8.tflite", calibration)
    predictor = load_predictor(path, threads=1)
    info = predictor.export
    assert info.quantizer == "ai-edge-quantizer" and info.weight_bits == 8 and info.float_layers == {}
    assert info.int8_latency_ms is not None and info.fp32_latency_ms is not None
    batch = scene_batch(student)
    with torch.no_grad():
        expected = prepare_for_inference(student, copy=True)(torch.from_numpy(batch)).numpy()
    assert pearson_correlation(predictor.infer(batch), expected) > 0.99
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.float32  # quantised inside: float in and out
    assert [op["op_name"] for op in interpreter._get_ops_details()].count("DELEGATE") == 1


def test_a_layer_that_breaks_litert_int8_stays_in_floating_point(tmp_path: Path) -> None:
    """The breaker of test_export (one channel x1000 that the last layer barely reads): whole INT8 correlates about
    0.1 with FP32; kept in floating point with its input's producer, the last convolution alone makes it pass."""
    from test_export import _int8_breaker

    from edgedepth.export import litert

    net = _int8_breaker()
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    path = _litert_int8(net, tmp_path / "int8.tflite", calibration, min_correlation=0.99)
    info = load_predictor(path).export
    assert list(info.float_layers) == ["CONV_2D#3 4"], info.float_layers  # nn.Sequential's module "4"
    fp32 = tmp_path / "fp32.tflite"
    litert.export_litert(net, fp32, (32, 32))
    assert next(iter(litert.layer_sensitivity(fp32, calibration))) == "CONV_2D#3 4"
    whole = tmp_path / "whole.tflite"
    litert.quantize_litert(fp32, whole, calibration)
    whole.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    batch = np.concatenate(calibration)
    expected = net(torch.from_numpy(batch)).detach().numpy()
    assert pearson_correlation(load_predictor(whole).infer(batch), expected) < 0.5
    assert pearson_correlation(load_predictor(path).infer(batch), expected) >= 0.99


def test_litert_int8_refuses_another_quantizer_and_7_bit_weights(student: nn.Module, tmp_path: Path) -> None:
    calibration = [np.zeros((1, 3, 192, 256), np.float32)]
    with pytest.raises(EdgedepthError, match="^--quantizer nncf does not make litert files; use auto or "
                                             "ai-edge-quantizer$"):
        export_model(student, tmp_path / "q.tflite", "litert", SIZE, calibration=calibration, quantizer="nncf")
    with pytest.raises(EdgedepthError, match="^--weight-bits 7: LiteRT's quantiser takes 8-bit weights only"):
        export_model(student, tmp_path / "q.tflite", "litert", SIZE, calibration=calibration, weight_bits=7)
    with pytest.raises(EdgedepthError, match="^--quantizer ai-edge-quantizer does not make onnx files"):
        export_model(student, tmp_path / "q.onnx", "onnx", SIZE, calibration=calibration,
                     quantizer="ai-edge-quantizer")
    assert list(tmp_path.iterdir()) == []


def test_fake_quantisation_is_xnnpacks_int8() -> None:
    """Hand-computed: asymmetric INT8 over [-1, 3] has scale 4/255 and zero point -64; a value on the grid comes
    back exactly, one off it to the nearest step, one outside the range to its end. Symmetric per-channel weights
    take each channel's peak as 127 steps."""
    from edgedepth.export.litert import fake_quantize_asymmetric, fake_quantize_symmetric
    from edgedepth.export.quantize import snr_db

    scale = 4 / 255
    values = np.array([0.0, 10 * scale, 10.4 * scale, 5.0, -2.0])
    np.testing.assert_allclose(fake_quantize_asymmetric(values, -1.0, 3.0),
                               [0.0, 10 * scale, 10 * scale, (127 + 64) * scale, (-128 + 64) * scale], atol=1e-12)
    weights = np.array([[127.0, -63.6], [0.5, 0.25]])  # channels along axis 0: peaks 127 and 0.5
    np.testing.assert_allclose(fake_quantize_symmetric(weights, 0), [[127.0, -64.0], [0.5, 0.5 * 64 / 127]])
    assert snr_db(100.0, 1.0) == pytest.approx(20.0) and 300 < snr_db(1.0, 0.0) < 320  # floored: finite


def test_litert_converts_a_network_that_pickle_cannot_send(tmp_path: Path) -> None:
    """transformers' models (Depth Anything) carry hooks defined inside functions, which pickle cannot send to the
    converter's process: the graph goes there as a saved torch.export program instead."""
    from edgedepth.core.card import ModelCard

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1)).eval()

    def doubled(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return output * 2

    net[0].register_forward_hook(doubled)
    net.card = ModelCard(name="hooked", input_size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    result = export_model(net, tmp_path / "hooked.tflite", "litert", (32, 32))
    batch = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(load_predictor(result.path).infer(batch), expected, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hooked.json", "hooked.tflite"]
