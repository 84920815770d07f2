"""The students: sizes, shapes, cost, export, weights round trip, registry, threads, gradients through the skips.

Parametrized over the registry (plus two ``fastdepth_<encoder>`` names, one timm, one torchvision), so a
newly registered student is tested the moment it exists.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from edgedepth.core.errors import EdgedepthError
from edgedepth.models import (
    create_model,
    is_model,
    list_models,
    load_model,
    read_card,
    register_model,
    save_weights,
)
from edgedepth.models.complexity import count_macs
from edgedepth.models.decoder import KERNEL_SIZE
from edgedepth.models.registry import register_encoder_family

MODEL_NAMES = list_models(family="fastdepth")  # the family's listed members (a timm and a torchvision encoder) too
#: Small, non-square input (N, C, H, W): sides multiples of 32, H != W catches transposed shapes.
SMALL_INPUT = (2, 3, 64, 96)


@functools.cache
def _model(name: str) -> nn.Module:
    """One eval-mode instance per name, shared by the read-only tests below."""
    torch.manual_seed(0)
    return create_model(name).eval()


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_registry_lists_the_seed_and_fastdepth_students() -> None:
    assert {"fastdepth_v3", "fastdepth"} <= set(list_models())
    assert list_models("fastdepth_v*") == ["fastdepth_v3"]
    # The open fastdepth_<encoder> family shows its documented members: a timm and a torchvision encoder.
    assert {"fastdepth_efficientnet_lite0", "fastdepth_mobilenet_v2"} <= set(list_models(family="fastdepth"))


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("fastdepth_v3", True), ("zipdepth_small", True), ("fastdepth_mobilenet_v2", True), ("fastdepth_resnet18", True),
     ("fastdepth_convnext_atto", True), ("fastdepth_no_such_encoder", False), ("nope", False), ("mobilenet_v2", False)],
)
def test_is_model_is_true_exactly_for_what_create_model_builds(name: str, accepted: bool) -> None:
    assert is_model(name) is accepted
    if accepted:
        with torch.device("meta"):
            assert create_model(name).card.name == name
    else:
        with pytest.raises(EdgedepthError, match="unknown"):
            create_model(name)


def test_every_listed_name_is_a_model() -> None:
    assert all(is_model(name) for name in list_models())


def test_the_registry_applies_card_changes_given_as_arguments() -> None:
    assert create_model("fastdepth_v3", card={"input_size": (320, 256)}).card.input_size == (320, 256)
    assert create_model("depth_anything_v2_small", card={"input_size": (256, 192)}).card.input_size == (252, 196)
    with pytest.raises(EdgedepthError, match="multiples of 32"):
        create_model("fastdepth_v3", card={"input_size": (250, 192)})
    with pytest.raises(ValueError, match="may be changed"):
        create_model("fastdepth_v3", card={"name": "other"})


def test_registering_the_encoder_family_twice_raises() -> None:
    with pytest.raises(ValueError, match="family is already registered"):
        register_encoder_family(members=(), knows=lambda encoder: True)(lambda **kwargs: nn.Identity())
    assert is_model("fastdepth_mobilenet_v2") and not is_model("fastdepth_no_such_encoder")


# --- Size and cost --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), [("fastdepth_v3", 3_638_714), ("fastdepth", 3_960_930)])
def test_parameter_count(name: str, count: int) -> None:
    assert sum(p.numel() for p in _model(name).parameters()) == count


def _nnconv5_parameters(widths: tuple[int, ...]) -> int:
    """Decoder parameters by hand: per stage a k x k depthwise conv, a pointwise conv, two BNs; then the head."""
    total = 0
    for c_in, c_out in itertools.pairwise(widths):
        total += c_in * KERNEL_SIZE**2 + 2 * c_in + c_in * c_out + 2 * c_out
    return total + widths[-1] * 1 + 2


def test_mobilenet_v3_taps_read_the_torchvision_layout_they_depend_on() -> None:
    """The seed's taps read torchvision's MobileNetV3 internals (``block[0]``, ``use_res_connect``); pin them.

    timm's ``features_only`` with ``feature_location='expansion'`` gives such taps too, but on timm's module
    and key layout, and the seed's checkpoints (and their converter) are in torchvision's. If torchvision changes
    that layout, this fails before the encoder silently taps something else.
    """
    from torchvision.models.mobilenetv3 import InvertedResidual
    from torchvision.ops.misc import Conv2dNormActivation

    torch.manual_seed(0)
    encoder = create_model("fastdepth_v3").encoder.eval()
    assert encoder.taps == (2, 7, 11) and encoder.feature_channels == (64, 240, 480, 960)
    assert encoder.reductions == (2, 8, 16, 32)
    features = torchvision.models.mobilenet_v3_large().features.eval()
    features.load_state_dict(encoder.features.state_dict())
    for index in encoder.taps:
        block = features[index]
        assert isinstance(block, InvertedResidual) and isinstance(block.block[0], Conv2dNormActivation)
        assert block.block[0][0].kernel_size == (1, 1)  # block[0] is the expansion, before the depthwise stride
        assert isinstance(block.use_res_connect, bool)
    # Read independently: forward hooks on torchvision's own expansions, in its own forward.
    hooked: list[torch.Tensor] = []
    for index in encoder.taps:
        features[index].block[0].register_forward_hook(lambda module, inputs, output: hooked.append(output))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        bottleneck = features(x)
        taps = encoder(x)
    assert len(taps) == len(hooked) + 1
    for ours, theirs in zip(taps, [*hooked, bottleneck], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_fastdepth_v3_is_torchvision_features_plus_the_seeds_decoder() -> None:
    """Independent check of the count: the encoder is exactly MobileNetV3-Large's ``features``."""
    model = _model("fastdepth_v3")
    features = sum(p.numel() for p in torchvision.models.mobilenet_v3_large().features.parameters())
    assert sum(p.numel() for p in model.encoder.parameters()) == features
    assert sum(p.numel() for p in model.decoder.parameters()) == _nnconv5_parameters((960, 480, 240, 120, 64, 32))


def test_fastdepth_decoder_widths() -> None:
    model = _model("fastdepth")
    assert sum(p.numel() for p in model.decoder.parameters()) == _nnconv5_parameters((1024, 512, 256, 128, 64, 32))


def test_fastdepth_v3_macs_at_256x192() -> None:
    """About 0.36 GMACs (the issue's figure), and exactly the convolutions' MACs counted by hand."""
    model = _model("fastdepth_v3")
    by_hand = 0

    def count(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal by_hand
        by_hand += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        _forward(model, torch.zeros(1, 3, 192, 256))
    finally:
        for handle in handles:
            handle.remove()
    macs = count_macs(model, (256, 192))
    assert macs == by_hand
    assert 0.355e9 < macs < 0.365e9


@pytest.mark.parametrize("name", ["fastdepth_v3", "fastdepth"])
def test_head_runs_before_the_last_upsampling_at_inference(
    name: str, randomize_batchnorm: Callable[[nn.Module, int], nn.Module]
) -> None:
    """At inference the head's conv + BN run on the last stage's pixels, before upsampling: the same function."""
    model = randomize_batchnorm(create_model(name), 0).eval()  # its own instance: the test switches modes
    head_inputs: list[tuple[int, ...]] = []
    model.decoder.head[0].register_forward_hook(lambda module, inputs, output: head_inputs.append(inputs[0].shape))
    x = torch.randn(2, 3, 192, 256)
    with torch.no_grad():
        fast = model(x)
        model.decoder.train()  # the literal order (the decoder's BNs are switched back to inference below)
        for module in model.decoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        literal = model(x)
    assert [shape[-2:] for shape in head_inputs] == [(96, 128), (192, 256)]
    assert fast.shape == literal.shape == (2, 1, 192, 256)
    torch.testing.assert_close(fast, literal, rtol=0, atol=1e-6 * float(literal.abs().max()))
    assert float(literal.abs().max()) > 0


# --- Forward, export, tracing ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_is_one_nonnegative_channel_at_input_size(name: str) -> None:
    out = _forward(_model(name), torch.rand(SMALL_INPUT))
    assert out.shape == (SMALL_INPUT[0], 1, *SMALL_INPUT[2:])
    assert out.min() >= 0
    assert out.max() > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, chosen on purpose
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnx_export_matches_pytorch(name: str, tmp_path: Path) -> None:
    model, x = _model(name), torch.rand(1, *SMALL_INPUT[1:])
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model, (x,), str(path), opset_version=17, input_names=["image"], output_names=["depth"], dynamo=False
    )
    onnx.checker.check_model(onnx.load(str(path)))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(got, _forward(model, x).numpy(), rtol=0, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_torchscript_trace_matches_eager(name: str) -> None:
    model = _model(name)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.rand(SMALL_INPUT), check_trace=False)
    x = torch.rand(SMALL_INPUT)  # another input than the one traced with
    torch.testing.assert_close(_forward(traced, x), _forward(model, x), rtol=0, atol=1e-5)


# --- Weights round trip and errors ----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_weights_round_trip(
    name: str, tmp_path: Path, randomize_batchnorm: Callable[[nn.Module, int], nn.Module]
) -> None:
    model = randomize_batchnorm(create_model(name), 3).eval()
    path = save_weights(model, tmp_path / "student.safetensors", run="unit-test")
    loaded = load_model(path)
    assert loaded.card == model.card == read_card(path)
    assert loaded.card.name == name
    assert not loaded.training
    x = torch.rand(SMALL_INPUT)
    assert torch.equal(_forward(loaded, x), _forward(model, x))


def test_round_trip_keeps_constructor_arguments(tmp_path: Path) -> None:
    model = create_model("fastdepth_mobilenet_v2", upsample="nearest", skip_reductions=(4, 8), detach_skips=True)
    loaded = load_model(save_weights(model, tmp_path / "student.safetensors"))
    assert loaded.card.model_args == {
        "encoder": "mobilenet_v2",
        "skip_reductions": [4, 8],
        "upsample": "nearest",
        "detach_skips": True,
    }
    assert (loaded.decoder.upsample, loaded.decoder.detach_skips, loaded.encoder.reductions) == (
        "nearest",
        True,
        (4, 8, 32),
    )
    assert (loaded.card.input_size, loaded.card.mean, loaded.card.std) == (
        model.card.input_size,
        model.card.mean,
        model.card.std,
    )


def test_card_carries_input_size_and_normalisation(tmp_path: Path) -> None:
    """A card edited after training (input size, normalisation) is what the loaded model reports."""
    model = create_model("fastdepth", card={"input_size": (320, 256), "mean": (0.4, 0.45, 0.5), "std": (0.2, 0.25, 0.3)})
    loaded = load_model(save_weights(model, tmp_path / "student.safetensors"))
    assert (loaded.card.input_size, loaded.card.mean, loaded.card.std) == (
        (320, 256),
        (0.4, 0.45, 0.5),
        (0.2, 0.25, 0.3),
    )


def _bad_weights(case: str, path: Path) -> Path:
    if case == "missing":
        return path
    if case == "garbage":
        path.write_bytes(b"\x00\x01not safetensors at all" * 10)
    elif case == "truncated":
        save_weights(create_model("fastdepth"), path)
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "no metadata":
        save_file({"weight": torch.zeros(2, 2)}, str(path))
    elif case == "weights of another model":
        model = create_model("fastdepth")
        model.card = create_model("fastdepth_v3").card
        save_weights(model, path)
    elif case == "pickled checkpoint":
        path = path.with_suffix(".pth")
        torch.save(create_model("fastdepth").state_dict(), path)
    else:
        raise AssertionError(case)
    return path


BAD_WEIGHTS = {
    "missing": "no such weights file",
    "garbage": "not a readable .safetensors weights file",
    "truncated": "not a readable .safetensors weights file|corrupt weights",
    "no metadata": "without edgedepth model metadata",
    "weights of another model": r"weights do not fit model 'fastdepth_v3': missing \d+ .*unexpected \d+",
    "pickled checkpoint": "convert it first: edgedepth convert",
}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_load_model_refuses_bad_weights(case: str, tmp_path: Path) -> None:
    path = _bad_weights(case, tmp_path / "student.safetensors")
    with pytest.raises(EdgedepthError, match=BAD_WEIGHTS[case]) as info:
        load_model(path)
    assert "\n" not in str(info.value)


# --- Registry -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "fastdepth_no_such_encoder"])
def test_unknown_model_is_a_user_error(name: str) -> None:
    with pytest.raises(EdgedepthError, match=f"unknown (model|encoder) '{name.removeprefix('fastdepth_')}'"):
        create_model(name)


def test_registering_a_name_twice_raises() -> None:
    before = list_models()

    def fastdepth_v3(pretrained: bool = False) -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(fastdepth_v3)
    assert list_models() == before
    assert isinstance(create_model("fastdepth_v3").decoder, nn.Module)


# --- No global state ------------------------------------------------------------------------------------


def test_two_models_in_two_threads(randomize_batchnorm: Callable[[nn.Module, int], nn.Module]) -> None:
    """Two differently-weighted students running at once each give their own sequential result."""
    models = [randomize_batchnorm(create_model("fastdepth_v3"), seed).eval() for seed in (1, 2)]
    inputs = [torch.rand(SMALL_INPUT), torch.rand(SMALL_INPUT)]
    expected = [_forward(m, x) for m, x in zip(models, inputs, strict=True)]
    assert (expected[0] - expected[1]).abs().max() > 1e-2  # a mix-up would show
    start = threading.Barrier(2)
    results: list[list[torch.Tensor]] = [[], []]

    def work(index: int) -> None:
        start.wait()
        for _ in range(4):
            results[index].append(_forward(models[index], inputs[index]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(2):
        assert len(results[index]) == 4
        for got in results[index]:
            torch.testing.assert_close(got, expected[index], rtol=0, atol=1e-6)


# --- Gradient through the skips -------------------------------------------------------------------------


def _grads(loss: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, params))


def test_gradient_reaches_early_encoder_layers_through_the_skips(
    randomize_batchnorm: Callable[[nn.Module, int], nn.Module],
) -> None:
    """The gradient on the first tapped block splits into a bottleneck path and a skip path, by linearity.

    Computed by hand: the decoder runs on detached copies of the encoder's features, the gradient on each
    copy is pushed back into the encoder separately. The default model's gradient is the sum of both
    paths (the skip path is large); ``detach_skips=True`` gives exactly the bottleneck path, as in the seed.
    """
    model = randomize_batchnorm(create_model("fastdepth_v3"), 4).eval()
    detached = create_model("fastdepth_v3", detach_skips=True).eval()
    detached.load_state_dict(model.state_dict())
    x, weight = torch.rand(SMALL_INPUT), torch.randn(SMALL_INPUT[0], 1, *SMALL_INPUT[2:])
    params = list(model.encoder.features[2].block[0].parameters())  # the expansion conv whose output is skip 1
    detached_params = list(detached.encoder.features[2].block[0].parameters())

    full = _grads((model(x) * weight).sum(), params)
    without_skips = _grads((detached(x) * weight).sum(), detached_params)

    features = model.encoder(x)
    copies = [f.detach().requires_grad_() for f in features]
    feature_grads = torch.autograd.grad((model.decoder(copies) * weight).sum(), copies)
    bottleneck_path = torch.autograd.grad(features[-1], params, feature_grads[-1], retain_graph=True)
    skip_path = torch.autograd.grad(features[:-1], params, feature_grads[:-1])

    for g_full, g_detached, g_bottleneck, g_skip in zip(full, without_skips, bottleneck_path, skip_path, strict=True):
        scale = g_full.abs().max()
        torch.testing.assert_close(g_detached, g_bottleneck, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(g_full, g_bottleneck + g_skip, rtol=1e-4, atol=1e-5 * scale)
        assert g_skip.norm() > 0.1 * g_full.norm()
        assert (g_full - g_detached).norm() > 0.1 * g_full.norm()


def test_skip_reductions_default_to_what_the_encoder_offers() -> None:
    # convnext_atto's first feature is at 1/4: the default keeps the seed's 1/8 and 1/16 only.
    model = create_model("fastdepth_convnext_atto")
    assert model.encoder.reductions == (8, 16, 32)
    assert "skip_reductions" not in model.card.model_args


@pytest.mark.parametrize(
    ("name", "skips", "message"),
    [
        ("fastdepth_efficientnet_lite0", (3,), "each must be one of [2, 4, 8, 16]"),
        ("fastdepth_efficientnet_lite0", (32,), "each must be one of [2, 4, 8, 16]"),
        ("fastdepth_convnext_atto", (2, 8), "no feature at reduction(s) [2]"),
    ],
)
def test_impossible_skip_reductions_are_refused(name: str, skips: tuple[int, ...], message: str) -> None:
    with pytest.raises(EdgedepthError, match=re.escape(message)):
        create_model(name, skip_reductions=skips)
