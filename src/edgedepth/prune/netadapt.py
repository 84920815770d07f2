"""``edgedepth prune``: FastDepth's NetAdapt step, to a latency budget measured on the runtime the model will run on.

NetAdapt (Yang et al., ECCV 2018) as FastDepth used it, on ``fastdepth_v3`` and ``fastdepth_<timm encoder>``
students (MobileNetV4, EfficientNet, ... blocks):

- the layer groups are each expanding block's expansion width and each decoder stage's width, a skip's block and
  the decoder stage receiving it tied (:mod:`.widths`);
- each iteration must cut the latency by ``step_share`` of the start latency. Per group, the filters with the
  smallest L1 norms go first; how many is read off a measured slope (ms per filter): in the first iteration the
  current network and, per group, a probe with half of its filters removed are timed together (see below); later,
  a group's slope is the one its proposal of the iteration before was measured at (a probe again where that
  proposal was not faster). A group gets the fewest filters whose linear estimate reaches the step, its kept width
  a multiple of :data:`WIDTH_MULTIPLE`. That slope is a per-group latency table; every proposal it leads to is
  then timed itself as a whole network, so the latency kept and reported is always measured, never estimated.
  Timing every proposal was chosen over trusting the table: a table may stand in for measurement only where it
  predicts the whole network's measured latency within 5%, and it did not (the runs in benchmarks/README.md; graph
  fusion and layout choices need not add up layer by layer); ``trajectory.json`` keeps each estimate beside its
  measurement, so that can be checked run by run;
- each proposal is fine-tuned briefly by ``edgedepth train`` (``model.init_weights``) on the training label shards
  and scored on held-out ones (:mod:`.tune`); the best score among the proposals whose measured cut reaches half
  the step is kept (the largest cut where none does, see :func:`_choose`). Once the target is met, a long fine-tune
  follows.

Timing: every network is made into the file its runtime runs (:func:`edgedepth.export.graph.runtime_file`, INT8
calibrated on the label shards' images) and timed in one spawned process per round, the networks taking turns run
by run (:func:`edgedepth.runtime.timing.time_files`, as ``edgedepth bench`` times), so the machine's drift hits
them alike. Every round includes the start network, which puts the round on the start's scale (:class:`Reference`);
a kept network that meets the target is timed again in a round of its own before the run ends.

``--out DIR`` holds ``state.json`` (where the run stands: replaced atomically after every iteration),
``iterations/NNN.safetensors`` (the network after each iteration), ``trajectory.json`` and ``trajectory.png``
(latency against score per iteration), ``final/`` (the long fine-tune's run, resumable as any training run) and
``pruned.safetensors``, an ordinary registry model whose card records every width.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, check_output_folder, write_json
from edgedepth.export.graph import runtime_file
from edgedepth.models import DepthNetwork, load_model, save_weights
from edgedepth.models.complexity import count_macs, count_parameters
from edgedepth.models.weights import read_metadata
from edgedepth.prune.config import PruneConfig
from edgedepth.prune.tune import Splits, calibration, fine_tune, score, split_labels
from edgedepth.prune.widths import Group, group_width, layer_groups, prune_group, widths_of
from edgedepth.runtime.runtimes import Runtime, get_runtime
from edgedepth.runtime.timing import time_files

STATE = "state.json"
TRAJECTORY = "trajectory.json"
PRUNED = "pruned.safetensors"
#: The probe that measures a group's latency slope removes this share of its filters.
PROBE_SHARE = 0.5
#: Proposals keep widths that are multiples of this: the runtimes' SIMD blocks (8 floats with AVX2, 16 in OpenVINO's
#: AVX-512 blocked layouts) pad other widths, so a cut that leaves a partial block saves little of what it costs.
WIDTH_MULTIPLE = 8




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


@dataclass(frozen=True)
class Reference:
    """The start network's runtime file and its latency measured at the start: timed again in every round, it puts
    the round's measurements on the start's scale, so the machine's drift between rounds cancels."""

    file: Path
    start_ms: float


@dataclass(frozen=True)
class Round:
    """One timing round, on the start's scale: the current network's latency and each candidate's."""

    current_ms: float
    candidates_ms: list[float]


@dataclass(frozen=True)
class Proposal:
    """One group's proposal in one iteration, as measured; a record of ``trajectory.json``.

    ``slope_ms`` is the latency the proposal saved per filter removed (what the group's next proposal is sized by),
    ``estimated_ms`` what the slope it was sized by predicted, ``abs_rel`` its held-out score after the short
    fine-tune (``None``: not faster than the current network, so not fine-tuned).
    """

    group: str
    removed: int
    latency_ms: float
    current_ms: float
    estimated_ms: float | None
    slope_from: str
    slope_ms: float
    abs_rel: float | None = None

    @property
    def cut_ms(self) -> float:
        return self.current_ms - self.latency_ms


@dataclass(frozen=True)
class Kept:
    """An iteration's outcome: the fine-tuned network it keeps, its latency and score, and every proposal."""

    model: DepthNetwork
    latency_ms: float
    metrics: dict[str, float]
    proposals: list[Proposal]


@dataclass(frozen=True)
class Setting:
    """What every iteration of a run shares: its config, runtime, reference, the latency cut per iteration, the label
    splits, the training loss and the INT8 calibration images."""

    cfg: PruneConfig
    runtime: Runtime
    reference: Reference
    step_ms: float
    splits: Splits
    loss: str
    calibration: Sequence[np.ndarray] | None




def _say(cfg: PruneConfig, line: str) -> None:
    if cfg.progress:
        print(line, file=sys.stderr, flush=True)


def _check(cfg: PruneConfig) -> None:
    get_runtime(cfg.runtime)
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
    _check(cfg)
    runtime = get_runtime(cfg.runtime)
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
    batches = calibration(Path(cfg.data), start_model) if runtime.int8 else None
    state_path, iterations = out / STATE, out / "iterations"
    iterations.mkdir(exist_ok=True)

    def describe(model: DepthNetwork, latency: float, metrics: dict[str, float], index: int,
                 proposals: Sequence[Proposal]) -> dict:
        expansions, decoder_widths = widths_of(model)
        return {"iteration": index, "latency_ms": latency, "abs_rel": metrics["abs_rel"], "delta1": metrics["delta1"],
                "macs": count_macs(model, size), "params": count_parameters(model), "expansions": expansions,
                "decoder_widths": decoder_widths, "proposals": [dataclasses.asdict(p) for p in proposals]}

    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state["config"] != cfg.identity():
            raise EdgedepthError(f"{state_path}: a prune started with other settings; use the same ones or another --out")
        _say(cfg, f"edgedepth prune: resuming {out} after iteration {state['iteration']}")
    else:
        current_path = save_weights(start_model, iterations / "000.safetensors", pruned_from=str(cfg.weights))
        (start_ms,) = time_files([_start_file(runtime, start_model, out, batches)], runtime.name, cfg.threads, cfg.runs)
        metrics = score(start_model, splits.held_out, splits.size)
        target = cfg.target_ms if cfg.target_ms is not None else cfg.target_ratio * start_ms  # type: ignore[operator]
        state = {"config": cfg.identity(), "iteration": 0, "current": str(current_path), "start_ms": start_ms,
                 "current_ms": start_ms, "target_ms": target, "done": False, "stopped": None,
                 "trajectory": [describe(start_model, start_ms, metrics, 0, [])]}
        _write_state(state_path, state)
        _say(cfg, f"edgedepth prune: start {start_ms:.2f} ms on {cfg.runtime} ({cfg.threads} thread(s)), "
                  f"abs_rel {metrics['abs_rel']:.4f}; target {target:.2f} ms")

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
        reference = Reference(_start_file(runtime, start_model, out, batches), state["start_ms"])
        setting = Setting(cfg, runtime, reference, cfg.step_share * state["start_ms"], splits, loss, batches)
        previous = [Proposal(**record) for record in state["trajectory"][-1]["proposals"]]
        work = out / "work" / f"{index:03d}"
        kept = _iterate(setting, current, prunable, previous, work, index)
        if kept is None:
            state["stopped"] = (f"no layer group can be pruned further to a lower measured latency (no proposal of "
                                f"iteration {index} was measured faster than the current network)")
            break
        latency = kept.latency_ms
        if latency <= state["target_ms"]:  # one round's luck must not end the run: timed again in a round of its own
            kept_file, _ = runtime_file(kept.model, runtime, work / "kept", batches)
            confirmed = _timed(setting, kept_file, []).current_ms
            _say(cfg, f"[iteration {index}] target reached at {latency:.2f} ms; timed again: {confirmed:.2f} ms")
            latency = confirmed
        path = save_weights(kept.model, iterations / f"{index:03d}.safetensors", pruned_from=str(cfg.weights),
                            iteration=index)
        state["trajectory"].append(describe(kept.model, latency, kept.metrics, index, kept.proposals))
        state.update(iteration=index, current=str(path), current_ms=latency)
        _write_state(state_path, state)
        _write_trajectory(out, state)
        shutil.rmtree(work, ignore_errors=True)
    _write_state(state_path, state)  # why it stopped, before the long fine-tune (which resumes on its own)

    met = state["current_ms"] <= state["target_ms"]
    final_path = Path(state["current"])
    if cfg.long_steps and state["iteration"] > 0:
        _say(cfg, f"edgedepth prune: long fine-tune, {cfg.long_steps} steps")
        final_path = fine_tune(final_path, out / "final", splits, cfg.long_steps, cfg.batch_size, cfg.lr, loss)
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


def _start_file(runtime: Runtime, start_model: DepthNetwork, out: Path,
                calibration: Sequence[np.ndarray] | None) -> Path:
    """The start network's runtime file, made once (again after a resume that finds it gone)."""
    folder = out / "work" / "start"
    made = folder / "made"  # names the finished file; written last
    if made.exists():
        return folder / made.read_text()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path, _ = runtime_file(start_model, runtime, folder / "start", calibration)
    with atomic_path(made) as tmp:
        tmp.write_text(path.name)
    return path


def _timed(setting: Setting, current_file: Path, files: Sequence[Path]) -> Round:
    """The current network's and each file's latency, timed in one round with the start network, on its scale."""
    reference, cfg = setting.reference, setting.cfg
    start_raw, current_raw, *raw = time_files([reference.file, current_file, *files], setting.runtime.name,
                                              cfg.threads, cfg.runs)
    scale = reference.start_ms / start_raw
    return Round(current_raw * scale, [value * scale for value in raw])


def _iterate(setting: Setting, current: DepthNetwork, prunable: list[Group], previous: Sequence[Proposal], work: Path,
             index: int) -> Kept | None:
    """One NetAdapt iteration: per group of ``prunable`` (each wider than ``cfg.min_width``) a proposal that removes
    the fewest filters estimated to cut the step; each timed, fine-tuned and scored; the one :func:`_choose` keeps
    (``None`` where no proposal was measured faster than the current network).

    Every round times the start network, the current one and the candidates together; "faster" compares a proposal
    with the current network of the same round (a latency kept from an earlier round would carry that round's
    luck: one lucky measurement made every later proposal look slower). ``previous`` holds the last iteration's
    proposals: a group whose proposal was measured faster there keeps that slope (ms per filter); the others get a
    probe."""
    cfg, runtime, calibration = setting.cfg, setting.runtime, setting.calibration
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    slopes = {p.group: p.slope_ms for p in previous if p.slope_ms > 0}
    current_file, _ = runtime_file(current, runtime, work / "current", calibration)
    probed = [g for g in prunable if g.name not in slopes]
    if probed:  # one probe per group without a slope
        probes = []
        for group in probed:
            width = group_width(current, group)
            removed = max(1, min(round(PROBE_SHARE * width), width - cfg.min_width))
            probes.append((group, removed, prune_group(current, group, width - removed)))
        files = [runtime_file(m, runtime, work / f"probe_{g.name}", calibration)[0] for g, _, m in probes]
        probe_round = _timed(setting, current_file, files)
        for (group, removed, _), probe_ms in zip(probes, probe_round.candidates_ms, strict=True):
            slopes[group.name] = (probe_round.current_ms - probe_ms) / removed
    candidates = [(group, _filters_to_remove(group_width(current, group), slopes[group.name], setting.step_ms,
                                             cfg.min_width)) for group in prunable]
    networks = [(g, n, prune_group(current, g, group_width(current, g) - n)) for g, n in candidates]
    files = [runtime_file(m, runtime, work / f"proposal_{g.name}", calibration)[0] for g, _, m in networks]
    measured = _timed(setting, current_file, files)
    current_ms = measured.current_ms
    _say(cfg, f"[iteration {index}] current network {current_ms:.2f} ms in this round")
    tuned_models: dict[str, tuple[DepthNetwork, dict[str, float]]] = {}
    proposals = []
    for (group, removed, model), latency in zip(networks, measured.candidates_ms, strict=True):
        slope = slopes[group.name]
        proposal = Proposal(group.name, removed, latency, current_ms,
                            estimated_ms=current_ms - removed * slope if slope > 0 else None,
                            slope_from="probe" if group in probed else "previous iteration",
                            slope_ms=(current_ms - latency) / removed)
        if latency >= current_ms:
            _say(cfg, f"[iteration {index}] {group.name} -{removed}: {latency:.2f} ms, not faster than "
                      f"{current_ms:.2f} ms: skipped")
            proposals.append(proposal)
            continue
        seed = save_weights(model, work / f"proposal_{group.name}.init.safetensors")
        tuned = load_model(fine_tune(seed, work / f"tune_{group.name}", setting.splits, cfg.short_steps,
                                     cfg.batch_size, cfg.lr, setting.loss))
        tuned.card = model.card
        metrics = score(tuned, setting.splits.held_out, setting.splits.size)
        proposals.append(dataclasses.replace(proposal, abs_rel=metrics["abs_rel"]))
        guess = "" if proposal.estimated_ms is None else f"estimated {proposal.estimated_ms:.2f}, "
        _say(cfg, f"[iteration {index}] {group.name} -{removed} filters: {latency:.2f} ms ({guess}current "
                  f"{current_ms:.2f}), abs_rel {metrics['abs_rel']:.4f}")
        tuned_models[group.name] = (tuned, metrics)
    chosen = _choose(proposals, setting.step_ms)
    if chosen is None:
        return None
    tuned, metrics = tuned_models[chosen.group]
    _say(cfg, f"[iteration {index}] kept {chosen.group} -{chosen.removed}: {chosen.latency_ms:.2f} ms, "
              f"abs_rel {metrics['abs_rel']:.4f}")
    return Kept(tuned, chosen.latency_ms, metrics, proposals)


def _choose(proposals: Sequence[Proposal], step_ms: float) -> Proposal | None:
    """The proposal kept: the best score among those whose measured cut reaches half the step, else the largest cut.

    NetAdapt compares proposals at one latency cut; measured cuts fall short of the slopes' estimates (groups
    interact through the runtime's fusion and layouts), so half the step qualifies. The best score among any faster
    proposal would keep a near-free one (0.02 ms of an asked 1.0 was kept so), and the budget would not move.
    """
    faster = [p for p in proposals if p.abs_rel is not None]
    if not faster:
        return None
    qualified = [p for p in faster if p.cut_ms >= step_ms / 2]
    if qualified:
        return min(qualified, key=lambda p: p.abs_rel or 0.0)
    return min(faster, key=lambda p: p.latency_ms)


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
    write_json(path, state)


def _write_trajectory(out: Path, state: dict[str, Any]) -> None:
    """``trajectory.json`` (every iteration: latency, score, widths, MACs, its proposals) and its plot."""
    document = {key: state[key] for key in ("start_ms", "target_ms", "trajectory")}
    document["runtime"], document["threads"] = state["config"]["runtime"], state["config"]["threads"]
    write_json(out / TRAJECTORY, document)
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
