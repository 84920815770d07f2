"""The registry networks a benchmark times (random weights, seeded: speed only), each made into the file each
runtime runs (:func:`edgedepth.export.graph.runtime_file`; INT8 calibrated on synthetic scenes). PyTorch builds them;
``bench --files`` does without this module."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edgedepth.core.card import ModelCard
from edgedepth.core.processing import preprocess
from edgedepth.models import DepthNetwork, create_model, prepare_for_inference
from edgedepth.runtime.runtimes import get_runtime

#: Synthetic scenes used to calibrate the INT8 cells (speed only: a few are enough for realistic ranges).
CALIBRATION_SCENES = 8


def build_network(name: str, size: tuple[int, int] | None) -> DepthNetwork:
    """A registry network with random weights (seeded), fused for inference, in eval mode, its card at the size it
    is timed at: ``size`` as the network takes it, or its own default."""
    torch.manual_seed(0)
    model = create_model(name, card={"input_size": size} if size is not None else None)
    return prepare_for_inference(model)


def load_network(path: Path, size: tuple[int, int] | None) -> DepthNetwork:
    """Trained weights, fused for inference, their card at the size they are timed at (``None``: their own)."""
    from edgedepth.models.weights import load_model

    model = load_model(path)
    if size is not None:
        model.card = replace(model.card, input_size=model.card.fit_size(size))
    return prepare_for_inference(model)


def calibration(card: ModelCard) -> list[np.ndarray]:
    """Normalised synthetic scenes at the card's size: realistic activation ranges for the INT8 cells."""
    from edgedepth.data.synthetic import render_scene

    width, height = card.input_size
    scenes = [render_scene(1000 + k, (width * 5 // 4, height * 5 // 4)).image for k in range(CALIBRATION_SCENES)]
    return [preprocess([image], card.input_size, card.mean, card.std) for image in scenes]


def cell_file(model: DepthNetwork, runtime: str, folder: Path, checked: bool = False) -> tuple[Path, float | None]:
    """The file a runtime's cells run; for INT8, also its output's correlation with FP32 (``None`` where it is
    undefined: a random-weight peer whose output is constant). ``checked``: built with the export's checks (trained
    weights: FP32 against PyTorch, INT8 against FP32 with its floating-point fallback), as a user's export is."""
    from edgedepth.export.graph import runtime_file

    chosen = get_runtime(runtime)
    return runtime_file(model, chosen, folder / model.card.name, calibration(model.card) if chosen.int8 else None,
                        checked=checked)
