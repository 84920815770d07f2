"""Training's parts: parameter groups (weight decay, the encoder's rate), validation shared over DDP processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import DEFAULT_CONFIG, read_log, tiny_config, write_pairs
from torch import nn

from edgedepth.core.config import load_config
from edgedepth.core.errors import EdgedepthError
from edgedepth.data.nyu import NyuLabeled, write_labeled_mat, write_splits_mat
from edgedepth.models import create_model, load_model
from edgedepth.models.weights import read_metadata
from edgedepth.train import checkpoint, schedule
from edgedepth.train import loop as train
from edgedepth.train.config import TrainConfig
from edgedepth.train.validation import validate


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"), 12)


def optim_config(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, DEFAULT_CONFIG, ["model.pretrained=false", *overrides])


def test_the_seed_recipe_is_one_group_of_every_parameter_in_order() -> None:
    model = create_model("fastdepth_v3")
    for overrides in [(), ("optim.name=adamw",)]:
        (group,) = schedule.build_optimizer(model, optim_config(*overrides)).param_groups
        assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
        assert (group["lr"], group["weight_decay"]) == (1e-3, 0.0)


def test_weight_decay_spares_norms_and_biases_and_the_encoder_trains_at_its_scale() -> None:
    model = create_model("fastdepth_v3")
    cfg = optim_config("optim.name=adamw", "optim.weight_decay=0.05", "optim.encoder_lr_scale=0.1")
    optimizer = schedule.build_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    encoder = {id(p) for p in model.encoder.parameters()}
    norms = {id(m.weight) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    biases = {id(p) for name, p in model.named_parameters() if name.endswith(".bias")}
    seen: list[int] = []
    for group in optimizer.param_groups:
        ids = [id(p) for p in group["params"]]
        seen += ids
        in_encoder = {i in encoder for i in ids}
        assert len(in_encoder) == 1, "a group mixes encoder and decoder parameters"
        assert group["lr"] == pytest.approx(1e-4 if in_encoder == {True} else 1e-3)
        decays = {p.ndim > 1 for p in group["params"]}
        assert decays == {group["weight_decay"] == 0.05}
        if group["weight_decay"]:
            assert not set(ids) & (norms | biases)
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each parameter once
    assert len(optimizer.param_groups) == 4 and norms and biases
    # The first group is at the base rate (the rate logged) and decays.
    assert (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["weight_decay"]) == (1e-3, 0.05)
    # Plain Adam's L2 penalty spares them too.
    adam = schedule.build_optimizer(model, optim_config("optim.weight_decay=0.05"))
    assert {(g["weight_decay"], p.ndim > 1) for g in adam.param_groups for p in g["params"]} == {(0.05, True), (0.0, False)}


def test_an_encoder_rate_for_a_model_without_an_encoder_is_a_clear_error() -> None:
    with pytest.raises(EdgedepthError, match=r"optim.encoder_lr_scale=0.1 needs a model with an encoder; fastdepth_v3 "
                                             r"has no .encoder module"):
        schedule.build_optimizer(nn.Sequential(nn.Conv2d(3, 1, 1)), optim_config("optim.encoder_lr_scale=0.1"))


def test_groups_are_killed_and_resumed_bit_exactly(pairs: Path, tmp_path: Path) -> None:
    overrides = ("schedule.epochs=2", "run.checkpoint_every_steps=2", "optim.name=adamw", "optim.weight_decay=0.1",
                 "optim.encoder_lr_scale=0.1")
    reference = train.run(tiny_config(pairs, tmp_path / "straight", *overrides))

    def kill_at_step_5(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run(tiny_config(pairs, tmp_path / "killed", *overrides), on_step=kill_at_step_5)
    resumed = train.run(tiny_config(pairs, tmp_path / "killed", *overrides, "run.resume=true"))
    assert resumed.steps == 6 and resumed.complete
    a, b = load_file(str(reference.weights)), load_file(str(resumed.weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The schedule moves every group: after two epochs, gamma^2 x the start rates, the encoder's a tenth of the rest.
    groups = checkpoint.load_checkpoint(tmp_path / "killed" / train.CHECKPOINT)["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3 * 0.316**2] * 2 + [1e-4 * 0.316**2] * 2)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0, 0.1, 0.0]
    assert [r["lr"] for r in read_log(tmp_path / "killed")] == pytest.approx([1e-3] * 3 + [3.16e-4] * 3)
    # The encoder's rate is part of the maths: a resume may not change it.
    with pytest.raises(EdgedepthError, match="started with another config .*optim.encoder_lr_scale"):
        train.run(tiny_config(pairs, tmp_path / "killed", *overrides[:-1], "optim.encoder_lr_scale=1.0"))


# ---------------------------------------------------------------------------------------------------------------
# Validation under DDP


def write_nyu(folder: Path) -> tuple[Path, Path]:
    """Three test frames of unlike scenes, so that a mean of per-process means (2 frames, then 1) is wrong."""
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    depths = np.stack([1.0 + 2 * k + (3.0 - 2 * k) * y / 480 + (2.0 + k) * x / 640 for k in range(3)])
    images = np.stack([np.stack([x * (0.3 + k) % 256, y * 0.5 % 256, np.full_like(x, 90 * k)], -1) for k in range(3)])
    write_labeled_mat(folder / "nyu.mat", images.astype(np.uint8), depths, depths)
    write_splits_mat(folder / "splits.mat", [0], [0, 1, 2])
    return folder / "nyu.mat", folder / "splits.mat"


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_validate_their_shares_to_the_metrics_of_one(pairs: Path, tmp_path: Path) -> None:
    """Under torchrun every process validates every second frame; the summed metrics are one process's metrics.

    The weights validated are rank 0's, exported as best.safetensors after the only epoch; one process
    validating those weights over all frames must give the metrics the two processes logged.
    """
    nyu, splits = write_nyu(tmp_path)
    validation = [f"validation.nyu_data_path={nyu}", f"validation.nyu_splits_path={splits}"]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29534",
        "-m", "edgedepth.cli", "train", "--config", str(DEFAULT_CONFIG), f"data.path={pairs}",
        f"run.dir={tmp_path / 'two'}", "data.input_size=64x64", "data.num_workers=0", "model.pretrained=false",
        "optim.batch_size=4", "run.device=cpu", "logging.progress_bar=false", "schedule.epochs=1",
        "model.freeze_bn=true", *validation,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (logged,) = [json.loads(line) for line in (tmp_path / "two" / train.LOG).read_text().splitlines()
                 if "val_rmse" in line]
    two = {key[4:]: value for key, value in logged.items() if key.startswith("val_")}
    assert read_metadata(tmp_path / "two" / train.BEST_WEIGHTS)[1]["nyu_metrics"] == two
    assert done.stderr.count("epoch 1/1: val abs_rel") == 1  # printed by rank 0 alone

    model = load_model(tmp_path / "two" / train.BEST_WEIGHTS)
    cfg = tiny_config(pairs, tmp_path / "unused", *validation)
    torch.set_num_threads(1)  # as the two processes ran
    one = validate(model, cfg, torch.device("cpu"))
    assert one is not None and two == pytest.approx(one, rel=1e-6, abs=1e-9)

    # The frames differ enough that weighting each process's mean alike would not pass.
    from edgedepth.eval.metrics import mean_metrics
    from edgedepth.eval.nyu import PROTOCOLS, evaluate_frames
    from edgedepth.runtime.pytorch import TorchPredictor

    with NyuLabeled(nyu) as labeled:
        frames = evaluate_frames(TorchPredictor(model, (64, 64)), labeled, np.arange(3), PROTOCOLS["seed"],
                                 progress=False)
    per_frame = [r.metrics for r in frames]
    assert all(m is not None for m in per_frame)
    halves = [mean_metrics([per_frame[0], per_frame[2]]), mean_metrics([per_frame[1]])]  # type: ignore[list-item]
    wrong = {name: (halves[0][name] + halves[1][name]) / 2 for name in one}
    assert wrong["rmse"] != pytest.approx(one["rmse"], rel=1e-3)
    assert mean_metrics(per_frame) == pytest.approx(one, rel=1e-6)  # type: ignore[arg-type]


def test_a_resume_accepts_what_the_fields_mark_resumable(pairs: Path, tmp_path: Path) -> None:
    """Keys marked resumable may change; a key added since the run started counts at its default; a saved key
    this version does not know (renamed) is refused in one line."""
    run_dir = tmp_path / "run"
    train.run(tiny_config(pairs, run_dir, "schedule.max_steps=1"))
    resumed = train.run(tiny_config(pairs, run_dir, "schedule.max_steps=2", "logging.every_steps=5",
                                    "run.checkpoint_every_steps=7", f"validation.nyu_splits_path={tmp_path}"))
    assert resumed.steps == 2
    saved = run_dir / train.CHECKPOINT
    state = checkpoint.load_checkpoint(saved)
    del state["config"]["optim"]["encoder_lr_scale"]  # as written before the key existed
    checkpoint.save_checkpoint(saved, state)
    assert train.run(tiny_config(pairs, run_dir, "schedule.max_steps=3")).steps == 3
    state = checkpoint.load_checkpoint(saved)
    state["config"]["optim"]["lr_encoder"] = state["config"]["optim"].pop("encoder_lr_scale")
    checkpoint.save_checkpoint(saved, state)
    with pytest.raises(EdgedepthError) as caught:
        train.run(tiny_config(pairs, run_dir, "schedule.max_steps=4"))
    assert str(caught.value) == (
        f"{saved}: its saved config does not load in this version (unknown config key 'optim.lr_encoder' "
        "(known here: batch_size, encoder_lr_scale, loss, lr, name, weight_decay)); use another run.dir")
