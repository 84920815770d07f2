"""``edgedepth train``'s typed config: one dataclass per section, loaded from YAML by :mod:`edgedepth.core.config`.

The defaults are the seed's recipe; ``configs/distill_places_midas.yaml`` spells it out. Value ranges and the keys
a resumed run may change are field metadata beside each field (:data:`~edgedepth.core.config.POSITIVE`,
:data:`~edgedepth.core.config.NON_NEGATIVE`, :data:`~edgedepth.core.config.RESUMABLE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from edgedepth.core.config import NON_NEGATIVE, POSITIVE, RESUMABLE
from edgedepth.core.sizes import DEFAULT_INPUT_SIZE

#: What the 16-bit PNG beside each image holds: normalised teacher inverse depth (the seed's Places labels), or
#: depth in millimetres with 0 = invalid (synthetic scenes, sensors), inverted before normalisation.
PngMeaning = Literal["inverse_depth", "depth_mm"]


@dataclass
class ModelConfig:
    """The student: a registered name, its constructor options, and how its BatchNorm layers train."""

    name: str = "fastdepth_v3"
    #: Start from the encoder's ImageNet weights (needs them in the local cache or the network).
    pretrained: bool = True
    #: Keyword arguments of the model's builder, e.g. ``{detach_skips: true}`` to train exactly as the seed did.
    args: dict[str, Any] = field(default_factory=dict)
    #: Start from these weights (``.safetensors``) instead of a fresh initialisation: a fine-tune. They must fit
    #: ``name`` and ``args`` (``edgedepth prune`` fine-tunes each pruned network this way).
    init_weights: str | None = None
    #: Keep BatchNorm layers in eval mode (running statistics, frozen): makes a step independent of the split
    #: of the batch over processes.
    freeze_bn: bool = False
    #: Synchronise BatchNorm statistics over processes under DDP (CUDA only).
    sync_bn: bool = False


@dataclass
class DataConfig:
    """The training pairs and how they are read."""

    #: A folder of ``<name>.jpg`` + 16-bit ``<name>.png`` pairs (searched recursively).
    path: str = field(default="", metadata=RESUMABLE)
    format: Literal["folder", "shards"] = "folder"
    png: PngMeaning = "inverse_depth"
    #: Network input ``(width, height)``; images (and targets) of another size are resized to it.
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    num_workers: int = field(default=4, metadata=NON_NEGATIVE | RESUMABLE)
    prefetch_factor: int = field(default=2, metadata=POSITIVE | RESUMABLE)


@dataclass
class OptimConfig:
    """Optimiser, batch and loss."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = field(default=1e-3, metadata=POSITIVE)
    #: Decays weights only: norm weights and biases (parameters of one dimension) are spared.
    weight_decay: float = field(default=0.0, metadata=NON_NEGATIVE)
    #: The encoder trains at ``lr * encoder_lr_scale``, the rest at ``lr`` (Depth Anything: 0.1).
    encoder_lr_scale: float = field(default=1.0, metadata=NON_NEGATIVE)
    #: The global batch, split evenly over the processes.
    batch_size: int = field(default=128, metadata=POSITIVE)
    loss: Literal["seed", "ssi", "ssi_trim"] = "seed"


@dataclass
class ScheduleConfig:
    """Learning-rate schedule and length of the run (the rate is updated every step)."""

    name: Literal["exponential", "cosine"] = "exponential"
    epochs: int = field(default=6, metadata=POSITIVE)
    #: ``exponential``: the rate is multiplied by ``gamma`` at each epoch end (PyTorch's ExponentialLR per epoch).
    gamma: float = field(default=0.316, metadata=POSITIVE)
    #: ``cosine``: the rate falls to ``lr * min_lr_ratio`` at the last step.
    min_lr_ratio: float = field(default=0.0, metadata=NON_NEGATIVE)
    #: Linear warm-up from 0 over this many steps, multiplied with the schedule.
    warmup_steps: int = field(default=0, metadata=NON_NEGATIVE)
    #: Stop (with a checkpoint) after this many steps in all; the schedule still spans all epochs.
    max_steps: int | None = field(default=None, metadata=POSITIVE | RESUMABLE)


@dataclass
class LoggingConfig:
    """What is logged, how often."""

    every_steps: int = field(default=10, metadata=POSITIVE)
    progress_bar: bool = True
    tensorboard: bool = True


@dataclass
class RunConfig:
    """Where the run lives, when it checkpoints, and on what it runs."""

    #: Checkpoints, the config, logs and exported weights go here; rerunning into it resumes.
    dir: str = "runs/distill_places_midas"
    checkpoint_every_steps: int = field(default=1000, metadata=POSITIVE | RESUMABLE)
    #: Insist on resuming: a run folder without a checkpoint is an error.
    resume: bool = field(default=False, metadata=RESUMABLE)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Mixed precision (float16 with a gradient scaler); used on CUDA only.
    amp: bool = True
    channels_last: bool = True
    seed: int = 0


@dataclass
class ValidationConfig:
    """Validation on NYU Depth v2 (through the evaluation code) at each epoch end, when a path is set."""

    nyu_data_path: str | None = None
    nyu_splits_path: str | None = None


@dataclass
class TrainConfig:
    """Everything ``edgedepth train`` needs; the defaults are the seed's recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata=RESUMABLE)
    run: RunConfig = field(default_factory=RunConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig, metadata=RESUMABLE)
