"""Networks briefly trained from scratch on synthetic scenes, and how their outputs score on held-out scenes.

Shared by the benchmarks that need a trained network from a fresh clone (no teacher, no download: oracle labels of
synthetic scenes with exact depth) and by those that score a file's outputs against exact depth. The scripts in this
folder are run by path, so they import it by name from their own folder (``benchmarks`` is not a package).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from edgedepth.core.config import load_config
from edgedepth.core.depth import UnscorableImage
from edgedepth.data import synthetic
from edgedepth.data.shards import read_index
from edgedepth.eval.metrics import score_prediction
from edgedepth.label import job as label
from edgedepth.label.recipe import Recipe
from edgedepth.train import loop as train
from edgedepth.train.config import TrainConfig


def oracle_labels(out: Path, scenes: int, train_size: tuple[int, int]) -> Path:
    """``scenes`` synthetic 160x120 scenes under ``out/scenes``, labelled by the oracle teacher into ``out/labels``."""
    synthetic.write_folder(out / "scenes", scenes, (160, 120), seed=0, progress=False)
    labels = out / "labels"
    label.run(label.LabelConfig(source=str(out / "scenes"), out=labels, teacher="oracle",
                                recipe=Recipe(crop=(160, 120), size=train_size), shard_size=max(scenes // 8, 1),
                                workers=0, progress=False))
    return labels


TrainRecipe = Literal["ssi", "seed"]
#: The recipes :func:`train_briefly` knows: config overrides beside the cosine schedule of batch 16.
RECIPES: dict[TrainRecipe, tuple[str, ...]] = {
    # The scale-and-shift-invariant loss, AdamW at 5e-4: with the seed's loss at 1e-3, 400 steps from scratch left
    # ZipDepth base at a constant output (its last ReLU closed), which no INT8 figure can be read from.
    "ssi": ("optim.loss=ssi", "optim.name=adamw", "optim.lr=5e-4"),
    # The demo's (the config's defaults: the seed's loss, Adam at 1e-3): with "ssi", 100 steps left MiDaS small (at
    # 5e-4 and at 1e-4) and Depth Anything small (at 5e-4) at a constant output, where this one trained both.
    "seed": (),
}


def train_briefly(name: str, labels: Path, steps: int, out: Path, recipe: TrainRecipe = "ssi") -> Path:
    """``name`` trained from scratch for ``steps`` steps on label shards at their size with one of :data:`RECIPES`;
    its final weights.

    The cosine schedule spans the epochs that hold the steps. The data loads in this process (no worker processes).

    The labels' size is set after the config is read: its parser asks for multiples of 32 (the students' rule), which
    Depth Anything (multiples of 14) meets only from 224x224 up, where the loop itself takes any size the network does.
    """
    index = read_index(labels)
    width, height = index["recipe"]["size"]
    batch = 16
    epochs = math.ceil(steps / max(1, index["count"] // batch))
    cfg = load_config(TrainConfig, overrides=[
        f"model.name={name}", "model.pretrained=false", f"data.path={labels}", "data.format=shards",
        "data.num_workers=0", f"optim.batch_size={batch}", *RECIPES[recipe], "schedule.name=cosine",
        f"schedule.epochs={epochs}", f"schedule.max_steps={steps}", "schedule.warmup_steps=20", f"run.dir={out}",
        "run.device=cpu", "logging.progress_bar=false", "logging.tensorboard=false",
    ])
    cfg.data.input_size = (width, height)
    return train.run(cfg).weights or out / train.FINAL_WEIGHTS


def scenes(first: int, count: int) -> list[synthetic.Scene]:
    """The synthetic scenes of seeds ``first`` to ``first + count - 1``, at the renderer's default 640x480."""
    return [synthetic.render_scene(first + k) for k in range(count)]


def aligned_abs_rel(outputs: Sequence[np.ndarray], tests: Sequence[synthetic.Scene]) -> float:
    """Mean AbsRel of inverse-depth maps against their scenes' raw depth (0 to 10 m), each aligned by the seed's
    least squares in disparity; a map that cannot be aligned (constant) scores NaN, and so does the mean."""
    scores = []
    for scene, output in zip(tests, outputs, strict=True):
        mask = (scene.raw_depth > 0) & (scene.raw_depth < 10)
        try:
            scores.append(score_prediction(output, scene.raw_depth, mask)[0]["abs_rel"])
        except UnscorableImage:
            scores.append(float("nan"))
    return float(np.mean(scores))
