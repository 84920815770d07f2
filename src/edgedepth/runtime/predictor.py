"""One Predictor: RGB images in, relative inverse depth at each image's own resolution out.

Pre- and post-processing come from :mod:`edgedepth.core.processing`; a runtime only supplies ``infer``,
the network on a normalised batch. So every runtime gives the same numbers on the same image.

Runtimes, chosen by the model file's suffix in :func:`load_predictor` (or named, from
:data:`edgedepth.runtime.runtimes.RUNTIMES`, which says which class opens each):

- ``.safetensors``: our weights, run by PyTorch eager (:class:`~edgedepth.runtime.pytorch.TorchPredictor`);
- ``.onnx``: an ``edgedepth export`` (FP32 or INT8), run by ONNX Runtime (:class:`~edgedepth.runtime.onnx.OnnxPredictor`);
- ``.xml``: an OpenVINO IR (FP32 or INT8) with its ``.bin`` beside it
  (:class:`~edgedepth.runtime.openvino.OpenVinoPredictor`);
- ``.pt``: a TorchScript export (:class:`~edgedepth.runtime.pytorch.TorchScriptPredictor`).

Batches are NumPy arrays throughout: this module and the ONNX Runtime and OpenVINO predictors import no training
framework (a contract of ``lint-imports``); the PyTorch predictors convert at their own boundary, and are imported
only when a PyTorch file is opened.

Exported files have a fixed input size (their card's ``input_size``); asking for another is an error.

How an image meets the network (``fit``, :data:`edgedepth.core.processing.Fit`): :func:`load_predictor` keeps its
shape by default, as predict, serve and the video loop do: PyTorch takes the image resized to its aspect, sides
multiples of the network's, near the input size's pixel count; fixed-size exports letterbox it (pad, then crop the
padding off the output). ``load_predictor(..., keep_aspect=False)`` stretches it to the input size instead, the seed's
rule, which the evaluation protocols keep. Either way the output comes back at the image's full resolution.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_input_file
from edgedepth.core.processing import (
    Fit,
    Interpolation,
    aspect_size,
    crop_box,
    final_upsample,
    letterbox_box,
    preprocess,
    upsample_prediction,
)
from edgedepth.core.sizes import Box, format_size
from edgedepth.runtime.metadata import ExportInfo, ExportMetadata
from edgedepth.runtime.runtimes import RUNTIMES, Runtime, get_runtime, runtime_of_file


class Predictor(ABC):
    """Base of all runtimes. ``size`` is the network input ``(width, height)``.

    ``provenance`` is the weights' provenance (training data, teacher, ...); ``export`` says how an
    exported file was made (``None`` for our ``.safetensors`` run by PyTorch). ``fit`` says how images meet the
    network (see the module docstring); ``stretch`` unless set.
    """

    runtime: str = ""
    fit: Fit = "stretch"

    def __init__(
        self,
        card: ModelCard,
        size: tuple[int, int] | None = None,
        interpolation: Interpolation = "cubic",
        provenance: dict[str, Any] | None = None,
        export: ExportInfo | None = None,
    ):
        self.card = card
        self.size = card.fit_size(size)
        self.interpolation = interpolation
        self.provenance = dict(provenance or {})
        self.export = export

    @property
    def name(self) -> str:
        return self.card.name

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a normalised ``N x 3 x H x W`` float32 batch; return ``N x 1 x H x W`` inverse depth."""

    def use_threads(self, threads: int) -> None:
        """Run on ``threads`` threads from now on, where the runtime's threads are the process's (PyTorch); other
        runtimes fix theirs when the file is opened, so this does nothing there."""

    def input_size_for(self, image_size: tuple[int, int]) -> tuple[tuple[int, int], Box | None]:
        """The network input ``(width, height)`` for an image of ``image_size``, and its letterbox (or None)."""
        if self.fit == "aspect":
            return aspect_size(image_size, self.size, self.card.size_multiple), None
        if self.fit == "letterbox":
            return self.size, letterbox_box(image_size, self.size)
        return self.size, None

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[int, int], Box | None]:
        """Images (all the same size) as the network's normalised batch, with its input size and letterbox."""
        height, width = images[0].shape[:2]
        size, box = self.input_size_for((width, height))
        return preprocess(images, size, self.card.mean, self.card.std, self.interpolation, box), size, box

    def network_output(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images (all the same size) to ``N x 1 x h x w`` float32 inverse depth at the network's size (a letterbox's
        padding cropped off)."""
        batch, size, box = self.prepare(images)
        return crop_box(self.infer(batch), box, size)

    def predict_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images (all the same size) to ``N x 1 x H x W`` float32 inverse depth at that size."""
        height, width = images[0].shape[:2]
        return upsample_prediction(self.network_output(images), (width, height))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """One RGB image (uint8, or float in [0, 1]) to an ``H x W`` float32 inverse depth map."""
        return self.predict_batch([image])[0, 0]


class ExportedPredictor(Predictor):
    """A network exported at a fixed input size, whose file carries its card (see :mod:`.metadata`)."""

    export: ExportInfo  # always set: the file says how it was made

    def __init__(
        self, path: Path, metadata: ExportMetadata, size: tuple[int, int] | None, interpolation: Interpolation
    ) -> None:
        exported = metadata.card.input_size
        if size is not None and tuple(size) != exported:
            raise EdgedepthError(
                f"{path}: exported for input {format_size(exported)}, not {format_size(size)}; "
                f"drop --size or re-export with --size {format_size(size)}"
            )
        super().__init__(metadata.card, None, interpolation, metadata.provenance, metadata.info)

    @abstractmethod
    def run_graph(self, batch: np.ndarray) -> np.ndarray:
        """The exported graph on a normalised batch (its own output, before any :meth:`infer` adds)."""

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The graph, then the network's last x2 upsampling where the export deferred it (counted in every timing)."""
        output = np.asarray(self.run_graph(batch), dtype=np.float32)
        mode = self.export.final_upsample
        return output if mode is None else final_upsample(output, mode)


def existing_model_file(path: str | Path) -> Path:
    """``path`` if it is a model file with something in it, else a one-line EdgedepthError."""
    return check_input_file(path, f"a model file ({Path(path).suffix or 'no suffix'})", "no such model file")


def check_input_shape(path: Path, shape: Sequence[object], size: tuple[int, int]) -> None:
    """The graph's input must be ``N x 3 x H x W`` with the card's size: a mismatch means a tampered file."""
    if len(shape) != 4 or list(shape[1:]) != [3, size[1], size[0]]:
        raise EdgedepthError(f"{path}: network input {list(shape)} does not match its card's {format_size(size)}")


def check_cpu(device: str, what: str) -> None:
    """For a runtime that runs on the CPU alone: ``cpu`` and ``auto`` pass, any other device is a one-line error."""
    if device not in ("cpu", "auto"):
        raise EdgedepthError(f"{what} runs on the CPU here, not {device}; use --device cpu")


def load_predictor(
    weights: str | Path,
    size: tuple[int, int] | None = None,
    device: str = "cpu",
    interpolation: Interpolation = "cubic",
    threads: int | None = None,
    keep_aspect: bool = True,
    runtime: str | None = None,
    share_cores: bool = False,
) -> Predictor:
    """Open a model file with the Predictor of ``runtime`` (a name of :data:`edgedepth.runtime.runtimes.RUNTIMES`),
    by default the runtime its suffix names (see the module docstring).

    ``threads`` sets the network's intra-op threads (``None``: the runtime's default, all cores); for PyTorch
    (``.safetensors``, ``.pt``) that is ``torch.set_num_threads``, and OpenCV's (post-processing) follows, both
    process-wide settings. ``keep_aspect`` (the default, as the command line runs): images keep their shape
    (PyTorch: aspect-kept input; exports of a fixed size: letterboxed); ``False``: they are stretched to the input
    size (the evaluation protocols). ``share_cores``: the network shares the cores with other busy
    threads (the video loop's stages), so its runtime's idle threads sleep instead of spin-waiting for the next
    operator (ONNX Runtime's ``allow_spinning``; PyTorch's threads always sleep, ``OMP_WAIT_POLICY=PASSIVE``;
    OpenVINO has no such setting). Spinning saves a wake-up per operator when the network has the cores to
    itself, and steals them from every other thread when it does not. A runtime whose package is not installed is
    a one-line EdgedepthError naming the extra to install.
    """
    path = Path(weights)
    if threads is not None and threads < 1:
        raise EdgedepthError(f"--threads {threads}: the network needs at least one thread")
    if threads is not None:  # OpenCV's post-processing (an export's final upsampling) runs on as many
        cv2.setNumThreads(threads)
    chosen = get_runtime(runtime) if runtime is not None else runtime_of_file(path) or RUNTIMES["torch"]
    if runtime is not None and path.suffix.lower() != chosen.suffix:
        raise EdgedepthError(f"{path}: the {chosen.name} runtime runs {chosen.suffix} files")
    predictor = opener(chosen).open(path, size, device, interpolation, threads, share_cores, **chosen.options)
    if keep_aspect:
        predictor.fit = "aspect" if chosen.fmt == "safetensors" else "letterbox"
    return predictor


def opener(runtime: Runtime) -> Any:
    """The Predictor class that opens ``runtime``'s files (``module:Class`` in the table), imported now: a runtime's
    library is loaded only when one of its files is opened. A missing package is a one-line EdgedepthError."""
    runtime.require()
    module, _, name = runtime.predictor.partition(":")
    return getattr(importlib.import_module(module), name)
