"""``predict --metric`` / ``--pointcloud`` end to end, on synthetic scenes with exact depth and a known camera.

The network is replaced by one that returns the scene's exact relative inverse depth, ``(1 / depth - 0.1) / 2.5``,
so the fitted scale and shift must come out as 2.5 and 0.1, the metric depth as the truth, and the point cloud on
the scene's planes; everything else (reading, fitting, writing, the command line) is the real thing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from plyfile import PlyData

from edgedepth.cli import main
from edgedepth.data.synthetic import Box, Camera, Light, Material, Room, Scene, SceneDescription, render
from edgedepth.predict import images as predict
from edgedepth.robot.geometry import Intrinsics

SIZE = (160, 120)
GREY, WOOD = Material("plain", (0.5, 0.5, 0.5)), Material("wood", (0.6, 0.4, 0.2), (0.3, 0.2, 0.1))
SCALE, SHIFT = 2.5, 0.1
HEIGHT, PITCH, ROLL = 1.2, 15.0, 3.0
BOX_TOP = 0.5


def _camera(eye: tuple[float, float, float], pitch: float, roll: float = 0.0) -> Camera:
    look = (0.0, math.cos(math.radians(pitch)), -math.sin(math.radians(pitch)))
    return Camera.look_at(eye, np.add(eye, look), 60.0, SIZE, roll_deg=roll)


def _room_scene() -> tuple[Scene, Camera]:
    """A room with a tiled floor and a crate 0.5 m high, seen by a camera 1.2 m up, pitched 15 degrees, rolled 3."""
    room = Room((-3.0, -1.0, 0.0), (3.0, 7.0, 2.8), Material("tiles", (0.7, 0.7, 0.7), (0.3, 0.3, 0.3), 0.3),
                GREY, (GREY,) * 4)
    crate = Box((0.6, 2.5, BOX_TOP / 2), (0.3, 0.3, BOX_TOP / 2), WOOD)
    camera = _camera((0.0, 0.0, HEIGHT), PITCH, ROLL)
    light = Light((0.0, 2.0, 2.6), (1.0, 1.0, 1.0))
    return render(SceneDescription(room, (crate,), (light,), ambient=0.3), camera), camera


def _wall_scene() -> Scene:
    """A level camera 0.6 m from a wall: no floor in view."""
    room = Room((-3.0, -1.0, 0.0), (3.0, 0.6, 2.8), GREY, GREY, (GREY, GREY, GREY, WOOD))
    return render(SceneDescription(room, (), (Light((0.0, 0.0, 2.6), (1.0, 1.0, 1.0)),), ambient=0.5),
                  _camera((0.0, 0.0, 1.4), 0.0))


def _relative(scene: Scene) -> np.ndarray:
    return ((1.0 / scene.depth.astype(np.float64) - SHIFT) / SCALE).astype(np.float32)


class _ExactNetwork:
    """Stands in for a predictor: each image it knows (by its pixels) gets its scene's exact relative depth."""

    size = (64, 64)

    def __init__(self, scenes: list[Scene]) -> None:
        self.maps = {hashlib.sha1(scene.image.tobytes()).hexdigest(): _relative(scene) for scene in scenes}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.maps.get(hashlib.sha1(image.tobytes()).hexdigest(), np.ones(image.shape[:2], np.float32))


@pytest.fixture(scope="module")
def room() -> tuple[Scene, Camera]:
    return _room_scene()


@pytest.fixture
def exact(monkeypatch: pytest.MonkeyPatch, room: tuple[Scene, Camera]) -> list[Scene]:
    scenes = [room[0], _wall_scene()]
    monkeypatch.setattr(predict, "load_predictor", lambda *args, **kwargs: _ExactNetwork(scenes))
    return scenes


def _png(path: Path, scene: Scene) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    return path


def _k(camera: Camera) -> str:
    return str(camera.intrinsics)


def _predict(image: Path, out: Path, *flags: str) -> list[str]:
    return ["predict", str(image), "--weights", "stand-in.safetensors", "--out", str(out), *flags]


def _one_line(capfd: pytest.CaptureFixture[str], kind: str = "error") -> str:
    err = capfd.readouterr().err
    shown = (line.split("\r")[-1] for line in err.split("\n"))  # what a terminal shows; progress bars dropped
    lines = [line for line in shown if line.strip() and not re.search(r"\d+%\|", line)]
    assert len(lines) == 1 and lines[0].startswith(f"edgedepth: {kind}: ") and "Traceback" not in err, err
    return lines[0]


def _ground(camera: Camera, height: float = HEIGHT) -> list[str]:
    return ["--metric", "ground", "--camera-height", str(height), "--pitch", str(PITCH), "--roll", str(ROLL),
            "--intrinsics", _k(camera)]


def test_ground_fits_the_true_scale_and_the_cloud_lies_on_the_scene(
    tmp_path: Path, exact: list[Scene], room: tuple[Scene, Camera], capfd: pytest.CaptureFixture[str]
) -> None:
    scene, camera = room
    image = _png(tmp_path / "room.png", scene)
    assert main(_predict(image, tmp_path / "out", *_ground(camera), "--pointcloud")) == 0
    out = tmp_path / "out"
    record = json.loads((out / "room.metric.json").read_text())
    assert (record["source"], record["scale"], record["shift"]) == ("ground", pytest.approx(SCALE, rel=1e-6),
                                                                   pytest.approx(SHIFT, abs=1e-6))
    assert record["residual"] < 1e-4 and 0 < record["points"] < record["candidates"]
    metres = np.load(out / "room.metric.npy")
    near = scene.depth < 10.0
    assert metres.dtype == np.float32 and near.sum() > 0.9 * near.size
    np.testing.assert_allclose(metres[near], scene.depth[near], rtol=1e-5)
    assert (metres[~near] == 0).all()
    millimetres = cv2.imread(str(out / "room.metric.png"), cv2.IMREAD_UNCHANGED)
    assert millimetres.dtype == np.uint16
    np.testing.assert_array_equal(millimetres, np.round(metres * 1000).astype(np.uint16))

    # A reader we did not write, then the world frame: the floor's points at z = 0, the crate's top at 0.5 m.
    vertex = PlyData.read(str(out / "room.ply"))["vertex"]
    assert vertex.count == np.count_nonzero(metres)
    cam = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float64)
    world = cam @ camera.rotation.T + camera.position
    rows, cols = np.nonzero(metres)
    colours = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    np.testing.assert_array_equal(colours, scene.image[rows, cols])
    # Which pixels show the floor and the crate's top, from the exact depth (K^-1 (u, v, 1) * depth, here by hand).
    u, v = cols.astype(np.float64), rows.astype(np.float64)
    k = camera.intrinsics
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=1)
    truth = (rays * scene.depth[rows, cols, None]) @ camera.rotation.T + camera.position
    floor = np.abs(truth[:, 2]) < 1e-4
    top = (np.abs(truth[:, 2] - BOX_TOP) < 1e-4) & (np.abs(truth[:, 0] - 0.6) < 0.3) & (np.abs(truth[:, 1] - 2.5) < 0.3)
    assert floor.sum() > 3000 and top.sum() > 50
    assert np.abs(world[floor, 2]).max() < 0.01
    assert np.abs(world[top, 2] - BOX_TOP).max() < 0.01
    printed = capfd.readouterr()
    assert "predicted 1 image(s)" in printed.out and not printed.err.strip(), printed


def test_known_points_by_depth_or_by_distance(tmp_path: Path, exact: list[Scene], room: tuple[Scene, Camera]) -> None:
    scene, camera = room
    image = _png(tmp_path / "room.png", scene)
    pixels = [(20, 110), (80, 60), (150, 40)]
    points = [{"x": x, "y": y, "depth": float(scene.depth[y, x])} for x, y in pixels]
    (tmp_path / "points.json").write_text(json.dumps(points))
    assert main(_predict(image, tmp_path / "a", "--metric", str(tmp_path / "points.json"))) == 0
    record = json.loads((tmp_path / "a" / "room.metric.json").read_text())
    assert (record["scale"], record["shift"], record["points"]) == (pytest.approx(SCALE, rel=1e-5),
                                                                   pytest.approx(SHIFT, abs=1e-5), 3)
    # Distances along each pixel's ray (what a tape measure gives) are converted with the intrinsics.
    k = camera.intrinsics
    rays = [math.hypot((x - k.cx) / k.fx, (y - k.cy) / k.fy, 1.0) for x, y in pixels]
    by_distance = {"points": [{"x": p["x"], "y": p["y"], "distance": p["depth"] * r} for p, r in zip(points, rays)]}
    (tmp_path / "distances.json").write_text(json.dumps(by_distance))
    assert main(_predict(image, tmp_path / "b", "--metric", str(tmp_path / "distances.json"), "--fov", "60")) == 0
    record = json.loads((tmp_path / "b" / "room.metric.json").read_text())
    assert (record["scale"], record["shift"]) == (pytest.approx(SCALE, rel=1e-5), pytest.approx(SHIFT, abs=1e-5))


def test_points_at_one_depth_warn_and_fit_a_scale_alone(
    tmp_path: Path, exact: list[Scene], room: tuple[Scene, Camera], capfd: pytest.CaptureFixture[str]
) -> None:
    scene, _ = room
    image = _png(tmp_path / "room.png", scene)
    flat = [{"x": 10, "y": 100, "depth": 2.0}, {"x": 90, "y": 50, "depth": 2.0}]
    (tmp_path / "flat.json").write_text(json.dumps(flat))
    assert main(_predict(image, tmp_path / "out", "--metric", str(tmp_path / "flat.json"))) == 0
    line = _one_line(capfd, "warning")
    assert "all 2 points are at one distance (2 m)" in line and "only a scale is fitted" in line
    record = json.loads((tmp_path / "out" / "room.metric.json").read_text())
    assert record["shift"] == 0.0 and record["scale"] > 0


def test_a_sparse_map_with_wrong_returns_is_fitted_robustly(
    tmp_path: Path, exact: list[Scene], room: tuple[Scene, Camera]
) -> None:
    scene, _ = room
    image = _png(tmp_path / "room.png", scene)
    rng = np.random.default_rng(0)
    sparse = np.where(rng.random(scene.depth.shape) < 0.05, scene.depth, 0.0)  # 5 % of the pixels: a LiDAR scan
    scanned = np.flatnonzero(sparse)
    wrong = rng.choice(scanned, scanned.size // 10, replace=False)
    sparse.flat[wrong] *= rng.uniform(0.3, 0.7, wrong.size)  # a tenth of the returns come back too near
    np.save(tmp_path / "lidar.npy", sparse)
    assert main(_predict(image, tmp_path / "a", "--metric", str(tmp_path / "lidar.npy"))) == 0
    record = json.loads((tmp_path / "a" / "room.metric.json").read_text())
    assert (record["scale"], record["shift"]) == (pytest.approx(SCALE, rel=1e-4), pytest.approx(SHIFT, abs=1e-4))
    assert record["points"] <= scanned.size - wrong.size and record["candidates"] == scanned.size
    # The same scan as a 16-bit PNG in millimetres (a depth sensor's format): the millimetre rounding is all it loses.
    millimetres = np.where(sparse.flat[:].reshape(sparse.shape) < 65.535, np.round(sparse * 1000), 0)
    cv2.imwrite(str(tmp_path / "lidar.png"), millimetres.astype(np.uint16))
    assert main(_predict(image, tmp_path / "b", "--metric", str(tmp_path / "lidar.png"))) == 0
    record = json.loads((tmp_path / "b" / "room.metric.json").read_text())
    assert (record["scale"], record["shift"]) == (pytest.approx(SCALE, rel=2e-3), pytest.approx(SHIFT, abs=2e-3))


def _bad(tmp_path: Path, capfd: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    before = {p for p in tmp_path.rglob("*")}
    assert main(argv) == 2
    line = _one_line(capfd)
    assert says in line, line
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written, no temporary left


def test_degenerate_references_are_one_line_errors(
    tmp_path: Path, exact: list[Scene], room: tuple[Scene, Camera], capfd: pytest.CaptureFixture[str]
) -> None:
    scene, camera = room
    image = _png(tmp_path / "room.png", scene)
    wall = _png(tmp_path / "wall.png", exact[1])
    out = tmp_path / "out"
    (tmp_path / "one.json").write_text(json.dumps([{"x": 10, "y": 100, "depth": 2.0}]))
    outside = [{"x": 10, "y": 100, "depth": 2.0}, {"x": 200, "y": 5, "depth": 3}]
    (tmp_path / "outside.json").write_text(json.dumps(outside))
    (tmp_path / "broken.json").write_text('[{"x": 10, "y": 100, "depth": 2.0},')
    (tmp_path / "nodepth.json").write_text(json.dumps([{"x": 10, "y": 100}, {"x": 20, "y": 30, "depth": 1}]))
    np.save(tmp_path / "small.npy", np.random.default_rng(0).uniform(1.0, 5.0, (60, 80)))
    cv2.imwrite(str(tmp_path / "eight.png"), np.full((120, 160), 9, np.uint8))
    half = Intrinsics(camera.intrinsics.fx * 2, camera.intrinsics.fy * 2, 159.5, 119.5)  # the 320x240 camera's
    cases = [
        (["--metric", str(tmp_path / "one.json")], "one.json: 1 point(s); a scale and a shift need at least 2"),
        (["--metric", str(tmp_path / "outside.json")], "point 1 (200, 5) lies outside the 160x120 image"),
        (["--metric", str(tmp_path / "broken.json")], "broken.json: not a readable JSON points file"),
        (["--metric", str(tmp_path / "nodepth.json")], "nodepth.json: point 0: give numbers x (column), y (row)"),
        (["--metric", str(tmp_path / "none.json")], "none.json: no such file (--metric)"),
        (["--metric", str(tmp_path / "small.npy")], "small.npy: a 80x60 sparse map for the 160x120 image"),
        (["--metric", str(tmp_path / "eight.png")], "a sparse depth PNG is one 16-bit channel of millimetres"),
        (["--metric", "lidar.txt"], "--metric lidar.txt: give points.json, a sparse depth map"),
        ([*_ground(camera)[:-2], "--intrinsics", str(half)],
         f"{image}: intrinsics {half} do not match its 160x120 pixels"),
        ([*_ground(camera), "--pitch", "-60"], "no metric scale: the floor would be out of view"),
    ]
    for flags, says in cases:
        _bad(tmp_path, capfd, _predict(image, out, *flags), says)
    _bad(tmp_path, capfd, _predict(wall, out, *_ground(camera, 1.4)), f"{wall}: no metric scale: no ")


def test_a_frame_without_a_floor_is_skipped_in_a_folder(
    tmp_path: Path, exact: list[Scene], room: tuple[Scene, Camera], capfd: pytest.CaptureFixture[str]
) -> None:
    scene, camera = room
    _png(tmp_path / "frames" / "room.png", scene)
    wall = _png(tmp_path / "frames" / "wall.png", exact[1])
    assert main(_predict(tmp_path / "frames", tmp_path / "out", *_ground(camera))) == 0
    line = _one_line(capfd, "warning")
    assert line.startswith(f"edgedepth: warning: {wall}: no metric scale: ") and line.endswith("; skipped"), line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "room.color.png", "room.depth.png", "room.metric.json", "room.metric.npy", "room.metric.png"]


def test_missing_flags_are_named_before_anything_loads(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    image = str(tmp_path / "any.png")  # never read: the flags are checked first
    cases = [
        (["--pointcloud"], "--pointcloud needs metric depth: add --metric"),
        (["--pointcloud", "--metric", "x.json"], "--pointcloud needs the camera: add --intrinsics fx,fy,cx,cy"),
        (["--metric", "ground", "--fov", "60"], "--metric ground needs --camera-height H"),
        (["--metric", "ground", "--camera-height", "1"], "--metric ground needs the camera"),
        (["--metric", "ground", "--camera-height", "-1", "--fov", "60"], "--camera-height -1: give a positive"),
        (["--camera-height", "1"], "describe the floor for --metric ground: add it"),
        (["--metric", "x.json", "--fov", "60", "--intrinsics", "1,1,1,1"], "give the camera once"),
        (["--metric", "x.json", "--max-depth", "0"], "--max-depth 0: give a positive number of metres"),
        (["--metric", "x.json", "--intrinsics", "1,2,3"], "--intrinsics '1,2,3': give four numbers"),
        (["--video", "clip.mp4", "--metric", "x.json"], "--metric and --pointcloud write files per frame"),
    ]
    for flags, says in cases:
        argv = ["predict", *([] if "--video" in flags else [image]), "--weights", "w.safetensors", *flags]
        _bad(tmp_path, capfd, argv, says)
