"""Camera geometry against hand-computed values and against the synthetic renderer; PLY read back by plyfile."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData

from edgedepth.core.errors import EdgedepthError
from edgedepth.data.synthetic import Camera, Material, Room, SceneDescription, render
from edgedepth.robot.geometry import (
    Intrinsics,
    backproject,
    check_intrinsics,
    floor_inverse_depth,
    gravity_direction,
    parse_intrinsics,
    write_ply,
)

K = Intrinsics(fx=100.0, fy=120.0, cx=31.5, cy=23.5)
SIZE = (64, 48)
GREY = Material("plain", (0.5, 0.5, 0.5))


def test_a_level_camera_sees_the_floor_linear_in_the_row() -> None:
    floor = floor_inverse_depth(K, SIZE, camera_height=1.5)
    rows = np.arange(48, dtype=np.float64)
    expected = (rows - 23.5) / (120.0 * 1.5)  # (v - cy) / (fy * H), the same in every column
    np.testing.assert_allclose(floor, np.repeat(expected[:, None], 64, axis=1), atol=1e-15)


def test_looking_straight_down_sees_the_floor_at_the_height_everywhere() -> None:
    np.testing.assert_allclose(floor_inverse_depth(K, SIZE, 0.8, pitch_deg=90.0), 1 / 0.8, rtol=1e-12)


def test_pitch_and_roll_hand_computed() -> None:
    # n = (sin r cos p, cos r cos p, sin p); 1 / z = n . ((u - cx) / fx, (v - cy) / fy, 1) / H
    pitch, roll, height = 20.0, 10.0, 1.2
    n = gravity_direction(pitch, roll)
    p, r = math.radians(pitch), math.radians(roll)
    np.testing.assert_allclose(n, [math.sin(r) * math.cos(p), math.cos(r) * math.cos(p), math.sin(p)])
    assert np.linalg.norm(n) == pytest.approx(1.0)
    floor = floor_inverse_depth(K, SIZE, height, pitch, roll)
    u, v = 50, 40
    assert floor[v, u] == pytest.approx((n[0] * (u - 31.5) / 100 + n[1] * (v - 23.5) / 120 + n[2]) / height)


@pytest.mark.parametrize(("pitch", "roll"), [(0.0, 0.0), (15.0, 0.0), (25.0, -4.0), (-3.0, 3.0)])
def test_the_floor_plane_is_what_the_renderer_draws(pitch: float, roll: float) -> None:
    """The synthetic camera's recorded height, pitch and roll give the floor's exact inverse depth."""
    room = Room((-50.0, -50.0, 0.0), (50.0, 50.0, 3.0), GREY, GREY, (GREY,) * 4)
    eye = (0.0, 0.0, 1.3)
    look = (0.0, math.cos(math.radians(pitch)), -math.sin(math.radians(pitch)))
    camera = Camera.look_at(eye, np.add(eye, look), 60.0, (160, 120), roll_deg=roll)
    scene = render(SceneDescription(room, ambient=1.0, shadows=False), camera)
    meta = camera.metadata()
    assert meta["camera_height"] == pytest.approx(1.3)
    assert (meta["pitch_deg"], meta["roll_deg"]) == (pytest.approx(pitch), pytest.approx(roll))
    floor = floor_inverse_depth(Intrinsics(**meta["intrinsics"]), (160, 120), 1.3, pitch, roll)
    on_floor = floor > 1 / 40.0  # nearer than the far walls: floor pixels
    assert on_floor.sum() > 2000
    np.testing.assert_allclose(1.0 / scene.depth[on_floor], floor[on_floor], rtol=1e-4)


def test_parse_intrinsics_and_its_errors() -> None:
    assert parse_intrinsics("525, 525,319.5,239.5") == Intrinsics(525.0, 525.0, 319.5, 239.5)
    for text, says in (("525,525,319.5", "four numbers"), ("a,b,c,d", "four numbers"),
                       ("0,525,319.5,239.5", "must be positive"), ("nan,1,1,1", "four numbers")):
        with pytest.raises(EdgedepthError, match=says):
            parse_intrinsics(text)


def test_intrinsics_of_another_resolution_do_not_match() -> None:
    nyu = Intrinsics(518.9, 519.5, 325.6, 253.7)
    check_intrinsics(nyu, (640, 480), "frame.png")  # NYU's Kinect, off-centre by a few pixels: fine
    with pytest.raises(EdgedepthError, match=r"frame.png: intrinsics .* do not match its 320x240 pixels: the prin"):
        check_intrinsics(nyu, (320, 240), "frame.png")
    with pytest.raises(EdgedepthError, match="do not match its 1280x960 pixels"):
        check_intrinsics(nyu, (1280, 960), "frame.png")
    with pytest.raises(EdgedepthError, match="makes a 179.6 degree field of view"):
        check_intrinsics(Intrinsics(1.0, 1.0, 319.5, 239.5), (640, 480), "frame.png")


def test_backproject_hand_computed() -> None:
    depth = np.full((48, 64), 2.0)
    points = backproject(depth, K)
    np.testing.assert_allclose(points[40, 50], [(50 - 31.5) / 100 * 2, (40 - 23.5) / 120 * 2, 2.0])
    assert points.shape == (48, 64, 3)


def test_ply_is_read_back_by_plyfile_with_colours_and_no_point_for_no_depth(tmp_path: Path) -> None:
    depth = np.full((48, 64), 3.0, dtype=np.float32)
    depth[:10] = 0.0  # no depth: no point
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    write_ply(tmp_path / "cloud.ply", depth, image, K)
    vertex = PlyData.read(str(tmp_path / "cloud.ply"))["vertex"]
    assert vertex.count == 38 * 64
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    np.testing.assert_allclose(xyz, backproject(depth, K)[10:].reshape(-1, 3), rtol=1e-6)
    np.testing.assert_array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1),
                                  image[10:].reshape(-1, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.ply"]  # written atomically, no temporary left
