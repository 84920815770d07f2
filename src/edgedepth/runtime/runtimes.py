"""The runtimes a network runs on: one table, one frozen record per runtime name.

Every command that names a runtime reads it here: ``bench --runtimes``, ``prune --runtime``, ``export --format``
(the formats of the table) and ``load_predictor`` (the runtime a file's suffix names). A record says what the name
means: the file format it runs, the precision it computes in, the quantiser that makes its INT8 file, the file's
suffix, the Predictor that opens it and the Python package it needs. So one name builds one kind of file in every
command, and adding a runtime is one entry.

This module imports nothing heavy: the command line reads its names before any runtime loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal, get_args

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.extras import require

#: What ``edgedepth export --format`` writes.
ExportFormat = Literal["onnx", "openvino", "torchscript", "ncnn", "litert"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
#: The files a network is kept in: our weights, and the export formats.
Format = Literal["safetensors", ExportFormat]
#: Each format's file suffix (an OpenVINO IR is its ``.xml`` with a ``.bin`` beside it).
SUFFIXES: dict[str, str] = {"safetensors": ".safetensors", "onnx": ".onnx", "openvino": ".xml", "torchscript": ".pt",
                             "ncnn": ".param", "litert": ".tflite"}

#: What a runtime computes in: ``fp32``, ``int8`` (an INT8 file; its float parts as the runtime chooses), or
#: ``default``: an FP32 file at the runtime's own choice of precision (OpenVINO: bf16 on CPUs with AVX-512 BF16 or
#: AMX, which the Predictor reports).
Precision = Literal["fp32", "int8", "default"]
#: The INT8 tools: ONNX Runtime's static quantiser and OpenVINO's NNCF (:mod:`edgedepth.export.quantize`), LiteRT's
#: ai-edge-quantizer (:mod:`edgedepth.export.litert`).
Quantizer = Literal["onnxruntime", "nncf", "ai-edge-quantizer"]
QUANTIZERS: tuple[Quantizer, ...] = get_args(Quantizer)
#: The quantisers that make each format's INT8 file (``--quantizer auto`` tries each); a format not here has no INT8.
FORMAT_QUANTIZERS: dict[str, tuple[Quantizer, ...]] = {
    "onnx": ("onnxruntime", "nncf"), "openvino": ("onnxruntime", "nncf"), "litert": ("ai-edge-quantizer",)}


@dataclass(frozen=True)
class Runtime:
    """One runtime name and everything it means."""

    name: str
    fmt: Format
    precision: Precision
    #: The quantiser that makes this runtime's INT8 file: the runtime's own (``None``: not an INT8 runtime).
    quantizer: Quantizer | None
    #: The Predictor class that opens the file, as ``module:Class`` (imported only when a file is opened), and its
    #: keyword options.
    predictor: str
    #: The Python package that runs it (its extra: :data:`edgedepth.core.extras.EXTRA_OF`).
    package: str
    summary: str
    options: Mapping[str, object] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.fmt]

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    def require(self) -> None:
        """Nothing where this runtime's package is installed; else a one-line EdgedepthError naming its extra."""
        require(self.package, f"the {self.name} runtime")

    def file_name(self, stem: str) -> str:
        """The name of this runtime's file of a network called ``stem``: ``stem.<runtime><suffix>``."""
        return f"{stem}.{self.name}{self.suffix}"


RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (
    Runtime("torch", "safetensors", "fp32", None, "edgedepth.runtime.pytorch:TorchPredictor", "torch",
            "PyTorch eager on our .safetensors weights, fused for inference"),
    Runtime("onnx", "onnx", "fp32", None, "edgedepth.runtime.onnx:OnnxPredictor", "onnxruntime", "ONNX Runtime, FP32"),
    Runtime("onnx-int8", "onnx", "int8", "onnxruntime", "edgedepth.runtime.onnx:OnnxPredictor", "onnxruntime",
            "ONNX Runtime, INT8 (QDQ) by ONNX Runtime's quantiser"),
    Runtime("openvino", "openvino", "fp32", None, "edgedepth.runtime.openvino:OpenVinoPredictor", "openvino", "OpenVINO, the FP32 IR in true f32"),
    Runtime("openvino-default", "openvino", "default", None, "edgedepth.runtime.openvino:OpenVinoPredictor", "openvino",
            "OpenVINO, the FP32 IR at OpenVINO's own precision (bf16 where the CPU has it)",
            options={"default_precision": True}),
    Runtime("openvino-int8", "openvino", "int8", "nncf", "edgedepth.runtime.openvino:OpenVinoPredictor", "openvino", "OpenVINO, INT8 by NNCF"),
    Runtime("torchscript", "torchscript", "fp32", None, "edgedepth.runtime.pytorch:TorchScriptPredictor", "torch",
            "TorchScript (what libtorch runs), PyTorch"),
    Runtime("ncnn", "ncnn", "fp32", None, "edgedepth.runtime.ncnn:NcnnPredictor", "ncnn", "ncnn, FP32"),
    Runtime("ncnn-fp16", "ncnn", "default", None, "edgedepth.runtime.ncnn:NcnnPredictor", "ncnn",
            "ncnn, the FP32 file with FP16 (or BF16) storage and arithmetic where the CPU has them",
            options={"fp16": True}),
    Runtime("litert", "litert", "fp32", None, "edgedepth.runtime.litert:LiteRtPredictor", "ai_edge_litert",
            "LiteRT (TensorFlow Lite) with XNNPACK, FP32"),
    Runtime("litert-int8", "litert", "int8", "ai-edge-quantizer", "edgedepth.runtime.litert:LiteRtPredictor",
            "ai_edge_litert", "LiteRT with XNNPACK, INT8 by LiteRT's quantiser (ai-edge-quantizer)"),
)}

#: The runtime each file suffix opens with by default (an INT8 file says so in its metadata).
_BY_SUFFIX = {".safetensors": "torch", ".onnx": "onnx", ".xml": "openvino", ".pt": "torchscript", ".param": "ncnn",
              ".tflite": "litert"}


def get_runtime(name: str, flag: str = "--runtime") -> Runtime:
    """The runtime called ``name``; another name is an EdgedepthError listing the known ones."""
    if name not in RUNTIMES:
        raise EdgedepthError(f"{flag} {name}: unknown runtime; use one of {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def runtime_of_file(path: str | Path) -> Runtime | None:
    """The runtime a model file opens with by default, from its suffix (``None``: not a model file of ours)."""
    name = _BY_SUFFIX.get(Path(path).suffix.lower())
    return RUNTIMES[name] if name is not None else None


def runtime_of_export(fmt: str, precision: str) -> Runtime:
    """The runtime that runs an exported file of format ``fmt`` made at ``precision`` (its metadata's
    :class:`~edgedepth.runtime.metadata.ExportInfo`): an INT8 file's runtime, or the format's FP32 one."""
    wanted = "int8" if precision == "int8" else "fp32"
    for runtime in RUNTIMES.values():
        if runtime.fmt == fmt and runtime.precision == wanted:
            return runtime
    raise EdgedepthError(f"no runtime runs {precision} {fmt} files")


def package_versions() -> dict[str, str]:
    """The installed version of every runtime's package (``not installed`` where it is missing), read from the
    package's metadata without importing it."""
    versions = {}
    for package in dict.fromkeys(runtime.package for runtime in RUNTIMES.values()):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
