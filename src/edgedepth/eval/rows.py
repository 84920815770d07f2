"""The rows of the zero-shot table: a model eval opens (:func:`edgedepth.eval.models.open_model`), or a folder of
predictions saved in Marigold's layout by anyone."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.data.marigold import EvalSet, crop_array
from edgedepth.eval.models import DepthModel
from edgedepth.eval.zeroshot_metrics import ALIGNMENT_SPACES, AlignmentSpace
from edgedepth.eval.zeroshot_protocols import Frame

#: The file beside saved predictions that says what they are (read back by ``--predictions``).
PREDICTIONS_INFO = "edgedepth_predictions.json"

PREDICTIONS_FORMAT = "edgedepth.predictions/1"


class Row(ABC):
    """One row of the table: a label, what its predictions are (``kind``) and where they come from."""

    label: str
    kind: AlignmentSpace
    source: str
    slug: str  # its folder name under --save-predictions

    @property
    def needs_image(self) -> bool:
        return True

    @abstractmethod
    def predict(self, frame: Frame, evalset: EvalSet) -> np.ndarray:
        """The raw prediction of the frame, ``H x W`` at the ground truth's (cropped) size."""


class ModelRow(Row):
    """A model eval opens (:func:`edgedepth.eval.models.open_model`): relative inverse depth, aligned in disparity."""

    kind: AlignmentSpace = "disparity"

    def __init__(self, model: DepthModel, label: str, source: str, slug: str, training_data: str) -> None:
        self.model, self.label, self.source, self.slug, self.training_data = model, label, source, slug, training_data

    def predict(self, frame: Frame, evalset: EvalSet) -> np.ndarray:
        assert frame.image is not None
        prediction = self.model.predict_batch([frame.image])[0, 0]
        return crop_array(prediction, frame.prediction_crop) if frame.prediction_crop else prediction


class PredictionsRow(Row):
    """A folder of saved predictions: ``<folder>/<set>/<Marigold's prediction path>``, float ``.npy``."""

    def __init__(self, folder: Path, kind: AlignmentSpace | None, slug: str) -> None:
        if not folder.exists():
            raise EdgedepthError(f"{folder}: no such folder of predictions")
        if not folder.is_dir():
            raise EdgedepthError(f"{folder}: a file, not a folder; --predictions takes a folder with <set>/ folders")
        info = _read_predictions_info(folder)
        kind = kind or info.get("kind")
        if kind not in ALIGNMENT_SPACES:
            raise EdgedepthError(
                f"{folder}: no {PREDICTIONS_INFO} says what these predictions are; pass --prediction-kind depth "
                "(affine-invariant depth, e.g. Marigold's) or disparity (inverse depth, e.g. Depth Anything's)"
            )
        self.folder, self.kind, self.slug = folder, kind, slug
        self.label = str(info.get("method") or folder.name)
        self.source = str(folder)

    @property
    def needs_image(self) -> bool:
        return False

    def has_set(self, evalset: EvalSet) -> bool:
        return (self.folder / evalset.name).is_dir()

    def predict(self, frame: Frame, evalset: EvalSet) -> np.ndarray:
        path = self.folder / evalset.name / evalset.prediction_path(frame.sample.entry.rgb)
        if not path.is_file():
            raise EdgedepthError(f"{path}: no such prediction")
        try:
            prediction = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise EdgedepthError(f"{path}: unreadable .npy ({exc})") from exc
        squeezed = [side for side in prediction.shape if side != 1]  # 1 x H x W and H x W alike, as Marigold's
        if squeezed != [side for side in frame.depth.shape if side != 1] or not np.issubdtype(prediction.dtype,
                                                                                               np.number):
            height, width = frame.depth.shape
            raise EdgedepthError(f"{path}: {prediction.dtype} {prediction.shape}, expected {height} x {width} numbers "
                                 "(the ground truth's size)")
        return prediction.reshape(frame.depth.shape).astype(np.float32, copy=False)  # as Marigold's eval.py reads it


def _read_predictions_info(folder: Path) -> dict[str, Any]:
    path = folder / PREDICTIONS_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgedepthError(f"{path}: unreadable ({exc}); remove it and pass --prediction-kind") from exc
    return info if isinstance(info, dict) else {}
