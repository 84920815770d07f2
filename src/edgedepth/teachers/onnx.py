"""ONNX teachers: ``onnx:<path>[?size=WxH&mean=R,G,B&std=R,G,B]``, run with ONNX Runtime.

The model takes one ``N x 3 x H x W`` float32 input, an RGB image in [0, 1] normalised as
``(x - mean) / std`` (ImageNet's mean and std unless the spec gives others), and its first output is
inverse depth, ``N x 1 x h x w`` or ``N x h x w``. Its input size is read from the model's static input
shape; a model with dynamic height and width needs ``size=WxH`` in the spec. Images are resized bicubically
(:func:`edgedepth.core.processing.preprocess`), aspect not kept, and the output is brought back to each image.
A model with a static batch of 1 is run one image at a time.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_input_file
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD, preprocess
from edgedepth.core.sizes import format_size, parse_size
from edgedepth.teachers.base import Teacher

#: What may follow ``?`` in an ONNX teacher spec.
ONNX_OPTIONS = ("size", "mean", "std")


def _parse_triple(name: str, text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(value) for value in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise EdgedepthError(f"onnx teacher option {name}={text!r}: expected three numbers, e.g. {name}=0.5,0.5,0.5")
    return values


def parse_onnx_spec(
    text: str,
) -> tuple[Path, tuple[int, int] | None, tuple[float, float, float], tuple[float, float, float]]:
    """Parse ``<path>[?size=WxH&mean=R,G,B&std=R,G,B]`` (the part after ``onnx:``) into path, size, mean, std."""
    path, _, query = text.partition("?")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True)) if query else {}
    unknown = sorted(set(options) - set(ONNX_OPTIONS))
    if unknown:
        raise EdgedepthError(f"onnx teacher: unknown option {unknown[0]!r}; use {', '.join(ONNX_OPTIONS)}")
    size = parse_size(options["size"]) if "size" in options else None
    mean = _parse_triple("mean", options["mean"]) if "mean" in options else IMAGENET_MEAN
    std = _parse_triple("std", options["std"]) if "std" in options else IMAGENET_STD
    return Path(path).expanduser(), size, mean, std


def _static_size(shape: Sequence[object]) -> tuple[int, int] | None:
    """``(width, height)`` of an ``N x 3 x H x W`` input shape, if both are fixed numbers."""
    height, width = shape[2], shape[3]
    return (width, height) if isinstance(height, int) and isinstance(width, int) else None


class OnnxTeacher(Teacher):
    """An ONNX model that maps a normalised RGB batch to inverse depth."""

    def __init__(self, spec: str, device: str = "cpu") -> None:
        """``spec`` is the part after ``onnx:``."""
        import onnxruntime

        path, size, self.mean, self.std = parse_onnx_spec(spec)
        check_input_file(path, "an ONNX model", "no such ONNX file")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # ONNX Runtime's InvalidProtobuf, InvalidArgument, ... derive from Exception only
            first_line = str(exc).strip().splitlines()[0]
            raise EdgedepthError(f"{path}: not a readable ONNX model ({first_line})") from exc
        model_input = self.session.get_inputs()[0]
        if len(model_input.shape) != 4:
            raise EdgedepthError(f"{path}: expected one N x 3 x H x W input, got shape {model_input.shape}")
        batch = model_input.shape[0]
        if isinstance(batch, int) and batch != 1:
            raise EdgedepthError(f"{path}: the model's batch is fixed at {batch}; export it with batch 1 or a dynamic one")
        static = _static_size(model_input.shape)
        if static is not None and size is not None and static != size:
            raise EdgedepthError(f"{path}: model input fixed at {format_size(static)}, not {format_size(size)}")
        if static is None and size is None:
            raise EdgedepthError(f"{path}: the model's input size is dynamic; give one, e.g. onnx:{path}?size=512x384")
        self.input_size = static or size
        self._input_name = model_input.name
        self._one_at_a_time = batch == 1
        self.name = f"onnx:{path}"

    def _infer(self, images: Sequence[np.ndarray], depths: Sequence[np.ndarray] | None) -> torch.Tensor:
        assert self.input_size is not None  # the model's static size or the one given (__init__ refuses neither)
        batch = preprocess(images, self.input_size, self.mean, self.std, "cubic")
        chunks = np.split(batch, len(batch)) if self._one_at_a_time else [batch]
        outputs = [self.session.run(None, {self._input_name: chunk})[0] for chunk in chunks]
        prediction = torch.from_numpy(np.concatenate(outputs))
        return prediction.reshape(len(images), 1, *prediction.shape[-2:])
