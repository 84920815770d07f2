"""Images kept in their shape: aspect-kept and letterboxed inputs, against a stretched one, on a portrait scene."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgedepth.core.card import ModelCard
from edgedepth.core.processing import aspect_size, letterbox_box, preprocess
from edgedepth.data.synthetic import Camera, SceneDescription, random_scene, render
from edgedepth.models import create_model, save_weights
from edgedepth.robot.geometry import Intrinsics
from edgedepth.runtime.predictor import Predictor, load_predictor
from edgedepth.runtime.pytorch import TorchPredictor

PORTRAIT = (240, 320)  # width, height: a 3:4 portrait photo


class SquarePixelOracle(nn.Module):
    """The ideal network for undistorted photos: it reads its input as a square-pixel view of the scene with the
    camera's horizontal field of view (what a network trained on real photos assumes) and answers that view's
    exact inverse depth. Stretch a portrait into a landscape input and it answers for a landscape view: wrong,
    as a real network is. It ignores the pixels: what it tests is the shape the image reaches the network in."""

    def __init__(self, scene: SceneDescription, camera: Camera) -> None:
        super().__init__()
        self.scene, self.camera = scene, camera
        self.hfov_deg = math.degrees(2 * math.atan(camera.size[0] / 2 / camera.intrinsics.fx))
        self.card = ModelCard(name="square_pixel_oracle", input_size=(128, 96))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-1], x.shape[-2])
        view = Camera(self.camera.position, self.camera.rotation, Intrinsics.from_hfov(self.hfov_deg, size), size)
        inverse = torch.from_numpy(1.0 / render(self.scene, view).depth.astype(np.float32))
        return inverse[None, None].expand(x.shape[0], 1, *inverse.shape)


def _aligned_error(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Mean relative error of inverse depth after the least-squares scale and shift (the relative-depth protocol)."""
    design = np.stack([prediction.ravel(), np.ones(prediction.size)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, truth.ravel(), rcond=None)
    return float(np.mean(np.abs(scale * prediction + shift - truth) / truth))


def test_aspect_size_keeps_the_shape_near_the_pixel_count() -> None:
    assert aspect_size((480, 640), (256, 192), 32) == (192, 256)  # portrait: the default's pixels, upright
    assert aspect_size((640, 480), (256, 192), 32) == (256, 192)  # NYU's 4:3: the default itself
    assert aspect_size((1920, 1080), (256, 192), 32) == (288, 160)  # 16:9, sides multiples of 32
    assert aspect_size((480, 640), (256, 192), 14) == (196, 252)  # Depth Anything's 14-pixel patches
    assert letterbox_box((480, 640), (256, 192)) == (56, 0, 144, 192)


def test_a_portrait_scene_scores_better_kept_in_its_shape_than_stretched() -> None:
    scene, camera = random_scene(np.random.default_rng(7), PORTRAIT)
    truth = render(scene, camera)
    oracle = SquarePixelOracle(scene, camera)
    stretched, kept = TorchPredictor(oracle), TorchPredictor(oracle)
    kept.fit = "aspect"
    assert stretched.input_size_for(PORTRAIT)[0] == (128, 96)
    assert kept.input_size_for(PORTRAIT)[0] == (96, 128)
    squashed, upright = stretched(truth.image), kept(truth.image)
    assert squashed.shape == upright.shape == truth.depth.shape  # the image's full resolution, either way
    assert not np.allclose(squashed, upright, rtol=0.05)
    inverse = 1.0 / truth.depth
    error_stretched, error_kept = _aligned_error(squashed, inverse), _aligned_error(upright, inverse)
    assert error_kept < 0.5 * error_stretched, (error_kept, error_stretched)
    assert error_kept < 0.05  # only the resampling's loss is left


class _FirstChannel(Predictor):
    """A per-pixel "network" (its output is its input's red plane): where it looks is where the image is."""

    runtime = "test"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return batch[:, :1]


def test_a_letterbox_pads_the_input_and_crops_the_padding_off_the_output() -> None:
    rng = np.random.default_rng(0)
    image = cv2_smooth(rng.integers(0, 256, (320, 240, 3), dtype=np.uint8))
    predictor = _FirstChannel(ModelCard(name="first_channel", input_size=(128, 96), mean=(0.5,) * 3, std=(0.5,) * 3))
    predictor.fit = "letterbox"
    batch, size, box = predictor.prepare([image])
    assert size == (128, 96) and box == (28, 0, 72, 96)
    assert float(np.abs(batch[..., :28]).max()) == 0.0 and float(np.abs(batch[..., 100:]).max()) == 0.0  # mean colour
    output = predictor(image)
    expected = image[..., 0] / 127.5 - 1.0
    assert output.shape == expected.shape
    assert np.corrcoef(output.ravel(), expected.ravel())[0, 1] > 0.99  # aligned: no padding, no shift


def cv2_smooth(image: np.ndarray) -> np.ndarray:
    """Noise blurred to features of a few pixels, so that a resize keeps them."""
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 6)


@pytest.mark.parametrize(("options", "fit"), [({}, "aspect"), ({"keep_aspect": True}, "aspect"),
                                             ({"keep_aspect": False}, "stretch")])
def test_load_predictor_keeps_the_shape_unless_told_to_stretch(options: dict[str, bool], fit: str, tmp_path) -> None:
    """By default as the command line runs it (predict, serve, the video loop); stretched only when asked."""
    weights = save_weights(create_model("fastdepth_v3"), tmp_path / "student.safetensors")
    predictor = load_predictor(weights, **options)
    assert predictor.fit == fit
    assert predictor(np.zeros((320, 240, 3), dtype=np.uint8)).shape == (320, 240)


def test_an_export_is_letterboxed_by_default(tmp_path) -> None:
    """A fixed-size export keeps a portrait's shape by default too: letterboxed inside its landscape input."""
    from edgedepth.export.graph import export_model

    model = create_model("fastdepth_v3", card={"input_size": (128, 96)}).eval()
    onnx = export_model(model, tmp_path / "student.onnx", "onnx").path
    predictor = load_predictor(onnx)
    assert predictor.fit == "letterbox"
    assert predictor.input_size_for(PORTRAIT) == ((128, 96), letterbox_box(PORTRAIT, (128, 96)))
    assert load_predictor(onnx, keep_aspect=False).input_size_for(PORTRAIT) == ((128, 96), None)


def test_preprocess_without_a_box_is_the_seeds_stretch() -> None:
    image = np.random.default_rng(1).integers(0, 256, (60, 40, 3), dtype=np.uint8)
    import cv2

    expected = (cv2.resize(image.astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(preprocess([image], (32, 32), (0.5,) * 3, (0.5,) * 3)[0], expected.transpose(2, 0, 1),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_final_upsample_by_opencv_is_the_decoders_own(mode: str) -> None:
    """The x2 upsampling and ReLU an export leaves to the Predictor equal the decoder's within 1e-6 of the peak:
    odd sizes (the clamped borders), negative values (the ReLU after the upsampling, not before)."""
    from edgedepth.core.processing import final_upsample
    from edgedepth.models.decoder import NNConv5Decoder

    decoder = NNConv5Decoder((16, 24, 40, 960), (2, 4, 8, 32), upsample=mode).eval()
    generator = torch.Generator().manual_seed(0)
    for height, width in ((48, 64), (7, 5), (1, 3)):
        head_output = torch.randn(2, 1, height, width, generator=generator)
        with torch.no_grad():
            expected = decoder.final_upsample(head_output)
        actual = torch.from_numpy(final_upsample(head_output.numpy(), mode))
        assert actual.shape == expected.shape == (2, 1, 2 * height, 2 * width)
        assert (expected == 0).any() and (expected > 0).any()
        assert (actual - expected).abs().max().item() <= 1e-6 * expected.abs().max().item()


# ---------------------------------------------------------------------------------------------------------------
# One processing for every path (issue 29): NumPy and OpenCV are the definition, the PyTorch and exported paths meet


#: Landscape, portrait, odd-sided and tiny images: where resizes differ (borders, odd phases, upscaling).
SHAPES = [(640, 480), (480, 640), (517, 333), (77, 101)]


@pytest.mark.parametrize(("width", "height"), SHAPES)
@pytest.mark.parametrize("interpolation", ["cubic", "area", "linear"])
def test_preprocess_is_the_float64_definition(width: int, height: int, interpolation: str) -> None:
    """Resize then normalise, computed here in float64 from the definition (the image in [0, 1] resized by OpenCV,
    then ``(x - mean) / std``): the runtime's fast float32 path meets it within float32 rounding, stretched and
    letterboxed. OpenCV's float32 bicubic keeps its weights in float32, 2.4e-5 of full scale (0.006 grey levels)
    from its float64 one: 1.1e-4 after dividing by the smallest std; a wrong kernel, order or constant is 1e-2 off."""
    import cv2

    flags = {"cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}
    image = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for size, box in (((256, 192), None), ((256, 192), letterbox_box((width, height), (256, 192)))):
        x, y, box_width, box_height = box or (0, 0, *size)
        resized = cv2.resize(image.astype(np.float64) / 255.0, (box_width, box_height), interpolation=flags[interpolation])
        expected = np.zeros((3, size[1], size[0]))
        expected[:, y : y + box_height, x : x + box_width] = ((resized - mean) / std).transpose(2, 0, 1)
        actual = preprocess([image], size, mean, std, interpolation, box)[0]  # type: ignore[arg-type]
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1.5e-4)


@pytest.mark.parametrize(("width", "height"), SHAPES)
def test_upsampling_is_the_seeds_bicubic(width: int, height: int) -> None:
    """The prediction brought to the image's size equals the seed's ``F.interpolate`` (bicubic, half-pixel
    centres), computed in float64 so that PyTorch's own float32 rounding is not the reference."""
    from edgedepth.core.processing import upsample_prediction

    low = torch.rand(2, 1, 48, 64, generator=torch.Generator().manual_seed(width), dtype=torch.float64)
    expected = torch.nn.functional.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)
    actual = upsample_prediction(low.float().numpy(), (width, height))
    assert actual.shape == (2, 1, height, width) and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected.numpy(), rtol=0, atol=2e-6)


@pytest.mark.parametrize("fit", ["stretch", "letterbox"])
def test_the_pytorch_and_the_exported_path_give_the_same_depth(fit: str, tmp_path, randomize_batchnorm) -> None:  # type: ignore[no-untyped-def]
    """Our weights run by PyTorch and their FP32 ONNX export run by ONNX Runtime: the same depth at each image's
    resolution, within 1e-4 of its peak, on landscape, portrait and odd-sized images, stretched or letterboxed."""
    from edgedepth.export.graph import export_model

    model = randomize_batchnorm(create_model("fastdepth_v3", card={"input_size": (128, 96)}), 5).eval()
    weights = save_weights(model, tmp_path / "student.safetensors")
    onnx = export_model(model, tmp_path / "student.onnx", "onnx").path
    eager, exported = load_predictor(weights), load_predictor(onnx)
    eager.fit = exported.fit = fit  # type: ignore[assignment]
    for width, height in SHAPES:
        image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected, actual = eager(image), exported(image)
        assert actual.shape == expected.shape == (height, width)
        assert np.ptp(expected) > 0.05 * np.abs(expected).max()  # a map with structure, not a constant
        assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max(), (width, height)
