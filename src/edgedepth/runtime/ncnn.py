"""ncnn (Tencent's CPU runtime, the fastest on Raspberry Pi in published comparisons): an exported ``.param`` with its
``.bin`` weights beside it, NumPy in and out.

ncnn's files have no place for metadata, so the model card and export record sit in a third file beside them,
``NAME.json`` (the four entries every export carries, :mod:`edgedepth.runtime.metadata`). ``fp16``: ncnn's own
choice, FP16 (or BF16) storage and arithmetic where the CPU has them; otherwise everything stays FP32 (ncnn's
defaults differ by CPU, so each option is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import Interpolation
from edgedepth.runtime.metadata import read_sidecar
from edgedepth.runtime.predictor import ExportedPredictor, check_cpu, existing_model_file

#: ncnn's names of the graph's input and output, as pnnx writes them.
INPUT_BLOB, OUTPUT_BLOB = "in0", "out0"
#: ncnn's reduced-precision options: all on with ``fp16``, all off otherwise.
_REDUCED_PRECISION = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage")


class NcnnPredictor(ExportedPredictor):
    """An exported ncnn model run on the CPU; ``threads`` sets ncnn's ``num_threads`` (``None``: every core)."""

    runtime = "ncnn"

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, interpolation: Interpolation = "cubic",
                 threads: int | None = None, fp16: bool = False) -> None:
        import ncnn

        path = existing_model_file(path)
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise EdgedepthError(f"{path}: its ncnn weights (.bin) {weights.name} is missing beside it; copy the three "
                                 "files of the export together")
        super().__init__(path, read_sidecar(path), size, interpolation)
        self.net = ncnn.Net()
        for option in _REDUCED_PRECISION:
            setattr(self.net.opt, option, fp16)
        if threads is not None:
            self.net.opt.num_threads = threads
        if self.net.load_param(str(path)) != 0 or self.net.load_model(str(weights)) != 0:
            raise EdgedepthError(f"{path}: not a readable ncnn model (ncnn could not load the .param and .bin)")
        if INPUT_BLOB not in self.net.input_names() or OUTPUT_BLOB not in self.net.output_names():
            raise EdgedepthError(f"{path}: an ncnn graph without the {INPUT_BLOB} and {OUTPUT_BLOB} blobs pnnx writes")
        self.path = path
        #: What it computes in, as bench reports it beside OpenVINO's: FP32, or ncnn's reduced precision.
        self.inference_precision = "f16" if fp16 else "f32"

    @classmethod
    def open(cls, path: Path, size: tuple[int, int] | None, device: str, interpolation: Interpolation,
             threads: int | None, share_cores: bool, **options: Any) -> NcnnPredictor:
        """The file as :func:`edgedepth.runtime.predictor.load_predictor` opens it: on the CPU."""
        check_cpu(device, f"{path}: ncnn")
        return cls(path, size, interpolation, threads, **options)

    def run_graph(self, batch: np.ndarray) -> np.ndarray:
        """ncnn runs one image at a time: each of the batch through its own extractor."""
        import ncnn

        outputs = []
        for image in np.ascontiguousarray(batch, dtype=np.float32):
            extractor = self.net.create_extractor()
            extractor.input(INPUT_BLOB, ncnn.Mat(image).clone())
            _, output = extractor.extract(OUTPUT_BLOB)
            depth = np.array(output)
            if depth.ndim < 2 or depth.size != depth.shape[-1] * depth.shape[-2]:
                raise EdgedepthError(f"{self.path}: ncnn's output is {list(depth.shape)}, not one depth map (a graph "
                                     "ncnn's converter did not keep)")
            outputs.append(depth.reshape(1, *depth.shape[-2:]))
        return np.stack(outputs)
