"""One Predictor: RGB images in, relative inverse depth at each image's own resolution out.

Pre- and post-processing come from :mod:`edgedepth.core.processing`; a runtime only supplies ``infer``,
the network on a normalised batch. So every runtime gives the same numbers on the same image.

Runtimes, chosen by the model file's suffix in :func:`load_predictor` (or named, from
:data:`edgedepth.runtime.runtimes.RUNTIMES`):

- ``.safetensors``: our weights, run by PyTorch eager (:class:`TorchPredictor`);
- ``.onnx``: an ``edgedepth export`` (FP32 or INT8), run by ONNX Runtime (:class:`OnnxPredictor`);
- ``.xml``: an OpenVINO IR (FP32 or INT8) with its ``.bin`` beside it (:class:`OpenVinoPredictor`);
- ``.pt``: a TorchScript export (:class:`TorchScriptPredictor`).

Exported files have a fixed input size (their card's ``input_size``); asking for another is an error.

How an image meets the network (``fit``, :data:`edgedepth.core.processing.Fit`): by default it is stretched to the input
size, the seed's rule, which the evaluation protocols keep. ``load_predictor(..., keep_aspect=True)`` (predict, serve,
the video loop) keeps its shape instead: PyTorch takes the image resized to its aspect, sides multiples of the
network's, near the input size's pixel count; fixed-size exports letterbox it (pad, then crop the padding off the
output). Either way the output comes back at the image's full resolution.
"""

from __future__ import annotations

import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from edgedepth.core.devices import resolve_device
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
from edgedepth.models.registry import DepthNetwork, ModelCard
from edgedepth.runtime.metadata import KEYS, ExportInfo, ExportMetadata
from edgedepth.runtime.runtimes import get_runtime, runtime_of_file

#: The TorchScript archive entry that holds our metadata (JSON of the four string entries).
TORCHSCRIPT_METADATA = "edgedepth.json"


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
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the network on a normalised ``N x 3 x H x W`` batch; return ``N x 1 x H x W`` inverse depth."""

    def input_size_for(self, image_size: tuple[int, int]) -> tuple[tuple[int, int], Box | None]:
        """The network input ``(width, height)`` for an image of ``image_size``, and its letterbox (or None)."""
        if self.fit == "aspect":
            return aspect_size(image_size, self.size, self.card.size_multiple), None
        if self.fit == "letterbox":
            return self.size, letterbox_box(image_size, self.size)
        return self.size, None

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int], Box | None]:
        """Images (all the same size) as the network's normalised batch, with its input size and letterbox."""
        height, width = images[0].shape[:2]
        size, box = self.input_size_for((width, height))
        return preprocess(images, size, self.card.mean, self.card.std, self.interpolation, box), size, box

    def network_output(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Images (all the same size) to ``N x 1 x h x w`` inverse depth at the network's size (a letterbox's
        padding cropped off), on the CPU."""
        batch, size, box = self.prepare(images)
        return crop_box(self.infer(batch).float().cpu(), box, size)

    def predict_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Images (all the same size) to ``N x 1 x H x W`` inverse depth at that size, on the CPU."""
        height, width = images[0].shape[:2]
        return upsample_prediction(self.network_output(images), (width, height))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """One RGB image (uint8, or float in [0, 1]) to an ``H x W`` float32 inverse depth map."""
        return self.predict_batch([image])[0, 0].numpy()


class TorchPredictor(Predictor):
    """A PyTorch network (our ``.safetensors`` weights), fused for inference where it knows how
    (:func:`edgedepth.models.prepare_for_inference`: ZipDepth's RepVGG blocks and BatchNorms)."""

    runtime = "torch"

    def __init__(
        self,
        model: DepthNetwork,
        size: tuple[int, int] | None = None,
        device: str = "cpu",
        interpolation: Interpolation = "cubic",
        provenance: dict[str, Any] | None = None,
    ) -> None:
        from edgedepth.models.registry import prepare_for_inference

        super().__init__(model.card, size, interpolation, provenance)
        self.device = torch.device(device)
        self.model = prepare_for_inference(model).to(self.device)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device))


class _ExportedPredictor(Predictor):
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
    def run_graph(self, batch: torch.Tensor) -> torch.Tensor:
        """The exported graph on a normalised batch (its own output, before any :meth:`infer` adds)."""

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """The graph, then the network's last x2 upsampling where the export deferred it (counted in every timing)."""
        output = self.run_graph(batch)
        mode = self.export.final_upsample
        return output if mode is None else final_upsample(output, mode)


class OnnxPredictor(_ExportedPredictor):
    """An exported ``.onnx`` (FP32 or INT8 QDQ) run by ONNX Runtime on the CPU.

    ``threads`` sets ``intra_op_num_threads`` (``None``: ONNX Runtime's default, all cores).
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] | None = None,
        interpolation: Interpolation = "cubic",
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        path = _existing(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's InvalidProtobuf, Fail, ... derive from Exception only
            raise EdgedepthError(f"{path}: not a readable ONNX model ({_last_line(exc)})") from exc
        values = self.session.get_modelmeta().custom_metadata_map
        metadata = ExportMetadata.from_strings({k: values[f"edgedepth.{k}"] for k in KEYS if f"edgedepth.{k}" in values},
                                               path)
        super().__init__(path, metadata, size, interpolation)
        self._input = self.session.get_inputs()[0].name
        _check_input_shape(path, self.session.get_inputs()[0].shape, self.size)

    def run_graph(self, batch: torch.Tensor) -> torch.Tensor:
        (output,) = self.session.run(None, {self._input: batch.numpy()})
        return torch.from_numpy(output)


class OpenVinoPredictor(_ExportedPredictor):
    """An OpenVINO IR (``.xml`` + ``.bin``, FP32 or INT8) compiled for the CPU with the latency hint.

    FP32 files are compiled with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AVX-512 BF16 or AMX,
    OpenVINO would otherwise silently run them in bfloat16. ``default_precision=True`` leaves OpenVINO its own
    choice (bf16 there; what ``bench`` times as ``openvino-default``). ``inference_precision`` says what it chose.
    The IR has batch 1; a batch runs image by image.
    """

    runtime = "openvino"

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] | None = None,
        interpolation: Interpolation = "cubic",
        threads: int | None = None,
        default_precision: bool = False,
    ) -> None:
        import openvino as ov

        path = _existing(path)
        _check_ir(path)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise EdgedepthError(f"{path}: not a readable OpenVINO IR (.xml with its .bin beside it): "
                                 f"{_last_line(exc)}") from exc
        values = {k: model.get_rt_info(["edgedepth", k]).astype(str) for k in KEYS if model.has_rt_info(["edgedepth", k])}
        metadata = ExportMetadata.from_strings(values, path)
        super().__init__(path, metadata, size, interpolation)
        _check_input_shape(path, [d.get_length() if d.is_static else None for d in model.inputs[0].partial_shape],
                           self.size)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if metadata.info.precision == "fp32" and not default_precision:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inference_precision: str = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "bf16"

    def run_graph(self, batch: torch.Tensor) -> torch.Tensor:
        outputs = [self.request.infer({0: image[None]})[0].copy() for image in batch.numpy()]
        return torch.from_numpy(np.concatenate(outputs))


class TorchScriptPredictor(_ExportedPredictor):
    """A TorchScript export (``.pt`` made by ``edgedepth export --format torchscript``), run by PyTorch."""

    runtime = "torchscript"

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] | None = None,
        device: str = "cpu",
        interpolation: Interpolation = "cubic",
    ) -> None:
        import json

        from edgedepth.models.checkpoints import convert_hint, is_torch_save_archive, pickled_checkpoint_error

        path = _existing(path)
        extra = {TORCHSCRIPT_METADATA: ""}
        if not zipfile.is_zipfile(path):
            raise EdgedepthError(f"{path}: not a TorchScript archive")
        if is_torch_save_archive(path):  # a checkpoint or state dict (torch.save), which TorchScript calls corrupt
            raise pickled_checkpoint_error(path)
        try:
            # PyTorch 2.14 marks torch.jit deprecated (a FutureWarning per load, on the user's stderr); it works, and
            # a TorchScript file is what was asked for, as ``edgedepth export`` silences its trace and save.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
                self.module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except RuntimeError as exc:
            raise EdgedepthError(
                f"{path}: not a TorchScript export ({_last_line(exc)}); if it is a PyTorch checkpoint, convert it "
                f"first: {convert_hint(path)}"
            ) from exc
        try:
            values = json.loads(extra[TORCHSCRIPT_METADATA] or "{}")
        except ValueError:
            values = {}
        super().__init__(path, ExportMetadata.from_strings(values, path), size, interpolation)
        self.device = torch.device(device)
        self.module.eval()

    @torch.inference_mode()
    def run_graph(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch.to(self.device))


def _existing(path: str | Path) -> Path:
    return check_input_file(path, f"a model file ({Path(path).suffix or 'no suffix'})", "no such model file")


def _check_ir(path: Path) -> None:
    """An IR is a well-formed ``<net>`` XML with its ``.bin`` beside it: checked before OpenVINO reads it, since
    OpenVINO offers a file its IR reader refuses to its other frontends, and TensorFlow's logs its parse errors
    on stderr (lines a user of this command would see above its own)."""
    from xml.etree import ElementTree

    unreadable = f"{path}: not a readable OpenVINO IR (.xml with its .bin beside it)"
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise EdgedepthError(f"{unreadable}: not well-formed XML ({exc}); export it again") from exc
    if root.tag != "net":
        raise EdgedepthError(f"{unreadable}: its root element is <{root.tag}>, not <net>")
    if not path.with_suffix(".bin").is_file():
        raise EdgedepthError(f"{unreadable}: {path.with_suffix('.bin').name} is missing; keep it beside the .xml")


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of an error (OpenVINO and ONNX Runtime put the reason there), shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def _check_input_shape(path: Path, shape: Sequence[object], size: tuple[int, int]) -> None:
    """The graph's input must be ``N x 3 x H x W`` with the card's size: a mismatch means a tampered file."""
    if len(shape) != 4 or list(shape[1:]) != [3, size[1], size[0]]:
        raise EdgedepthError(f"{path}: network input {list(shape)} does not match its card's {format_size(size)}")


def load_predictor(
    weights: str | Path,
    size: tuple[int, int] | None = None,
    device: str = "cpu",
    interpolation: Interpolation = "cubic",
    threads: int | None = None,
    keep_aspect: bool = False,
    runtime: str | None = None,
) -> Predictor:
    """Open a model file with the Predictor of ``runtime`` (a name of :data:`edgedepth.runtime.runtimes.RUNTIMES`),
    by default the runtime its suffix names (see the module docstring).

    ``threads`` sets the network's intra-op threads (``None``: the runtime's default, all cores); for PyTorch
    (``.safetensors``, ``.pt``) that is ``torch.set_num_threads``, and OpenCV's (post-processing) follows, both
    process-wide settings. ``keep_aspect``: images keep their shape (PyTorch: aspect-kept input; exports of a fixed
    size: letterboxed), else they are stretched.
    """
    predictor = _open_predictor(Path(weights), size, device, interpolation, threads, runtime)
    if keep_aspect:
        predictor.fit = "aspect" if isinstance(predictor, TorchPredictor) else "letterbox"
    return predictor


def _open_predictor(
    path: Path, size: tuple[int, int] | None, device: str, interpolation: Interpolation, threads: int | None,
    runtime_name: str | None,
) -> Predictor:
    from edgedepth.models.weights import load_model, read_metadata

    if threads is not None and threads < 1:
        raise EdgedepthError(f"--threads {threads}: the network needs at least one thread")
    if threads is not None:  # OpenCV's post-processing (an export's final upsampling) runs on as many
        cv2.setNumThreads(threads)
    resolved = resolve_device(device)
    runtime = get_runtime(runtime_name) if runtime_name is not None else runtime_of_file(path)
    if runtime is not None and path.suffix.lower() != runtime.suffix:
        raise EdgedepthError(f"{path}: the {runtime.name} runtime runs {runtime.suffix} files")
    if runtime is not None and runtime.package != "torch":
        if resolved.type != "cpu":
            raise EdgedepthError(f"{path}: ONNX and OpenVINO models run on the CPU here; use --device cpu")
        opener = {"OnnxPredictor": OnnxPredictor, "OpenVinoPredictor": OpenVinoPredictor}[runtime.predictor]
        return opener(path, size, interpolation, threads, **runtime.options)
    if threads is not None:
        torch.set_num_threads(threads)
    if path.suffix.lower() == ".pt" and path.is_file() and zipfile.is_zipfile(path):
        return TorchScriptPredictor(path, size, str(resolved), interpolation)
    _, provenance = read_metadata(path)  # clear errors for missing, pickled (.pth) or foreign files first
    return TorchPredictor(load_model(path), size, str(resolved), interpolation, provenance)
