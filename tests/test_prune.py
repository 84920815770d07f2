"""``edgedepth prune`` (NetAdapt) on a briefly trained fastdepth_v3, and on fastdepth_mobilenetv4_conv_small (timm
blocks), at 64x64 with three label shards (oracle teacher).

64x48 is not an input these students take (their sides must be multiples of 32), so the tiny size here is 64x64.
Latency is measured on ONNX Runtime: at this size PyTorch eager is bound by per-operator overhead and pruning
widths changes its time by less than its noise.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edgedepth.cli import main
from edgedepth.export.graph import runtime_file
from edgedepth.models import create_model, load_model, save_weights
from edgedepth.models.complexity import count_macs
from edgedepth.prune import netadapt as prune
from edgedepth.prune import widths
from edgedepth.runtime.runtimes import get_runtime
from edgedepth.runtime.timing import time_files

SIZE = (64, 64)
TIMED = (256, 192)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Label shards (3 shards of 4 scenes) and a fastdepth_v3 trained 24 steps on them: ``(labels, weights)``."""
    from edgedepth.core.config import load_config
    from edgedepth.data import synthetic
    from edgedepth.label import job as label
    from edgedepth.label import recipe
    from edgedepth.train import loop as train
    from edgedepth.train.config import TrainConfig

    root = tmp_path_factory.mktemp("prune")
    synthetic.write_folder(root / "scenes", 12, (80, 80), seed=3, progress=False)
    labels = root / "labels"
    label.run(label.LabelConfig(source=str(root / "scenes"), out=labels, teacher="oracle",
                                recipe=recipe.Recipe(crop=(64, 64), size=SIZE), batch_size=4, shard_size=4, workers=0,
                                progress=False))
    cfg = load_config(TrainConfig, None, [
        f"data.path={labels}", f"run.dir={root / 'run'}", "data.format=shards", "data.input_size=64x64",
        "data.num_workers=0", "model.pretrained=false", "optim.batch_size=4", "model.freeze_bn=true",
        "schedule.name=cosine", "schedule.epochs=8", "run.device=cpu", "logging.progress_bar=false",
        "logging.tensorboard=false",
    ])
    return labels, train.run(cfg).weights


def config(setup: tuple[Path, Path], out: Path, **changes: object) -> prune.PruneConfig:
    labels, weights = setup
    base: dict[str, object] = {
        "weights": weights, "data": labels, "runtime": "onnx", "out": out, "target_ratio": 0.9, "step_share": 0.1,
        "short_steps": 2, "long_steps": 2, "batch_size": 4, "runs": 20, "groups": ("block2+stage3", "stage4"),
    }
    return prune.PruneConfig(**{**base, **changes})  # type: ignore[arg-type]


def assert_faster_when_timed_again(start: torch.nn.Module, pruned: torch.nn.Module, tmp_path: Path) -> None:
    """Exported and timed again side by side at :data:`TIMED`, the pruned network is faster than the start's. (At
    64x64 the runtime's per-operator overhead dominates: one group's cut moved the latency by less than a loaded
    machine's noise.)"""
    for model in (start, pruned):
        model.card = replace(model.card, input_size=TIMED)
    files = [runtime_file(m, get_runtime("onnx"), tmp_path / name, None)[0] for name, m in (("a", start), ("b", pruned))]
    before, after = time_files(files, "onnx", 1, 40)
    assert after < before, (before, after)


def assert_card_rebuilds(pruned: torch.nn.Module, tmp_path: Path) -> None:
    """Saved and loaded, the pruned network is rebuilt from its card alone: the same widths, the same outputs."""
    loaded = load_model(save_weights(pruned, tmp_path / "p.safetensors"))
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert widths.widths_of(loaded) == widths.widths_of(pruned)


def test_tied_widths_stay_tied_and_se_follows() -> None:
    torch.manual_seed(0)
    model = create_model("fastdepth_v3").eval()
    groups = {g.name: g for g in widths.layer_groups(model)}
    assert {"block2+stage3", "block7+stage1", "block11+stage0", "stage2", "stage4"} <= set(groups)
    assert "block1" not in groups  # no expansion convolution
    pruned = widths.prune_group(model, groups["block7+stage1"], 100)
    pruned = widths.prune_group(pruned, groups["block12"], 300)
    expansions, decoder_widths = widths.widths_of(pruned)
    assert expansions[6] == decoder_widths[1] == pruned.encoder.feature_channels[1] == 100
    assert pruned.encoder.features[12].block[2].fc1.out_channels == 72  # torchvision: _make_divisible(300 // 4, 8)
    assert pruned.card.model_args == {"expansions": expansions, "decoder_widths": decoder_widths}
    assert pruned(torch.zeros(1, 3, *SIZE)).shape == (1, 1, *SIZE)
    assert count_macs(pruned, SIZE) < count_macs(model, SIZE)
    # A block's expansion never becomes its input width (torchvision would drop the convolution).
    assert widths.widths_of(widths.prune_group(model, groups["block2+stage3"], 16))[0][1] == 15


def test_pruned_card_rebuilds_the_network_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("fastdepth_v3").eval()
    groups = {g.name: g for g in widths.layer_groups(model)}
    pruned = widths.prune_group(widths.prune_group(model, groups["block11+stage0"], 200), groups["stage2"], 50)
    assert_card_rebuilds(pruned, tmp_path)


def test_kept_filters_are_the_largest_l1_ones() -> None:
    torch.manual_seed(0)
    model = create_model("fastdepth_v3").eval()
    group = next(g for g in widths.layer_groups(model) if g.name == "stage4")
    weight = model.decoder.stages[4][1][0].weight
    norms = weight.detach().abs().flatten(1).sum(1)
    kept = torch.sort(torch.topk(norms, 10).indices).values
    pruned = widths.prune_group(model, group, 10)
    assert torch.equal(pruned.decoder.stages[4][1][0].weight, weight[kept])
    assert torch.equal(pruned.decoder.head[0].weight, model.decoder.head[0].weight[:, kept])


@pytest.mark.slow
def test_prune_reduces_measured_latency_and_macs(setup: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Timed at the seed's 256x192 (the student and its label shards stay at 64x64): at 64x64 the runtime's
    # per-operator overhead dominates, and one group's cut moved the latency by less than a loaded machine's noise.
    result = prune.run(config(setup, tmp_path / "out", target_ratio=0.6, step_share=0.4, size=TIMED))
    err = capsys.readouterr().err
    assert "[iteration 1]" in err and "abs_rel 0." in err and "ms" in err
    assert result.iterations >= 1 and result.final_ms < result.start_ms
    trajectory = json.loads((tmp_path / "out" / prune.TRAJECTORY).read_text())["trajectory"]
    assert trajectory[-1]["macs"] < trajectory[0]["macs"] and trajectory[-1]["latency_ms"] < trajectory[0]["latency_ms"]
    assert (tmp_path / "out" / "trajectory.png").stat().st_size > 0
    pruned = load_model(result.weights)
    assert_faster_when_timed_again(load_model(setup[1]), pruned, tmp_path)
    expansions, decoder_widths = widths.widths_of(pruned)
    assert expansions[1] == decoder_widths[3]  # block 2 and decoder stage 3 stay tied


@pytest.mark.slow
def test_killed_prune_resumes_at_its_last_iteration(setup: tuple[Path, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Killed in iteration 2, rerun: iteration 1 is not redone; two iterations cannot reach 0.2x, which it says."""
    cfg = config(setup, tmp_path / "out", target_ratio=0.2, step_share=0.4, max_iterations=2, runs=25)
    real = prune._iterate

    def killed_in_second(*args: object, **kwargs: object) -> object:
        if args[-1] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(prune, "_iterate", killed_in_second)
    with pytest.raises(KeyboardInterrupt):
        prune.run(cfg)
    first = (tmp_path / "out" / "iterations" / "001.safetensors").read_bytes()
    monkeypatch.setattr(prune, "_iterate", real)
    timed: list[str] = []
    real_time_files = prune.time_files

    def recording(paths: list[Path], runtime: str, threads: int, runs: int) -> list[float]:
        timed.extend(Path(p).name.split(".")[0] for p in paths)
        return real_time_files(paths, runtime, threads, runs)

    monkeypatch.setattr(prune, "time_files", recording)
    capsys.readouterr()
    result = prune.run(cfg)
    probed = {name.removeprefix("probe_") for name in timed if name.startswith("probe_")}
    err = capsys.readouterr().err
    assert "resuming" in err and "after iteration 1" in err and "[iteration 1]" not in err
    # Iteration 2 reuses each slope measured faster in iteration 1 (read back from the resumed state), probes the rest.
    first_records = json.loads((tmp_path / "out" / prune.TRAJECTORY).read_text())["trajectory"][1]["proposals"]
    after_first = load_model(tmp_path / "out" / "iterations" / "001.safetensors")
    prunable = {g.name for g in widths.layer_groups(after_first)
                if g.name in cfg.groups and widths.group_width(after_first, g) > cfg.min_width}  # type: ignore[operator]
    measured_faster = {r["group"] for r in first_records if r["slope_ms"] > 0}
    assert probed == prunable - measured_faster and prunable
    assert (tmp_path / "out" / "iterations" / "001.safetensors").read_bytes() == first
    assert not result.target_met and "NOT reached" in result.message and result.weights.exists()


def test_unreachable_target_stops_with_the_best_model(setup: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A group already at its narrowest: nothing to prune, so the run stops at once, keeps the model, and says so."""
    result = prune.run(config(setup, tmp_path / "out", runtime="torch", groups=("stage4",), min_width=32,
                              target_ms=0.001, target_ratio=None))
    assert not result.target_met and result.iterations == 0 and "NOT reached" in result.message
    assert "no layer group can be pruned further (each at its narrowest, 32 filters)" in capsys.readouterr().err
    assert load_model(result.weights) is not None


def test_a_prune_with_no_faster_proposal_stops_and_says_so(setup: tuple[Path, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every proposal timed no faster than the current network: the run stops with the best model, and its reason
    is that measurement, not that the groups are at their narrowest (they are not)."""
    monkeypatch.setattr(prune, "time_files", lambda paths, runtime, threads, runs: [10.0] * len(paths))
    result = prune.run(config(setup, tmp_path / "out", runtime="torch", long_steps=0))
    assert not result.target_met and result.iterations == 0
    assert ("no layer group can be pruned further to a lower measured latency (no proposal of iteration 1 was "
            "measured faster than the current network)") in result.message
    assert "narrowest" not in result.message
    assert load_model(result.weights) is not None


@pytest.mark.parametrize("arguments, message", [
    (["--target-ratio", "1.5"], "--target-ratio 1.5: must lie between 0 and 1"),
    (["--target-ms", "-1"], "--target-ms -1.0: must be positive"),
    (["--target-ms", "5", "--size", "64x48"], "sides must be multiples of 32"),
])
def test_bad_input_is_one_line_and_exit_2(setup: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], arguments: list[str],
                                          message: str) -> None:
    code = main(["prune", "--weights", str(setup[1]), "--data", str(setup[0]), "--runtime", "onnx",
                 "--out", str(tmp_path / "out"), *arguments])
    assert not (tmp_path / "out" / prune.STATE).exists()
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_output_folder_in_the_way_is_refused(setup: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    code = main(["prune", "--weights", str(setup[1]), "--data", str(setup[0]), "--runtime", "onnx",
                 "--target-ratio", "0.5", "--out", str(tmp_path / "file")])
    assert code == 2 and "a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["fastdepth", "zipdepth_small", "midas_v21_small"])
def test_other_networks_are_refused(name: str, setup: tuple[Path, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A network prune cannot rebuild from its widths is a one-line error, not a traceback (ZipDepth's and MiDaS's
    decoders have no skip table: reading it raised AttributeError until the type checker found it)."""
    weights = save_weights(create_model(name), tmp_path / f"{name}.safetensors")
    code = main(["prune", "--weights", str(weights), "--data", str(setup[0]), "--runtime", "onnx",
                 "--target-ratio", "0.5", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "prune takes fastdepth_v3" in err and err.count("\n") == 1, err


def test_train_refuses_init_weights_of_another_shape(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """``model.init_weights`` (the entry point prune fine-tunes through) must fit the model the config names."""
    from edgedepth.core.config import load_config
    from edgedepth.core.errors import EdgedepthError
    from edgedepth.train import loop as train
    from edgedepth.train.config import TrainConfig

    model = load_model(setup[1])
    group = next(g for g in widths.layer_groups(model) if g.name == "stage2")
    pruned = save_weights(widths.prune_group(model, group, 40), tmp_path / "p.safetensors")
    cfg = load_config(TrainConfig, None, [f"data.path={setup[0]}", "data.format=shards", "data.input_size=64x64",
                                          f"run.dir={tmp_path / 'run'}", "model.pretrained=false", "run.device=cpu",
                                          f"model.init_weights={pruned}"])
    with pytest.raises(EdgedepthError, match="do not fit model.name=fastdepth_v3"):
        train.run(cfg)


def test_proposals_keep_widths_on_multiples_of_eight() -> None:
    """The fewest filters reaching the step, rounded so that the kept width fills whole SIMD blocks."""
    assert prune._filters_to_remove(240, slope_ms=0.01, step=0.25, min_width=8) == 32  # 25 wanted: keep 208, not 215
    assert prune._filters_to_remove(240, slope_ms=0.0, step=0.25, min_width=8) == 120  # no slope: the probe's half
    assert prune._filters_to_remove(20, slope_ms=1.0, step=5.0, min_width=8) == 12  # keep 8, not 15
    assert prune._filters_to_remove(10, slope_ms=1.0, step=100.0, min_width=8) == 2  # never below min_width
    assert prune._filters_to_remove(64, slope_ms=1.0, step=0.5, min_width=8) == 8  # one filter wanted: one block


# ---------------------------------------------------------------------------------------------- a timm student
# fastdepth_mobilenetv4_conv_small, the student the Pareto table puts alone on the INT8 frontier: timm blocks, skips
# tapped at stage outputs (not pruned), so its groups are the expanding blocks and the decoder stages with no skip.

MNV4 = "fastdepth_mobilenetv4_conv_small"
MNV4_BLOCKS = ("0.0", "1.0", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "3.0", "3.1", "3.2", "3.3", "3.4", "3.5")


@pytest.fixture(scope="module")
def mnv4_weights(setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MobileNetV4 student trained 24 steps on ``setup``'s label shards, as ``setup`` trains fastdepth_v3."""
    from edgedepth.core.config import load_config
    from edgedepth.train import loop as train
    from edgedepth.train.config import TrainConfig

    root = tmp_path_factory.mktemp("prune_mnv4")
    cfg = load_config(TrainConfig, None, [
        f"model.name={MNV4}", f"data.path={setup[0]}", f"run.dir={root / 'run'}", "data.format=shards",
        "data.input_size=64x64", "data.num_workers=0", "model.pretrained=false", "optim.batch_size=4",
        "model.freeze_bn=true", "schedule.name=cosine", "schedule.epochs=8", "run.device=cpu",
        "logging.progress_bar=false", "logging.tensorboard=false",
    ])
    return train.run(cfg).weights


def _mnv4() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(MNV4).eval()


def test_mnv4_groups_are_its_expanding_blocks_and_free_stages() -> None:
    model = _mnv4()
    groups = widths.layer_groups(model)
    assert [g.name for g in groups] == [f"block{b}" for b in MNV4_BLOCKS] + ["stage2", "stage4"]
    # Skips are stage outputs (32, 64, 96 channels): the stages receiving them (0, 1, 3) are in no group.
    assert model.decoder.skip_after_stage == [2, 1, -1, 0, -1]
    expansions, decoder_widths = widths.widths_of(model)
    assert expansions == [32, 96, 192, 192, 192, 192, 192, 384, 576, 512, 512, 384, 512, 512]
    assert [widths.group_width(model, g) for g in groups] == [*expansions, decoder_widths[2], decoder_widths[4]]
    # The fused-expansion pair: blocks.0.0's 3x3 output is blocks.0.1's 1x1 input; a UIR's pw_exp feeds dw_mid.
    slices = dict(widths._slices(model, groups[0]))
    assert slices["encoder.body.blocks.0.0.conv.weight"] == 0 and slices["encoder.body.blocks.0.1.conv.weight"] == 1
    slices = dict(widths._slices(model, groups[3]))
    assert {key: dim for key, dim in slices.items() if key.endswith("conv.weight")} == {
        "encoder.body.blocks.2.1.pw_exp.conv.weight": 0, "encoder.body.blocks.2.1.dw_mid.conv.weight": 0,
        "encoder.body.blocks.2.1.pw_proj.conv.weight": 1}


@pytest.mark.parametrize("group, keep", [("block0.0", 20), ("block1.0", 50), ("block2.1", 100), ("block2.5", 200),
                                         ("block3.1", 300), ("stage2", 20), ("stage4", 9)])
def test_mnv4_pruning_a_group_changes_that_width_and_the_card_rebuilds_it(tmp_path: Path, group: str,
                                                                          keep: int) -> None:
    model = _mnv4()
    chosen = next(g for g in widths.layer_groups(model) if g.name == group)
    pruned = widths.prune_group(model, chosen, keep)
    (before_e, before_d), (after_e, after_d) = widths.widths_of(model), widths.widths_of(pruned)
    changed_e = [i for i, (a, b) in enumerate(zip(before_e, after_e, strict=True)) if a != b]
    changed_d = [i for i, (a, b) in enumerate(zip(before_d, after_d, strict=True)) if a != b]
    if chosen.block is not None:
        assert changed_e == [chosen.block.index] and not changed_d and after_e[chosen.block.index] == keep
    else:
        assert changed_d == [chosen.stage] and not changed_e and after_d[chosen.stage] == keep
    # The skips (stage outputs) and the decoder stages tied to them keep their widths.
    assert pruned.encoder.feature_channels == model.encoder.feature_channels
    assert [after_d[s] for s in (0, 1, 3)] == [before_d[s] for s in (0, 1, 3)]
    assert pruned.card.model_args == {"encoder": "mobilenetv4_conv_small", "expansions": after_e,
                                      "decoder_widths": after_d}
    assert count_macs(pruned, SIZE) < count_macs(model, SIZE)
    assert_card_rebuilds(pruned, tmp_path)


def test_mnv4_kept_filters_are_the_largest_l1_ones() -> None:
    model = _mnv4()
    group = next(g for g in widths.layer_groups(model) if g.name == "block2.1")
    block = model.encoder.body.blocks[2][1]
    norms = block.pw_exp.conv.weight.detach().abs().flatten(1).sum(1)
    kept = torch.sort(torch.topk(norms, 70).indices).values
    pruned = widths.prune_group(model, group, 70).encoder.body.blocks[2][1]
    assert torch.equal(pruned.pw_exp.conv.weight, block.pw_exp.conv.weight[kept])
    assert torch.equal(pruned.dw_mid.conv.weight, block.dw_mid.conv.weight[kept])
    assert torch.equal(pruned.dw_mid.bn.running_var, block.dw_mid.bn.running_var[kept])
    assert torch.equal(pruned.pw_proj.conv.weight, block.pw_proj.conv.weight[:, kept])
    assert pruned.pw_proj.conv.weight.shape == (96, 70, 1, 1)


@pytest.mark.parametrize("encoder", ["mobilenetv3_small_050", "efficientnetv2_rw_t"])
def test_timm_se_and_edge_residual_blocks_rebuild_exactly(tmp_path: Path, encoder: str) -> None:
    """Other timm block kinds: InvertedResidual with SE (its squeeze width stays) and EdgeResidual (fused MBConv)."""
    torch.manual_seed(0)
    model = create_model(f"fastdepth_{encoder}").eval()
    groups = widths.layer_groups(model)
    pruned = model
    for group in groups[:2] + groups[-4:-2]:  # the first blocks (EdgeResidual in efficientnetv2) and deep SE ones
        pruned = widths.prune_group(pruned, group, widths.group_width(pruned, group) // 2)
    assert count_macs(pruned, SIZE) < count_macs(model, SIZE)
    assert_card_rebuilds(pruned, tmp_path)


def test_unprunable_students_and_widths_are_refused() -> None:
    from edgedepth.core.errors import EdgedepthError

    with pytest.raises(EdgedepthError, match=r"prune takes fastdepth_v3 and fastdepth_<timm encoder>"):
        widths.layer_groups(create_model("fastdepth_resnet18"))  # timm, but no expanding block
    with pytest.raises(EdgedepthError, match="only timm encoders take expansion widths"):
        create_model("fastdepth_mobilenet_v2", expansions=[16])
    with pytest.raises(EdgedepthError, match=r"14 positive widths for mobilenetv4_conv_small's expanding blocks"):
        create_model(MNV4, expansions=[16, 16])
    with pytest.raises(EdgedepthError, match="receive a skip equal to the skip's width"):
        create_model(MNV4, decoder_widths=[90, 64, 32, 32, 16])


@pytest.mark.slow
def test_mnv4_prune_reduces_measured_latency_and_macs(setup: tuple[Path, Path], mnv4_weights: Path,
                                                      tmp_path: Path) -> None:
    result = prune.run(config((setup[0], mnv4_weights), tmp_path / "out", target_ratio=0.6, step_share=0.4,
                              groups=("block1.0", "block2.5", "block3.0"), progress=False, size=TIMED))
    assert result.iterations >= 1 and result.final_ms < result.start_ms
    trajectory = json.loads((tmp_path / "out" / prune.TRAJECTORY).read_text())["trajectory"]
    assert trajectory[-1]["macs"] < trajectory[0]["macs"] and trajectory[-1]["latency_ms"] < trajectory[0]["latency_ms"]
    start, pruned = load_model(mnv4_weights), load_model(result.weights)
    assert pruned.card.name == MNV4 and pruned.card.model_args["expansions"] != start.encoder.expansions
    assert_faster_when_timed_again(start, pruned, tmp_path)


def test_each_round_is_put_on_the_start_networks_scale(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A round on a machine running twice as slow reports the same latencies: the start network, timed in every
    round, sets the scale; the current network is the one of the same round."""
    rounds = iter([[20.0, 16.0, 12.0, 18.0], [10.0, 8.0, 6.0, 9.0]])  # start, current, two candidates
    monkeypatch.setattr(prune, "time_files", lambda paths, runtime, threads, runs: next(rounds))
    reference = prune.Reference(tmp_path / "start.onnx", start_ms=10.0)
    cfg = prune.PruneConfig(weights=tmp_path / "w", data=tmp_path / "d", runtime="onnx", out=tmp_path / "o",
                            target_ratio=0.5)
    setting = prune.Setting(cfg, get_runtime("onnx"), reference, 1.0, None, "ssi", None)  # type: ignore[arg-type]
    files = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    assert prune._timed(setting, tmp_path / "current.onnx", files) == prune.Round(8.0, [6.0, 9.0])
    assert prune._timed(setting, tmp_path / "current.onnx", files) == prune.Round(8.0, [6.0, 9.0])


def test_the_kept_proposal_cuts_at_least_half_the_step() -> None:
    """The best score among proposals whose measured cut reaches half the step; without one, the largest cut."""
    def proposal(group: str, latency: float, abs_rel: float | None) -> prune.Proposal:
        return prune.Proposal(group, 1, latency, 8.0, None, "probe", 8.0 - latency, abs_rel)

    near_free, good, big, slower = (proposal("a", 7.98, 0.30), proposal("b", 7.4, 0.32), proposal("c", 6.5, 0.35),
                                    proposal("d", 8.1, None))
    assert prune._choose([near_free, good, big, slower], 1.0) == good
    assert prune._choose([near_free, proposal("e", 7.7, 0.31), slower], 1.0).group == "e"  # largest cut
    assert prune._choose([slower], 1.0) is None


def test_a_lucky_round_does_not_end_the_prune(setup: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A proposal measured under the target is timed again on its own; measured at 10 ms there, pruning goes on."""
    calls = []

    def lucky(setting: prune.Setting, current: torch.nn.Module, *args: object) -> prune.Kept:
        calls.append(args[-1])
        return prune.Kept(current, 4.0, {"abs_rel": 0.3, "delta1": 0.5}, [])

    monkeypatch.setattr(prune, "time_files", lambda paths, runtime, threads, runs: [10.0] * len(paths))
    monkeypatch.setattr(prune, "_iterate", lucky)
    result = prune.run(config(setup, tmp_path / "out", target_ratio=0.5, max_iterations=2, long_steps=0))
    assert calls == [1, 2] and not result.target_met and result.final_ms == 10.0
