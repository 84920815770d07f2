"""Export round trips (PyTorch vs ONNX Runtime vs OpenVINO vs TorchScript), INT8, and bad model files."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgedepth.cli import main
from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import write_png
from edgedepth.data.nyu import write_labeled_mat, write_splits_mat
from edgedepth.data.synthetic import render_scene
from edgedepth.export.graph import export_model, pearson_correlation
from edgedepth.export.quantize import calibration_batches
from edgedepth.models import create_model, list_models, save_weights
from edgedepth.runtime.onnx import OnnxPredictor
from edgedepth.runtime.openvino import OpenVinoPredictor
from edgedepth.runtime.predictor import load_predictor
from edgedepth.runtime.pytorch import TorchPredictor, TorchScriptPredictor

PREDICTORS = {"onnx": OnnxPredictor, "openvino": OpenVinoPredictor, "torchscript": TorchScriptPredictor}
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".pt"}


@pytest.fixture(scope="module")
def students(randomize_batchnorm: Callable[[nn.Module, int], nn.Module]) -> dict[str, nn.Module]:
    """Every FastDepth student, with random BatchNorm statistics so that every tensor counts (the other families'
    exports are tested in test_networks.py)."""
    torch.manual_seed(0)  # module fixtures are built before the per-test seeding
    names = list_models(family="fastdepth")
    return {name: randomize_batchnorm(create_model(name), seed).eval() for seed, name in enumerate(names)}


@pytest.fixture(scope="module")
def calm_student() -> nn.Module:
    """``fastdepth_v3`` with He-initialised convolutions and mildly perturbed BatchNorm statistics.

    Its output is a smooth function of the image, as a trained student's is; the fully random BatchNorms of
    ``students`` make a chaotic one that no 8-bit grid can follow (INT8 correlation 0.65 to 0.95 there).
    """
    torch.manual_seed(3)  # the weights are drawn here, whichever test builds this fixture first
    generator = torch.Generator().manual_seed(3)
    model = create_model("fastdepth_v3").eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, calm_student: nn.Module) -> Path:
    path = tmp_path_factory.mktemp("weights") / "student.safetensors"
    save_weights(calm_student, path, training_data="random init")
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic indoor scenes as PNGs: calibration and check images with real image statistics."""
    folder = tmp_path_factory.mktemp("scenes")
    for k in range(6):
        write_png(folder / f"{k}.png", render_scene(100 + k, (320, 240)).image)
    return folder


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "torchscript"])
@pytest.mark.parametrize("name", list_models(family="fastdepth"))
def test_fp32_export_matches_pytorch(tmp_path: Path, students: dict[str, nn.Module], name: str, fmt: str) -> None:
    model = students[name]
    size = (128, 96)  # small: the float64 reference run below costs ~20x float32 on a CPU
    out = tmp_path / f"{name}{SUFFIX[fmt]}"
    result = export_model(model, out, fmt, size, provenance={"training_data": "random init"}, source="x.safetensors")
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, *([out.with_suffix(".bin").name] if fmt == "openvino" else [])]
    )
    predictor = load_predictor(out)
    assert isinstance(predictor, PREDICTORS[fmt])
    assert predictor.card == replace(model.card, input_size=size) and predictor.size == size
    assert predictor.provenance == {"training_data": "random init"}
    assert predictor.export is not None and predictor.export.precision == "fp32"
    assert predictor.export.source == "x.safetensors" and predictor.export.runtime == fmt

    batch = torch.randn(2, 3, size[1], size[0], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(batch)
        exact = copy.deepcopy(model).double()(batch.double())
    peak = expected.abs().max().item()
    assert float(expected.max() - expected.min()) > 0.1  # a real signal, not a constant that anything matches
    actual = torch.from_numpy(predictor.infer(batch.numpy()))
    # About as exact as PyTorch float32 itself, both measured against a float64 run of the same network (measured
    # over seeds: 0.7x to 2.2x PyTorch's own error; a wrong graph is off by orders of magnitude). An absolute 1e-4
    # is out of reach: these random-BatchNorm students output up to ~1e2, where float32 rounding alone moves
    # PyTorch by ~1e-3 from float64; relative to the peak, the runtimes stay within 1.3e-4 of PyTorch.
    torch_error = (expected.double() - exact).abs().max().item()
    assert (actual.double() - exact).abs().max().item() <= 4 * torch_error + 1e-6 * peak
    assert (actual - expected).abs().max().item() <= 3e-4 * peak
    assert result.max_abs_diff <= 3e-4 * peak

    # The whole predictor: same pre- and post-processing, so the same map at the image's own size.
    image = render_scene(7, (320, 240)).image
    reference = TorchPredictor(model, size)(image)
    assert predictor(image).shape == (240, 320)
    assert np.abs(predictor(image) - reference).max() <= 3e-4 * np.abs(reference).max()


@pytest.mark.parametrize("name", ["fastdepth_v3", "fastdepth"])
def test_fastdepth_graphs_end_before_the_final_upsampling(
    tmp_path: Path, students: dict[str, nn.Module], name: str
) -> None:
    """ONNX and OpenVINO files hold the network up to its last x2 upsampling (one channel at half size), which the
    Predictor applies in :meth:`infer`, so their output is still the whole network's; TorchScript keeps it all."""
    import openvino as ov

    model, size = students[name], (128, 96)
    mode = model.decoder.upsample
    batch = torch.randn(1, 3, size[1], size[0], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(batch)
    graph_outputs = {}
    for fmt in ("onnx", "openvino", "torchscript"):
        out = tmp_path / f"m{SUFFIX[fmt]}"
        export_model(model, out, fmt, size)
        predictor = load_predictor(out)
        assert predictor.export is not None
        assert predictor.export.final_upsample == (None if fmt == "torchscript" else mode)
        graph_outputs[fmt] = tuple(predictor.run_graph(batch.numpy()).shape)
        inferred = torch.from_numpy(predictor.infer(batch.numpy()))
        assert (inferred - expected).abs().max().item() <= 3e-4 * expected.abs().max().item()
    assert graph_outputs == {"onnx": (1, 1, 48, 64), "openvino": (1, 1, 48, 64), "torchscript": (1, 1, 96, 128)}
    dims = [d.dim_value or d.dim_param for d in onnx.load(str(tmp_path / "m.onnx")).graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 48, 64]
    ops = {op.get_type_name() for op in ov.Core().read_model(str(tmp_path / "m.xml")).get_ordered_ops()}
    assert "Interpolate" in ops  # the decoder's other upsamplings stay in the graph


def test_onnx_file_carries_the_card_in_metadata_props(tmp_path: Path, students: dict[str, nn.Module]) -> None:
    out = tmp_path / "m.onnx"
    export_model(students["fastdepth"], out, "onnx", size=(160, 128))
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    props = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(props["edgedepth.card"])
    assert props["edgedepth.format"] == "edgedepth.export/1"
    assert card["name"] == "fastdepth" and card["input_size"] == [160, 128]  # the size it was exported at
    assert card["mean"] == [0.0, 0.0, 0.0] and card["std"] == [1.0, 1.0, 1.0]
    assert card["output"] == "relative_inverse_depth"
    assert json.loads(props["edgedepth.export"])["precision"] == "fp32"
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 128, 160]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("quantizer", ["onnxruntime", "nncf"])
def test_int8_export_correlates_with_fp32(
    tmp_path: Path, calm_student: nn.Module, scenes: Path, fmt: str, quantizer: str
) -> None:
    """Either quantiser writes either format, and its file says which made it."""
    model = calm_student
    size = model.card.input_size
    calibration = calibration_batches(scenes, model.card, size, limit=4)
    assert len(calibration) == 4 and calibration[0].shape == (1, 3, 192, 256)
    out = tmp_path / f"int8{SUFFIX[fmt]}"
    result = export_model(model, out, fmt, calibration=calibration, quantizer=quantizer)
    predictor = load_predictor(out, threads=1)
    assert predictor.export is not None
    assert (predictor.export.precision, predictor.export.calibration_images) == ("int8", 4)
    assert (predictor.export.quantizer, predictor.export.quantizer_latency_ms) == (quantizer, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == (["int8.onnx"] if fmt == "onnx" else ["int8.bin", "int8.xml"])

    # A held-out scene: INT8 follows FP32 closely (0.999 measured), but is not FP32 (it was really quantised).
    image = render_scene(200, (320, 240)).image
    fp32, int8 = TorchPredictor(model)(image), predictor(image)
    correlation = np.corrcoef(fp32.ravel(), int8.ravel())[0, 1]
    assert correlation > 0.99, correlation
    assert np.abs(fp32 - int8).max() > 1e-3 * np.abs(fp32).max()
    assert result.correlation > 0.99
    if fmt == "onnx":
        ops = {node.op_type for node in onnx.load(str(out)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_auto_keeps_the_faster_quantizer(tmp_path: Path, calm_student: nn.Module, scenes: Path) -> None:
    calibration = calibration_batches(scenes, calm_student.card, calm_student.card.input_size, limit=2)
    out = tmp_path / "auto.xml"
    export_model(calm_student, out, "openvino", calibration=calibration)
    info = load_predictor(out).export
    assert info is not None and set(info.quantizer_latency_ms) == {"onnxruntime", "nncf"}
    assert all(ms > 0 for ms in info.quantizer_latency_ms.values())
    assert info.quantizer == min(info.quantizer_latency_ms, key=info.quantizer_latency_ms.__getitem__)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.bin", "auto.xml"]


def _one_bad_quantizer(monkeypatch: pytest.MonkeyPatch, bad: set[str]) -> None:
    """Make the quantisers named in ``bad`` write a broken file (each convolution's filters in reverse order): a file
    whose output is not constant but fails the check."""
    from edgedepth.export import graph
    from edgedepth.export.quantize import quantize as real_quantize

    def quantize(fp32: Path, out: Path, fmt: str, quantizer: str, batches: list, input_name: str = "input",
                 **options: object) -> None:
        real_quantize(fp32, out, fmt, quantizer, batches, input_name, **options)  # type: ignore[arg-type]
        if quantizer in bad:
            proto = onnx.load(str(out))
            for tensor in proto.graph.initializer:
                values = onnx.numpy_helper.to_array(tensor)
                if values.ndim == 4:  # INT8 weights, and float ones of layers kept in floating point
                    tensor.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(values[::-1, ::-1]), tensor.name))
            onnx.save(proto, str(out))

    monkeypatch.setattr(graph, "quantize", quantize)


def test_int8_auto_keeps_a_file_that_passes_and_times_it_beside_fp32(
    tmp_path: Path, calm_student: nn.Module, scenes: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The faster quantiser's file failing the check must not lose the export: auto keeps the one that passes (the
    README's INT8 command once wrote nothing because auto chose by speed first and checked afterwards)."""
    calibration = calibration_batches(scenes, calm_student.card, calm_student.card.input_size, limit=2)
    _one_bad_quantizer(monkeypatch, {"onnxruntime"})
    out = tmp_path / "auto.onnx"
    result = export_model(calm_student, out, "onnx", calibration=calibration)
    info = load_predictor(out).export
    assert info is not None and info.quantizer == "nncf" and info.quantizer_latency_ms == {}
    assert result.correlation > 0.99
    assert info.int8_latency_ms is not None and info.int8_latency_ms > 0
    assert info.fp32_latency_ms is not None and info.fp32_latency_ms > 0

    # A quantiser whose every file fails, even with every layer kept in floating point: one line, nothing written.
    _one_bad_quantizer(monkeypatch, {"onnxruntime", "nncf"})
    with pytest.raises(EdgedepthError) as failed:
        export_model(calm_student, tmp_path / "none.onnx", "onnx", calibration=calibration, quantizer="onnxruntime")
    message = str(failed.value)
    assert "correlates with FP32 below 0.9 (onnxruntime 0." in message and "try --quantizer nncf" in message, message
    assert not (tmp_path / "none.onnx").exists()


def _int8_breaker() -> nn.Module:
    """Three convolutions, the middle one with a channel of huge range (x1000) that the last barely reads: quantised
    per tensor, that channel takes the whole INT8 range and the channels the output depends on round to zero."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 1, 3, padding=1)).eval()
    with torch.no_grad():
        net[2].weight[0] *= 1000.0
        net[2].bias[0] = 50.0
        net[4].weight[:, 0] *= 1e-3
    net.card = ModelCard(name="breaker", input_size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return net


@pytest.mark.parametrize(("fmt", "quantizer"), [("onnx", "onnxruntime"), ("onnx", "nncf"), ("openvino", "nncf"),
                                                ("openvino", "onnxruntime")])
def test_a_layer_that_breaks_int8_stays_in_floating_point(
    tmp_path: Path, fmt: str, quantizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whole-network INT8 of the breaker correlates about 0.1 with FP32; the export keeps the layers INT8 hurts
    most in floating point, the fewest that pass, and says which."""
    from edgedepth.export.quantize import layer_sensitivity, quantize

    net = _int8_breaker()
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    out = tmp_path / f"int8{SUFFIX[fmt]}"
    result = export_model(net, out, fmt, calibration=calibration, quantizer=quantizer, min_correlation=0.99)
    info = load_predictor(out).export
    assert info is not None and result.correlation >= 0.99
    assert "/4/Conv" in info.float_layers and len(info.float_layers) <= 2, info.float_layers
    # The ranking put the layer that reads the huge channel first, and the whole-INT8 file really failed.
    sensitivity = layer_sensitivity(_onnx_of(net, tmp_path), calibration)
    assert next(iter(sensitivity)) == "/4/Conv" and sensitivity["/4/Conv"] < sensitivity["/0/Conv"]
    whole = tmp_path / "whole.onnx"
    quantize(_onnx_of(net, tmp_path), whole, "onnx", quantizer, calibration)
    expected = net(torch.from_numpy(np.concatenate(calibration))).detach().numpy()
    assert pearson_correlation(_run_onnx(whole, calibration), expected) < 0.5


def _onnx_of(net: nn.Module, folder: Path) -> Path:
    from edgedepth.export.graph import _export_onnx

    path = folder / "fp32.onnx"
    if not path.exists():
        _export_onnx(net, path, (32, 32))
    return path


def _run_onnx(path: Path, batches: list[np.ndarray]) -> np.ndarray:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path)).run(None, {"input": np.concatenate(batches)})[0]


def test_calibration_reads_label_shards(tmp_path: Path, calm_student: nn.Module) -> None:
    """The images of `edgedepth label`'s shards (what the student was trained on) calibrate as well as a folder."""
    from edgedepth.data import synthetic
    from edgedepth.data.sources import open_source
    from edgedepth.label import job as label
    from edgedepth.label import recipe

    synthetic.write_folder(tmp_path / "scenes", 5, (160, 120), seed=3, progress=False)
    labels = tmp_path / "labels"
    label.run(label.LabelConfig(source=str(tmp_path / "scenes"), out=labels, teacher="oracle",
                                recipe=recipe.Recipe(crop=(128, 96), size=(64, 48)), batch_size=4, shard_size=2,
                                workers=0, progress=False))
    card = calm_student.card
    from_shards = calibration_batches(labels, card, (64, 64), limit=3)
    assert len(from_shards) == 3 and from_shards[0].shape == (1, 3, 64, 64)
    first = open_source(labels).items[0].load_image()  # the shards' first image (64x48), not a depth PNG
    assert first.shape == (48, 64, 3)
    folder = tmp_path / "one"
    folder.mkdir()
    write_png(folder / "first.png", first)
    np.testing.assert_array_equal(from_shards[0], calibration_batches(folder, card, (64, 64))[0])
    with pytest.raises(EdgedepthError, match=r"--calib .*missing: no such file or folder"):
        calibration_batches(tmp_path / "missing", card, (64, 64))


def test_other_size_and_bad_files_are_clear_errors(tmp_path: Path, students: dict[str, nn.Module]) -> None:
    good = tmp_path / "m.onnx"
    export_model(students["fastdepth"], good, "onnx")  # 224x224
    with pytest.raises(EdgedepthError, match=r"exported for input 224x224, not 256x192; .* --size 256x192"):
        load_predictor(good, size=(256, 192))
    assert load_predictor(good, size=(224, 224)).size == (224, 224)

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:5000])
    garbage_xml = tmp_path / "garbage.xml"
    garbage_xml.write_text("<net><layers>")
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.load(str(good))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    ir = tmp_path / "ir.xml"
    export_model(students["fastdepth"], ir, "openvino")
    no_bin = tmp_path / "no_bin.xml"
    no_bin.write_bytes(ir.read_bytes())
    pickled = tmp_path / "checkpoint.pt"
    torch.save({"weight": torch.zeros(1)}, pickled)
    cases = {
        truncated: "not a readable ONNX model",
        garbage_xml: "not a readable OpenVINO IR",
        foreign: "no edgedepth model card in its metadata",
        no_bin: "not a readable OpenVINO IR",
        tmp_path / "missing.onnx": "no such model file",
        pickled: "convert it first: edgedepth convert",
    }
    for path, message in cases.items():
        with pytest.raises(EdgedepthError, match=message) as caught:
            load_predictor(path)
        assert "\n" not in str(caught.value), str(caught.value)


def test_export_command_and_its_errors(
    tmp_path: Path, weights: Path, scenes: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "student.xml"
    assert main(["export", "--weights", str(weights), "--format", "openvino", "--out", str(out)]) == 0
    assert "(openvino, fp32; max |diff| vs PyTorch" in capsys.readouterr().out
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert load_predictor(out).provenance["training_data"] == "random init"

    int8 = tmp_path / "int8.onnx"
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--out", str(int8), "--int8",
                 "--calib", str(scenes), "--calib-limit", "3"]) == 0
    printed = capsys.readouterr().out
    assert "(onnx, int8 by " in printed and " on 3 image(s), " in printed, printed
    assert "-bit weights" in printed and "INT8 runs in " in printed and " FP32 in " in printed, printed
    assert f"{load_predictor(int8).export.weight_bits}-bit weights" in printed
    assert load_predictor(int8).export.quantizer in printed.split("int8 by ")[1].split(" ")[0]

    bad = {
        "suffix": (["--format", "onnx", "--out", str(tmp_path / "x.xml")], "a onnx export must end in .onnx"),
        "no calib": (["--format", "onnx", "--out", str(tmp_path / "x.onnx"), "--int8"], "--int8 and --calib"),
        "torchscript int8": (["--format", "torchscript", "--out", str(tmp_path / "x.pt"), "--int8", "--calib",
                              str(scenes)], "not torchscript"),
        "empty calib": (["--format", "onnx", "--out", str(tmp_path / "x.onnx"), "--int8", "--calib", str(tmp_path)],
                        "no images found"),
    }
    for flags, message in bad.values():
        assert main(["export", "--weights", str(weights), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgedepth: error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".*part*"))


@pytest.mark.slow  # eval twice on three 640x480 frames, plus an export
def test_eval_gives_the_same_table_through_onnx(
    tmp_path: Path, students: dict[str, nn.Module], capsys: pytest.CaptureFixture
) -> None:
    weights = tmp_path / "student.safetensors"
    save_weights(students["fastdepth_v3"], weights, training_data="random init")
    scenes = [render_scene(300 + k, (640, 480)) for k in range(3)]
    data, splits = tmp_path / "nyu.mat", tmp_path / "splits.mat"
    write_labeled_mat(data, np.stack([s.image for s in scenes]), np.stack([s.depth for s in scenes]),
                      np.stack([s.raw_depth for s in scenes]))
    write_splits_mat(splits, train_indices=[0], test_indices=[1, 2])
    onnx_path = tmp_path / "student.onnx"
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--out", str(onnx_path)]) == 0

    rows = {}
    for path in (weights, onnx_path):
        out = tmp_path / path.suffix.lstrip(".")
        assert main(["eval", "nyu", "--data", str(data), "--splits", str(splits), "--weights", str(path), "--out",
                     str(out)]) == 0
        table = (out / "table.md").read_text().splitlines()
        rows[path.suffix] = table[2].split("|")  # header, rule, our row
        assert json.loads((out / "metrics.json").read_text())["images"]["scored"] == 2
    capsys.readouterr()
    torch_row, onnx_row = rows[".safetensors"], rows[".onnx"]
    assert torch_row[1].strip() == "fastdepth_v3 (student.safetensors)"
    assert onnx_row[1].strip() == "fastdepth_v3 (student.onnx)"
    assert onnx_row[2:] == torch_row[2:]  # size, training data (carried in the file) and every metric
    assert "random init" in onnx_row[3]


def test_predict_takes_an_exported_model(tmp_path: Path, weights: Path, scenes: Path) -> None:
    xml = tmp_path / "student.xml"
    assert main(["export", "--weights", str(weights), "--format", "openvino", "--out", str(xml)]) == 0
    outputs = {}
    for path in (weights, xml):
        out = tmp_path / path.suffix.lstrip(".")
        assert main(["predict", str(scenes / "0.png"), "--weights", str(path), "--out", str(out), "--npy"]) == 0
        outputs[path.suffix] = np.load(out / "0.npy")
    assert outputs[".xml"].shape == (240, 320)
    assert np.abs(outputs[".xml"] - outputs[".safetensors"]).max() <= 1e-4 * np.abs(outputs[".safetensors"]).max()


def test_pearson_correlation_is_nan_without_a_warning_where_undefined() -> None:
    ramp = np.linspace(0.0, 1.0, 50, dtype=np.float32).reshape(1, 1, 5, 10)
    noise = np.random.default_rng(0).standard_normal(ramp.shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.corrcoef warns "invalid value encountered in divide" on a constant map
        assert pearson_correlation(ramp, 2 * ramp + 1) == pytest.approx(1.0)
        assert pearson_correlation(ramp, -ramp) == pytest.approx(-1.0)
        assert pearson_correlation(ramp, noise) == pytest.approx(np.corrcoef(ramp.ravel(), noise.ravel())[0, 1])
        assert math.isnan(pearson_correlation(np.zeros_like(ramp), np.zeros_like(ramp)))  # both constant
        assert math.isnan(pearson_correlation(ramp, np.full_like(ramp, 3.0)))  # one constant
        assert math.isnan(pearson_correlation(np.where(ramp > 0.5, np.nan, ramp), ramp))  # not finite


class _Constant(nn.Module):
    """A network whose output is 0 whatever the image (a dead ReLU), with a card."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, -1.0)
        self.card = ModelCard(name="constant", input_size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def test_int8_check_refuses_a_constant_output(tmp_path: Path) -> None:
    """Correlation is undefined on a constant map: the INT8 check says so, and does not pass it as NaN would."""
    calibration = [np.random.default_rng(k).standard_normal((1, 3, 32, 32), dtype=np.float32) for k in range(2)]
    out = tmp_path / "constant.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(EdgedepthError, match=r"FP32's output is constant .*\(correlation undefined\); nothing"):
            export_model(_Constant(), out, "onnx", calibration=calibration, quantizer="onnxruntime")
        assert not out.exists()
        # Without a bar (the benchmark's random-weight peers), the file is written and its correlation is NaN.
        result = export_model(_Constant(), out, "onnx", calibration=calibration, quantizer="onnxruntime",
                              min_correlation=None)
    assert out.is_file() and math.isnan(result.correlation)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_raises_no_warning(tmp_path: Path, students: dict[str, nn.Module], fmt: str) -> None:
    """PyTorch's deprecation of the TorchScript-based ONNX exporter and of torch.jit is silenced at its call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(students["fastdepth_v3"], tmp_path / f"m{SUFFIX[fmt]}", fmt, size=(64, 64))
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    # Left to the TorchScript predictor, which loads the file to check it (runtime/predictor.py, as predict does).
    messages = [m for m in messages if not m.startswith("FutureWarning: `torch.jit.load` is deprecated")]
    assert messages == []


@pytest.mark.parametrize("quantizer", ["onnxruntime", "nncf"])
@pytest.mark.parametrize("bits", [7, 8])
def test_int8_weights_use_seven_or_eight_bits(
    tmp_path: Path, quantizer: str, bits: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """7-bit weights span half the INT8 range in every layer, or CPUs without VNNI saturate (export/quantize.py): on
    an AVX2 EPYC, full-range weights took fastdepth_v3's INT8 correlation with FP32 down to 0.84 (NNCF) and 0.99;
    8-bit ones the whole range, for CPUs that do not saturate.
    Quantising prints nothing on stdout (NNCF's progress bars go to stderr), which holds only a command's results."""
    from onnx import numpy_helper

    from edgedepth.export.graph import _export_onnx
    from edgedepth.export.quantize import quantize

    # Two convolutions: NNCF's default already takes 7 bits in the first one only.
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()
    _export_onnx(network, tmp_path / "fp32.onnx", (16, 16))
    batches = [np.random.default_rng(k).standard_normal((1, 3, 16, 16), dtype=np.float32) for k in range(2)]
    quantize(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", "onnx", quantizer, batches, weight_bits=bits)
    assert capsys.readouterr().out == ""
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    weights = [initializers[node.input[0]] for node in graph.node
               if node.op_type == "DequantizeLinear" and initializers.get(node.input[0], np.zeros(0)).ndim == 4]
    assert len(weights) == 2 and all(w.dtype == np.int8 for w in weights)
    assert [int(np.abs(w.astype(int)).max()) for w in weights] == ([64, 64] if bits == 7 else [127, 127])


def test_the_default_weight_bits_follow_the_cpus_int8_dot_products() -> None:
    from edgedepth.export.quantize import default_weight_bits

    assert default_weight_bits(("avx2", "fma")) == 7  # vpmaddubsw saturates
    assert default_weight_bits(("avx2", "fma", "avx512f")) == 7
    assert default_weight_bits(("avx2", "avx512f", "avx512_vnni")) == 8
    assert default_weight_bits(("avx2", "avx_vnni")) == 8
    assert default_weight_bits(("avx2", "amx_int8")) == 8
    assert default_weight_bits(("asimd", "asimddp")) == 8
    assert default_weight_bits(("asimd",)) == 7


_NNCF_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
import torch
from edgedepth.export.graph import _export_onnx
from edgedepth.export.quantize import quantize

folder = Path(sys.argv[1])
network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
_export_onnx(network, folder / "fp32.onnx", (16, 16))
batches = [np.random.default_rng(k).standard_normal((1, 3, 16, 16), dtype=np.float32) for k in range(2)]
quantize(folder / "fp32.onnx", folder / "int8.onnx", "onnx", "nncf", batches)
print("quantized")
"""


@pytest.mark.slow  # two fresh interpreters import PyTorch, one NNCF
def test_nncf_quantisation_logs_nothing_about_cuda(tmp_path: Path) -> None:
    """NNCF's backend detection imports torch.utils.cpp_extension, which logs "No CUDA runtime is found" where a
    CUDA toolkit folder exists but no GPU is visible (PyTorch logs it once per process: hence a fresh one)."""
    toolkit = tmp_path / "cuda"
    toolkit.mkdir()
    env = {**os.environ, "CUDA_HOME": str(toolkit), "CUDA_VISIBLE_DEVICES": ""}
    control = subprocess.run([sys.executable, "-c", "import torch.utils.cpp_extension"], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
    assert "No CUDA runtime is found" in control.stderr  # the setting does provoke the message
    done = subprocess.run([sys.executable, "-c", _NNCF_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0 and "quantized" in done.stdout, done.stderr[-3000:]
    assert "No CUDA runtime" not in done.stdout + done.stderr
    assert "Warning" not in done.stderr, done.stderr[-3000:]


class _ScaledConv(nn.Module):
    """A convolution whose output is scaled by a constant (as Depth Anything's attention scale and GELU's constants):
    the ONNX graph holds it as a 0-d constant, which ONNX Runtime quantises with the Mul that reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.conv(x)) * 0.125)


def test_layer_sensitivity_takes_scalar_weights(tmp_path: Path) -> None:
    """ONNX Runtime's own SNR function failed on a dequantised 0-d weight (the INT8 fallback crashed on Depth
    Anything); the scalar is ranked with the rest."""
    from edgedepth.export.graph import _export_onnx
    from edgedepth.export.quantize import layer_sensitivity

    torch.manual_seed(0)
    path = tmp_path / "scaled.onnx"
    _export_onnx(_ScaledConv().eval(), path, (16, 16))
    rng = np.random.default_rng(0)
    sensitivity = layer_sensitivity(path, [rng.standard_normal((1, 3, 16, 16), dtype=np.float32) for _ in range(2)])
    assert sorted(sensitivity) == ["/conv/Conv", "/out/Conv"], sensitivity
    assert all(20 < ratio < 60 for ratio in sensitivity.values()), sensitivity


def test_int8_of_a_constant_network_is_refused_before_any_layer_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network whose FP32 output is constant (an untrained one whose last ReLU closed) has no correlation to
    restore: the export says so at once instead of searching for layers to keep in floating point."""
    from edgedepth.export import graph

    net = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1)).eval()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(1.0)
    net.card = ModelCard(name="constant", input_size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the floating-point search ran")

    monkeypatch.setattr(graph, "layer_sensitivity", no_search)
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(2)]
    with pytest.raises(EdgedepthError, match="cannot be checked against FP32: FP32's output is constant"):
        export_model(net, tmp_path / "c.onnx", "onnx", calibration=calibration, quantizer="onnxruntime")
    assert list(tmp_path.iterdir()) == []
