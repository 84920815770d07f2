"""PyTorch: our ``.safetensors`` weights run eager, and TorchScript exports. NumPy batches in and out, converted here.

This is the one runtime module that imports PyTorch (it needs the ``train`` extra); :func:`load_predictor` imports it
only when a PyTorch file is opened.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgedepth.core.devices import resolve_device
from edgedepth.core.errors import EdgedepthError, last_line
from edgedepth.core.processing import Interpolation
from edgedepth.models.checkpoints import convert_hint, is_torch_save_archive, pickled_checkpoint_error
from edgedepth.models.registry import DepthNetwork, prepare_for_inference
from edgedepth.models.weights import load_model, read_metadata
from edgedepth.runtime.metadata import ExportMetadata
from edgedepth.runtime.predictor import ExportedPredictor, Predictor, existing_model_file

#: The TorchScript archive entry that holds our metadata (JSON of the four string entries).
TORCHSCRIPT_METADATA = "edgedepth.json"


def _set_threads(threads: int | None) -> None:
    """PyTorch's intra-op threads are the process's: set them where asked and not already so."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


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
        super().__init__(model.card, size, interpolation, provenance)
        self.device = torch.device(device)
        self.model = prepare_for_inference(model).to(self.device)

    @classmethod
    def open(cls, path: Path, size: tuple[int, int] | None, device: str, interpolation: Interpolation,
             threads: int | None, share_cores: bool, **options: Any) -> TorchPredictor:
        """Our weights as :func:`edgedepth.runtime.predictor.load_predictor` opens them, on ``device``."""
        resolved = str(resolve_device(device))
        _set_threads(threads)
        _, provenance = read_metadata(path)  # clear errors for missing, pickled (.pth) or foreign files first
        return cls(load_model(path), size, resolved, interpolation, provenance)

    def use_threads(self, threads: int) -> None:
        _set_threads(threads)

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        output = self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        return output.float().cpu().numpy()


class TorchScriptPredictor(ExportedPredictor):
    """A TorchScript export (``.pt`` made by ``edgedepth export --format torchscript``), run by PyTorch."""

    runtime = "torchscript"

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] | None = None,
        device: str = "cpu",
        interpolation: Interpolation = "cubic",
    ) -> None:
        path = existing_model_file(path)
        if is_torch_save_archive(path) or not zipfile.is_zipfile(path):  # torch.save's pickles: not TorchScript
            raise pickled_checkpoint_error(path)
        extra = {TORCHSCRIPT_METADATA: ""}
        try:
            # PyTorch 2.14 marks torch.jit deprecated (a FutureWarning per load, on the user's stderr); it works, and
            # a TorchScript file is what was asked for, as ``edgedepth export`` silences its trace and save.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
                self.module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except RuntimeError as exc:
            raise EdgedepthError(
                f"{path}: not a TorchScript export ({last_line(exc)}); if it is a PyTorch checkpoint, convert it "
                f"first: {convert_hint(path)}"
            ) from exc
        try:
            values = json.loads(extra[TORCHSCRIPT_METADATA] or "{}")
        except ValueError:
            values = {}
        super().__init__(path, ExportMetadata.from_strings(values, path), size, interpolation)
        self.device = torch.device(device)
        self.module.eval()

    @classmethod
    def open(cls, path: Path, size: tuple[int, int] | None, device: str, interpolation: Interpolation,
             threads: int | None, share_cores: bool, **options: Any) -> TorchScriptPredictor:
        """The file as :func:`edgedepth.runtime.predictor.load_predictor` opens it, on ``device``."""
        resolved = str(resolve_device(device))
        _set_threads(threads)
        return cls(path, size, resolved, interpolation)

    def use_threads(self, threads: int) -> None:
        _set_threads(threads)

    @torch.inference_mode()
    def run_graph(self, batch: np.ndarray) -> np.ndarray:
        output = self.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        return output.float().cpu().numpy()
