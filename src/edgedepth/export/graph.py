"""A network to an ONNX, OpenVINO IR, ncnn, LiteRT or TorchScript file, FP32 or INT8, checked against PyTorch.

The exported network takes the NORMALISED ``N x 3 x H x W`` batch at one fixed size and returns
``N x 1 x H x W`` relative inverse depth: pre- and post-processing stay in :mod:`edgedepth.core.processing`,
shared by every runtime. A FastDepth's ONNX and OpenVINO graphs stop before its last x2 upsampling, which the
Predictor applies (:func:`_graph`). Every file carries the model card (:mod:`.metadata`).

As timm's ``utils/onnx.py`` does, every export ends by running the file and comparing it with eager
PyTorch on the same input: FP32 must agree within :data:`FP32_TOLERANCE` (relative to the output's
peak), INT8 must correlate with FP32 (:data:`INT8_MIN_CORRELATION`). The file is written atomically and
only after that check passes.

ONNX is the graph of ONNX Runtime, OpenVINO and ncnn: OpenVINO IR and ncnn's files are converted from it, and their
INT8 files are quantised from it by ONNX Runtime's quantiser or NNCF (:mod:`.quantize`), by default both, keeping
the file that runs faster in its runtime here. LiteRT's file is converted straight from PyTorch and quantised by
LiteRT's own quantiser (:mod:`.litert`). Where whole-network INT8 fails the check, the layers INT8 hurts most stay in
floating point (:func:`_fewest_float_layers`), for every INT8 format.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import torch
from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.cpu import cpu_isa, read_cpuinfo
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path
from edgedepth.core.processing import Upsample
from edgedepth.export import litert
from edgedepth.export.config import QuantizerChoice
from edgedepth.export.litert import export_litert
from edgedepth.export.quantize import WeightBits, default_weight_bits, layer_sensitivity, quantize
from edgedepth.models.complexity import count_macs, count_parameters
from edgedepth.models.fusion import as_pair
from edgedepth.models.registry import DepthNetwork, prepare_for_inference
from edgedepth.runtime.metadata import ExportInfo, ExportMetadata, sidecar_path
from edgedepth.runtime.runtimes import EXPORT_FORMATS, FORMAT_QUANTIZERS, SUFFIXES, ExportFormat, Quantizer, Runtime
from edgedepth.runtime.timing import LocalTimer, interleaved, median_ms

#: Under ``auto``, each INT8 candidate is timed on this many threads (batch 1): the edge case.
TIMING_THREADS = 1

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "inverse_depth"
#: FP32 export vs eager PyTorch: largest difference allowed, relative to the output's peak magnitude. A guard
#: against a wrong graph (which is off by O(1)); float32 rounding alone differs by ~1e-5 to 2e-4 of the peak on
#: random-weight students, about as far as PyTorch float32 itself is from a float64 run (tests/test_export.py).
FP32_TOLERANCE = 1e-3
#: INT8 vs FP32: the smallest Pearson correlation of their outputs on the check batch.
INT8_MIN_CORRELATION = 0.9


@dataclass(frozen=True)
class ExportResult:
    """What was written and how close it came to eager PyTorch (FP32) or to FP32 (INT8)."""

    path: Path
    metadata: ExportMetadata
    max_abs_diff: float
    correlation: float


def export_model(
    model: DepthNetwork,
    out: str | Path,
    fmt: ExportFormat,
    size: tuple[int, int] | None = None,
    provenance: dict | None = None,
    source: str = "",
    calibration: Sequence[np.ndarray] | None = None,
    min_correlation: float | None = INT8_MIN_CORRELATION,
    quantizer: QuantizerChoice = "auto",
    fp32_tolerance: float | None = FP32_TOLERANCE,
    calibration_set: str = "",
    weight_bits: WeightBits | None = None,
) -> ExportResult:
    """Export ``model`` (a student with a card) to ``out``; with ``calibration`` batches, as INT8.

    ``calibration`` holds normalised ``1 x 3 x H x W`` float32 arrays at ``size`` (see
    :func:`edgedepth.export.quantize.calibration_batches`), ``calibration_set`` names them in the file's metadata.
    TorchScript has no INT8 path here.
    ``min_correlation`` is the INT8 check's bar and ``fp32_tolerance`` the FP32 one (relative to the output's peak);
    ``None`` skips either: the benchmark times random networks, whose outputs can be near zero (Depth Anything's
    initialisation gives a peak of 1e-3, where float32 rounding alone is a few 1e-3 of it).
    The result's ``correlation`` is NaN where it is undefined: FP32's or the file's output constant.
    ``quantizer="auto"`` quantises with both tools and keeps the file that runs faster in the format's runtime
    on this machine (batch 1, one thread: the edge case); the metadata records both latencies. ``weight_bits``: 7
    or 8 (default: :func:`~edgedepth.export.quantize.default_weight_bits` of this CPU), recorded in the metadata.
    """
    if fmt not in EXPORT_FORMATS:
        raise EdgedepthError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.suffix.lower() != SUFFIXES[fmt]:
        raise EdgedepthError(f"--out {out}: a {fmt} export must end in {SUFFIXES[fmt]}")
    card: ModelCard = model.card
    size = card.fit_size(size)
    int8 = calibration is not None
    if int8:
        check_int8_format(fmt)
        check_quantizer(fmt, quantizer, weight_bits)
    if int8 and not calibration:
        raise EdgedepthError("--int8 needs at least one calibration image")
    info = ExportInfo(
        runtime=fmt,
        precision="int8" if int8 else "fp32",
        quantizer=None,
        calibration_images=len(calibration) if calibration is not None else 0,
        calibration_set=calibration_set if calibration is not None else "",
        weight_bits=_weight_bits(fmt, weight_bits) if calibration is not None else None,
        source=source,
    )
    model = prepare_for_inference(model.cpu(), copy=True)  # fused (ZipDepth), the caller's model left as it was
    model = static_same_padding(model, size)
    info = replace(info, params=count_parameters(model), macs=count_macs(model, size))
    metadata = ExportMetadata(replace(card, input_size=size), dict(provenance or {}), info)
    check = _check_batch(size, calibration)
    with torch.no_grad():
        expected = model(torch.from_numpy(check)).numpy()
    graph, final_upsample = _graph(model, fmt)
    if final_upsample is not None:
        metadata = replace(metadata, info=replace(info, final_upsample=final_upsample))

    with tempfile.TemporaryDirectory(prefix="edgedepth-export-") as folder:
        work = Path(folder)
        if fmt == "torchscript":
            built = work / "model.pt"
            _export_torchscript(graph, built, size, metadata)
        elif fmt == "litert":
            built = work / "fp32.tflite"
            export_litert(graph, built, size)
            if calibration is not None:
                built, metadata = _quantize(built, work, fmt, quantizer, calibration, metadata, check, expected,
                                            min_correlation)
            _write_metadata(built, fmt, metadata)
        else:
            onnx_path = work / "fp32.onnx"
            _export_onnx(graph, onnx_path, size)
            built = work / ("model" + SUFFIXES[fmt])
            if calibration is not None:  # INT8
                built, metadata = _quantize(onnx_path, work, fmt, quantizer, calibration, metadata, check, expected,
                                            min_correlation)
            elif fmt == "onnx":
                shutil.copyfile(onnx_path, built)
            elif fmt == "ncnn":
                _convert_ncnn(onnx_path, built, size)
            else:
                _convert_openvino(onnx_path, built, size)
            _write_metadata(built, fmt, metadata)
        try:
            actual = _run_file(built, check)
        except EdgedepthError as exc:  # the runtime cannot run what was built: its message, not the scratch path
            raise EdgedepthError(f"{fmt} export: {str(exc).removeprefix(f'{built}: ')}; nothing written") from exc
        max_abs_diff, correlation = _compare(actual, expected)
        peak = float(np.abs(expected).max()) or 1.0
        # Written as "not within", so that a NaN (a file that outputs NaN, an undefined correlation) fails the check.
        if not int8 and fp32_tolerance is not None and not max_abs_diff <= fp32_tolerance * peak:
            raise EdgedepthError(
                f"{fmt} export differs from PyTorch by {max_abs_diff:.3g} (output peak {peak:.3g}); nothing written"
            )
        _move_into_place(built, out)
    return ExportResult(out, metadata, max_abs_diff, correlation)


def check_int8_format(fmt: str) -> None:
    """Nothing for a format that has an INT8 path here; else the one-line error saying why not."""
    why = {"ncnn": ": ncnn's own INT8 tools (ncnn2table, ncnn2int8) are not in its Python package"}
    if fmt not in FORMAT_QUANTIZERS:
        raise EdgedepthError(f"--int8 is available for {', '.join(FORMAT_QUANTIZERS)}, not {fmt}{why.get(fmt, '')}")


def check_quantizer(fmt: str, quantizer: str, weight_bits: int | None) -> None:
    """Nothing where ``quantizer`` (or ``auto``) makes ``fmt``'s INT8 files with ``weight_bits``; else a one-line error."""
    allowed = FORMAT_QUANTIZERS[fmt]
    if quantizer != "auto" and quantizer not in allowed:
        raise EdgedepthError(f"--quantizer {quantizer} does not make {fmt} files; use auto or {' or '.join(allowed)}")
    if fmt == "litert" and weight_bits == 7:
        raise EdgedepthError("--weight-bits 7: LiteRT's quantiser takes 8-bit weights only (XNNPACK's INT8 kernels do "
                             "not saturate on any CPU); drop --weight-bits")


def _weight_bits(fmt: str, asked: WeightBits | None) -> WeightBits:
    """The INT8 weight precision of a file: LiteRT's is always 8 (:mod:`.litert`), else as asked or this CPU's."""
    if fmt == "litert":
        return 8
    return asked or default_weight_bits(cpu_isa(read_cpuinfo()))


def _graph(model: nn.Module, fmt: ExportFormat) -> tuple[nn.Module, Upsample | None]:
    """The module an ONNX or OpenVINO file holds, and the final upsampling its Predictor adds (``None``: none).

    A FastDepth's graph ends before its last x2 upsampling of one channel (``without_final_upsample``): OpenVINO
    runs it in a 16-channel blocked layout, a tenth of an INT8 run, which OpenCV does in microseconds. The
    Predictor applies it (:func:`edgedepth.core.processing.final_upsample`), so the file's outputs, the export's check
    and every timing are of the whole network. TorchScript keeps the whole network (a libtorch user runs it alone).
    """
    split = getattr(model, "without_final_upsample", None)
    if split is None or fmt == "torchscript":
        return model, None
    return split()


def _quantize(
    float_path: Path,
    work: Path,
    fmt: ExportFormat,
    choice: QuantizerChoice,
    calibration: Sequence[np.ndarray],
    metadata: ExportMetadata,
    check: np.ndarray,
    expected: np.ndarray,
    min_correlation: float | None,
) -> tuple[Path, ExportMetadata]:
    """Quantise the FP32 file ``float_path`` (ONNX, or for LiteRT its FP32 ``.tflite``) with the chosen tool, or under
    ``auto`` with each of the format's; the kept file and its metadata.

    Every candidate is checked against FP32 first (its correlation on the check batch); of those that pass, ``auto``
    keeps the one that runs faster here. The kept file is timed beside the FP32 file, and the metadata records both
    latencies, so an INT8 file slower than its FP32 is said, never picked silently. With no bar
    (``min_correlation=None``: bench's random networks) nothing is checked or timed beyond ``auto``'s choice.
    """
    names: tuple[Quantizer, ...] = FORMAT_QUANTIZERS[fmt] if choice == "auto" else (choice,)
    built: dict[str, tuple[Path, ExportMetadata]] = {}
    correlations: dict[str, float] = {}
    for name in names:
        path = work / name / ("model" + SUFFIXES[fmt])
        path.parent.mkdir()
        quantize(float_path, path, fmt, name, calibration, INPUT_NAME, weight_bits=_bits(metadata))
        built[name] = path, replace(metadata, info=replace(metadata.info, quantizer=name))
        _write_metadata(path, fmt, built[name][1])  # the Predictor that checks and times it reads its card
        correlations[name] = _compare(_run_file(path, check), expected)[1]
    passing = [name for name in names if min_correlation is None or correlations[name] >= min_correlation]
    if not passing and not np.ptp(expected) > 0:  # FP32 constant: no layer in float can make a correlation
        raise _int8_failed(fmt, correlations, min_correlation, expected)
    if not passing and min_correlation is not None:  # keep the layers INT8 hurts most in floating point
        sensitivity = (litert.layer_sensitivity(float_path, calibration) if fmt == "litert" else
                       layer_sensitivity(float_path, calibration, INPUT_NAME, _bits(metadata)))
        for name in names:
            found = _fewest_float_layers(float_path, work, fmt, name, calibration, built[name][1], check, expected,
                                         min_correlation, sensitivity)
            if found is not None:
                built[name], correlations[name] = found[:2], found[2]
                passing.append(name)
    if not passing:
        raise _int8_failed(fmt, correlations, min_correlation, expected)
    latencies: dict[str, float] = {}
    if len(passing) > 1:
        latencies = _latencies({name: built[name][0] for name in passing})
    best = min(passing, key=lambda name: latencies.get(name, 0.0))
    path, chosen = built[best]
    info = replace(chosen.info, quantizer_latency_ms=latencies)
    if min_correlation is not None:
        fp32 = work / "timing" / ("fp32" + SUFFIXES[fmt])
        fp32.parent.mkdir()
        if fmt == "openvino":
            _convert_openvino(float_path, fp32, (check.shape[3], check.shape[2]))
        else:
            shutil.copyfile(float_path, fp32)
        _write_metadata(fp32, fmt, replace(metadata, info=replace(metadata.info, precision="fp32", calibration_images=0,
                                                                   calibration_set="", weight_bits=None)))
        timed = _latencies({"int8": path, "fp32": fp32})
        info = replace(info, int8_latency_ms=timed["int8"], fp32_latency_ms=timed["fp32"])
    return path, replace(chosen, info=info)


def _fewest_float_layers(
    float_path: Path, work: Path, fmt: ExportFormat, quantizer: Quantizer, calibration: Sequence[np.ndarray],
    metadata: ExportMetadata, check: np.ndarray, expected: np.ndarray, bar: float, sensitivity: dict[str, float],
) -> tuple[Path, ExportMetadata, float] | None:
    """An INT8 file that passes the bar with the fewest of the most sensitive layers kept in floating point (the
    first k of ``sensitivity``, worst first: k doubles until the file passes, then is bisected down), or ``None``
    when even every layer in floating point does not pass."""
    order = list(sensitivity)
    tried: dict[int, tuple[Path, float]] = {}

    def trial(count: int) -> bool:
        path = work / f"{quantizer}-float{count}" / ("model" + SUFFIXES[fmt])
        path.parent.mkdir()
        quantize(float_path, path, fmt, quantizer, calibration, INPUT_NAME, keep_float=order[:count],
                 weight_bits=_bits(metadata))
        _write_metadata(path, fmt, metadata)
        tried[count] = path, _compare(_run_file(path, check), expected)[1]
        return tried[count][1] >= bar

    failed, count = 0, 1
    while not trial(count):
        if count == len(order):
            return None
        failed, count = count, min(2 * count, len(order))
    low, high = failed + 1, count
    while low < high:
        middle = (low + high) // 2
        if trial(middle):
            high = middle
        else:
            low = middle + 1
    path, correlation = tried[high]
    kept = {name: round(sensitivity[name], 2) for name in order[:high]}
    chosen = replace(metadata, info=replace(metadata.info, float_layers=kept))
    _write_metadata(path, fmt, chosen)
    return path, chosen, correlation


def _bits(metadata: ExportMetadata) -> WeightBits:
    return 8 if metadata.info.weight_bits == 8 else 7


def _latencies(files: dict[str, Path]) -> dict[str, float]:
    """Median milliseconds of each file in its runtime here, batch 1 on :data:`TIMING_THREADS`, interleaved."""
    from edgedepth.runtime.predictor import load_predictor

    # Each timing predictor lives for one statement: an OpenVINO model kept open while another IR was
    # read, rewritten or compiled corrupted memory later in the process (OpenVINO 2026.4, seen in the tests).
    return {name: round(median_ms(interleaved([LocalTimer(load_predictor(path, threads=TIMING_THREADS))])[0]), 3)
            for name, path in files.items()}


def _int8_failed(fmt: ExportFormat, correlations: dict[str, float], bar: float | None,
                 expected: np.ndarray) -> EdgedepthError:
    """The one-line error when no INT8 file passes: each quantiser's correlation, and what to try."""
    if all(math.isnan(value) for value in correlations.values()):
        which = "FP32's" if not np.ptp(expected) > 0 else "the INT8 file's"
        return EdgedepthError(f"INT8 {fmt} export cannot be checked against FP32: {which} output is constant or not "
                              "finite on the check images (correlation undefined); nothing written")
    found = ", ".join(f"{name} {value:.3f}" for name, value in correlations.items())
    others = [name for name in FORMAT_QUANTIZERS[fmt] if name not in correlations]
    advice = (f"try --quantizer {others[0]}, " if others else "") + "calibrate on more images like the ones it will see"
    return EdgedepthError(f"INT8 {fmt} export correlates with FP32 below {bar} ({found}); nothing written: {advice}, "
                          "or export FP32")


_M = TypeVar("_M", bound=nn.Module)


def static_same_padding(model: _M, size: tuple[int, int]) -> _M:
    """``model`` with timm's TensorFlow-"same" convolutions padded by constants, at one input size (on a copy).

    Those convolutions (MiDaS small's EfficientNet-Lite3) compute their padding from their input's shape at run time:
    in the ONNX graph a chain of shape operations, which ONNX Runtime's quantiser mishandles (its INT8 file failed
    in a QLinearAdd of two maps of different sizes). An export has one fixed size, so each becomes a fixed zero
    padding and a plain convolution: the same numbers. A model without them is returned as it is.
    """
    from timm.layers import Conv2dSame
    from timm.layers.padding import pad_same_arg

    if not any(isinstance(module, Conv2dSame) for module in model.modules()):
        return model
    model = copy.deepcopy(model)
    inputs: dict[nn.Module, tuple[int, ...]] = {}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:  # None: the input goes on unchanged
        inputs[module] = tuple(args[0].shape[-2:])

    hooks = [module.register_forward_pre_hook(record) for module in model.modules() if isinstance(module, Conv2dSame)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size[1], size[0]))
    finally:
        for hook in hooks:
            hook.remove()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv2dSame):
                conv = nn.Conv2d(child.in_channels, child.out_channels, as_pair(child.kernel_size),
                                 as_pair(child.stride), 0, as_pair(child.dilation), child.groups,
                                 bias=child.bias is not None)
                conv.load_state_dict(child.state_dict())
                pads = pad_same_arg(list(inputs[child]), list(child.kernel_size), list(child.stride),
                                    list(child.dilation))
                padding = cast("tuple[int, int, int, int]", tuple(pads))  # left, right, top, bottom
                setattr(parent, name, nn.Sequential(nn.ZeroPad2d(padding), conv))
    return model


def _check_batch(size: tuple[int, int], calibration: Sequence[np.ndarray] | None) -> np.ndarray:
    """The input the export is checked on: calibration images if any (the data it will see), else noise."""
    if calibration:
        return np.concatenate(list(calibration[:4])).astype(np.float32)
    generator = np.random.default_rng(0)
    return generator.standard_normal((2, 3, size[1], size[0]), dtype=np.float32)


def _export_onnx(model: nn.Module, path: Path, size: tuple[int, int]) -> None:
    """TorchScript-based ONNX export at opset 17, fixed H x W, dynamic batch; then ``onnx.checker``.

    Not the torch.export-based exporter (``dynamo=True``, PyTorch's default since 2.9), measured on torch 2.14.1
    with onnxscript 0.7.2: it gives the same numbers (bit-identical on our students) but takes 30-40 s per
    network instead of 3-9 s on a 2-core CPU (the test suite and the benchmark export dozens), needs onnxscript
    (not a dependency), cannot write opset 17 for ``fastdepth_v3`` (ONNX's version converter fails; the file stays
    at opset 18), and fixes Depth Anything's batch dimension at 1 despite ``dynamic_shapes``. So the TorchScript
    path stays, and its deprecation warnings (PyTorch's, one per export) are silenced here, and only here.
    """
    import onnx

    width, height = size
    with warnings.catch_warnings():
        # The export has one fixed input size: values a network computes from its input's shape (Depth Anything's
        # patch grid, transformers' shape checks) become constants, as they should; the tracer warns that they do.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # F.pad's constant pads (MiDaS small's "same" padding, static here) reach ONNX through a reversed Slice that
        # the exporter's constant folding skips, and says so; the Pad node computes the same.
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1 can be constant folded", UserWarning)
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                DeprecationWarning)
        # Raised inside the TorchScript exporter itself (torch/onnx/_internal/torchscript_exporter/utils.py).
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning,
                                r"torch\.onnx\._internal\.torchscript_exporter")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, height, width),),
            str(path),
            opset_version=OPSET,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def _convert_openvino(onnx_path: Path, path: Path, size: tuple[int, int]) -> None:
    """ONNX to OpenVINO IR with batch 1 (latency), weights kept in FP32 (no FP16 compression)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model.reshape({model.inputs[0]: [1, 3, size[1], size[0]]})
    ov.save_model(model, str(path), compress_to_fp16=False)


def _convert_ncnn(onnx_path: Path, path: Path, size: tuple[int, int]) -> None:
    """The ONNX graph to ncnn's ``.param`` and ``.bin`` with pnnx (ncnn's own converter), at the fixed size, the
    weights in float32 (``fp16=0``: pnnx's default float16 weights put the output 3e-4 of its peak off PyTorch)."""
    import pnnx

    converter = Path(pnnx.__file__).parent / "pnnx"
    width, height = size
    work = onnx_path.parent / "ncnn"
    work.mkdir()
    staged = work / "model.onnx"
    shutil.copyfile(onnx_path, staged)
    done = subprocess.run([str(converter), str(staged), f"inputshape=[1,3,{height},{width}]", "fp16=0"], cwd=work,
                          capture_output=True, text=True, check=False)
    param, weights = work / "model.ncnn.param", work / "model.ncnn.bin"
    if done.returncode != 0 or not param.is_file():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise EdgedepthError(f"pnnx could not convert the graph to ncnn ({lines[-1][:200] if lines else done.returncode})")
    shutil.copyfile(param, path)
    shutil.copyfile(weights, path.with_suffix(".bin"))


def _export_torchscript(model: nn.Module, path: Path, size: tuple[int, int], metadata: ExportMetadata) -> None:
    from edgedepth.runtime.pytorch import TORCHSCRIPT_METADATA

    width, height = size
    # ``--format torchscript`` is asked for by name, for C++ (libtorch) and older deployments; PyTorch 2.14 marks
    # torch.jit as deprecated (FutureWarning on trace, trace_method and save) but it works, so its deprecation
    # warnings are silenced for this export alone.
    with warnings.catch_warnings(), _quiet_transformers_properties():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # one fixed size, as for ONNX
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, torch.zeros(1, 3, height, width), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA: json.dumps(metadata.to_strings())})


@contextmanager
def _quiet_transformers_properties() -> Iterator[None]:
    """Silence what transformers' properties say when ``torch.jit.trace`` reads every attribute of a module.

    Tracing looks for exported methods by reading each attribute of each submodule (``torch._jit_internal``'s
    ``module_has_exports``), which evaluates transformers' properties: a deprecated one warns (FutureWarning) and
    ``loss_function`` logs that the config names no loss. Neither is about the export, so both are dropped here.
    """
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
            yield
    finally:
        logger.setLevel(level)


def _write_metadata(path: Path, fmt: ExportFormat, metadata: ExportMetadata) -> None:
    """Store the four metadata entries in the ONNX file or the OpenVINO IR (rewriting it in place), or for ncnn in
    the ``.json`` beside its ``.param`` or LiteRT's ``.tflite``."""
    values = metadata.to_strings()
    if fmt in ("ncnn", "litert"):
        sidecar_path(path).write_text(json.dumps(values, indent=2) + "\n")
    elif fmt == "onnx":
        import onnx

        proto = onnx.load(str(path))
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, {f"edgedepth.{key}": value for key, value in values.items()})
        onnx.save(proto, str(path))
    else:
        import openvino as ov

        model = ov.Core().read_model(str(path))
        for key, value in values.items():
            model.set_rt_info(value, ["edgedepth", key])
        staged = path.with_name("staged.xml")
        ov.save_model(model, str(staged), compress_to_fp16=False)
        staged.replace(path)
        staged.with_suffix(".bin").replace(path.with_suffix(".bin"))


def _run_file(path: Path, batch: np.ndarray) -> np.ndarray:
    """Run an exported file through its Predictor's network on a normalised batch."""
    from edgedepth.runtime.predictor import load_predictor

    return load_predictor(path).infer(batch)


def _compare(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Largest absolute difference and Pearson correlation (:func:`pearson_correlation`) of two outputs."""
    if actual.shape != expected.shape:
        raise EdgedepthError(f"exported network outputs {actual.shape}, PyTorch {expected.shape}")
    difference = float(np.abs(actual.astype(np.float64) - expected).max())
    return difference, pearson_correlation(actual, expected)


def pearson_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (flattened, in float64); NaN where it is undefined.

    Undefined means either array is constant (zero variance: ``np.corrcoef`` would divide by zero, warn, and
    return NaN) or holds a NaN. Callers test ``not r >= bar`` so that an undefined correlation fails a check.
    """
    x = a.astype(np.float64).ravel()
    y = b.astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    scale = math.sqrt(float(x @ x) * float(y @ y))
    if not scale > 0:  # a constant array (0), or a NaN anywhere
        return math.nan
    return max(-1.0, min(1.0, float(x @ y) / scale))


def _move_into_place(built: Path, out: Path) -> None:
    """Move the checked file (and an IR's or ncnn's ``.bin``, ncnn's ``.json``) to ``out`` atomically: the files
    beside it first, then the ``.xml`` or ``.param`` that names the export."""
    beside = {".xml": (".bin",), ".param": (".bin", ".json"), ".tflite": (".json",)}.get(built.suffix, ())
    for suffix in beside:
        with atomic_path(out.with_suffix(suffix)) as tmp:
            shutil.copyfile(built.with_suffix(suffix), tmp)
    with atomic_path(out) as tmp:
        shutil.copyfile(built, tmp)


def runtime_file(
    model: DepthNetwork, runtime: Runtime, stem: Path, calibration: Sequence[np.ndarray] | None, checked: bool = False
) -> tuple[Path, float | None]:
    """The file ``runtime`` runs for ``model`` (at its card's input size), named ``runtime.file_name(stem.name)``
    beside ``stem``: our weights for ``torch``, else an export, INT8 by the runtime's own quantiser, calibrated on
    ``calibration``. For timing (bench, prune) the accuracy checks are left out, since a random-weight network
    can output a near-constant map, unless ``checked`` (trained weights: the export's checks, and the INT8 fallback
    to floating point, so the file timed is the file a user would export); returns the INT8 output's correlation
    with FP32 (``None`` for other files, and where it is undefined)."""
    from edgedepth.models.weights import save_weights

    path = stem.with_name(runtime.file_name(stem.name))
    if runtime.fmt == "safetensors":
        return save_weights(model, path), None
    bars = {} if checked else {"min_correlation": None, "fp32_tolerance": None}
    result = export_model(model, path, runtime.fmt, source="timing", calibration=calibration if runtime.int8 else None,
                          quantizer=runtime.quantizer or "auto", **bars)  # type: ignore[arg-type]
    correlation = result.correlation if runtime.int8 and not math.isnan(result.correlation) else None
    return path, correlation




