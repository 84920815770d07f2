"""ROS 2 bags in and out: ``edgedepth predict run.mcap --topic ...`` on bags the tests write with rosbags from a
synthetic camera moving through a room (images, camera info, and the exact depth as a depth topic), read back
with rosbags and checked against the scene's truth."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgedepth.cli import main
from edgedepth.core.card import ModelCard
from edgedepth.data.synthetic.rendering import render
from edgedepth.data.synthetic.sequence import sequence_cameras
from edgedepth.predict import bags as bag_job
from edgedepth.robot import rosmsgs
from edgedepth.robot.bags import BagReader, BagWriter
from edgedepth.robot.geometry import Intrinsics, backproject
from edgedepth.robot.stabilize import Stabilizer
from edgedepth.runtime.predictor import Predictor, load_predictor

SIZE = (160, 120)
FRAMES = 8
START_NS = 1_700_000_000_000_000_000  # a real-looking stamp (2023), well past 32-bit seconds' trouble
PERIOD_NS = 33_333_333


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # RGB uint8
    depth: np.ndarray  # metres
    stamp: int
    intrinsics: Intrinsics


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    description, cameras = sequence_cameras(3, FRAMES, SIZE)
    rendered = []
    for k, camera in enumerate(cameras):
        scene = render(description, camera)
        k_ = camera.intrinsics
        rendered.append(Frame(scene.image, scene.depth.astype(np.float64), START_NS + k * PERIOD_NS,
                              Intrinsics(k_.fx, k_.fy, k_.cx, k_.cy)))
    return rendered


@pytest.fixture(scope="module")
def ground(frames: list[Frame]) -> dict[str, Any]:
    description, cameras = sequence_cameras(3, FRAMES, SIZE)
    return cameras[0].metadata(description.room.low[2])


def _image_message(frame: Frame, encoding: str) -> Any:
    header = rosmsgs.header(frame.stamp, "camera_optical")
    if encoding in ("jpeg", "png"):
        ok, data = cv2.imencode(f".{'jpg' if encoding == 'jpeg' else 'png'}",
                                cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        assert ok
        return rosmsgs.TYPESTORE.types[rosmsgs.COMPRESSED_IMAGE](header=header, format=encoding, data=data.reshape(-1))
    pixels = {"rgb8": frame.image, "bgr8": frame.image[..., ::-1]}[encoding]
    return rosmsgs.TYPESTORE.types[rosmsgs.IMAGE](
        header=header, height=SIZE[1], width=SIZE[0], encoding=encoding, is_bigendian=0, step=SIZE[0] * 3,
        data=np.ascontiguousarray(pixels).reshape(-1))


def write_bag(
    path: Path, frames: Sequence[Frame], encoding: str = "rgb8", camera_info: bool = True,
    depth: str | None = "16UC1", depth_offset_ns: int = 2_000_000, every: int = 7,
) -> Path:
    """A bag like a robot's: images on /camera/image_raw (or .../compressed), camera info, and a sparse depth topic
    (every ``every``-th pixel of the exact depth, as a projected LiDAR) stamped ``depth_offset_ns`` after each
    image and logged after it."""
    writer = BagWriter(path)
    image_topic = "/camera/image_raw" + ("/compressed" if encoding in ("jpeg", "png") else "")
    for frame in frames:
        message = _image_message(frame, encoding)
        writer.write(image_topic, type(message).__msgtype__, frame.stamp, message)
        header = rosmsgs.header(frame.stamp, "camera_optical")
        if camera_info:
            writer.write("/camera/camera_info", rosmsgs.CAMERA_INFO, frame.stamp,
                         rosmsgs.camera_info(header, SIZE, frame.intrinsics))
        if depth is not None:
            sparse = np.zeros_like(frame.depth)
            sparse[::every, ::every] = frame.depth[::every, ::every]
            depth_header = rosmsgs.header(frame.stamp + depth_offset_ns, "camera_optical")
            message = (rosmsgs.millimetre_image(sparse, depth_header) if depth == "16UC1"
                       else rosmsgs.float_image(np.where(sparse > 0, sparse, np.nan), depth_header))
            writer.write("/lidar/depth", rosmsgs.IMAGE, frame.stamp + depth_offset_ns + 1_000_000, message)
    writer.close()
    return path


class OraclePredictor(Predictor):
    """A network whose relative depth is exact: each image's true inverse depth, scaled and shifted (a relative
    prediction), looked up by the image's pixels."""

    runtime = "oracle"

    def __init__(self, frames: Sequence[Frame], decode: str = "rgb8") -> None:
        super().__init__(ModelCard(name="oracle", input_size=SIZE))
        self.truth = {self._key(f.image): 0.4 * (1.0 / f.depth) + 0.05 for f in frames}

    @staticmethod
    def _key(image: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[int, int], None]:
        return self.truth[self._key(images[0])][None, None].astype(np.float32), SIZE, None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return batch


@pytest.fixture()
def oracle(frames: list[Frame], monkeypatch: pytest.MonkeyPatch) -> OraclePredictor:
    predictor = OraclePredictor(frames)
    monkeypatch.setattr(bag_job, "load_predictor", lambda *args, **kwargs: predictor)
    return predictor


def read_back(path: Path) -> dict[str, list[tuple[int, Any]]]:
    """Every message of a bag by topic: (log time, message)."""
    with BagReader(path) as reader:
        messages: dict[str, list[tuple[int, Any]]] = {topic: [] for topic in reader.topics}
        for record in reader.records(list(reader.topics)):
            messages[record.topic].append((record.log_ns, record.message()))
        assert reader.cut is None
    return messages


def _array(message: Any) -> np.ndarray:
    dtype = {"32FC1": "<f4", "16UC1": "<u2"}[message.encoding]
    return np.asarray(message.data, np.uint8).view(dtype).reshape(message.height, message.width)


# ---------------------------------------------------------------------------------------------------------------
# Bag in, bag out


@pytest.mark.parametrize("suffix", [".mcap", ".db3", ""])
def test_each_image_becomes_a_depth_message_with_its_stamp_and_camera(
    suffix: str, frames: list[Frame], weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = write_bag(tmp_path / f"run{suffix or '.mcap'}", frames)
    out = tmp_path / f"depth{suffix}"
    assert main(["predict", str(source), "--topic", "/camera/image_raw", "--weights", str(weights),
                 "--out", str(out)]) == 0
    assert f"bag: {FRAMES} frame(s)" in capsys.readouterr().out
    assert out.is_file() == bool(suffix) and (out / "metadata.yaml").is_file() != bool(suffix)
    written, given = read_back(out), read_back(source)
    assert set(written) == {"/camera/depth/relative_inverse", "/camera/depth/camera_info"}
    depth, infos = written["/camera/depth/relative_inverse"], written["/camera/depth/camera_info"]
    assert len(depth) == len(infos) == FRAMES
    predictor = load_predictor(weights, keep_aspect=True)
    for frame, (log_ns, message), (_, info), (_, original) in zip(
            frames, depth, infos, given["/camera/camera_info"], strict=True):
        assert log_ns == frame.stamp and rosmsgs.stamp_ns(message) == frame.stamp
        assert message.header.frame_id == "camera_optical" and message.encoding == "32FC1"
        np.testing.assert_allclose(_array(message), predictor(frame.image), rtol=0, atol=1e-5)
        assert rosmsgs.stamp_ns(info) == frame.stamp  # the colour camera's info, passed through
        assert (info.width, info.height, info.distortion_model) == (SIZE[0], SIZE[1], original.distortion_model)
        np.testing.assert_array_equal(info.k, original.k)
        np.testing.assert_array_equal(info.p, original.p)


@pytest.mark.parametrize("millimetres", [False, True])
def test_metric_depth_from_a_depth_topic_is_the_truth_with_an_exact_model(
    millimetres: bool, frames: list[Frame], oracle: OraclePredictor, tmp_path: Path
) -> None:
    """A model whose relative depth is exact, fitted per frame to a sparse LiDAR-like topic stamped 2 ms after each
    image: metric depth equal to the scene's (to the millimetre the topic carries), NaN / 0 beyond --max-depth."""
    source = write_bag(tmp_path / "run.mcap", frames)
    out = tmp_path / "depth.mcap"
    flags = ["--depth-mm"] if millimetres else []
    assert main(["predict", str(source), "--weights", "unused.onnx", "--metric", "/lidar/depth", "--out", str(out),
                 *flags]) == 0
    metric = read_back(out)["/camera/depth/image"]
    assert len(metric) == FRAMES
    for frame, (_, message) in zip(frames, metric, strict=True):
        assert rosmsgs.stamp_ns(message) == frame.stamp
        values = _array(message).astype(np.float64)
        near, far = frame.depth < 9.5, frame.depth > 10.5  # about 10 m: either side, by the fit's last digits
        if millimetres:
            assert message.encoding == "16UC1"
            np.testing.assert_allclose(values[near] / 1000.0, frame.depth[near], rtol=1e-3, atol=1e-3)
            assert (values[far] == 0).all()
        else:
            assert message.encoding == "32FC1"
            np.testing.assert_allclose(values[near], frame.depth[near], rtol=1e-3)  # the topic's millimetres
            assert np.isnan(values[far]).all()


def test_the_point_cloud_is_the_depth_backprojected_with_the_bags_camera(
    frames: list[Frame], oracle: OraclePredictor, tmp_path: Path
) -> None:
    source = write_bag(tmp_path / "run.mcap", frames)
    out = tmp_path / "depth.mcap"
    assert main(["predict", str(source), "--weights", "w.onnx", "--metric", "/lidar/depth", "--pointcloud",
                 "--out", str(out)]) == 0
    clouds = read_back(out)["/camera/depth/points"]
    assert len(clouds) == FRAMES
    frame, (_, cloud) = frames[2], clouds[2]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.is_dense) == (SIZE[1], SIZE[0], 16, False)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1)]
    points = np.asarray(cloud.data, np.uint8).view(
        np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])).reshape(SIZE[1], SIZE[0])
    near, far = frame.depth < 9.5, frame.depth > 10.5
    truth = backproject(frame.depth, frame.intrinsics)
    for axis, name in enumerate("xyz"):
        np.testing.assert_allclose(points[name][near], truth[..., axis][near], rtol=3e-3, atol=2e-3)
        assert np.isnan(points[name][far]).all()
    colour = frame.image.astype(np.uint32)
    np.testing.assert_array_equal(points["rgb"], (colour[..., 0] << 16) | (colour[..., 1] << 8) | colour[..., 2])


def test_ground_metric_uses_the_bags_camera_info(
    frames: list[Frame], ground: dict[str, Any], oracle: OraclePredictor, tmp_path: Path
) -> None:
    """``--metric ground`` needs no --intrinsics when the bag has the camera: the floor gives the scale."""
    source = write_bag(tmp_path / "run.mcap", frames, depth=None)
    out = tmp_path / "depth.mcap"
    assert main(["predict", str(source), "--weights", "w.onnx", "--metric", "ground", "--camera-height",
                 str(ground["camera_height"]), "--pitch", str(ground["pitch_deg"]), "--out", str(out)]) == 0
    for frame, (_, message) in zip(frames, read_back(out)["/camera/depth/image"], strict=True):
        values, near = _array(message).astype(np.float64), frame.depth < 9.5
        assert np.median(np.abs(values[near] / frame.depth[near] - 1.0)) < 0.01


@pytest.mark.parametrize("encoding", ["bgr8", "jpeg", "png"])
def test_other_encodings_and_compressed_images_predict_alike(
    encoding: str, frames: list[Frame], weights: Path, tmp_path: Path
) -> None:
    reference = read_back_relative(write_bag(tmp_path / "rgb.mcap", frames[:3], depth=None), weights, tmp_path / "a")
    other = read_back_relative(write_bag(tmp_path / f"{encoding}.mcap", frames[:3], encoding=encoding, depth=None),
                               weights, tmp_path / "b")
    for a, b in zip(reference, other, strict=True):
        if encoding == "jpeg":  # lossy: the same map, not the same numbers
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
        else:
            assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def read_back_relative(source: Path, weights: Path, out: Path) -> list[np.ndarray]:
    assert main(["predict", str(source), "--weights", str(weights), "--out", str(out.with_suffix(".mcap"))]) == 0
    return [_array(m) for _, m in read_back(out.with_suffix(".mcap"))["/camera/depth/relative_inverse"]]


def test_stabilize_runs_over_the_bags_frames_in_order(frames: list[Frame], weights: Path, tmp_path: Path) -> None:
    source = write_bag(tmp_path / "run.mcap", frames, depth=None)
    out = tmp_path / "depth.mcap"
    assert main(["predict", str(source), "--weights", str(weights), "--stabilize", "--out", str(out)]) == 0
    predictor, stabilizer = load_predictor(weights, keep_aspect=True), Stabilizer()
    from edgedepth.core.processing import upsample_prediction

    for frame, (_, message) in zip(frames, read_back(out)["/camera/depth/relative_inverse"], strict=True):
        low = stabilizer(predictor.network_output([frame.image])[0, 0])
        expected = upsample_prediction(low[None, None], SIZE)[0, 0]
        np.testing.assert_allclose(_array(message), expected, rtol=0, atol=1e-5)


def test_a_frame_without_depth_in_tolerance_keeps_its_message_and_is_counted(
    frames: list[Frame], oracle: OraclePredictor, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Each depth is stamped 15 ms after its image, 18.3 ms before the next one.
    source = write_bag(tmp_path / "run.mcap", frames, depth_offset_ns=15_000_000)
    out = tmp_path / "depth.mcap"
    assert main(["predict", str(source), "--weights", "w.onnx", "--metric", "/lidar/depth", "--sync-tolerance",
                 "0.01", "--out", str(out)]) == 0
    assert f"; {FRAMES} frame(s) without metric depth" in capsys.readouterr().out
    metric = read_back(out)["/camera/depth/image"]
    assert len(metric) == FRAMES and all(np.isnan(_array(m)).all() for _, m in metric)
    # Within 20 ms, two depths are in reach of most images: each takes the nearer, its own.
    assert main(["predict", str(source), "--weights", "w.onnx", "--metric", "/lidar/depth", "--sync-tolerance",
                 "0.02", "--out", str(out)]) == 0
    for frame, (_, message) in zip(frames, read_back(out)["/camera/depth/image"], strict=True):
        values, near = _array(message), frame.depth < 9.5
        np.testing.assert_allclose(values[near], frame.depth[near], rtol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Image messages


def test_image_encodings_decode_to_the_same_rgb(frames: list[Frame]) -> None:
    image = frames[0].image
    height, width = image.shape[:2]
    image_type = rosmsgs.TYPESTORE.types[rosmsgs.IMAGE]
    header = rosmsgs.header(0, "c")

    def message(encoding: str, pixels: np.ndarray, step: int, bigendian: int = 0) -> Any:
        return image_type(header=header, height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                          step=step, data=np.ascontiguousarray(pixels).view(np.uint8).reshape(-1))

    padded = np.zeros((height, width * 3 + 16), np.uint8)  # rows padded to a wider step
    padded[:, : width * 3] = image.reshape(height, -1)
    assert (rosmsgs.decode_image(message("rgb8", padded, width * 3 + 16), "x", None) == image).all()
    bgra = np.concatenate([image[..., ::-1], np.full((height, width, 1), 255, np.uint8)], axis=-1)
    assert (rosmsgs.decode_image(message("bgra8", bgra, width * 4), "x", None) == image).all()
    gray = image[..., 1]
    wide = (gray.astype(np.uint16) << 8) | 0x7F  # 16-bit: its high byte is the 8-bit image
    for bigendian, dtype in ((0, "<u2"), (1, ">u2")):
        decoded = rosmsgs.decode_image(message("mono16", wide.astype(dtype), width * 2, bigendian), "x", None)
        assert (decoded == gray[..., None]).all()
    mosaic = np.empty((height, width), np.uint8)  # an RGGB sensor: demosaiced close to the scene
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = image[0::2, 0::2, 0], image[0::2, 1::2, 1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = image[1::2, 0::2, 1], image[1::2, 1::2, 2]
    demosaiced = rosmsgs.decode_image(message("bayer_rggb8", mosaic, width), "x", None).astype(float)
    swapped = rosmsgs.decode_image(message("bayer_bggr8", mosaic, width), "x", None).astype(float)
    assert np.abs(demosaiced - image).mean() < 0.5 * np.abs(swapped - image).mean()


def test_the_namespace_of_an_image_topic() -> None:
    assert rosmsgs.image_namespace("/camera/image_raw") == "/camera"
    assert rosmsgs.image_namespace("/camera/color/image_raw/compressed") == "/camera/color"
    assert rosmsgs.image_namespace("/image") == ""


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, and every frame done before the fault kept


def _error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert err.startswith("edgedepth: error: ") and err.count("\n") == 1, err
    return err


def test_a_topic_that_is_not_there_lists_the_image_topics(
    frames: list[Frame], weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = write_bag(tmp_path / "run.mcap", frames[:2])
    assert main(["predict", str(source), "--topic", "/camera/rgb", "--weights", str(weights)]) == 2
    assert "no topic /camera/rgb; its image topics: /camera/image_raw (Image, 2), /lidar/depth (Image, 2)" in _error(capsys)
    assert main(["predict", str(source), "--topic", "/camera/camera_info", "--weights", str(weights)]) == 2
    assert "carries sensor_msgs/msg/CameraInfo, not images" in _error(capsys)
    assert main(["predict", str(source), "--weights", str(weights)]) == 2  # two image topics: which?
    assert "say which image topic to read with --topic; it has 2" in _error(capsys)
    assert main(["predict", str(source), "--weights", str(weights), "--metric", "/nope"]) == 2
    assert "--metric /nope: a depth topic is a sensor_msgs/msg/Image" in _error(capsys)


def test_an_unknown_encoding_mid_bag_keeps_the_frames_before_it(
    frames: list[Frame], weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "run.mcap"
    writer = BagWriter(source)
    for k, frame in enumerate(frames[:5]):
        message = _image_message(frame, "rgb8")
        if k == 3:
            message.encoding = "yuv420_nv12"
        writer.write("/camera/image_raw", rosmsgs.IMAGE, frame.stamp, message)
    writer.close()
    out = tmp_path / "depth.mcap"
    assert main(["predict", str(source), "--weights", str(weights), "--out", str(out)]) == 2
    err = _error(capsys)
    assert "image encoding 'yuv420_nv12' is not read" in err and f"wrote the 3 frame(s) before it to {out}" in err
    assert len(read_back(out)["/camera/depth/relative_inverse"]) == 3


def test_a_recording_cut_short_keeps_the_frames_before_the_cut(
    frames: list[Frame], weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Power lost while recording: an MCAP without its footer (cut inside its third chunk), and a bag folder whose
    metadata.yaml was never written."""
    big = [Frame(cv2.resize(f.image, (640, 480)), cv2.resize(f.depth, (640, 480)), f.stamp, f.intrinsics)
           for f in frames]  # 640x480 frames: about one per 1 MiB chunk, as a recorder writes them
    whole = write_bag(tmp_path / "whole.mcap", big, camera_info=False, depth=None)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "depth.mcap"
    assert main(["predict", str(cut), "--weights", str(weights), "--out", str(out)]) == 2
    err = _error(capsys)
    assert "cut.mcap: it ends early" in err and "wrote the" in err
    kept = read_back(out)["/camera/depth/relative_inverse"]
    assert 1 <= len(kept) < FRAMES
    assert [rosmsgs.stamp_ns(m) for _, m in kept] == [f.stamp for f in frames[: len(kept)]]

    folder = tmp_path / "unclosed"
    folder.mkdir()
    (folder / "unclosed_0.mcap").write_bytes(data)  # the data whole, the metadata never written
    assert main(["predict", str(folder), "--weights", str(weights), "--out", str(tmp_path / "d2.mcap")]) == 2
    assert "no metadata.yaml (the recording was not closed)" in _error(capsys)
    assert len(read_back(tmp_path / "d2.mcap")["/camera/depth/relative_inverse"]) == FRAMES


@pytest.mark.parametrize("case", ["garbage", "empty", "version", "no bag"])
def test_an_unreadable_bag_is_one_line(case: str, weights: Path, tmp_path: Path, frames: list[Frame],
                                       capsys: pytest.CaptureFixture) -> None:
    if case == "garbage":
        source = tmp_path / "run.mcap"
        source.write_bytes(b"not an mcap file at all" * 10)
        expected = "not a readable ROS 2 bag"
    elif case == "empty":
        source = tmp_path / "run.db3"
        source.write_bytes(b"")
        expected = "not a readable ROS 2 bag"
    elif case == "version":  # a bag of a newer storage version than rosbags reads
        source = write_bag(tmp_path / "run", frames[:2])
        metadata = source / "metadata.yaml"
        metadata.write_text(metadata.read_text().replace("version: 8", "version: 99"))
        expected = "not a readable ROS 2 bag (Rosbag2 version 99 not supported"
    else:
        source = tmp_path / "empty"
        (source / "x").mkdir(parents=True)
        (source / "metadata.yaml").write_text("not: [a bag")
        expected = "not a readable ROS 2 bag"
    assert main(["predict", str(source), "--weights", str(weights), "--out", str(tmp_path / "o.mcap")]) == 2
    assert expected in _error(capsys)
    assert not (tmp_path / "o.mcap").exists()


def test_bag_flags_without_a_bag_are_refused(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    assert main(["predict", str(photo), "--weights", str(weights), "--topic", "/camera/image_raw"]) == 2
    assert "--topic is for ROS 2 bags" in _error(capsys)


def test_a_killed_run_leaves_no_bag_and_an_older_one_whole(
    frames: list[Frame], weights: Path, tmp_path: Path
) -> None:
    """kill -9 in the middle: nothing under the output's name (a bag there before stays as it was)."""
    big = [Frame(cv2.resize(f.image, (640, 480)), cv2.resize(f.depth, (640, 480)), f.stamp, f.intrinsics)
           for f in frames]
    source = write_bag(tmp_path / "run.mcap", big * 12, camera_info=False, depth=None)
    out = tmp_path / "depth.mcap"
    out.write_bytes(b"an older bag")
    process = subprocess.Popen([sys.executable, "-m", "edgedepth.cli", "predict", str(source), "--weights",
                                str(weights), "--out", str(out), "--threads", "1"], stderr=subprocess.PIPE, text=True)
    partial = tmp_path / ".depth.mcap.partial"
    deadline = time.monotonic() + 120
    while not partial.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert process.poll() is None, process.communicate()[1]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert out.read_bytes() == b"an older bag"
    # The next run clears what the killed one left and writes the whole bag.
    assert main(["predict", str(source), "--weights", str(weights), "--out", str(out)]) == 0
    assert not partial.exists() and len(read_back(out)["/camera/depth/relative_inverse"]) == FRAMES * 12


def test_the_run_summary_lists_what_was_written(frames: list[Frame], oracle: OraclePredictor, tmp_path: Path) -> None:
    source = write_bag(tmp_path / "run.mcap", frames)
    summary = bag_job.run(bag_job.BagConfig(source=source, weights=Path("w.onnx"), topic="/camera/image_raw",
                                            out=tmp_path / "d.mcap"))
    assert summary.frames == FRAMES and summary.out == tmp_path / "d.mcap"
    assert summary.topics == {"/camera/depth/relative_inverse": FRAMES, "/camera/depth/camera_info": FRAMES}
