"""Teachers: every backend through the same spec path a user types, with tiny models the tests build.

Nothing is downloaded: transformers models are tiny random-weight configs saved with ``save_pretrained``
and loaded through ``hf:<dir>`` with the hub offline; MiDaS comes from a ``hubconf.py`` written here.
"""

from __future__ import annotations

import math
import textwrap
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedepth.core.card import RELATIVE_INVERSE_DEPTH
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD, preprocess, upsample_prediction
from edgedepth.models.depth_anything import use_original_position_embeddings
from edgedepth.teachers import INVERSE_OF_METRIC_DEPTH, SPEC_FORMS, create_teacher
from edgedepth.teachers.base import invert_metric_depth
from edgedepth.teachers.midas import MIDAS_MODELS, midas_input_size
from edgedepth.teachers.tiny import save_tiny_dpt

WIDTH, HEIGHT = 96, 72  # non-square, as the seed's 512x384 crops are


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hugging Face hub is offline in every test (huggingface_hub reads the variable at import)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _images(count: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def _constant_image(value: int = 51) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, dtype=np.uint8)


def _record_input_sizes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """Every ``(width, height)`` the model is fed from now on."""
    seen: list[tuple[int, int]] = []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        seen.append((pixels.shape[-1], pixels.shape[-2]))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("spec", ["bogus", "hf:", "midas", "onnx:", "ORACLE", "dpt-large"])
def test_unparseable_spec_lists_the_forms(spec: str) -> None:
    with pytest.raises(EdgedepthError) as excinfo:
        create_teacher(spec)
    message = _one_line_error(excinfo)
    assert all(form in message for form in SPEC_FORMS)


def test_unknown_midas_model_type_lists_the_types() -> None:
    with pytest.raises(EdgedepthError, match="DPT_Large.*MiDaS_small"):
        create_teacher("midas:dpt_gigantic")


# ---------------------------------------------------------------- oracle


def test_oracle_returns_exact_inverse_and_zero_where_invalid() -> None:
    depth = np.full((HEIGHT, WIDTH), 4.0, dtype=np.float32)
    depth[0, :4] = [2.0, 0.5, 0.0, -1.0]
    depth[1, :2] = [np.nan, np.inf]
    teacher = create_teacher("oracle")
    out = torch.from_numpy(teacher.predict_batch([_constant_image()], depths=[depth]))
    assert out.shape == (1, 1, HEIGHT, WIDTH) and out.dtype == torch.float32
    assert out[0, 0, 0, :4].tolist() == [0.5, 2.0, 0.0, 0.0]
    assert out[0, 0, 1, :2].tolist() == [0.0, 0.0]
    assert torch.all(out[0, 0, 2:] == 0.25)
    assert teacher.requires_depth and teacher.size is None and teacher.name == "oracle"


def test_oracle_without_depth_or_with_wrong_size_is_a_clear_error() -> None:
    teacher = create_teacher("oracle")
    with pytest.raises(EdgedepthError, match="needs the ground-truth depth"):
        teacher.predict_batch([_constant_image()])
    with pytest.raises(EdgedepthError, match="does not match"):
        teacher.predict_batch([_constant_image()], depths=[np.ones((HEIGHT, WIDTH + 1), np.float32)])


def test_mixed_image_sizes_in_a_batch_are_refused() -> None:
    with pytest.raises(ValueError, match="same size"):
        create_teacher("oracle").predict_batch(
            [_constant_image(), np.zeros((10, 10, 3), np.uint8)], depths=[np.ones((HEIGHT, WIDTH))] * 2
        )


# ---------------------------------------------------------------- transformers


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights everywhere, so outputs vary over the image (fresh heads often start at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def _save(model: torch.nn.Module, processor: object, directory: Path) -> Path:
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _tiny_hybrid_dpt(directory: Path) -> Path:
    """DPT-Hybrid (a BiT backbone under the ViT), random weights, saved for ``hf:<dir>``."""
    from transformers import BitConfig, DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    backbone = BitConfig(
        global_padding="same", layer_type="bottleneck", depths=[1, 1, 1], hidden_sizes=[8, 16, 32],
        out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True, embedding_size=8, num_groups=2,
    )  # fmt: skip
    config = DPTConfig(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=16, image_size=32,
        is_hybrid=True, backbone_config=backbone, patch_size=16, backbone_featmap_shape=[1, 32, 2, 2],
        backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 16, 16], reassemble_factors=[1, 1, 1, 0.5],
        fusion_hidden_size=8, head_hidden_size=8, readout_type="project",
    )  # fmt: skip
    model = DPTForDepthEstimation(config)
    _randomize(model)
    processor = DPTImageProcessor(
        size={"height": 32, "width": 32}, keep_aspect_ratio=True, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    return _save(model, processor, directory)


def _tiny_depth_anything(directory: Path, metric: bool = False) -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=16, image_size=28, patch_size=14,
        out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8,
        head_hidden_size=8, depth_estimation_type="metric" if metric else "relative", max_depth=10,
    )  # fmt: skip
    model = DepthAnythingForDepthEstimation(config)
    _randomize(model)
    # ensure_multiple_of=1 on purpose: the teacher must still feed multiples of the 14-pixel patch.
    processor = DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=1, resample=3,
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
    )  # fmt: skip
    return _save(model, processor, directory)


def test_plain_dpt_is_fed_a_square_and_answers_at_the_image_size(tmp_path: Path) -> None:
    directory = save_tiny_dpt(tmp_path / "dpt", keep_aspect_ratio=True)
    teacher = create_teacher(f"hf:{directory}")
    seen = _record_input_sizes(teacher.model)
    out = torch.from_numpy(teacher.predict_batch(_images()))
    assert seen == [(32, 32)]
    assert out.shape == (2, 1, HEIGHT, WIDTH) and torch.isfinite(out).all() and out.std() > 0
    assert teacher.size == teacher.input_size == (32, 32)
    assert teacher.describe() == {"name": f"hf:{directory}", "input_size": [32, 32], "output": RELATIVE_INVERSE_DEPTH}

    # The same numbers by hand: the processor's square resize and normalisation, the network, bicubic back.
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(directory)
    model = AutoModelForDepthEstimation.from_pretrained(directory).eval()
    pixels = processor(images=_images(), return_tensors="pt", keep_aspect_ratio=False)["pixel_values"]
    assert pixels[0, :, 0, 0].abs().max() <= 1.0  # mean/std 0.5 put [0, 1] into [-1, 1]
    with torch.no_grad():
        expected = torch.from_numpy(upsample_prediction(model(pixel_values=pixels).predicted_depth.unsqueeze(1).numpy(), (WIDTH, HEIGHT)))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_dpt_hybrid_is_fed_exactly_its_image_size(tmp_path: Path) -> None:
    teacher = create_teacher(f"hf:{_tiny_hybrid_dpt(tmp_path / 'hybrid')}")
    seen = _record_input_sizes(teacher.model)
    out = torch.from_numpy(teacher.predict_batch(_images(1)))
    assert seen == [(32, 32)]
    assert out.shape == (1, 1, HEIGHT, WIDTH) and torch.isfinite(out).all()


def test_depth_anything_keeps_the_aspect_at_multiples_of_the_patch(tmp_path: Path) -> None:
    teacher = create_teacher(f"hf:{_tiny_depth_anything(tmp_path / 'da')}")
    seen = _record_input_sizes(teacher.model)
    out = torch.from_numpy(teacher.predict_batch(_images()))
    # 96x72 towards 28x28, scaling as little as possible: height fits (x 7/18), width 37.3 -> 42 (3 patches).
    assert seen == [(42, 28)]
    assert out.shape == (2, 1, HEIGHT, WIDTH) and torch.isfinite(out).all() and out.std() > 0
    assert teacher.output == RELATIVE_INVERSE_DEPTH and "metric" not in teacher.name


def test_metric_depth_anything_is_converted_to_inverse_depth_explicitly(tmp_path: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    directory = _tiny_depth_anything(tmp_path / "metric", metric=True)
    teacher = create_teacher(f"hf:{directory}")
    assert teacher.output == INVERSE_OF_METRIC_DEPTH
    assert teacher.name == f"hf:{directory} (1/metric depth)"
    out = torch.from_numpy(teacher.predict_batch(_images()))

    processor = AutoImageProcessor.from_pretrained(directory)
    model = use_original_position_embeddings(AutoModelForDepthEstimation.from_pretrained(directory).eval())
    pixels = processor(images=_images(), return_tensors="pt", ensure_multiple_of=14)["pixel_values"]
    with torch.no_grad():
        depth = model(pixel_values=pixels).predicted_depth.unsqueeze(1)
    assert depth.min() > 0.5  # metres: sigmoid * max_depth, so 1/depth below is far from the floor
    torch.testing.assert_close(out, torch.from_numpy(upsample_prediction((1.0 / depth).numpy(), (WIDTH, HEIGHT))), rtol=1e-5,
                               atol=1e-6)

    # A head that says 7.5 m everywhere (sigmoid(ln 3) * 10) gives exactly 1/7.5.
    with torch.no_grad():
        model.head.conv3.weight.zero_()
        model.head.conv3.bias.fill_(math.log(3.0))
    model.save_pretrained(directory)
    out = torch.from_numpy(create_teacher(f"hf:{directory}").predict_batch(_images(1)))
    torch.testing.assert_close(out, torch.full_like(out, 1 / 7.5), rtol=1e-5, atol=0)


def test_invert_metric_depth_floors_zero_and_negative_depth() -> None:
    depth = torch.tensor([2.0, 0.25, 0.0, -3.0, 1e-5, float("nan")])
    assert invert_metric_depth(depth, floor=1e-3)[:5].tolist() == pytest.approx([0.5, 4.0, 1000.0, 1000.0, 1000.0])
    assert torch.isnan(invert_metric_depth(depth)[5])  # a broken prediction stays visibly broken


def test_zoedepth_padding_is_removed_and_its_metric_depth_inverted(tmp_path: Path) -> None:
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

    backbone = BeitConfig(
        image_size=32, patch_size=8, num_hidden_layers=4, hidden_size=16, intermediate_size=16, num_attention_heads=2,
        use_relative_position_bias=True, reshape_hidden_states=False,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = ZoeDepthConfig(
        backbone_config=backbone, neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8, num_relative_features=8,
        bottleneck_features=8, num_attractors=[4, 2, 2, 1], bin_embedding_dim=8,
        bin_configurations=[{"n_bins": 8, "min_depth": 1e-3, "max_depth": 10.0}],
    )  # fmt: skip
    processor = ZoeDepthImageProcessor(size={"height": 32, "width": 32}, ensure_multiple_of=8, keep_aspect_ratio=True)
    model = ZoeDepthForDepthEstimation(config)
    _randomize(model)
    directory = _save(model, processor, tmp_path / "zoe")
    teacher = create_teacher(f"hf:{directory}")
    out = torch.from_numpy(teacher.predict_batch(_images()))
    assert out.shape == (2, 1, HEIGHT, WIDTH) and torch.isfinite(out).all() and (out > 0).all() and out.std() > 0
    assert teacher.output == INVERSE_OF_METRIC_DEPTH and teacher.name.endswith("(1/metric depth)")

    # ZoeDepth's own post-processing crops the reflect padding away; the teacher inverts what is left.
    with torch.no_grad():
        outputs = model.eval()(**processor(images=_images(), return_tensors="pt"))
    depth = processor.post_process_depth_estimation(outputs, source_sizes=[(HEIGHT, WIDTH)] * 2)
    expected = 1.0 / torch.stack([result["predicted_depth"] for result in depth]).unsqueeze(1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_unreachable_hub_says_what_to_pass_instead() -> None:
    cases = [("hf:edgedepth-tests/no-model", "edgedepth-tests/no-model"), ("midas-dpt-large", "Intel/dpt-large")]
    for spec, repo in cases:
        with pytest.raises(EdgedepthError) as excinfo:
            create_teacher(spec)
        message = _one_line_error(excinfo)
        assert f"hf:{repo}" in message and "unreachable" in message and "hf:/path/to/saved_model" in message


def test_hf_local_directory_that_is_missing_or_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(EdgedepthError, match="no such directory"):
        create_teacher(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(EdgedepthError) as excinfo:
        create_teacher(f"hf:{tmp_path}")
    assert "cannot load its config" in _one_line_error(excinfo)


# ---------------------------------------------------------------- MiDaS

_HUBCONF = '''
"""A stand-in for MiDaS's hubconf.py: same entry points, a one-parameter network, no downloads."""
import urllib.error

import torch


class Net(torch.nn.Module):
    """Returns scale * (channel mean of the normalised input), N x H x W, as MiDaS networks do."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x.mean(dim=1)


def _entry(pretrained):
    if pretrained:
        raise urllib.error.URLError("no network in this test")
    return Net()


def MiDaS(pretrained=True, **kwargs):
    return _entry(pretrained)


def DPT_Large(pretrained=True, **kwargs):
    return _entry(pretrained)
'''


@pytest.fixture
def midas_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "MiDaS"
    repo.mkdir()
    (repo / "hubconf.py").write_text(textwrap.dedent(_HUBCONF))
    return repo


@pytest.mark.parametrize(
    ("image_size", "model_type", "expected"),
    [
        ((512, 384), "DPT_Large", (512, 384)),  # "minimal": the seed's crop runs as it is
        ((640, 480), "dpt_large_384", (512, 384)),
        ((500, 333), "DPT_Large", (576, 384)),  # height fits (x 1.153), 576.6 -> 576
        ((96, 72), "DPT_Large", (384, 288)),  # width fits (x 4)
        ((512, 384), "MiDaS_small", (256, 192)),  # "upper_bound": inside 256x256
        ((500, 333), "midas_v21_small_256", (256, 160)),  # 170.5 -> 160
        ((512, 384), "DPT_SwinV2_L_384", (384, 384)),  # Swin: the square itself
    ],
)
def test_midas_input_size_follows_midas_transforms(image_size, model_type, expected) -> None:
    assert midas_input_size(image_size, MIDAS_MODELS[model_type]) == expected


def test_midas_weights_file_is_loaded_and_midas_preprocessing_applied(midas_repo: Path, tmp_path: Path) -> None:
    weights = tmp_path / "midas_v21_384.pt"
    torch.save({"scale": torch.tensor(2.0)}, weights)
    teacher = create_teacher(f"midas:midas_v21_384@{midas_repo}:{weights}")
    assert teacher.name == "midas:MiDaS" and teacher.size == (384, 384)
    seen = []
    teacher.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    out = torch.from_numpy(teacher.predict_batch([_constant_image(51)] * 2))  # 51/255 = 0.2 in every channel
    assert seen == [(2, 3, 288, 384)]  # "upper_bound": 96x72 x 4 fits inside 384x384
    expected = 2.0 * np.mean([(0.2 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    assert out.shape == (2, 1, HEIGHT, WIDTH)
    torch.testing.assert_close(out, torch.full_like(out, float(expected)), rtol=0, atol=1e-5)


def test_midas_dpt_uses_its_own_normalisation_and_reads_training_checkpoints(midas_repo: Path, tmp_path: Path) -> None:
    weights = tmp_path / "dpt_large_384.pt"
    torch.save({"model": {"scale": torch.tensor(3.0)}, "optimizer": {}}, weights)
    teacher = create_teacher(f"midas:DPT_Large@{midas_repo}:{weights}")
    out = torch.from_numpy(teacher.predict_batch([_constant_image(51)]))
    torch.testing.assert_close(out, torch.full_like(out, 3.0 * (0.2 - 0.5) / 0.5), rtol=0, atol=1e-5)


def test_midas_failures_are_one_line_errors(midas_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EdgedepthError) as excinfo:  # the hub entry would download its weights
        create_teacher(f"midas:MiDaS@{midas_repo}")
    assert "unreachable" in _one_line_error(excinfo) and ":/path/to/midas_v21_384.pt" in str(excinfo.value)

    wrong = tmp_path / "wrong.pt"
    torch.save({"not_a_key": torch.zeros(1)}, wrong)
    with pytest.raises(EdgedepthError, match="does not fit MiDaS model MiDaS"):
        create_teacher(f"midas:MiDaS@{midas_repo}:{wrong}")
    with pytest.raises(EdgedepthError, match="no hubconf.py"):
        create_teacher(f"midas:MiDaS@{tmp_path}:{wrong}")

    def offline_hub_load(*args, **kwargs):  # what torch.hub raises with no connection and no cached MiDaS
        try:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        except urllib.error.URLError as exc:
            raise RuntimeError("It looks like there is no internet connection") from exc

    monkeypatch.setattr(torch.hub, "load", offline_hub_load)
    with pytest.raises(EdgedepthError) as excinfo:
        create_teacher("midas:DPT_Large")
    message = _one_line_error(excinfo)
    assert "GitHub" in message and "midas:DPT_Large@/path/to/MiDaS:/path/to/dpt_large_384.pt" in message


# ---------------------------------------------------------------- ONNX


class _ChannelSum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1, keepdim=True) * 0.5 + x[:, :1] ** 2


def _export(path: Path, dynamic: bool) -> Path:
    dynamic_axes = {"image": {0: "n", 2: "h", 3: "w"}} if dynamic else None
    torch.onnx.export(
        _ChannelSum(), torch.zeros(1, 3, 24, 32), path, input_names=["image"], output_names=["depth"],
        dynamic_axes=dynamic_axes, dynamo=False,
    )  # fmt: skip
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy exporter, kept for its speed here
def test_onnx_teacher_static_size_imagenet_normalisation(tmp_path: Path) -> None:
    path = _export(tmp_path / "static.onnx", dynamic=False)
    teacher = create_teacher(f"onnx:{path}")
    assert teacher.size == (32, 24)
    images = _images(3)  # the model's batch is fixed at 1: run one at a time
    out = torch.from_numpy(teacher.predict_batch(images))
    with torch.no_grad():
        network_output = _ChannelSum()(torch.from_numpy(preprocess(images, (32, 24), IMAGENET_MEAN, IMAGENET_STD)))
    expected = torch.from_numpy(upsample_prediction(network_output.numpy(), (WIDTH, HEIGHT)))
    assert out.shape == (3, 1, HEIGHT, WIDTH)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_teacher_dynamic_size_needs_a_size_option(tmp_path: Path) -> None:
    path = _export(tmp_path / "dynamic.onnx", dynamic=True)
    with pytest.raises(EdgedepthError, match=r"dynamic; give one, e\.g\. onnx:.*\?size=512x384"):
        create_teacher(f"onnx:{path}")
    with pytest.raises(EdgedepthError, match="unknown option 'scale'"):
        create_teacher(f"onnx:{path}?size=64x48&scale=2")
    teacher = create_teacher(f"onnx:{path}?size=64x48&mean=0.5,0.5,0.5&std=0.5,0.5,0.5")
    assert teacher.size == (64, 48)
    out = torch.from_numpy(teacher.predict_batch([_constant_image(51)] * 2))
    value = (0.2 - 0.5) / 0.5  # every channel after normalisation
    torch.testing.assert_close(out, torch.full_like(out, 3 * value * 0.5 + value**2), rtol=0, atol=1e-5)
