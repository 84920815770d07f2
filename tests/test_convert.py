"""``edgedepth convert``: the seed's and FastDepth's checkpoints become our students, computing the same thing.

The original networks cannot be imported here, so this file re-implements both exactly as they compute
(the seed's skips through forward hooks into a module-level dict, FastDepth's loop over ``conv0..13``),
with random weights and BatchNorm statistics, and checks the converted students against them.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from edgedepth.cli import main
from edgedepth.core.errors import EdgedepthError
from edgedepth.models import create_model, load_model
from edgedepth.models.convert import convert_state_dict, key_mapping
from edgedepth.models.layouts import FASTDEPTH_LAYOUT, SEED_LAYOUT
from edgedepth.models.weights import read_metadata

#: Input of the equivalence checks: N x 3 x H x W, sides multiples of 32, not square (catches H/W mix-ups).
INPUT_SHAPE = (2, 3, 96, 128)
TOLERANCE = 1e-5


# --- The two original networks, re-implemented as they compute -------------------------------------------

_SEED_ACTIVATIONS: dict[str, torch.Tensor] = {}


def _seed_hook(name: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        _SEED_ACTIVATIONS[name] = output.detach()

    return hook


def _depthwise(channels: int, kernel_size: int = 5) -> nn.Sequential:
    padding = (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size, stride=1, padding=padding, bias=False, groups=channels),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def _pointwise(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


def _add_decoder(module: nn.Module, widths: tuple[int, ...]) -> None:
    for i in range(1, 6):
        setattr(
            module, f"decode_conv{i}", nn.Sequential(_depthwise(widths[i - 1]), _pointwise(widths[i - 1], widths[i]))
        )
    module.decode_conv6 = _pointwise(widths[5], 1)


class SeedMobileNetV3SkipAdd(nn.Module):
    """The seed's network: torchvision MobileNetV3-Large, hooks on three expansion activations, NNConv5, bilinear."""

    def __init__(self) -> None:
        super().__init__()
        self.original_model = torchvision.models.mobilenet_v3_large()
        for index, name in ((2, "skip1"), (7, "skip2"), (11, "skip3")):
            self.original_model.features[index].block[0][2].register_forward_hook(_seed_hook(name))
        _add_decoder(self, (960, 480, 240, 120, 64, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.original_model.features(x)
        x1, x2, x3 = _SEED_ACTIVATIONS["skip1"], _SEED_ACTIVATIONS["skip2"], _SEED_ACTIVATIONS["skip3"]
        for i in range(1, 6):
            x = getattr(self, f"decode_conv{i}")(x)
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            if i == 4:
                x = x + x1
            elif i == 2:
                x = x + x2
            elif i == 1:
                x = x + x3
        return self.decode_conv6(x)


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


def _conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU6(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class FastDepthMobileNetSkipAdd(nn.Module):
    """FastDepth's MobileNet-NNConv5(depthwise) with additive skips: MobileNet v1 (ReLU6), NNConv5, nearest."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = _conv_bn(3, 32, 2)
        widths = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
        strides = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
        for i in range(1, 14):
            setattr(self, f"conv{i}", _conv_dw(widths[i - 1], widths[i], strides[i]))
        _add_decoder(self, (1024, 512, 256, 128, 64, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(14):
            x = getattr(self, f"conv{i}")(x)
            if i == 1:
                x1 = x
            elif i == 3:
                x2 = x
            elif i == 5:
                x3 = x
        for i in range(1, 6):
            x = getattr(self, f"decode_conv{i}")(x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i == 4:
                x = x + x1
            elif i == 3:
                x = x + x2
            elif i == 2:
                x = x + x3
        return self.decode_conv6(x)


REFERENCES = {"seed": (SeedMobileNetV3SkipAdd, "fastdepth_v3"), "fastdepth": (FastDepthMobileNetSkipAdd, "fastdepth")}


@pytest.fixture(scope="module")
def references(randomize_batchnorm: Callable[[nn.Module, int], nn.Module]) -> dict[str, nn.Module]:
    """Both original networks with random weights and BatchNorm statistics, in eval mode."""
    nets = {}
    for seed, (name, (cls, _)) in enumerate(REFERENCES.items()):
        torch.manual_seed(seed)
        nets[name] = randomize_batchnorm(cls(), seed).eval()
    return nets


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _checkpoint(form: str, net: nn.Module) -> dict[str, Any]:
    """The dicts users have on disk: a plain state dict, the seed's training checkpoint, a DataParallel one."""
    state = net.state_dict()
    if form == "plain":
        return state
    if form == "training":
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
        return {
            "epoch": 12,
            "model_state_dict": state,
            "optimizer_state_dict": optimizer.state_dict(),
            "lr_scheduler_state_dict": scheduler.state_dict(),
        }
    assert form == "dataparallel"
    return {"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 3}


# --- Equivalence ----------------------------------------------------------------------------------------


def test_references_are_not_degenerate(references: dict[str, nn.Module]) -> None:
    """A near-constant or all-zero output would let a wrong mapping pass the 1e-5 checks below."""
    x = torch.rand(INPUT_SHAPE)
    for net in references.values():
        out = _forward(net, x)
        assert out.shape == (INPUT_SHAPE[0], 1, *INPUT_SHAPE[2:])
        assert (out > 0).float().mean() > 0.3
        assert out.std() > 0.05


@pytest.mark.parametrize(
    ("network", "form"),
    [("seed", "plain"), ("seed", "training"), ("fastdepth", "plain"), ("fastdepth", "dataparallel")],
)
def test_cli_converts_to_the_same_network(
    network: str, form: str, references: dict[str, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    net = references[network]
    source, target = tmp_path / "model.pth", tmp_path / "model.safetensors"
    torch.save(_checkpoint(form, net), source)

    assert main(["convert", str(source), str(target)]) == 0
    assert "->" in capsys.readouterr().out

    model = load_model(target)
    expected_name = REFERENCES[network][1]
    assert model.card.name == expected_name
    x = torch.rand(INPUT_SHAPE)
    assert (_forward(model, x) - _forward(net, x)).abs().max() < TOLERANCE
    _, provenance = read_metadata(target)
    layout = SEED_LAYOUT if network == "seed" else FASTDEPTH_LAYOUT
    assert provenance == {"source": "model.pth", "converted_from": layout.name}


@pytest.mark.parametrize("network", list(REFERENCES))
def test_python_function_converts_in_memory(network: str, references: dict[str, nn.Module]) -> None:
    net = references[network]
    model = convert_state_dict(net.state_dict())
    assert not model.training
    x = torch.rand(INPUT_SHAPE)
    assert (_forward(model, x) - _forward(net, x)).abs().max() < TOLERANCE


def test_an_early_statistic_changes_the_output(references: dict[str, nn.Module]) -> None:
    """Control: the checks above see a change in the first tapped block's BatchNorm, so they can fail."""
    state = dict(references["seed"].state_dict())
    key = "original_model.features.2.block.0.1.running_mean"
    state[key] = state[key] + 0.05
    x = torch.rand(INPUT_SHAPE)
    diff = (_forward(convert_state_dict(state), x) - _forward(references["seed"], x)).abs().max()
    assert diff > 100 * TOLERANCE


def test_detach_skips_reproduces_the_seeds_training_gradients(references: dict[str, nn.Module]) -> None:
    """In training mode, ``detach_skips=True`` gives the seed's gradients on every parameter; the default does not."""
    seed_net = copy.deepcopy(references["seed"]).train()
    converted = convert_state_dict(seed_net.state_dict())
    ours = {}
    for detach in (True, False):
        ours[detach] = create_model("fastdepth_v3", detach_skips=detach)
        ours[detach].load_state_dict(converted.state_dict())
        ours[detach].train()
    x, weight = torch.rand(INPUT_SHAPE), torch.randn(INPUT_SHAPE[0], 1, *INPUT_SHAPE[2:])
    for model in (seed_net, *ours.values()):
        (model(x) * weight).sum().backward()

    mapping = key_mapping(seed_net.state_dict(), SEED_LAYOUT)
    our_params = {detach: dict(model.named_parameters()) for detach, model in ours.items()}
    compared = 0
    for name, param in seed_net.named_parameters():
        if name not in mapping:  # the classifier: unused by the seed's forward
            assert param.grad is None
            continue
        torch.testing.assert_close(our_params[True][mapping[name]].grad, param.grad, rtol=1e-4, atol=1e-5)
        compared += 1
    assert compared == len(our_params[True])

    tapped = "original_model.features.2.block.0.0.weight"
    seed_grad, our_grad = dict(seed_net.named_parameters())[tapped].grad, our_params[False][mapping[tapped]].grad
    assert (our_grad - seed_grad).norm() > 0.01 * seed_grad.norm()


# --- Bad inputs -----------------------------------------------------------------------------------------


class Canary:
    """Unpickling this object (which a refused load must never do) leaves a mark."""

    unpickled = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        Canary.unpickled += 1


def _seed_state(references: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return dict(references["seed"].state_dict())


def _write_bad_input(case: str, path: Path, references: dict[str, nn.Module]) -> None:
    if case == "missing":
        return
    if case == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif case == "truncated":
        torch.save(references["fastdepth"].state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "other layout":
        torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).state_dict(), path)
    elif case == "not a state dict":
        torch.save({"epoch": 3, "best_loss": 0.5}, path)
    elif case == "full model object":
        torch.save({"model": references["fastdepth"], "epoch": 3}, path)
    elif case == "canary object":
        torch.save({"state_dict": Canary()}, path)
    elif case == "wrong shape":
        state = _seed_state(references)
        state["decode_conv1.1.0.weight"] = torch.zeros(400, 960, 1, 1)
        torch.save(state, path)
    elif case == "missing tensors":
        state = {k: v for k, v in _seed_state(references).items() if not k.startswith("decode_conv6.")}
        torch.save(state, path)
    elif case == "extra tensor":
        torch.save({**_seed_state(references), "original_model.features.17.0.weight": torch.zeros(8, 960, 1, 1)}, path)
    elif case == "unexpected key":
        torch.save({**_seed_state(references), "decode_conv7.0.weight": torch.zeros(1, 1, 1, 1)}, path)
    else:
        raise AssertionError(case)


BAD_INPUTS = {
    "missing": "no such file",
    "garbage": "not a readable PyTorch checkpoint",
    "truncated": "not a readable PyTorch checkpoint",
    "other layout": r"not a layout edgedepth can convert \(found 7 tensors under 0, 1\); supported: ",
    "not a state dict": "not a state dict",
    "full model object": r"holds pickled Python objects \(\S*FastDepthMobileNetSkipAdd\).*model\.state_dict\(\)",
    "canary object": "holds pickled Python objects .*Canary",
    "wrong shape": r"decode_conv1\.1\.0\.weight has shape \(400, 960, 1, 1\), but .* has \(480, 960, 1, 1\) there",
    "missing tensors": r"5 tensors of the seed's MobileNetV3SkipAdd are missing \(e\.g\. decode_conv6\.0\.weight\)",
    "extra tensor": r"1 tensors that the seed.s MobileNetV3SkipAdd does not have \(e\.g\. original_model\.features\.17",
    "unexpected key": "unexpected key 'decode_conv7.0.weight' for the seed's MobileNetV3SkipAdd",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_nothing(
    case: str, references: dict[str, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source, target = tmp_path / "in.pth", tmp_path / "out.safetensors"
    _write_bad_input(case, source, references)
    before = sorted(os.listdir(tmp_path))
    Canary.unpickled = 0

    assert main(["convert", str(source), str(target)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: ") and err.count("\n") == 1, err
    assert str(source) in err
    assert re.search(BAD_INPUTS[case], err), err
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == before
    assert Canary.unpickled == 0


def test_output_must_be_safetensors(
    references: dict[str, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "in.pth"
    torch.save(references["fastdepth"].state_dict(), source)
    assert main(["convert", str(source), str(tmp_path / "out.pth")]) == 2
    assert "must be a .safetensors file" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in.pth"]


def test_python_function_rejects_another_layout() -> None:
    with pytest.raises(EdgedepthError, match="not a layout edgedepth can convert.*supported: the seed's"):
        convert_state_dict(nn.Linear(2, 2).state_dict())


# --- Our own checkpoints: edgedepth train's checkpoint.pt and a plain state_dict() of a student -------------


def _outputs_equal(a: nn.Module, b: nn.Module, size: tuple[int, int] = (64, 64)) -> bool:
    x = torch.rand(2, 3, size[1], size[0])
    return torch.equal(_forward(a.eval(), x), _forward(b.eval(), x))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``edgedepth train`` run folder (one epoch of a tiny CPU run): checkpoint.pt and final.safetensors."""
    from test_train import tiny_config, write_pairs

    from edgedepth.train import loop as train

    folder = tmp_path_factory.mktemp("trained")
    data = write_pairs(folder / "pairs", 8)
    train.run(tiny_config(data, folder / "run", "schedule.epochs=1", "model.args={detach_skips: true}"))
    return folder / "run"


def test_training_checkpoint_converts_to_the_trained_model(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The name, constructor arguments and input size come from the checkpoint's saved config."""
    checkpoint, target = trained_run / "checkpoint.pt", tmp_path / "run.safetensors"
    assert main(["convert", str(checkpoint), str(target)]) == 0
    assert f"converted {checkpoint} (fastdepth_v3) -> {target}" in capsys.readouterr().out
    converted, final = load_model(target), load_model(trained_run / "final.safetensors")
    assert converted.card == final.card  # fastdepth_v3, detach_skips, trained at 64x64
    assert converted.card.model_args == {"detach_skips": True} and converted.card.input_size == (64, 64)
    assert _outputs_equal(converted, final)
    _, provenance = read_metadata(target)
    _, final_provenance = read_metadata(trained_run / "final.safetensors")
    assert provenance["converted_from"] == "edgedepth_training_checkpoint" and provenance["source"] == "checkpoint.pt"
    for key in ("training_data", "run_dir", "steps", "epochs_done", "loss", "config"):
        assert provenance[key] == final_provenance[key], key
    # The same checkpoint with --model naming another student is refused, with the command that works.
    assert main(["convert", str(checkpoint), str(tmp_path / "other.safetensors"), "--model", "fastdepth"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"drop --model: edgedepth convert {checkpoint} OUT.safetensors" in err


def test_plain_state_dict_of_a_student_converts_with_model(
    randomize_batchnorm: Callable[[nn.Module, int], nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(3)
    net = randomize_batchnorm(create_model("fastdepth_v3"), 3).eval()
    source, target = tmp_path / "student.pth", tmp_path / "student.safetensors"
    torch.save(net.state_dict(), source)

    assert main(["convert", str(source), str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: ") and err.count("\n") == 1 and not target.exists()
    hint = f"edgedepth convert {source} OUT.safetensors --model fastdepth_v3"
    assert "--model" in err and hint in err, err

    assert main(["convert", str(source), str(target), "--model", "fastdepth_v3"]) == 0
    model = load_model(target)
    assert model.card.name == "fastdepth_v3" and _outputs_equal(model, net, (128, 96))
    assert read_metadata(target)[1] == {"source": "student.pth", "converted_from": "edgedepth_state_dict"}
    # In memory as well.
    assert _outputs_equal(convert_state_dict(net.state_dict(), model="fastdepth_v3"), net)


def test_our_own_weights_need_no_conversion(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Our .safetensors carries its card: convert says so, names its model and writes nothing, with --model or
    without; a .safetensors of the bare tensors (no card) still converts with --model."""
    target = tmp_path / "out.safetensors"
    for model in ([], ["--model", "fastdepth_v3"]):
        assert main(["convert", str(weights), str(target), *model]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgedepth: error: ") and err.count("\n") == 1, err
        assert f"{weights}: already edgedepth weights of fastdepth_v3" in err and "need no conversion" in err
        assert "--model" not in err and not target.exists()
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({key: value.contiguous() for key, value in load_model(weights).state_dict().items()}, str(bare))
    assert main(["convert", str(bare), str(target), "--model", "fastdepth_v3"]) == 0
    assert load_model(target).card.name == "fastdepth_v3"


def test_own_state_dict_must_fit_exactly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Missing and unexpected tensors are named; another student's name is answered with the one that fits."""
    state = create_model("fastdepth_v3").state_dict()
    del state["decoder.head.0.weight"]
    state["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(EdgedepthError, match=r"does not fit model 'fastdepth_v3': 1 missing tensors "
                                             r"\(decoder\.head\.0\.weight\); 1 unexpected tensors \(decoder\.extra"):
        convert_state_dict(state, model="fastdepth_v3")
    source = tmp_path / "student.pth"
    torch.save(create_model("fastdepth_v3").state_dict(), source)
    assert main(["convert", str(source), str(tmp_path / "out.safetensors"), "--model", "fastdepth"]) == 2
    err = capsys.readouterr().err
    assert "does not fit model 'fastdepth'" in err
    assert err.rstrip().endswith(f"edgedepth convert {source} OUT.safetensors --model fastdepth_v3"), err
    # A foreign layout with the wrong --model is refused too.
    seed = tmp_path / "seed.pth"
    torch.save(SeedMobileNetV3SkipAdd().state_dict(), seed)
    assert main(["convert", str(seed), str(tmp_path / "out.safetensors"), "--model", "fastdepth"]) == 2
    assert f"converts to fastdepth_v3, not --model fastdepth; drop --model: edgedepth convert {seed}" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_checkpoints_given_as_weights_name_the_convert_command_that_works(
    command: str, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """predict/eval handed checkpoint.pt or a state dict (.pt or .pth) print a convert command; running it works."""
    import cv2
    import numpy as np

    from edgedepth.data.nyu import write_labeled_mat, write_splits_mat

    state_dict = tmp_path / "student.pt"  # the zip format, which TorchScript's loader calls corrupt
    torch.save(create_model("fastdepth_v3").state_dict(), state_dict)
    legacy = tmp_path / "student.pth"
    torch.save(create_model("fastdepth_v3").state_dict(), legacy)
    image, nyu, splits = tmp_path / "x.png", tmp_path / "nyu.mat", tmp_path / "splits.mat"
    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    write_labeled_mat(nyu, np.zeros((2, 48, 64, 3), np.uint8), *[np.ones((2, 48, 64), np.float32)] * 2)
    write_splits_mat(splits, [0], [1])
    for weights in (trained_run / "checkpoint.pt", state_dict, legacy):
        if command == "predict":
            args = ["predict", str(image), "--weights", str(weights), "--out", str(tmp_path / "out")]
        else:
            args = ["eval", "nyu", "--data", str(nyu), "--splits", str(splits), "--crop", "none", "--weights", str(weights),
                    "--out", str(tmp_path / "out")]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        found = re.search(r"convert it first: edgedepth (convert \S+ OUT\.safetensors(?: --model \S+)?)", err)
        assert found, err
        assert "corrupt" not in err
        assert ("--model" in found.group(1)) == (weights != trained_run / "checkpoint.pt")
        target = tmp_path / f"{weights.stem}.safetensors"
        assert main(found.group(1).replace("OUT.safetensors", str(target)).split()) == 0
        assert load_model(target).card.name == "fastdepth_v3"
        capsys.readouterr()
