"""``edgedepth predict`` end to end: images, folders with bad files, globs, videos, the real NYU frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedepth.cli import main
from edgedepth.core.imageio import read_rgb
from edgedepth.core.processing import preprocess, upsample_prediction
from edgedepth.models import load_model

NYU_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fastdepth_nyu_sample"


def _write_image(path: Path, size: tuple[int, int] = (80, 60), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def _outputs(out: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    color = cv2.imread(str(out / f"{stem}.color.png"), cv2.IMREAD_UNCHANGED)
    depth16 = cv2.imread(str(out / f"{stem}.depth.png"), cv2.IMREAD_UNCHANGED)
    return color, depth16


def test_preprocess_is_unit_resize_then_normalise() -> None:
    """Resizing first and folding the / 255 into the normalisation gives the definition's numbers."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for given in (image, image.astype(np.float32) / 255):
        batch = preprocess([given], (64, 32), mean, std)
        unit = cv2.resize(image.astype(np.float32) / 255, (64, 32), interpolation=cv2.INTER_CUBIC)
        expected = ((unit - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1)[None]
        assert batch.shape == (1, 3, 32, 64) and batch.dtype == np.float32
        np.testing.assert_allclose(batch, expected, rtol=0, atol=2e-6)


def test_upsample_prediction_is_exact_bicubic() -> None:
    """Bicubic with half-pixel centres, as the seed's F.interpolate, to 1e-6 of a float64 computation."""
    low = np.random.default_rng(0).standard_normal((2, 1, 192, 256))
    for width, height in [(640, 480), (561, 427), (100, 70), (256, 192)]:
        exact = F.interpolate(torch.from_numpy(low), size=(height, width), mode="bicubic", align_corners=False)
        resized = upsample_prediction(low.astype(np.float32), (width, height))
        assert resized.dtype == np.float32 and resized.shape == (2, 1, height, width)
        assert float(np.abs(resized - exact.numpy()).max()) < 2e-6, (width, height)


def test_single_image_outputs_at_full_resolution(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    _write_image(tmp_path / "in" / "room.png", (100, 70))
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in" / "room.png"), "--weights", str(weights), "--out", str(out), "--npy"]) == 0
    color, depth16 = _outputs(out, "room")
    assert color.shape == (70, 100, 3) and color.dtype == np.uint8
    assert depth16.shape == (70, 100) and depth16.dtype == np.uint16
    assert depth16.min() == 0 and depth16.max() == 65535  # min-max normalised over the full range
    raw = np.load(out / "room.npy")
    assert raw.shape == (70, 100) and raw.dtype == np.float32
    # The raw prediction is the network at 256x192 brought back bicubically: recompute it independently.
    model = load_model(weights)
    image = read_rgb(tmp_path / "in" / "room.png")
    with torch.no_grad():
        network = model(torch.from_numpy(preprocess([image], (256, 192), (0.5,) * 3, (0.5,) * 3))).numpy()
    expected = upsample_prediction(network, (100, 70))
    np.testing.assert_allclose(raw, expected[0, 0], atol=1e-5)
    # The 16-bit PNG orders pixels as the raw inverse depth does (near = large).
    assert np.corrcoef(raw.ravel(), depth16.ravel().astype(np.float64))[0, 1] > 0.999
    assert "1 image(s)" in capsys.readouterr().out


def test_color_map_is_bright_where_near(tmp_path: Path) -> None:
    from edgedepth.core.viz import colorize

    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (8, 1))  # inverse depth grows to the right
    luminance = cv2.cvtColor(colorize(ramp), cv2.COLOR_RGB2GRAY).astype(int)
    assert luminance[0, -1] > luminance[0, 0] + 150
    assert np.all(np.diff(luminance[0]) >= -2)  # monotone up to rounding: perceptually ordered


def test_folder_with_corrupt_and_non_image_files(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "photos"
    _write_image(src / "a.jpg", seed=1)
    _write_image(src / "nested" / "b.png", seed=2)
    good = (src / "c.jpg")
    _write_image(good, seed=3)
    data = good.read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "notes.txt").write_text("not an image")
    (src / "fake.png").write_bytes(b"this is not a png")
    out = tmp_path / "out"
    assert main(["predict", str(src), "--weights", str(weights), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    for stem in ("a", "nested/b", "c"):
        assert (out / f"{stem}.color.png").is_file() and (out / f"{stem}.depth.png").is_file()
    assert not list(out.rglob("truncated*")) and not list(out.rglob("fake*"))
    assert "3 image(s)" in captured.out and "skipped 3" in captured.out
    assert "truncated.jpg" in captured.err and "notes.txt" in captured.err and "fake.png" in captured.err
    assert "Traceback" not in captured.err


def test_grayscale_16bit_and_rgba_are_converted(tmp_path: Path, weights: Path) -> None:
    rng = np.random.default_rng(4)
    src = tmp_path / "odd"
    src.mkdir()
    cv2.imwrite(str(src / "gray.png"), rng.integers(0, 256, (48, 64), dtype=np.uint8))
    cv2.imwrite(str(src / "deep.png"), rng.integers(0, 65536, (48, 64), dtype=np.uint16))
    cv2.imwrite(str(src / "rgba.png"), rng.integers(0, 256, (48, 64, 4), dtype=np.uint8))
    cv2.imwrite(str(src / "rgb16.png"), rng.integers(0, 65536, (48, 64, 3), dtype=np.uint16))
    out = tmp_path / "out"
    assert main(["predict", str(src), "--weights", str(weights), "--out", str(out)]) == 0
    for stem in ("gray", "deep", "rgba", "rgb16"):
        assert _outputs(out, stem)[1].shape == (48, 64)


def test_16bit_gray_keeps_its_contrast(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (4, 1))
    cv2.imwrite(str(tmp_path / "ramp.png"), ramp)
    rgb = read_rgb(tmp_path / "ramp.png")
    assert rgb.shape == (4, 64, 3) and rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255


def test_glob_and_name_clash(tmp_path: Path, weights: Path) -> None:
    _write_image(tmp_path / "g" / "x.jpg", seed=5)
    _write_image(tmp_path / "g" / "x.png", seed=6)
    _write_image(tmp_path / "g" / "y.bmp", seed=7)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "g" / "x.*"), "--weights", str(weights), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.color.png")) == ["x_jpg.color.png", "x_png.color.png"]


def test_several_inputs_of_every_kind_in_one_run(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    """Images, a folder and a glob together, each named as on its own; names shared across inputs keep their
    suffix; a file given twice is predicted once; an unreadable one is skipped as in a folder."""
    _write_image(tmp_path / "a" / "one.jpg", seed=1)
    _write_image(tmp_path / "b" / "one.png", seed=2)
    _write_image(tmp_path / "folder" / "nested" / "two.png", seed=3)
    _write_image(tmp_path / "g" / "three.bmp", seed=4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    inputs = [tmp_path / "a" / "one.jpg", tmp_path / "b" / "one.png", tmp_path / "folder", tmp_path / "g" / "*.bmp",
              tmp_path / "folder" / "nested" / "two.png", tmp_path / "broken.png"]
    assert main(["predict", *map(str, inputs), "--weights", str(weights), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.color.png"))
    assert written == ["nested/two.color.png", "one_jpg.color.png", "one_png.color.png", "three.color.png"]
    assert "predicted 4 image(s)" in captured.out and "skipped 1" in captured.out
    assert "broken.png" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["{x1}", "{x2}"], "{x1} and {x2} would both write x.*"),
        (["{d1}", "{d2}"], "{x1} and {x2} would both write x.*"),
        (["{image}", "{video}"], "{video}: a video is predicted on its own; give it as the only input"),
        (["{video}", "{image}"], "{video}: a video is predicted on its own; give it as the only input"),
        (["{image}", "{bag}"], "{bag}: a ROS 2 bag is predicted on its own; give it as the only input"),
    ],
)
def test_several_inputs_that_cannot_run_together_are_one_line_before_any_work(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, inputs: list[str], message: str
) -> None:
    paths = {"x1": tmp_path / "d1" / "x.jpg", "x2": tmp_path / "d2" / "x.jpg", "d1": tmp_path / "d1",
             "d2": tmp_path / "d2", "image": tmp_path / "img.png", "video": tmp_path / "clip.mp4",
             "bag": tmp_path / "drive.mcap"}
    for key in ("x1", "x2", "image"):
        _write_image(paths[key])
    paths["video"].write_bytes(b"never read")
    paths["bag"].write_bytes(b"never read")
    out = tmp_path / "out"
    code = main(["predict", *(a.format(**paths) for a in inputs), "--weights", str(weights), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("edgedepth: error:"), err
    assert message.format(**paths) in err
    assert not out.exists()


def test_video(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    assert writer.isOpened()
    rng = np.random.default_rng(8)
    for _ in range(5):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["predict", str(video), "--weights", str(weights), "--out", str(out)]) == 0
    frames = sorted(p.name for p in (out / "clip").glob("*.color.png"))
    assert frames == [f"{i:06d}.color.png" for i in range(5)]
    assert _outputs(out / "clip", "000004")[1].shape == (64, 96)
    assert "5 image(s)" in capsys.readouterr().out


def test_real_nyu_frame(tmp_path: Path, weights: Path) -> None:
    rgb = np.load(NYU_SAMPLE / "rgb.npy")
    png = tmp_path / "nyu.png"
    cv2.imwrite(str(png), cv2.cvtColor(np.round(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main(["predict", str(png), "--weights", str(weights), "--out", str(out), "--size", "224x224"]) == 0
    color, depth16 = _outputs(out, "nyu")
    assert color.shape == (224, 224, 3) and depth16.shape == (224, 224)
    assert depth16.std() > 1000  # a real picture gives a real spread, not a flat map


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "missing.png"], "predict needs a network: --model NAME"),
        (["predict", "{missing}", "--weights", "{weights}"], "no such file or folder"),
        (["predict", "{truncated}", "--weights", "{weights}"], "unreadable image"),
        (["predict", "{image}", "--weights", "{garbage}"], "not a readable .safetensors"),
        (["predict", "{image}", "--weights", "{pth}"], "edgedepth convert"),
        (["predict", "{image}", "--weights", "{foreign}"], "without edgedepth model metadata"),
        (["predict", "{image}", "--weights", "{weights}", "--device", "cuda:7"], "CUDA is not available"),
        (["predict", "{empty}", "--weights", "{weights}"], "no images found"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    if torch.cuda.is_available() and "cuda:7" in args:
        pytest.skip("this machine has CUDA")
    image = tmp_path / "img.png"
    _write_image(image)
    truncated = tmp_path / "t.png"
    truncated.write_bytes(image.read_bytes()[:100])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00garbage" * 10)
    (tmp_path / "seed.pth").write_bytes(b"PK")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    paths = {
        "missing": str(tmp_path / "nope.png"),
        "weights": str(weights),
        "truncated": str(truncated),
        "image": str(image),
        "garbage": str(tmp_path / "garbage.safetensors"),
        "pth": str(tmp_path / "seed.pth"),
        "foreign": str(tmp_path / "foreign.safetensors"),
        "empty": str(tmp_path / "empty"),
    }
    out = tmp_path / "out"
    code = main([a.format(**paths) for a in args] + ["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("edgedepth: error:")
    assert not out.exists() or not any(out.rglob("*.png"))


def test_size_must_be_one_the_network_takes(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Which sizes a network takes is its card's rule: multiples of 32 for the CNNs (Depth Anything snaps to 14s)."""
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    assert main(["predict", str(image), "--weights", str(weights), "--size", "250x190", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "input size 250x190: fastdepth_v3's sides must be multiples of 32" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exc:  # not a size at all: a usage error at once
        main(["predict", str(image), "--weights", str(weights), "--size", "250by190"])
    assert exc.value.code == 2


def test_threads_apply_to_pytorch_too(weights: Path) -> None:
    from edgedepth.core.errors import EdgedepthError
    from edgedepth.runtime.predictor import load_predictor

    before = torch.get_num_threads()
    try:
        load_predictor(weights, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(EdgedepthError, match="--threads 0: the network needs at least one thread"):
        load_predictor(weights, threads=0)


def test_the_timing_loop_keeps_the_timed_runs_after_the_warm_up(weights: Path) -> None:
    """Each turn is an untimed run then a timed one; the warm-up turns are dropped; networks take turns."""
    from edgedepth.runtime.predictor import load_predictor
    from edgedepth.runtime.timing import LocalTimer, interleaved

    calls: list[str] = []
    timers = []
    for name in ("a", "b"):
        predictor = load_predictor(weights)
        predictor.infer = lambda batch, name=name: calls.append(name)  # type: ignore[method-assign, misc]
        timers.append(LocalTimer(predictor))
    turns: list[int] = []
    kept = interleaved(timers, runs=5, warmup=2, after_turn=turns.append)
    assert [len(times) for times in kept] == [5, 5] and all(ms >= 0.0 for times in kept for ms in times)
    assert calls == ["a", "a", "b", "b"] * 7 and turns == list(range(7))


def _write_bilevel_png(path: Path, width: int, height: int) -> None:
    """A blank 1-bit PNG of any size written by hand: 20000x20000 is a 48 KB file that decodes to 1.2 GB of RGB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress((b"\x00" * (1 + (width + 7) // 8)) * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_pixel_limit_is_exact_and_per_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from edgedepth.core.imageio import DEFAULT_MAX_IMAGE_PIXELS, ImageTooLargeError

    pillow_limit = Image.MAX_IMAGE_PIXELS
    bomb, warned = tmp_path / "bomb.png", tmp_path / "warned.png"
    _write_bilevel_png(bomb, 20000, 20000)  # above twice Pillow's limit: Pillow raises DecompressionBombError
    _write_bilevel_png(warned, 10000, 9000)  # between one and two times it: Pillow would only warn, and decode
    for path, size in ((bomb, "20000x20000"), (warned, "10000x9000")):
        with pytest.raises(ImageTooLargeError, match=f"{path.name}: {size} is .* above the pixel limit of 89,478,485"):
            read_rgb(path)
    assert DEFAULT_MAX_IMAGE_PIXELS == 89_478_485
    # The limit is the call's own, exact, and replaces Pillow's global for that call only.
    small = tmp_path / "small.png"
    _write_bilevel_png(small, 100, 100)
    with pytest.raises(ImageTooLargeError, match="--max-image-pixels"):
        read_rgb(small, max_pixels=9_999)
    assert read_rgb(small, max_pixels=10_000).shape == (100, 100, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow alone would refuse 10,000 pixels
    assert read_rgb(small, max_pixels=0).shape == (100, 100, 3)
    assert read_rgb(small, max_pixels=None).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1_000  # put back after each call
    monkeypatch.undo()
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_image_above_the_pixel_limit_is_skipped_in_a_folder_and_an_error_alone(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "photos"
    _write_image(src / "a.png", seed=1)
    _write_bilevel_png(src / "huge.png", 20000, 20000)
    out = tmp_path / "out"
    assert main(["predict", str(src), "--weights", str(weights), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert (out / "a.color.png").is_file() and not list(out.rglob("huge*"))
    assert "1 image(s)" in captured.out and "skipped 1" in captured.out
    assert "huge.png: 20000x20000" in captured.err and "above the pixel limit" in captured.err
    assert "Traceback" not in captured.err and "internal error" not in captured.err

    code = main(["predict", str(src / "huge.png"), "--weights", str(weights), "--out", str(tmp_path / "alone")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("edgedepth: error: ") and "huge.png" in err and "pixel limit" in err
    assert "--max-image-pixels N, 0 for no limit" in err
    assert not (tmp_path / "alone").exists() or not any((tmp_path / "alone").rglob("*.png"))

    # The flag moves the limit: 80x60 = 4800 pixels is refused under 4799 and read under 4800.
    single = ["predict", str(src / "a.png"), "--weights", str(weights), "--out", str(tmp_path / "flag")]
    assert main([*single, "--max-image-pixels", "4799"]) == 2
    assert "4,800 pixels, above the pixel limit of 4,799" in capsys.readouterr().err
    assert main([*single, "--max-image-pixels", "4800"]) == 0
    with pytest.raises(SystemExit):
        main([*single, "--max-image-pixels", "-1"])
    assert "0 for no limit" in capsys.readouterr().err


def test_summary_times_the_images_not_the_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Model loading and the runtime's first call (set-up) are reported apart from the per-image rate."""
    from types import SimpleNamespace

    from edgedepth.predict import images as predict

    clock = SimpleNamespace(now=100.0)

    class SlowStarter:
        size = (64, 32)
        calls = 0

        def __call__(self, image: np.ndarray) -> np.ndarray:
            clock.now += 1.0 if self.calls == 0 else 0.25  # the first call sets the runtime up
            self.calls += 1
            height, width = image.shape[:2]
            return np.linspace(0, 1, height * width, dtype=np.float32).reshape(height, width)

    def load(weights: Path, size: object, device: str, **options: object) -> SlowStarter:
        clock.now += 2.5
        return SlowStarter()

    monkeypatch.setattr(predict, "load_predictor", load)
    monkeypatch.setattr(predict, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    _write_image(tmp_path / "in" / "a.png", seed=1)
    _write_image(tmp_path / "in" / "b.png", seed=2)
    assert main(["predict", str(tmp_path / "in"), "--weights", "w.safetensors", "--out", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out
    assert "predicted 2 image(s) in 0.5 s (4.0 images/s; model loaded in 3.5 s)" in line, line
    summary = predict.run(predict.PredictConfig((str(tmp_path / "in" / "a.png"),), Path("w"), tmp_path / "out2"))
    assert (summary.processed, summary.seconds, summary.load_seconds) == (1, 0.25, 3.5)


def _exif_jpeg(path: Path, stored: np.ndarray, orientation: int) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=95, exif=exif.tobytes())


def test_exif_rotated_jpeg_is_read_as_displayed(tmp_path: Path, weights: Path) -> None:
    from edgedepth.core.imageio import decode_rgb

    rng = np.random.default_rng(9)
    upright = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (80, 60), interpolation=cv2.INTER_LINEAR)
    # Orientation 6: the viewer turns the stored pixels 90 degrees clockwise; 8: counter-clockwise.
    for orientation, stored in ((6, np.rot90(upright, 1)), (8, np.rot90(upright, -1))):
        path = tmp_path / f"exif{orientation}.jpg"
        _exif_jpeg(path, stored, orientation)
        for decoded in (read_rgb(path), decode_rgb(path.read_bytes(), path.name)):  # Pillow, and OpenCV for bytes
            assert decoded.shape == upright.shape
            assert np.abs(decoded.astype(int) - upright).mean() < 3  # JPEG's loss, not a turned picture (~60)
    plain = tmp_path / "upright.jpg"
    _exif_jpeg(plain, upright, 1)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "exif6.jpg"), "--weights", str(weights), "--out", str(out), "--npy"]) == 0
    assert main(["predict", str(plain), "--weights", str(weights), "--out", str(out), "--npy"]) == 0
    rotated, reference = np.load(out / "exif6.npy"), np.load(out / "upright.npy")
    assert rotated.shape == reference.shape == (60, 80)
    assert np.corrcoef(rotated.ravel(), reference.ravel())[0, 1] > 0.99


def _equivalents(folder: Path) -> dict[str, np.ndarray]:
    """Unusual but valid files beside the plain 8-bit RGB each should read as (all lossless)."""
    from PIL import Image

    rng = np.random.default_rng(10)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    gray_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "gray.png"), gray)
    cv2.imwrite(str(folder / "gray16.png"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "gray16.pgm"), gray.astype(np.uint16) * 257)  # Pillow opens it as mode I
    cv2.imwrite(str(folder / "gray16.tif"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "rgb16.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([rgb[:, :, ::-1], np.full(gray.shape, 255, np.uint8)]))
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.tif")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(folder / "palette.png")
    cv2.imwrite(str(folder / "one.png"), rgb[:1, :1, ::-1])
    # A dark 16-bit image (every sample below 256) is dark whatever its container: its high bytes are 0.
    cv2.imwrite(str(folder / "dark16.png"), gray.astype(np.uint16))
    cv2.imwrite(str(folder / "dark16.pgm"), gray.astype(np.uint16))
    palette = np.asarray(Image.open(folder / "palette.png").convert("RGB"))
    return {
        "gray.png": gray_rgb, "gray16.png": gray_rgb, "gray16.pgm": gray_rgb, "gray16.tif": gray_rgb,
        "rgb16.png": rgb, "rgba.png": rgb, "cmyk.tif": rgb, "palette.png": palette, "one.png": rgb[:1, :1],
        "dark16.png": np.zeros_like(gray_rgb), "dark16.pgm": np.zeros_like(gray_rgb),
    }


def test_unusual_images_read_as_their_8bit_rgb_equivalent(tmp_path: Path) -> None:
    for name, expected in _equivalents(tmp_path).items():
        got = read_rgb(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_unusual_images_predict_as_their_8bit_rgb_equivalent(tmp_path: Path, weights: Path) -> None:
    from edgedepth.predict.images import collect_inputs

    chosen = ("one.png", "gray16.pgm", "rgb16.png", "rgba.png", "cmyk.tif", "dark16.pgm")  # the end to end share
    expected = {name: rgb for name, rgb in _equivalents(tmp_path / "all").items() if name in chosen}
    (tmp_path / "odd").mkdir()
    for name in chosen:
        (tmp_path / "all" / name).rename(tmp_path / "odd" / name)
    (tmp_path / "plain").mkdir()
    for name, rgb in expected.items():  # each one's plain 8-bit RGB equivalent, as an ordinary PNG
        assert cv2.imwrite(str(tmp_path / "plain" / f"{name.replace('.', '_')}.png"), rgb[:, :, ::-1])
    for folder in ("odd", "plain"):
        out = tmp_path / f"{folder}_out"
        assert main(["predict", str(tmp_path / folder), "--weights", str(weights), "--out", str(out), "--npy"]) == 0
    stems = {file.name: stem for file, stem in collect_inputs([str(tmp_path / "odd")]).images}
    for name, rgb in expected.items():
        odd = np.load(tmp_path / "odd_out" / f"{stems[name]}.npy")
        assert odd.shape == rgb.shape[:2], name
        np.testing.assert_array_equal(odd, np.load(tmp_path / "plain_out" / f"{name.replace('.', '_')}.npy"),
                                      err_msg=name)
