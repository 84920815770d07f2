"""``edgedepth prune``: FastDepth's NetAdapt step, to a latency budget measured on the runtime the model will run on.

NetAdapt (Yang et al., ECCV 2018) as FastDepth used it, on ``fastdepth_v3`` and ``fastdepth_<timm encoder>``
students (MobileNetV4, EfficientNet, ... blocks):

- the layer groups are each expanding block's expansion width and each decoder stage's width; a block whose
  expansion is a skip tap and the decoder stage that receives that skip are one group (their widths stay tied). What
  an expanding block is and which tensors index its width is the student's layout (:class:`Block`, from
  :func:`encoder_blocks`): torchvision's MobileNetV3 for ``fastdepth_v3`` (skips are expansions; the SE squeeze
  follows, torchvision's rule, a quarter of the expansion), timm's blocks otherwise (skips are stage outputs, which
  are not pruned, so the decoder stages receiving them keep their widths; an SE keeps its squeeze width). Either
  way the card's ``expansions`` and ``decoder_widths`` rebuild the network;
- each iteration must cut the latency by ``step_share`` of the start latency. Per group, the filters with the
  smallest L1 norms go first; how many is read off a measured slope (ms per filter): in the first iteration the
  current network and, per group, a probe with half of its filters removed are timed together (see below); later,
  a group's slope is the one its proposal of the iteration before was measured at (a probe again where that
  proposal was not faster). A group gets the fewest filters whose linear estimate reaches the step, its kept width
  a multiple of :data:`WIDTH_MULTIPLE`. That slope is a per-group latency table; every proposal it leads to is
  then timed itself as a whole network, so the latency kept and reported is always measured, never estimated.
  Timing every proposal was chosen over trusting the table: a table may stand in for measurement only where it
  predicts the whole network's measured latency within 5%, and it did not here (up to 14% off on OpenVINO INT8
  and 20% on ONNX Runtime INT8 in the README's runs: graph fusion and layout choices need not add up layer by
  layer); ``trajectory.json`` keeps each estimate beside its measurement, so that can be checked run by run;
- each proposal is fine-tuned briefly by ``edgedepth train`` (``model.init_weights``) on the training label shards
  and scored on held-out ones (aligned AbsRel through :mod:`edgedepth.eval.metrics`); the best score among the proposals
  whose measured cut reaches half the step is kept (the largest cut where none does, see :func:`_choose`). Once
  the target is met, a long fine-tune follows.

Timing: every network is made into the file the runtime loads (``.safetensors`` for ``torch``, an ``export_model``
file otherwise, INT8 calibrated on the label shards' images) and opened with ``load_predictor`` in one spawned
process per round; the networks take turns run by run, each turn one untimed run then a timed one (as ``edgedepth
bench`` does), so the machine's drift hits them alike. The median over the runs is the latency. Every round
includes the start network, which puts the round on the start's scale (:class:`Reference`); a kept network that
meets the target is timed again in a round of its own before the run ends.

``--out DIR`` holds ``state.json`` (where the run stands: replaced atomically after every iteration),
``iterations/NNN.safetensors`` (the network after each iteration), ``trajectory.json`` and ``trajectory.png``
(latency against score per iteration), ``final/`` (the long fine-tune's run, resumable as any training run) and
``pruned.safetensors``, an ordinary registry model whose card records every width.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, check_output_folder

RUNTIMES = ("openvino-int8", "onnx-int8", "openvino", "onnx", "torch")
#: The students whose widths the registry rebuilds from their cards (``expansions``, ``decoder_widths``).
PRUNABLE = ("fastdepth_v3 and fastdepth_<timm encoder> students with MobileNet/EfficientNet blocks "
            "(e.g. fastdepth_mobilenetv4_conv_small)")
STATE = "state.json"
TRAJECTORY = "trajectory.json"
PRUNED = "pruned.safetensors"
#: The probe that measures a group's latency slope removes this share of its filters.
PROBE_SHARE = 0.5
#: Proposals keep widths that are multiples of this: the runtimes' SIMD blocks (8 floats with AVX2, 16 in OpenVINO's
#: AVX-512 blocked layouts) pad other widths, so a cut that leaves a partial block saves little of what it costs.
WIDTH_MULTIPLE = 8
#: Held-out share of the label shards (the last shards, at least one).
HELD_OUT_SHARE = 0.2
#: Depth beyond which a label pixel is not scored (the labels' inverse depth read as 1 / metres, clamped here).
MAX_DEPTH = 10.0


@dataclass(frozen=True)
class PruneConfig:
    """What ``edgedepth prune`` was asked to do; exactly one of ``target_ms`` and ``target_ratio`` is set."""

    weights: Path
    data: Path
    runtime: str
    out: Path
    target_ms: float | None = None
    target_ratio: float | None = None
    threads: int = 1
    size: tuple[int, int] | None = None
    step_share: float = 0.1
    short_steps: int = 20
    long_steps: int = 200
    batch_size: int = 8
    lr: float = 1e-4
    runs: int = 20
    max_iterations: int = 50
    min_width: int = 8
    #: Restrict pruning to these groups (names as :func:`layer_groups` gives them); ``None``: all.
    groups: tuple[str, ...] | None = None
    progress: bool = True

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues."""
        fields = ("weights", "data", "runtime", "target_ms", "target_ratio", "threads", "size", "step_share",
                  "short_steps", "long_steps", "batch_size", "lr", "min_width", "groups")
        return {name: _plain(getattr(self, name)) for name in fields}


@dataclass(frozen=True)
class Block:
    """An encoder block whose expansion width is prunable, in one student's layout (see :func:`encoder_blocks`)."""

    #: As the encoder numbers it: ``"2"`` (fastdepth_v3's ``features[2]``), ``"2.1"`` (timm's ``blocks.2.1``).
    name: str
    #: Its place in the card's ``expansions``.
    index: int
    #: State key of the convolution that produces the width: its filters' L1 norms rank the channels.
    score: str
    #: ``(state key, dim)`` of every tensor of the block whose ``dim`` indexes the width.
    slices: tuple[tuple[str, int], ...]
    #: The encoder feature (skip) this expansion is, tying it to the decoder stage that receives it; ``None``: none.
    tap: int | None = None
    #: A width the block must not take (torchvision drops the expansion convolution at its input width).
    input_width: int | None = None
    #: State prefix of an SE whose squeeze width is rebuilt from the expansion (torchvision's rule).
    squeeze: str | None = None


@dataclass(frozen=True)
class Group:
    """One prunable width: a block's expansion (``block``), a decoder stage's (``stage``), or both, tied."""

    block: Block | None
    stage: int | None

    @property
    def name(self) -> str:
        return "+".join(part for part in (
            f"block{self.block.name}" if self.block is not None else "",
            f"stage{self.stage}" if self.stage is not None else "") if part)


@dataclass
class PruneResult:
    """What :func:`run` did: the pruned weights, the measured start and final latencies, whether the target was met."""

    out: Path
    weights: Path
    start_ms: float
    final_ms: float
    target_ms: float
    target_met: bool
    iterations: int
    message: str


# ---------------------------------------------------------------------------------------------- widths


def _norm_slices(prefix: str) -> list[tuple[str, int]]:
    return [(f"{prefix}.{name}", 0) for name in ("weight", "bias", "running_mean", "running_var")]


def encoder_blocks(model: nn.Module) -> list[Block]:
    """The student's expanding blocks, from the layout of its encoder (torchvision's MobileNetV3 or timm's)."""
    from edgedepth.models.encoders import MobileNetV3LargeEncoder, TimmEncoder

    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, MobileNetV3LargeEncoder):
        return _mobilenet_v3_blocks(encoder)
    blocks = _timm_blocks(encoder) if isinstance(encoder, TimmEncoder) else []
    if not blocks:
        raise EdgedepthError(f"a {model.card.name}; prune takes {PRUNABLE}")
    return blocks


def _mobilenet_v3_blocks(encoder: nn.Module) -> list[Block]:
    """torchvision's MobileNetV3 ``features[1..15]``: the blocks with a 1x1 expansion convolution (``block.0``);
    depthwise ``block.1``; an SE ``block.2`` (its squeeze follows, a quarter of the expansion); projection last.
    A tapped expansion is a skip. The first block has no expansion convolution: its width is its input's."""
    features, blocks = encoder.features, []
    for index in range(1, len(features) - 1):
        first = features[index].block[0][0]
        if first.kernel_size != (1, 1) or first.groups != 1:  # torchvision drops the expansion at ratio 1
            continue
        p = f"encoder.features.{index}.block"
        has_se = hasattr(features[index].block[2], "fc1")
        project = 3 if has_se else 2
        slices = [(f"{p}.0.0.weight", 0), *_norm_slices(f"{p}.0.1"), (f"{p}.1.0.weight", 0),
                  *_norm_slices(f"{p}.1.1"), (f"{p}.{project}.0.weight", 1)]
        if has_se:
            slices += [(f"{p}.2.fc1.weight", 1), (f"{p}.2.fc2.weight", 0), (f"{p}.2.fc2.bias", 0)]
        blocks.append(Block(
            name=str(index), index=index - 1, score=f"{p}.0.0.weight", slices=tuple(slices),
            tap=encoder.taps.index(index) if index in encoder.taps else None, input_width=first.in_channels,
            squeeze=f"{p}.2" if has_se else None,
        ))
    return blocks


def _timm_blocks(encoder: nn.Module) -> list[Block]:
    """timm's MobileNet/EfficientNet blocks that :func:`~edgedepth.models.encoders.timm_expansions` finds. A skip
    is a stage's output, never an expansion, so no block is tied to a decoder stage; an SE's squeeze width stays."""
    from edgedepth.models.encoders import timm_expansions

    body = encoder.body

    def conv(path: str, dim: int) -> list[tuple[str, int]]:
        bias = [(f"encoder.body.{path}.bias", dim)] if dim == 0 and body.get_submodule(path).bias is not None else []
        return [(f"encoder.body.{path}.weight", dim), *bias]

    blocks = []
    for index, expansion in enumerate(timm_expansions(body)):
        produce, norm = expansion.produce
        slices = [*conv(produce, 0), *_norm_slices(f"encoder.body.{norm}")]
        for carry, carry_norm in expansion.carry:
            slices += [*conv(carry, 0), *_norm_slices(f"encoder.body.{carry_norm}")]
        if expansion.se and not isinstance(body.get_submodule(expansion.se), nn.Identity):
            slices += [*conv(f"{expansion.se}.conv_reduce", 1), *conv(f"{expansion.se}.conv_expand", 0)]
        slices += conv(expansion.consume, 1)
        blocks.append(Block(name=expansion.block.removeprefix("blocks."), index=index,
                            score=f"encoder.body.{produce}.weight", slices=tuple(slices)))
    return blocks


def widths_of(model: nn.Module) -> tuple[list[int], list[int]]:
    """``(expansions, decoder_widths)``: the constructor arguments that rebuild the student."""
    return list(model.encoder.expansions), list(model.decoder.widths)


def layer_groups(model: nn.Module) -> list[Group]:
    """The prunable groups: expanding blocks (tied to the decoder stage that receives them, where they are a
    skip), then the decoder stages that receive no skip. A stage that receives an unprunable skip (timm's: a
    stage's output) keeps that skip's width, so it is no group."""
    decoder = model.decoder
    tap_stage = {skip: stage for stage, skip in enumerate(decoder.skip_after_stage) if skip >= 0}
    groups = [Group(block, tap_stage.get(block.tap)) for block in encoder_blocks(model)]
    return groups + [Group(None, stage) for stage, skip in enumerate(decoder.skip_after_stage) if skip < 0]


def group_width(model: nn.Module, group: Group) -> int:
    expansions, decoder_widths = widths_of(model)
    return expansions[group.block.index] if group.block is not None else decoder_widths[group.stage]


def allowed_width(model: nn.Module, group: Group, keep: int) -> int:
    """``keep``, or one less where a block's expansion would equal its input width (torchvision would then drop the
    expansion convolution, changing the block's layout)."""
    if group.block is not None and keep == group.block.input_width:
        return keep - 1
    return keep


def _slices(model: nn.Module, group: Group) -> list[tuple[str, int]]:
    """``(state key, dim)`` of every tensor whose ``dim`` indexes the group's channels."""
    plan: list[tuple[str, int]] = list(group.block.slices) if group.block is not None else []
    if group.stage is not None:
        q = f"decoder.stages.{group.stage}"
        plan += [(f"{q}.1.0.weight", 0), *_norm_slices(f"{q}.1.1")]
        if group.stage + 1 < len(model.decoder.stages):
            n = f"decoder.stages.{group.stage + 1}"
            plan += [(f"{n}.0.0.weight", 0), *_norm_slices(f"{n}.0.1"), (f"{n}.1.0.weight", 1)]
        else:
            plan += [("decoder.head.0.weight", 1)]
    return plan


def _filter_l1(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter, divided by their mean (so tied layers count alike)."""
    norms = weight.detach().abs().flatten(1).sum(1)
    return norms / norms.mean().clamp_min(1e-12)


def prune_group(model: nn.Module, group: Group, keep: int) -> nn.Module:
    """A new network with ``keep`` of the group's filters: those of largest L1 norm, weights sliced physically.

    The same channel indices go from every layer the group's width touches (producing conv and BN, depthwise conv,
    consuming conv, the SE's convolutions; for a tied group the skip's block and the decoder stage alike). The
    network is rebuilt from its card with the new widths (``create_model(name, expansions=..., decoder_widths=...)``).
    """
    from edgedepth.models import create_model

    keep = allowed_width(model, group, keep)
    state = model.state_dict()
    scores = torch.zeros(group_width(model, group))
    if group.block is not None:
        scores += _filter_l1(state[group.block.score])
    if group.stage is not None:
        scores += _filter_l1(state[f"decoder.stages.{group.stage}.1.0.weight"])
    kept = torch.sort(torch.topk(scores, keep).indices).values
    expansions, decoder_widths = widths_of(model)
    if group.block is not None:
        expansions[group.block.index] = keep
    if group.stage is not None:
        decoder_widths[group.stage] = keep
    args = {**model.card.model_args, "expansions": expansions, "decoder_widths": decoder_widths}
    pruned = create_model(model.card.name, **args)
    pruned.card = dataclasses.replace(model.card, model_args=pruned.card.model_args)
    state = dict(state)
    for key, dim in _slices(model, group):
        state[key] = state[key].index_select(dim, kept)
    if group.block is not None and group.block.squeeze is not None:
        _slice_squeeze(state, group.block.squeeze, pruned)
    pruned.load_state_dict(state)
    return pruned.eval()


def _slice_squeeze(state: dict[str, torch.Tensor], prefix: str, pruned: nn.Module) -> None:
    """The SE's squeeze width follows the expansion: keep its largest-L1 squeeze filters, as many as it now has."""
    squeeze = pruned.state_dict()[f"{prefix}.fc1.weight"].shape[0]
    fc1 = state[f"{prefix}.fc1.weight"]
    if fc1.shape[0] == squeeze:
        return
    kept = torch.sort(torch.topk(_filter_l1(fc1), squeeze).indices).values
    state[f"{prefix}.fc1.weight"] = fc1.index_select(0, kept)
    state[f"{prefix}.fc1.bias"] = state[f"{prefix}.fc1.bias"].index_select(0, kept)
    state[f"{prefix}.fc2.weight"] = state[f"{prefix}.fc2.weight"].index_select(1, kept)


# ---------------------------------------------------------------------------------------------- timing


def runtime_file(model: nn.Module, runtime: str, path_stem: Path, calibration: Sequence[np.ndarray] | None) -> Path:
    """The file ``runtime`` loads for ``model`` (exported at the card's input size), through the usual paths."""
    from edgedepth.models import save_weights
    from edgedepth.runtime.export import SUFFIXES, export_model, runtime_format

    if runtime == "torch":
        return save_weights(model, path_stem.with_suffix(".safetensors"))
    fmt, int8 = runtime_format(runtime)
    path = path_stem.with_suffix(SUFFIXES[fmt])
    quantizer = "onnxruntime" if fmt == "onnx" else "nncf"
    export_model(model, path, fmt, source="prune", calibration=calibration if int8 else None, min_correlation=None,
                 fp32_tolerance=None, quantizer=quantizer)  # timing only: the pruned result is exported as usual
    return path


def _time_files_main(paths: list[str], threads: int, runs: int) -> list[float]:
    """In a fresh process: open every file with its runtime, time them turn by turn; median ms of each."""
    from edgedepth.runtime.predictor import load_predictor

    predictors = [load_predictor(path, threads=threads) for path in paths]
    times: list[list[float]] = [[] for _ in predictors]
    batches = []
    for predictor in predictors:
        width, height = predictor.size
        batches.append(torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, height, width),
                                                                                  dtype=np.float32)))
    for turn in range(runs + 2):
        for index, predictor in enumerate(predictors):
            predictor.infer(batches[index])  # re-warm what the other networks' turns evicted
            start = time.perf_counter()
            predictor.infer(batches[index])
            if turn >= 2:
                times[index].append((time.perf_counter() - start) * 1e3)
    return [float(np.median(t)) for t in times]


def time_files(paths: Sequence[Path], threads: int, runs: int) -> list[float]:
    """Median latency (ms) of each file on its runtime, measured interleaved in one spawned process."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_time_files_main, [str(p) for p in paths], threads, runs).result()


# ---------------------------------------------------------------------------------------------- data


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
    from edgedepth.data.shards import INDEX_NAME, read_index

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
        with atomic_path(root / INDEX_NAME) as tmp:
            tmp.write_text(json.dumps({**index, "shards": part, "count": sum(int(s["count"]) for s in part)}))
        roots[name] = root
    size = tuple(int(v) for v in index["recipe"]["size"])
    return Splits(roots["train"], roots["held_out"], size, sum(int(s["count"]) for s in parts["train"]))  # type: ignore[arg-type]


def score(model: nn.Module, held_out: Path, size: tuple[int, int]) -> dict[str, float]:
    """Mean aligned metrics on the held-out label shards: the labels' inverse depth is the disparity to align to
    (least squares, the seed's protocol), pixels beyond ``MAX_DEPTH`` unscored. AbsRel is the score."""
    from edgedepth.core.depth import UnscorableImage, inverse_to_depth_clamped
    from edgedepth.data.shards import LabelShards
    from edgedepth.eval.metrics import mean_metrics, score_prediction
    from edgedepth.runtime.predictor import TorchPredictor

    predictor = TorchPredictor(model, size)
    per_image = []
    for _, image, inverse_depth, _ in LabelShards(held_out):
        prediction = predictor.predict_batch([image])[0, 0].numpy()
        depth = inverse_to_depth_clamped(inverse_depth, MAX_DEPTH)
        try:
            per_image.append(score_prediction(prediction, depth, depth < MAX_DEPTH, max_depth=MAX_DEPTH)[0])
        except UnscorableImage:
            per_image.append({"abs_rel": math.inf, "delta1": 0.0})
    return mean_metrics(per_image, ("abs_rel", "delta1"))


def fine_tune(weights: Path, run_dir: Path, splits: Splits, steps: int, cfg: PruneConfig, loss: str) -> Path:
    """``steps`` steps of ``edgedepth train`` from ``weights`` on the training shards; the weights it ends with,
    their card at the input size ``weights`` had. Rerun into the same ``run_dir``, it resumes (the trainer's own).

    BatchNorm stays frozen (``model.freeze_bn``): the sliced layers keep the running statistics they were trained
    with; a few small batches would otherwise replace them (measured: 24 steps of batch 4 from a trained
    fastdepth_v3 turned its output constant, every held-out image unscorable)."""
    from edgedepth.models import load_model, read_card, save_weights
    from edgedepth.train import loop as train
    from edgedepth.train.config import (
        DataConfig,
        LoggingConfig,
        ModelConfig,
        OptimConfig,
        RunConfig,
        ScheduleConfig,
        TrainConfig,
    )

    card = read_card(weights)
    batch = min(cfg.batch_size, splits.train_count)
    epochs = math.ceil(steps / max(splits.train_count // batch, 1))
    config = TrainConfig(
        model=ModelConfig(name=card.name, pretrained=False, args=dict(card.model_args), init_weights=str(weights),
                          freeze_bn=True),
        data=DataConfig(path=str(splits.train), format="shards", input_size=splits.size, num_workers=0),
        optim=OptimConfig(lr=cfg.lr, batch_size=batch, loss=loss),  # type: ignore[arg-type]
        schedule=ScheduleConfig(name="cosine", epochs=epochs, max_steps=steps),
        logging=LoggingConfig(every_steps=max(steps // 4, 1), progress_bar=False, tensorboard=False),
        run=RunConfig(dir=str(run_dir), checkpoint_every_steps=max(steps // 4, 1), device="cpu", amp=False),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    with (run_dir / "train.log").open("a") as log, redirect_stdout(log), redirect_stderr(log):
        result = train.run(config)
    torch.set_num_threads(threads)
    model = load_model(result.weights)
    model.card = card
    return save_weights(model, run_dir / "tuned.safetensors", pruned_from=str(weights), fine_tune_steps=steps)


# ---------------------------------------------------------------------------------------------- the loop


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, tuple):
        return list(value)
    return value


def _say(cfg: PruneConfig, line: str) -> None:
    if cfg.progress:
        print(line, file=sys.stderr, flush=True)


def _check(cfg: PruneConfig) -> None:
    if cfg.runtime not in RUNTIMES:
        raise EdgedepthError(f"--runtime {cfg.runtime}: use one of {', '.join(RUNTIMES)}")
    if (cfg.target_ms is None) == (cfg.target_ratio is None):
        raise EdgedepthError("give one target: --target-ms T or --target-ratio R")
    if cfg.target_ms is not None and not cfg.target_ms > 0:
        raise EdgedepthError(f"--target-ms {cfg.target_ms}: must be positive")
    if cfg.target_ratio is not None and not 0 < cfg.target_ratio < 1:
        raise EdgedepthError(f"--target-ratio {cfg.target_ratio}: must lie between 0 and 1 (0.5: twice as fast)")
    if cfg.threads < 1:
        raise EdgedepthError(f"--threads {cfg.threads}: at least one")
    if not 0 < cfg.step_share < 1 or cfg.short_steps < 1 or cfg.long_steps < 0 or cfg.runs < 1:
        raise EdgedepthError("step share in (0, 1), at least one short fine-tune step and one timed run")


def run(cfg: PruneConfig) -> PruneResult:
    """Prune ``cfg.weights`` to the target latency on ``cfg.runtime``; resumes from ``cfg.out`` after a kill."""
    from edgedepth.models import load_model, save_weights
    from edgedepth.models.complexity import count_macs, count_parameters
    from edgedepth.models.weights import read_metadata

    _check(cfg)
    card, provenance = read_metadata(cfg.weights)
    size = card.fit_size(cfg.size)
    start_model = load_model(cfg.weights)
    start_model.card = dataclasses.replace(card, input_size=size)
    try:
        all_groups = layer_groups(start_model)
    except EdgedepthError as exc:
        raise EdgedepthError(f"{cfg.weights}: {exc}") from None
    out = check_output_folder(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = split_labels(Path(cfg.data), out / "labels")
    loss = str(provenance.get("loss", "ssi"))
    if cfg.groups is not None:
        unknown = sorted(set(cfg.groups) - {g.name for g in all_groups})
        if unknown:
            raise EdgedepthError(f"unknown layer group(s) {unknown}; known: {', '.join(g.name for g in all_groups)}")
    groups = [g for g in all_groups if cfg.groups is None or g.name in cfg.groups]
    batches = calibration(Path(cfg.data), start_model) if cfg.runtime.endswith("-int8") else None
    state_path, iterations = out / STATE, out / "iterations"
    iterations.mkdir(exist_ok=True)

    def describe(model: nn.Module, latency: float, metrics: dict[str, float], index: int, **extra: Any) -> dict:
        expansions, decoder_widths = widths_of(model)
        return {"iteration": index, "latency_ms": latency, "abs_rel": metrics["abs_rel"], "delta1": metrics["delta1"],
                "macs": count_macs(model, size), "params": count_parameters(model), "expansions": expansions,
                "decoder_widths": decoder_widths, **extra}

    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state["config"] != cfg.identity():
            raise EdgedepthError(f"{state_path}: a prune started with other settings; use the same ones or another --out")
        _say(cfg, f"edgedepth prune: resuming {out} after iteration {state['iteration']}")
    else:
        current_path = save_weights(start_model, iterations / "000.safetensors", pruned_from=str(cfg.weights))
        (start_ms,) = time_files([_start_file(cfg, start_model, out, batches)], cfg.threads, cfg.runs)
        metrics = score(start_model, splits.held_out, splits.size)
        target = cfg.target_ms if cfg.target_ms is not None else cfg.target_ratio * start_ms  # type: ignore[operator]
        state = {"config": cfg.identity(), "iteration": 0, "current": str(current_path), "start_ms": start_ms,
                 "current_ms": start_ms, "target_ms": target, "done": False, "stopped": None,
                 "trajectory": [describe(start_model, start_ms, metrics, 0, proposals=[])]}
        _write_state(state_path, state)
        _say(cfg, f"edgedepth prune: start {start_ms:.2f} ms on {cfg.runtime} ({cfg.threads} thread(s)), "
                  f"abs_rel {metrics['abs_rel']:.4f}; target {target:.2f} ms")

    step = cfg.step_share * state["start_ms"]
    while not state["done"] and state["current_ms"] > state["target_ms"]:
        index = state["iteration"] + 1
        if index > cfg.max_iterations:
            state["stopped"] = f"{cfg.max_iterations} iterations without reaching the target"
            break
        current = load_model(state["current"])
        current.card = dataclasses.replace(current.card, input_size=size)
        prunable = [g for g in groups if group_width(current, g) > cfg.min_width]
        if not prunable:
            state["stopped"] = f"no layer group can be pruned further (each at its narrowest, {cfg.min_width} filters)"
            break
        reference = Reference(_start_file(cfg, start_model, out, batches), state["start_ms"])
        kept = _iterate(cfg, current, reference, step, prunable, splits, loss, batches,
                        out / "work" / f"{index:03d}", state["trajectory"][-1]["proposals"], index)
        if kept is None:
            state["stopped"] = (f"no layer group can be pruned further to a lower measured latency (no proposal of "
                                f"iteration {index} was measured faster than the current network)")
            break
        model, latency, metrics, proposals = kept
        if latency <= state["target_ms"]:  # one round's luck must not end the run: timed again in a round of its own
            kept_file = runtime_file(model, cfg.runtime, out / "work" / f"{index:03d}" / "kept", batches)
            confirmed, _ = _timed(reference, kept_file, [], cfg)
            _say(cfg, f"[iteration {index}] target reached at {latency:.2f} ms; timed again: {confirmed:.2f} ms")
            latency = confirmed
        path = save_weights(model, iterations / f"{index:03d}.safetensors", pruned_from=str(cfg.weights),
                            iteration=index)
        state["trajectory"].append(describe(model, latency, metrics, index, proposals=proposals))
        state.update(iteration=index, current=str(path), current_ms=latency)
        _write_state(state_path, state)
        _write_trajectory(out, state)
        shutil.rmtree(out / "work" / f"{index:03d}", ignore_errors=True)
    _write_state(state_path, state)  # why it stopped, before the long fine-tune (which resumes on its own)

    met = state["current_ms"] <= state["target_ms"]
    final_path = Path(state["current"])
    if cfg.long_steps and state["iteration"] > 0:
        _say(cfg, f"edgedepth prune: long fine-tune, {cfg.long_steps} steps")
        final_path = fine_tune(final_path, out / "final", splits, cfg.long_steps, cfg, loss)
    final = load_model(final_path)
    final.card = dataclasses.replace(final.card, input_size=card.input_size)
    metrics = score(final, splits.held_out, splits.size)
    message = (f"target {state['target_ms']:.2f} ms met: {state['current_ms']:.2f} ms (start {state['start_ms']:.2f})"
               if met else f"target {state['target_ms']:.2f} ms NOT reached ({state['stopped']}): best "
               f"{state['current_ms']:.2f} ms (start {state['start_ms']:.2f}) after {state['iteration']} iteration(s)")
    result_path = save_weights(final, out / PRUNED, pruned_from=str(cfg.weights), runtime=cfg.runtime,
                               threads=cfg.threads, latency_ms=state["current_ms"], start_latency_ms=state["start_ms"],
                               target_ms=state["target_ms"], target_met=met, held_out_metrics=metrics,
                               training_data=str(cfg.data), loss=loss)
    state.update(done=True, final_abs_rel=metrics["abs_rel"], final_delta1=metrics["delta1"], message=message)
    _write_state(state_path, state)
    _write_trajectory(out, state)
    _say(cfg, f"edgedepth prune: {message}; final abs_rel {metrics['abs_rel']:.4f}; {result_path}")
    return PruneResult(out, result_path, state["start_ms"], state["current_ms"], state["target_ms"], met,
                       state["iteration"], message)


def calibration(labels: Path, model: nn.Module) -> list[np.ndarray]:
    """INT8 calibration batches: the label folder's images at the timed size (only ranges; no training on them)."""
    from edgedepth.runtime.quantize import calibration_batches

    return calibration_batches(labels, model.card, model.card.input_size, limit=16)


@dataclass(frozen=True)
class Reference:
    """The start network's runtime file and its latency measured at the start: timed again in every round, it puts
    the round's measurements on the start's scale, so the machine's drift between rounds cancels."""

    file: Path
    start_ms: float


def _start_file(cfg: PruneConfig, start_model: nn.Module, out: Path, calibration: Sequence[np.ndarray] | None) -> Path:
    """The start network's runtime file, made once (again after a resume that finds it gone)."""
    folder = out / "work" / "start"
    made = folder / "made"  # names the finished file; written last
    if made.exists():
        return folder / made.read_text()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = runtime_file(start_model, cfg.runtime, folder / "start", calibration)
    with atomic_path(made) as tmp:
        tmp.write_text(path.name)
    return path


def _timed(reference: Reference, current_file: Path, files: Sequence[Path], cfg: PruneConfig) -> tuple[float, list[float]]:
    """The current network's and each file's latency, timed in one round with the start network, on its scale."""
    start_raw, current_raw, *raw = time_files([reference.file, current_file, *files], cfg.threads, cfg.runs)
    scale = reference.start_ms / start_raw
    return current_raw * scale, [value * scale for value in raw]


def _iterate(cfg: PruneConfig, current: nn.Module, reference: Reference, step: float,
             prunable: list[Group], splits: Splits, loss: str, calibration: Sequence[np.ndarray] | None, work: Path,
             previous: Sequence[dict], index: int) -> tuple[nn.Module, float, dict[str, float], list[dict]] | None:
    """One NetAdapt iteration: per group of ``prunable`` (each wider than ``cfg.min_width``) a proposal that removes
    the fewest filters estimated to cut ``step`` ms; each timed, fine-tuned and scored; the one :func:`_choose` keeps
    (``None`` where no proposal was measured faster than the current network).

    Every round times the start network, the current one and the candidates together; "faster" compares a proposal
    with the current network of the same round (a latency kept from an earlier round would carry that round's
    luck: one lucky measurement made every later proposal look slower). ``previous`` holds the last iteration's
    proposals: a group whose proposal was measured faster there keeps that slope (ms per filter); the others get a
    probe."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    slopes = {r["group"]: r["slope_ms"] for r in previous if r.get("slope_ms") is not None and r["slope_ms"] > 0}
    current_file = runtime_file(current, cfg.runtime, work / "current", calibration)
    probed = [g for g in prunable if g.name not in slopes]
    if probed:  # one probe per group without a slope
        probes = []
        for group in probed:
            width = group_width(current, group)
            removed = max(1, min(round(PROBE_SHARE * width), width - cfg.min_width))
            probes.append((group, removed, prune_group(current, group, width - removed)))
        files = [runtime_file(m, cfg.runtime, work / f"probe_{g.name}", calibration) for g, _, m in probes]
        current_ms, measured = _timed(reference, current_file, files, cfg)
        for (group, removed, _), probe_ms in zip(probes, measured, strict=True):
            slopes[group.name] = (current_ms - probe_ms) / removed
    candidates = [(group, _filters_to_remove(group_width(current, group), slopes[group.name], step, cfg.min_width))
                  for group in prunable]
    proposals = [(g, n, prune_group(current, g, group_width(current, g) - n)) for g, n in candidates]
    files = [runtime_file(m, cfg.runtime, work / f"proposal_{g.name}", calibration) for g, _, m in proposals]
    current_ms, measured = _timed(reference, current_file, files, cfg)
    _say(cfg, f"[iteration {index}] current network {current_ms:.2f} ms in this round")
    tuned_models: dict[str, tuple[nn.Module, dict[str, float]]] = {}
    records = []
    for (group, removed, model), latency in zip(proposals, measured, strict=True):
        estimated = current_ms - removed * slopes[group.name] if slopes[group.name] > 0 else None
        record = {"group": group.name, "removed": removed, "latency_ms": latency, "current_ms": current_ms,
                  "estimated_ms": estimated, "slope_from": "probe" if group in probed else "previous iteration",
                  "slope_ms": (current_ms - latency) / removed, "abs_rel": None}
        records.append(record)
        if latency >= current_ms:
            _say(cfg, f"[iteration {index}] {group.name} -{removed}: {latency:.2f} ms, not faster than "
                      f"{current_ms:.2f} ms: skipped")
            continue
        from edgedepth.models import load_model, save_weights

        seed = save_weights(model, work / f"proposal_{group.name}.init.safetensors")
        tuned = load_model(fine_tune(seed, work / f"tune_{group.name}", splits, cfg.short_steps, cfg, loss))
        tuned.card = model.card
        metrics = score(tuned, splits.held_out, splits.size)
        record["abs_rel"] = metrics["abs_rel"]
        guess = "" if estimated is None else f"estimated {estimated:.2f}, "
        _say(cfg, f"[iteration {index}] {group.name} -{removed} filters: {latency:.2f} ms ({guess}current "
                  f"{current_ms:.2f}), abs_rel {metrics['abs_rel']:.4f}")
        tuned_models[group.name] = (tuned, metrics)
    chosen = _choose(records, step)
    if chosen is None:
        return None
    tuned, metrics = tuned_models[chosen["group"]]
    latency = chosen["latency_ms"]
    _say(cfg, f"[iteration {index}] kept {chosen['group']} -{chosen['removed']}: {latency:.2f} ms, "
              f"abs_rel {metrics['abs_rel']:.4f}")
    return tuned, latency, metrics, records


def _choose(records: Sequence[dict], step: float) -> dict | None:
    """The proposal kept: the best score among those whose measured cut reaches half the step, else the largest cut.

    NetAdapt compares proposals at one latency cut; measured cuts fall short of the slopes' estimates (groups
    interact through the runtime's fusion and layouts), so half the step qualifies. The best score among any faster
    proposal would keep a near-free one (0.02 ms of an asked 1.0 was kept so), and the budget would not move.
    """
    faster = [r for r in records if r["abs_rel"] is not None]
    if not faster:
        return None
    qualified = [r for r in faster if r["current_ms"] - r["latency_ms"] >= step / 2]
    if qualified:
        return min(qualified, key=lambda r: r["abs_rel"])
    return min(faster, key=lambda r: r["latency_ms"])


def _filters_to_remove(width: int, slope_ms: float, step: float, min_width: int) -> int:
    """The fewest filters whose linear estimate (``slope_ms`` per filter) cuts ``step`` ms, leaving a multiple of
    :data:`WIDTH_MULTIPLE` where the width allows, and at least ``min_width``. Without a measurable slope (a
    probe's saving within the noise), half the filters, as the probe removed."""
    wanted = math.ceil(step / slope_ms) if slope_ms > 0 else round(PROBE_SHARE * width)
    keep = max(width - max(wanted, 1), min_width)
    if keep >= WIDTH_MULTIPLE:
        keep = max(keep // WIDTH_MULTIPLE * WIDTH_MULTIPLE, min_width)
    return max(1, min(width - keep, width - min_width))


def _write_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(state, indent=1))


def _write_trajectory(out: Path, state: dict[str, Any]) -> None:
    """``trajectory.json`` (every iteration: latency, score, widths, MACs, its proposals) and its plot."""
    document = {key: state[key] for key in ("start_ms", "target_ms", "trajectory")}
    document["runtime"], document["threads"] = state["config"]["runtime"], state["config"]["threads"]
    with atomic_path(out / TRAJECTORY) as tmp:
        tmp.write_text(json.dumps(document, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = state["trajectory"]
    figure, axis = plt.subplots(figsize=(6, 4))
    for point in points:
        tried = [p for p in point["proposals"] if p["abs_rel"] is not None]
        axis.scatter([p["latency_ms"] for p in tried], [p["abs_rel"] for p in tried], s=10, color="0.7")
    axis.plot([p["latency_ms"] for p in points], [p["abs_rel"] for p in points], "o-", color="C0", label="kept")
    for point in points:
        axis.annotate(str(point["iteration"]), (point["latency_ms"], point["abs_rel"]), fontsize=7)
    axis.axvline(state["target_ms"], color="C3", linestyle="--", label="target")
    axis.set_xlabel(f"latency (ms), {document['runtime']}, {document['threads']} thread(s)")
    axis.set_ylabel("held-out aligned AbsRel")
    axis.legend()
    figure.tight_layout()
    with atomic_path(out / "trajectory.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
