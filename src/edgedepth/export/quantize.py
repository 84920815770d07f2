"""INT8 post-training static quantisation: calibration images in, an INT8 ONNX or OpenVINO file out.

Two quantisers, each a runtime's own, and either can write either format:

- ONNX Runtime's ``quantize_static``: QDQ format, per-channel symmetric 7-bit weights, UINT8 activations,
  MinMax ranges over the calibration images (after ORT's pre-processing: shape inference and graph fusion);
  for OpenVINO, its QDQ graph is converted to IR (OpenVINO reads Q/DQ pairs as FakeQuantize);
- OpenVINO's NNCF ``nncf.quantize`` with its defaults (performance preset: symmetric weights and activations)
  but 7-bit weights in every layer, on the OpenVINO model or, for ONNX, on the ONNX graph (QDQ laid out for
  OpenVINO).

Weights take 7 bits (half the INT8 range) unless told otherwise or the exporting CPU does not saturate: x86 CPUs
without VNNI (AVX2, AVX-512 without VNNI, the common edge case) multiply UINT8 activations by INT8 weights with
``vpmaddubsw``, whose 16-bit sums saturate with full-range weights. On such a CPU (an AVX2 EPYC) ``fastdepth_v3``'s
INT8 output correlated 0.84 with FP32 under NNCF's default (7 bits on the first layer only) and 0.990 under ONNX
Runtime's full range, 0.999 with 7 bits (as with the Q/DQ graph computed in float). CPUs with VNNI, AMX-INT8 or
ARM's dot-product instructions add the products in 32 bits and take full 8-bit weights, one bit more precise; so
by default (:func:`default_weight_bits`) a file exported on such a CPU gets 8-bit weights, elsewhere 7, and its
metadata says which (``weight_bits``): deploy an 8-bit file only to CPUs of that kind, or export with
``--weight-bits 7`` for any CPU.

Which is faster depends on the runtime and the CPU, so ``edgedepth export`` builds both and keeps the
faster (:mod:`edgedepth.export.graph`). Calibration images come from any source ``edgedepth label``
reads and are normalised by the one pre-processing (:func:`edgedepth.core.processing.preprocess`) with the
model card's mean and std, so the ranges are those the network sees at inference.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import preprocess
from edgedepth.data.sources import open_source
from edgedepth.runtime.runtimes import Quantizer

#: Calibration images used at most: a few hundred fix the ranges; more only costs time.
DEFAULT_CALIBRATION_LIMIT = 300


def calibration_batches(
    source: str | Path, card: ModelCard, size: tuple[int, int], limit: int = DEFAULT_CALIBRATION_LIMIT
) -> list[np.ndarray]:
    """Normalised ``1 x 3 x H x W`` float32 arrays from any image source ``edgedepth label`` reads.

    That is a folder of images (searched recursively), a text file of image paths, ``.tar`` shards, or the
    label shards ``edgedepth label`` writes (their images: the data the student was trained on). With more
    than ``limit`` images, ``limit`` of them evenly spaced in key order are used. An unreadable image is an
    error: calibration on a silently smaller set would change the ranges unnoticed.
    """
    try:
        items = open_source(source).items
    except EdgedepthError as exc:
        raise EdgedepthError(f"--calib {exc}") from exc
    if len(items) > limit:
        items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
    return [preprocess([item.load_image()], size, card.mean, card.std) for item in items]


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over our batches."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


#: Instruction sets whose INT8 dot products add UINT8 x INT8 pairs in 32 bits: full-range weights do not saturate.
NO_SATURATION_ISA = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})
#: The weight precisions an INT8 file can take: 7 bits (any CPU) or the full 8.
WeightBits = Literal[7, 8]


def default_weight_bits(isa: Sequence[str]) -> WeightBits:
    """8 on a CPU with :data:`NO_SATURATION_ISA`, else 7 (see the module doc)."""
    return 8 if NO_SATURATION_ISA & set(isa) else 7


def quantize(
    fp32: Path, out: Path, fmt: str, quantizer: Quantizer, batches: Sequence[np.ndarray], input_name: str = "input",
    keep_float: Sequence[str] = (), weight_bits: WeightBits = 7,
) -> None:
    """Quantise the FP32 ONNX file ``fp32`` with ``quantizer`` into ``out``: an ONNX file or an OpenVINO IR (``fmt``).

    ``keep_float`` names nodes of the ONNX graph left in floating point (ONNX Runtime's ``nodes_to_exclude``,
    NNCF's ignored scope; in an OpenVINO model a convolution keeps its ONNX name, with ``/WithoutBiases`` when
    its bias became an Add). ``weight_bits``: 7 or 8 (see the module doc). LiteRT's quantiser takes the FP32
    ``.tflite`` instead, and 8-bit weights only (:mod:`edgedepth.export.litert`).
    """
    if quantizer == "ai-edge-quantizer":
        from edgedepth.export.litert import quantize_litert

        quantize_litert(fp32, out, batches, keep_float)
    elif quantizer == "onnxruntime" and fmt == "onnx":
        quantize_onnx(fp32, out, batches, input_name, keep_float, weight_bits)
    elif quantizer == "onnxruntime":
        qdq = out.with_name(out.stem + ".qdq.onnx")
        quantize_onnx(fp32, qdq, batches, input_name, keep_float, weight_bits)
        _save_openvino(_openvino_model(qdq, batches), out)
    elif fmt == "onnx":
        import nncf
        import onnx

        with _no_cuda_probe_message(), _progress_on_stderr():
            quantized = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset([{input_name: b} for b in batches]),
                                      subset_size=len(batches), advanced_parameters=_nncf_weights(weight_bits),
                                      ignored_scope=nncf.IgnoredScope(names=list(keep_float), validate=False))
        onnx.save(quantized, str(out))
    else:
        import nncf

        patterns = [f"^{re.escape(name)}(/WithoutBiases)?$" for name in keep_float]
        with _no_cuda_probe_message(), _progress_on_stderr():
            quantized = nncf.quantize(_openvino_model(fp32, batches), nncf.Dataset(list(batches)),
                                      subset_size=len(batches), advanced_parameters=_nncf_weights(weight_bits),
                                      ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False))
        _save_openvino(quantized, out)


#: Calibration images the sensitivity ranking reads at most: a ranking, not ranges, so a few suffice.
SENSITIVITY_IMAGES = 16


def layer_sensitivity(fp32: Path, batches: Sequence[np.ndarray], input_name: str = "input",
                      weight_bits: WeightBits = 7) -> dict[str, float]:
    """How much INT8 hurts each quantised layer of the FP32 ONNX file: node name -> signal-to-quantisation-noise
    ratio in dB of what it reads (the worse of its quantised activation inputs and its weights), worst first.

    Measured with ONNX Runtime's own debugging tool (``qdq_loss_debug``) on up to :data:`SENSITIVITY_IMAGES` of the
    calibration batches: the graph is quantised whole, and each activation is compared before and after its own Q/DQ
    pair (its error alone, not the error carried from earlier layers), each weight with its float original. A layer
    whose inputs need a range INT8 cannot hold (one huge channel beside small ones) scores lowest. One image's
    activations are held at a time (Depth Anything small's are 1.35 GB at 252x196; all 32 calibration images at once
    ran out of 24 GB).
    """
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    work = fp32.parent / "sensitivity"
    work.mkdir(exist_ok=True)
    qdq = work / "qdq.onnx"
    quantize_onnx(fp32, qdq, batches, input_name, weight_bits=weight_bits)
    prepared = qdq.with_name(qdq.stem + ".prepared.onnx")  # the float graph the QDQ one was made from
    qdq_aug = work / "qdq.aug.onnx"
    debug.modify_model_output_intermediate_tensors(str(qdq), str(qdq_aug))
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for batch in batches[:SENSITIVITY_IMAGES]:
        feeds: Any = [{input_name: batch}]  # ORT only iterates its "reader"
        with _quiet_onnxruntime():
            found = debug.create_activation_matching(debug.collect_activations(str(qdq_aug), feeds))
        for name, pair in found.items():
            before, after = np.concatenate(pair["pre_qdq"]), np.concatenate(pair["post_qdq"])
            signal[name] = signal.get(name, 0.0) + float(np.square(before, dtype=np.float64).sum())
            noise[name] = noise.get(name, 0.0) + float(np.square(before - after, dtype=np.float64).sum())
    activation = {name: snr_db(signal[name], noise[name]) for name in signal}
    # ONNX Runtime logs an error for each weight its quantiser duplicated under a new name (a LayerNorm bias shared
    # by two nodes in Depth Anything): such a weight has no float original to compare with and is left out, as it
    # should be; the node still ranks by its activations.
    with _dropped_records("root", r"Model Error in .*: weight tensor '.*' not found!"):
        matching = debug.create_weight_matching(str(prepared), str(qdq))
    weight = debug.compute_weight_error(matching, _snr_any_rank)
    scores: dict[str, float] = {}
    for node in onnx.load(str(prepared)).graph.node:
        if node.op_type not in _WEIGHTED_OPS:
            continue
        ratios = [activation[name] for name in node.input if name in activation]
        ratios += [float(weight[name]) for name in node.input if name in weight]
        if ratios:
            scores[node.name] = min(ratios)
    return dict(sorted(scores.items(), key=lambda item: item[1]))


def _snr_any_rank(original: np.ndarray, quantised: np.ndarray) -> float:
    """ONNX Runtime's signal-to-quantisation-noise ratio, for scalar weights too (a 0-d constant, such as Depth
    Anything's attention scale, comes back dequantised as a NumPy scalar, which ONNX Runtime's own function cannot
    concatenate)."""
    from onnxruntime.quantization import qdq_loss_debug as debug

    return debug.compute_signal_to_quantization_noice_ratio(np.atleast_1d(original), np.atleast_1d(quantised))


def snr_db(signal_power: float, noise_power: float) -> float:
    """Signal-to-noise ratio in dB of summed squares, each floored at machine epsilon squared as ONNX Runtime's
    own ratio floors its norms (so a noiseless or all-zero tensor gives a large finite number, not inf or NaN)."""
    floor = float(np.finfo(np.float64).eps) ** 2
    return 10.0 * math.log10(max(signal_power, floor) / max(noise_power, floor))


#: The operators whose inputs and weights INT8 quantises, and which :func:`layer_sensitivity` ranks.
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


@contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """ONNX Runtime warns about every extra graph output it was asked for; they are what collecting them means."""
    import onnxruntime

    level = onnxruntime.get_default_logger_severity() if hasattr(onnxruntime, "get_default_logger_severity") else 2
    onnxruntime.set_default_logger_severity(3)
    try:
        yield
    finally:
        onnxruntime.set_default_logger_severity(level)


def _nncf_weights(weight_bits: WeightBits) -> object:
    """NNCF's "overflow fix" on every layer (its default covers the first only) for 7-bit weights, or off for 8."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    return AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE if weight_bits == 7 else OverflowFix.DISABLE)


class _DropRecords(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


@contextmanager
def _dropped_records(logger_name: str, pattern: str) -> Iterator[None]:
    """Drop the records of one logger whose message matches ``pattern`` (and only those), while in the block."""
    logger = logging.getLogger(logger_name)
    dropper = _DropRecords(pattern)
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)


def _no_cuda_probe_message() -> contextlib.AbstractContextManager[None]:
    """Drop PyTorch's "No CUDA runtime is found, using CUDA_HOME=..." while NNCF quantises an ONNX or OpenVINO model.

    NNCF picks its backend by asking, in order, whether the model is a torch.fx or torch model; that question
    imports ``nncf.torch`` (nncf/common/utils/backend.py, ``is_torch_model``), which imports
    ``torch.utils.cpp_extension``, which logs that warning at import wherever a CUDA toolkit folder exists but
    PyTorch sees no GPU. We quantise ONNX and OpenVINO models on the CPU and compile no extension, so the
    message (a ``logging`` record of PyTorch's, not a Python warning) is noise; only that record is dropped.
    """
    return _dropped_records("torch.utils.cpp_extension", "No CUDA runtime is found")


@contextmanager
def _progress_on_stderr() -> Iterator[None]:
    """Send NNCF's progress bars to stderr, with every other progress bar, so stdout holds only a command's results,
    and keep its INFO lines (one per ignored node) out of the output.

    NNCF draws the bars with a rich Console made without a file, which writes to whatever ``sys.stdout`` is then.
    """
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        nncf_logger.setLevel(level)


def _no_per_channel_axis_messages() -> contextlib.AbstractContextManager[None]:
    """Drop ONNX Runtime's "Axis 1 is out-of-range for weight ... with rank 1", one per 1-D weight it quantises.

    Its QDQ quantiser asks for per-channel weights on axis 1 of every weight; a 1-D one (a LayerNorm's scale in
    Depth Anything: 50 of them) has no such axis, so it logs that line on the root logger and quantises the weight
    per tensor, which is what a vector needs. The lines say nothing a user must act on.
    """
    return _dropped_records("root", r"Axis \d+ is out-of-range for weight ")


def quantize_onnx(fp32: Path, out: Path, batches: Sequence[np.ndarray], input_name: str = "input",
                  keep_float: Sequence[str] = (), weight_bits: WeightBits = 7) -> None:
    """Static INT8 QDQ quantisation of an FP32 ONNX file with ONNX Runtime (per-channel weights); the nodes named
    in ``keep_float`` stay in floating point."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(out.stem + ".prepared.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    with _no_per_channel_axis_messages():
        quantize_static(
            str(prepared),
            str(out),
            _Reader(input_name, batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=weight_bits == 7,  # 7-bit weights, see the module doc
            nodes_to_exclude=list(keep_float),
        )


def _openvino_model(onnx_path: Path, batches: Sequence[np.ndarray]) -> Any:
    """An ONNX file as an OpenVINO model with the calibration batches' shape (batch 1, as the FP32 IR)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model.reshape({model.inputs[0]: list(batches[0].shape)})
    return model


def _save_openvino(model: object, out: Path) -> None:
    import openvino as ov

    ov.save_model(model, str(out), compress_to_fp16=False)
