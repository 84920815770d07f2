"""What a NetAdapt proposal is judged by: the label shards split into training and held-out ones, a short fine-tune
by ``edgedepth train``, and the held-out score (aligned AbsRel through :mod:`edgedepth.eval.metrics`)."""

from __future__ import annotations

import math
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgedepth.core.depth import DEFAULT_MAX_DEPTH, UnscorableImage, inverse_to_depth_clamped
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import write_json
from edgedepth.data.shards import INDEX_NAME, LabelShards, read_index
from edgedepth.eval.metrics import mean_metrics, score_prediction
from edgedepth.export.quantize import calibration_batches
from edgedepth.models import DepthNetwork, load_model, read_card, save_weights
from edgedepth.runtime.pytorch import TorchPredictor
from edgedepth.train import loop
from edgedepth.train.config import (
    DataConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
)

#: Held-out share of the label shards (the last shards, at least one).
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class Splits:
    """The label folder split into training and held-out shards (index files in ``DIR/labels``)."""

    train: Path
    held_out: Path
    size: tuple[int, int]
    train_count: int


def split_labels(labels: Path, folder: Path) -> Splits:
    """Write two label indexes that name the original shards by absolute path: all but the last shards for
    training, the last ``HELD_OUT_SHARE`` of them (at least one) held out for scoring."""
    index = read_index(labels)
    if not index.get("complete"):
        raise EdgedepthError(f"{labels}: label run not finished; rerun the same `edgedepth label` command")
    shards = list(index["shards"])
    if len(shards) < 2:
        raise EdgedepthError(f"--data {labels}: {len(shards)} label shard(s); pruning holds out the last shards for "
                             "scoring, so it needs at least 2 (label with a smaller --shard-size)")
    held = max(1, round(HELD_OUT_SHARE * len(shards)))
    parts = {"train": shards[:-held], "held_out": shards[-held:]}
    roots = {}
    for name, chosen in parts.items():
        part = [{**shard, "name": str((labels / shard["name"]).resolve())} for shard in chosen]
        root = folder / name
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / INDEX_NAME, {**index, "shards": part, "count": sum(int(s["count"]) for s in part)}, None)
        roots[name] = root
    size = tuple(int(v) for v in index["recipe"]["size"])
    return Splits(roots["train"], roots["held_out"], size, sum(int(s["count"]) for s in parts["train"]))  # type: ignore[arg-type]


def score(model: DepthNetwork, held_out: Path, size: tuple[int, int]) -> dict[str, float]:
    """Mean aligned metrics on the held-out label shards: the labels' inverse depth is the disparity to align to
    (least squares, the seed's protocol), pixels beyond ``DEFAULT_MAX_DEPTH`` unscored. AbsRel is the score."""
    predictor = TorchPredictor(model, size)
    per_image = []
    for _, image, inverse_depth, _ in LabelShards(held_out):
        prediction = predictor.predict_batch([image])[0, 0]
        depth = inverse_to_depth_clamped(inverse_depth, DEFAULT_MAX_DEPTH)
        try:
            per_image.append(score_prediction(prediction, depth, depth < DEFAULT_MAX_DEPTH, max_depth=DEFAULT_MAX_DEPTH)[0])
        except UnscorableImage:
            per_image.append({"abs_rel": math.inf, "delta1": 0.0})
    return mean_metrics(per_image, ("abs_rel", "delta1"))


def fine_tune(weights: Path, run_dir: Path, splits: Splits, steps: int, batch_size: int, lr: float, loss: str) -> Path:
    """``steps`` steps of ``edgedepth train`` from ``weights`` on the training shards; the weights it ends with,
    their card at the input size ``weights`` had. Rerun into the same ``run_dir``, it resumes (the trainer's own).

    BatchNorm stays frozen (``model.freeze_bn``): the sliced layers keep the running statistics they were trained
    with; a few small batches would otherwise replace them (measured: 24 steps of batch 4 from a trained
    fastdepth_v3 turned its output constant, every held-out image unscorable)."""
    card = read_card(weights)
    batch = min(batch_size, splits.train_count)
    epochs = math.ceil(steps / max(splits.train_count // batch, 1))
    config = TrainConfig(
        model=ModelConfig(name=card.name, pretrained=False, args=dict(card.model_args), init_weights=str(weights),
                          freeze_bn=True),
        data=DataConfig(path=str(splits.train), format="shards", input_size=splits.size, num_workers=0),
        optim=OptimConfig(lr=lr, batch_size=batch, loss=loss),  # type: ignore[arg-type]
        schedule=ScheduleConfig(name="cosine", epochs=epochs, max_steps=steps),
        logging=LoggingConfig(every_steps=max(steps // 4, 1), progress_bar=False, tensorboard=False),
        run=RunConfig(dir=str(run_dir), checkpoint_every_steps=max(steps // 4, 1), device="cpu", amp=False),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    with (run_dir / "train.log").open("a") as log, redirect_stdout(log), redirect_stderr(log):
        result = loop.run(config)
    torch.set_num_threads(threads)
    assert result.weights is not None  # one process: the main one, which writes them
    model = load_model(result.weights)
    model.card = card
    return save_weights(model, run_dir / "tuned.safetensors", pruned_from=str(weights), fine_tune_steps=steps)


def calibration(labels: Path, model: DepthNetwork) -> list[np.ndarray]:
    """INT8 calibration batches: the label folder's images at the timed size (only ranges; no training on them)."""
    return calibration_batches(labels, model.card, model.card.input_size, limit=16)
