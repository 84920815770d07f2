"""LiteRT files: a network to ``.tflite`` with Google's converter, and its INT8 by LiteRT's own quantiser.

Conversion is straight from PyTorch (``litert-torch``: torch.export, then LiteRT's lowering): no ONNX or TensorFlow in
between, and the converter the LiteRT project maintains. It runs in a spawned process of its own: it imports JAX,
whose threads make any later ``fork`` of the caller unsafe (training's data-loader workers in ``prune``), and its
progress lines stay off our stdout.

INT8 is static post-training quantisation of that FP32 file by ``ai-edge-quantizer`` (LiteRT's quantiser, the one
litert-torch itself uses) in XNNPACK's scheme: activations asymmetric INT8 per tensor, their ranges the min and max
over the calibration images; weights symmetric INT8 per output channel, 8 bits (XNNPACK widens INT8 to 16 bits
before multiplying, so full-range weights do not saturate on CPUs without VNNI, and the quantiser takes no 7).
Only the operators XNNPACK runs in INT8 are quantised (:data:`INT8_OPERATIONS`); the rest stay float between
quantise and dequantise steps XNNPACK runs too, so the whole graph stays one XNNPACK partition.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedepth.core.errors import EdgedepthError, first_line
from edgedepth.export.quantize import snr_db

#: The operators quantised: those the XNNPACK delegate of ai-edge-litert 2.3 runs in INT8. ``HARD_SWISH`` is left
#: out (in INT8 XNNPACK leaves it to TensorFlow Lite's own kernels: fastdepth_v3 split into 21 pieces and ran 13.4 ms
#: against 7.9 ms, 256x192, one thread, AMD EPYC avx512_vnni), and so is ``ADD`` (3 pieces, 8.8 ms).
INT8_OPERATIONS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE", "RESIZE_BILINEAR", "PAD",
                   "MEAN", "MUL", "TRANSPOSE", "RESHAPE", "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D")
#: The operators whose input activations and weights :func:`layer_sensitivity` ranks, each with its weights'
#: output-channel axis.
_WEIGHTED_AXIS = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": 3}


def export_litert(model: nn.Module, path: Path, size: tuple[int, int]) -> None:
    """``model`` to a LiteRT ``.tflite`` at ``path``, batch 1 at the fixed ``size``; the input stays N x C x H x W.

    The graph is captured here with ``torch.export`` and handed to the converter's process as a saved program: a
    module itself may not pickle (transformers' models carry local hooks), a program always does."""
    width, height = size
    program = path.with_suffix(".pt2")
    try:
        with torch.no_grad():
            torch.export.save(torch.export.export(model.eval(), (torch.zeros(1, 3, height, width),)), program)
        failure = _convert_in_process(program, size, path)
    except Exception as exc:  # noqa: BLE001  (torch.export's many errors on a graph it cannot capture: reported)
        failure = f"torch.export: {first_line(exc)}"
    finally:
        program.unlink(missing_ok=True)
    if failure:
        raise EdgedepthError(f"LiteRT's converter (litert-torch) cannot convert this network ({failure}); nothing "
                             "written")


def _convert_in_process(program: Path, size: tuple[int, int], path: Path) -> str:
    """Convert the saved program in a spawned process; ``""``, or why not."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_convert_worker, args=(str(program), size, str(path), sender), daemon=True)
    process.start()
    sender.close()
    try:
        failure = receiver.recv() if receiver.poll(timeout=1800) else "the converter did not answer in 30 minutes"
    except EOFError:  # the process died without a word (killed, out of memory)
        failure = "its process ended without an answer"
    process.join(timeout=60)
    return str(failure)


def _convert_worker(program: str, size: tuple[int, int], path: str, sender: Any) -> None:
    """In the spawned process: convert and export; send ``""``, or the converter's first error line."""
    width, height = size
    try:
        import litert_torch

        module = torch.export.load(program).module()
        with contextlib.redirect_stdout(sys.stderr):
            litert_torch.convert(module, (torch.zeros(1, 3, height, width),)).export(path)
        sender.send("")
    except Exception as exc:  # noqa: BLE001  (the converter's ValueError, RuntimeError, MLIR errors: reported)
        sender.send(first_line(exc).split("error: ", 1)[-1][:200])


def quantize_litert(fp32: Path, out: Path, batches: Sequence[np.ndarray], keep_float: Sequence[str] = ()) -> None:
    """Static INT8 of the FP32 ``.tflite`` ``fp32`` into ``out``, calibrated on ``batches``; the layers named in
    ``keep_float`` (names of :func:`layer_sensitivity`) stay in floating point, with what makes their input
    (:func:`_with_float_input`): a layer reads the tensor its producer wrote, INT8 if that producer is quantised."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    quantizer = _quantizer(fp32)
    ops = _operators(fp32)
    for index in sorted({k for name in keep_float for k in _with_float_input(ops, _op_index(name))}):
        scope = "".join(f"{tensor};" for tensor in ops[index].outputs)
        quantizer.update_quantization_recipe(f"^{re.escape(scope)}$", qtyping.TFLOperationName.ALL_SUPPORTED,
                                             algorithm_key=AlgorithmName.NO_QUANTIZE)
    with _quiet():
        quantizer.quantize(_calibrate(quantizer, fp32, batches), serialize_to_path=str(out),
                           enable_progress_bar=False, enable_progress_report=False)


def layer_sensitivity(fp32: Path, batches: Sequence[np.ndarray]) -> dict[str, float]:
    """How much INT8 hurts each weighted layer of the FP32 ``.tflite``: name -> signal-to-quantisation-noise ratio
    in dB of what it reads (the worse of its input activation, quantised with the calibrated range, and its
    weights), worst first. As :func:`edgedepth.export.quantize.layer_sensitivity` does for ONNX: each layer's own
    error, on the float model's activations, not the error carried from earlier layers."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    ranges = _calibrate(_quantizer(fp32), fp32, batches)
    with _quiet():
        interpreter = Interpreter(model_path=str(fp32), experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    layers = {_layer_name(op, names): op for op in interpreter._get_ops_details()
              if op["op_name"] in _WEIGHTED_AXIS}
    signal = dict.fromkeys(layers, 0.0)
    noise = dict.fromkeys(layers, 0.0)
    feed = interpreter.get_input_details()[0]["index"]
    for batch in batches:
        interpreter.set_tensor(feed, np.ascontiguousarray(batch[:1], dtype=np.float32))
        interpreter.invoke()
        for name, op in layers.items():
            activation = interpreter.get_tensor(op["inputs"][0])
            low, high = _range(ranges, names[op["inputs"][0]], activation)
            power, error = _power(activation, fake_quantize_asymmetric(activation, low, high))
            signal[name] += power
            noise[name] += error
    scores = {}
    for name, op in layers.items():
        weights = interpreter.get_tensor(op["inputs"][1])
        scores[name] = min(snr_db(signal[name], noise[name]),
                           snr_db(*_power(weights, fake_quantize_symmetric(weights, _WEIGHTED_AXIS[op["op_name"]]))))
    return dict(sorted(scores.items(), key=lambda item: item[1]))


def fake_quantize_asymmetric(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` through asymmetric INT8 with range [low, high] (widened to hold zero, as TensorFlow Lite does), and
    back to float."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero_point = round(-128 - low / scale)
    return (np.clip(np.round(values / scale) + zero_point, -128, 127) - zero_point) * scale


def fake_quantize_symmetric(weights: np.ndarray, axis: int) -> np.ndarray:
    """``weights`` through symmetric INT8 per channel along ``axis`` ([-127, 127]), and back to float."""
    others = tuple(k for k in range(weights.ndim) if k != axis)
    peak = np.abs(weights).max(axis=others, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    return np.clip(np.round(weights / scale), -127, 127) * scale


def _power(original: np.ndarray, approximation: np.ndarray) -> tuple[float, float]:
    """The signal power of ``original`` and the noise power of ``approximation`` against it."""
    return (float(np.square(original, dtype=np.float64).sum()),
            float(np.square(original - approximation, dtype=np.float64).sum()))


def _range(ranges: dict[str, Any], name: str, activation: np.ndarray) -> tuple[float, float]:
    """The calibrated [min, max] of a tensor (the tensor's own, where the calibration kept none)."""
    found = ranges.get(name) or {}
    if "min" in found and "max" in found:
        return float(np.min(found["min"])), float(np.max(found["max"]))
    return float(activation.min()), float(activation.max())


def _quantizer(fp32: Path) -> Any:
    """LiteRT's quantiser on ``fp32`` with :data:`INT8_OPERATIONS` as static INT8 (8-bit weights and activations)."""
    from ai_edge_quantizer import qtyping, quantizer

    made = quantizer.Quantizer(str(fp32))
    for operation in INT8_OPERATIONS:
        made.add_static_config(".*", qtyping.TFLOperationName(operation), activation_num_bits=8, weight_num_bits=8)
    return made


def _calibrate(quantizer: Any, fp32: Path, batches: Sequence[np.ndarray]) -> dict[str, Any]:
    """Each tensor's range (min and max) over the calibration batches, one image at a time (batch 1 graph)."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(fp32)).get_signature_list()
    signature = next(iter(signatures))
    feed = signatures[signature]["inputs"][0]
    images = [{feed: np.ascontiguousarray(image[None], dtype=np.float32)} for batch in batches for image in batch]
    with _quiet():
        return quantizer.calibrate({signature: images}, num_threads=1)


@dataclass(frozen=True)
class _Operator:
    """One operator of a ``.tflite`` graph: its type, and its input and output tensors' names."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _operators(fp32: Path) -> dict[int, _Operator]:
    """The graph's operators by index, as the quantiser sees them (its recipe scopes are their output names).

    The interpreter's ``_get_ops_details`` is the one listing of a model's operators that ai-edge-litert has;
    without delegates it lists the model's own operators.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(fp32),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    return {op["index"]: _Operator(op["op_name"], tuple(names[k] for k in op["inputs"] if k >= 0),
                                   tuple(names[k] for k in op["outputs"] if k >= 0))
            for op in interpreter._get_ops_details()}


#: Operators that move values without computing new ones: a layer's input is as INT8 as what they read.
_PASS_THROUGH = frozenset({"PAD", "RESHAPE", "TRANSPOSE"})


def _with_float_input(ops: dict[int, _Operator], index: int) -> list[int]:
    """Operator ``index`` and those to leave in floating point so that its input is float: its input's producer,
    through any :data:`_PASS_THROUGH` operators up to the first that computes."""
    producers = {tensor: k for k, op in ops.items() for tensor in op.outputs}
    chain = [index]
    while ops[chain[-1]].inputs and (producer := producers.get(ops[chain[-1]].inputs[0])) is not None:
        chain.append(producer)
        if ops[producer].kind not in _PASS_THROUGH:
            break
    return chain


def _layer_name(op: dict[str, Any], names: dict[int, str]) -> str:
    """A readable, unique name of a weighted operator: ``CONV_2D#12 encoder.3.block.0.0``, its module path read
    from the converter's tensor name (``pkg.Class_attribute/...``: each part's attribute)."""
    scope = names[op["outputs"][0]]
    paths = [part for part in scope.split(";") if "/" in part]
    attributes = [re.sub(r"^_*[^_]+_", "", part.rsplit(".", 1)[-1]) for part in (paths[-1].split("/")[1:] if paths else [])]
    return f"{op['op_name']}#{op['index']} {'.'.join(attributes)}".rstrip()


def _op_index(name: str) -> int:
    found = re.match(r"[A-Z_0-9]+#(\d+)", name)
    if found is None:
        raise EdgedepthError(f"{name!r} names no LiteRT layer (expected OPERATOR#INDEX ...)")
    return int(found.group(1))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantiser's progress lines to stderr, its INFO/WARNING records (one per tensor) dropped, and LiteRT's
    warning that keeping every tensor is for debugging (reading them is what calibration is)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Warning: Enabling `experimental_preserve_all_tensors`", UserWarning)
            yield
    finally:
        logger.setLevel(level)
