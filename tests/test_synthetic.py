"""Synthetic scenes: exact depth against closed forms, sensor holes, determinism, the folder and .mat writers."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.cli import main
from edgedepth.core.errors import EdgedepthError
from edgedepth.data import synthetic
from edgedepth.data.nyu import NyuLabeled, read_splits
from edgedepth.data.synthetic import (
    LIGHT_RANGE,
    RAW_MAX_DEPTH,
    Box,
    Camera,
    Light,
    Material,
    Room,
    SceneDescription,
    Sphere,
    render,
    render_scene,
    scene_seed,
    write_folder,
)
from edgedepth.eval.metrics import valid_mask
from edgedepth.train.pairs import read_png_target

SMALL = (160, 120)
GREY = Material("plain", (0.5, 0.5, 0.5))
FAR = 1000.0  # walls that far away never win against the surfaces a test is about


def _scene(room: Room, solids: tuple = ()) -> SceneDescription:
    return SceneDescription(room, solids, (Light((0.0, 0.0, 50.0), (1.0, 1.0, 1.0)),), ambient=0.3, shadows=False)


def _facing_wall(distance: float, material: Material = GREY) -> SceneDescription:
    """A room whose y-high wall is ``distance`` ahead of a camera at the origin looking along +y."""
    walls = (GREY, GREY, GREY, material)
    return _scene(Room((-FAR, -FAR, -FAR), (FAR, distance, FAR), GREY, GREY, walls))


def _rays(camera: Camera) -> np.ndarray:
    """Camera-frame rays ``K^-1 (x, y, 1)`` of every pixel, float64, H x W x 3 (computed here, independently)."""
    width, height = camera.size
    x, y = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pixels = np.stack([x, y, np.ones_like(x)], axis=-1)
    return pixels @ np.linalg.inv(camera.intrinsics.matrix()).T


def test_a_facing_wall_has_its_distance_as_depth_in_every_pixel_corners_included() -> None:
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 90.0, SMALL)
    scene = render(_facing_wall(3.0), camera)
    assert scene.depth.shape == (120, 160) and scene.depth.dtype == np.float32
    np.testing.assert_allclose(scene.depth, 3.0, atol=1e-4)
    # z-depth, not ray length: the corner ray travels sqrt(1 + 1 + 0.75^2) ~ 1.6 times farther than 3 m.
    corner_ray_length = 3.0 * np.linalg.norm(_rays(camera)[0, 0])
    assert corner_ray_length > 4.7 and scene.depth[0, 0] == pytest.approx(3.0, abs=1e-4)
    np.testing.assert_array_equal(scene.raw_depth, scene.depth)  # bright, near, head-on: no sensor holes


def test_a_tilted_floor_matches_the_plane_equation_in_camera_coordinates() -> None:
    height = 1.5
    room = Room((-FAR, -FAR, 0.0), (FAR, FAR, FAR), GREY, GREY, (GREY,) * 4)
    camera = Camera.look_at((0.2, -0.4, height), (1.0, 4.0, 0.0), 60.0, SMALL, roll_deg=7.0)
    scene = render(_scene(room), camera)
    # The floor z = 0 in camera coordinates: n . X = -height with n = R^T (0, 0, 1); X = depth * ray.
    normal = camera.rotation.T @ np.array([0.0, 0.0, 1.0])
    expected = -height / (_rays(camera) @ normal)
    floor = (expected > 0) & (expected < 100.0)
    assert 0.3 < floor.mean() < 0.95  # the horizon crosses the (rolled) image
    np.testing.assert_allclose(scene.depth[floor], expected[floor], rtol=2e-6)


def test_a_sphere_has_the_projected_disc_and_the_nearest_depth_of_its_geometry() -> None:
    distance, radius = 4.0, 1.0
    size = (161, 121)  # odd: the pixel at the image centre lies on the optical axis
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 58.0, size)
    sphere = Sphere((0.0, distance, 0.0), radius, GREY)
    scene = render(_scene(Room((-FAR, -FAR, -FAR), (FAR, FAR, FAR), GREY, GREY, (GREY,) * 4), (sphere,)), camera)
    silhouette = scene.depth < 100.0
    focal = camera.intrinsics.fx
    disc_radius = focal * radius / math.sqrt(distance**2 - radius**2)  # tangent cone of the sphere, in pixels
    assert abs(silhouette.sum() - math.pi * disc_radius**2) < 2 * math.pi * disc_radius * 0.5  # half a pixel of rim
    rows, cols = np.nonzero(silhouette)
    assert cols.mean() == pytest.approx(80.0, abs=0.05) and rows.mean() == pytest.approx(60.0, abs=0.05)
    assert scene.depth.min() == pytest.approx(distance - radius, abs=1e-5)
    assert scene.depth[60, 80] == pytest.approx(distance - radius, abs=1e-5)
    # Every silhouette pixel: the near root of |t ray - c|^2 = r^2, and depth = t since the ray's z is 1.
    rays = _rays(camera)[silhouette]
    center = np.array([0.0, 0.0, distance])  # the sphere's centre in camera coordinates
    b, a = rays @ center, np.sum(rays * rays, axis=1)
    expected = (b - np.sqrt(b * b - a * (center @ center - radius**2))) / a
    np.testing.assert_allclose(scene.depth[silhouette], expected, atol=1e-4)


def test_a_rotated_box_face_is_a_plane_at_its_distance() -> None:
    # A cube turned 90 degrees about z shows the same face; its front face sits at y = 5 - 0.5.
    box = Box((0.0, 5.0, 0.0), (0.5, 0.5, 0.5), GREY, synthetic.rotation_matrix(yaw=math.pi / 2))
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 40.0, SMALL)
    scene = render(_scene(Room((-FAR, -FAR, -FAR), (FAR, FAR, FAR), GREY, GREY, (GREY,) * 4), (box,)), camera)
    face = scene.depth < 100.0
    np.testing.assert_allclose(scene.depth[face], 4.5, atol=1e-4)
    side = 2 * round(camera.intrinsics.fx * 0.5 / 4.5) + 1
    assert abs(int(face.sum()) - side * side) <= 4 * side  # a square of the projected size, up to its rim


def test_cylinders_show_their_side_and_their_cap_at_the_analytic_depth() -> None:
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 58.0, SMALL)
    open_room = Room((-FAR, -FAR, -FAR), (FAR, FAR, FAR), GREY, GREY, (GREY,) * 4)
    rays = _rays(camera)
    u, v = rays[..., 0], rays[..., 1]
    # Upright (axis = world z = camera -y), seen from the side: t^2 u^2 + (t - 4)^2 = r^2 with |t v| <= h.
    upright = synthetic.Cylinder((0.0, 4.0, 0.0), 0.5, 0.8, GREY)
    depth = render(_scene(open_room, (upright,)), camera).depth
    disc = 64.0 - 4.0 * (u * u + 1.0) * (16.0 - 0.25)
    t = (8.0 - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * (u * u + 1.0))
    side = (disc > 0) & (np.abs(t * v) <= 0.8)
    assert side.sum() > 500
    np.testing.assert_allclose(depth[side], t[side], atol=1e-4)
    assert np.count_nonzero((depth < 100.0) != side) <= 4  # the caps are edge-on from the cylinder's mid-height
    # Lying along the optical axis: the near cap is a disc at 4 - h.
    lying = synthetic.Cylinder(
        (0.0, 4.0, 0.0), 0.5, 0.8, GREY, synthetic.rotation_matrix(pitch=math.pi / 2, yaw=math.pi / 2)
    )
    depth = render(_scene(open_room, (lying,)), camera).depth
    cap = depth < 100.0
    np.testing.assert_allclose(depth[cap], 3.2, atol=1e-4)
    disc_radius = camera.intrinsics.fx * 0.5 / 3.2
    assert abs(cap.sum() - math.pi * disc_radius**2) < math.pi * disc_radius


def test_culling_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Screen windows for camera rays and candidate sets for shadow rays only skip work, never a hit."""
    culled = [render_scene(seed, (96, 72)) for seed in range(8)]
    from edgedepth.data.synthetic import rendering

    monkeypatch.setattr(rendering, "_screen_rect", lambda solid, camera: (0, camera.size[1], 0, camera.size[0]))
    monkeypatch.setattr(
        rendering, "_shadow_candidates", lambda solid, light, to_light, distance: np.arange(distance.size)
    )
    for seed, scene in enumerate(culled):
        brute = render_scene(seed, (96, 72))
        np.testing.assert_array_equal(scene.depth, brute.depth)
        np.testing.assert_array_equal(scene.image, brute.image)


@pytest.mark.parametrize(
    ("distance", "material", "holes"),
    [
        (3.0, GREY, False),
        (RAW_MAX_DEPTH + 1.0, GREY, True),  # beyond the sensor's range
        (0.3, GREY, True),  # closer than its minimum
        (3.0, Material("plain", (0.01, 0.01, 0.01)), True),  # dark, IR-absorbing
    ],
)
def test_raw_depth_has_holes_where_a_kinect_fails(distance: float, material: Material, holes: bool) -> None:
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 58.0, (40, 30))
    scene = render(_facing_wall(distance, material), camera)
    np.testing.assert_allclose(scene.depth, distance, rtol=1e-5)
    np.testing.assert_array_equal(scene.raw_depth, 0.0 if holes else scene.depth)


def test_raw_depth_has_holes_at_grazing_incidence_and_on_highlights() -> None:
    # A long floor seen from 1.5 m: far enough away the rays graze it. A glossy sphere under the light glints.
    room = Room((-FAR, -FAR, 0.0), (FAR, FAR, FAR), GREY, GREY, (GREY,) * 4)
    sphere = Sphere((0.0, 4.0, 0.6), 0.6, Material("plain", (0.5, 0.1, 0.1), gloss=1.0))
    description = SceneDescription(room, (sphere,), (Light((0.0, 2.0, 2.5), (1.0, 1.0, 1.0)),), ambient=0.2)
    camera = Camera.look_at((0.0, 0.0, 1.5), (0.0, 4.0, 0.6), 58.0, SMALL)
    scene = render(description, camera)
    rays = _rays(camera)
    floor_cos = np.abs(rays @ (camera.rotation.T @ np.array([0.0, 0.0, 1.0]))) / np.linalg.norm(rays, axis=-1)
    floor = scene.depth > 4.0 + 0.6  # behind the sphere: only the floor or far walls
    grazing = floor & (floor_cos < synthetic.RAW_MIN_INCIDENCE_COS) & (scene.depth < RAW_MAX_DEPTH)
    assert grazing.sum() > 100 and np.all(scene.raw_depth[grazing] == 0)
    sphere_pixels = scene.depth < 4.0
    glint = sphere_pixels & (scene.raw_depth == 0) & (scene.image.mean(axis=-1) > 200)
    assert glint.sum() > 5  # a bright highlight that the sensor does not see


def test_lambertian_shading_follows_the_cosine_and_the_light_falloff() -> None:
    # A light at the camera, no ambient, vignetting or noise: the developed image squared is proportional to
    # albedo * cos(incidence) / (1 + (d / range)^2), with d = 3 m * ray length and cos = 1 / ray length.
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 70.0, SMALL)
    lit = SceneDescription(_facing_wall(3.0).room, (), (Light((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),), ambient=0.0)
    gray = render(lit, camera).image.astype(np.float64).mean(axis=-1)
    length = np.linalg.norm(_rays(camera), axis=-1)
    radiance = (1.0 / length) / (1.0 + (3.0 * length / LIGHT_RANGE) ** 2)
    inner = (slice(2, -2), slice(2, -2))  # away from the blur's border
    ratio = (gray[inner] / 255.0) ** 2 / radiance[inner]
    assert ratio.std() / ratio.mean() < 0.02
    assert gray[60, 80] > 1.25 * gray[2, 2]  # the corners are visibly darker (radiance ratio 0.54, gamma 2)


def test_a_sphere_casts_a_shadow_where_the_light_ray_through_it_meets_the_wall() -> None:
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 58.0, SMALL)
    sphere = Sphere((0.5, 2.0, 0.0), 0.3, GREY)
    light = Light((1.5, 0.0, 0.0), (1.0, 1.0, 1.0))  # its ray through the sphere's centre meets y = 4 at x = -0.5
    ambient = 0.1
    images = {}
    for shadows in (True, False):
        description = SceneDescription(_facing_wall(4.0).room, (sphere,), (light,), ambient=ambient, shadows=shadows)
        images[shadows] = render(description, camera).image.astype(np.float64).mean(axis=-1)
    k = camera.intrinsics
    shadow_col, clear_col, row = round(k.cx + k.fx * -0.5 / 4.0), round(k.cx + k.fx * 1.2 / 4.0), round(k.cy)
    # In the shadow only the ambient term is left: radiance ratio ambient / (ambient + direct), squared display.
    distance = math.hypot(2.0, 4.0)
    direct = (4.0 / distance) / (1.0 + (distance / LIGHT_RANGE) ** 2)
    ratio = (images[True][row, shadow_col] / images[False][row, shadow_col]) ** 2
    assert ratio == pytest.approx(ambient / (ambient + direct), rel=0.1)
    assert images[True][row, clear_col] == pytest.approx(images[False][row, clear_col], abs=1.0)


def test_texture_shows_on_a_facing_wall() -> None:
    camera = Camera.look_at((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 58.0, SMALL)
    spread = {}
    for texture in ("plain", "tiles", "wood", "stripes", "plaster", "fabric"):
        material = Material(texture, (0.6, 0.5, 0.4), (0.1, 0.1, 0.1), scale=0.3)
        gray = render(_facing_wall(2.0, material), camera).image.mean(axis=-1)
        spread[texture] = float(np.abs(np.diff(gray, axis=1)).mean())  # neighbour differences: texture, not shading
    assert spread["plain"] < 2.0
    assert all(spread[t] > spread["plain"] + 0.5 for t in ("tiles", "wood", "stripes", "fabric")), spread
    assert spread["plaster"] > spread["plain"], spread


def test_random_scenes_are_deterministic_and_plausible() -> None:
    first, again, other = render_scene(7, SMALL), render_scene(7, SMALL), render_scene(8, SMALL)
    for name in ("image", "depth", "raw_depth"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.image, other.image) and not np.array_equal(first.depth, other.depth)
    hole_fraction = []
    for seed in range(6):
        scene = render_scene(seed, SMALL)
        assert scene.image.shape == (120, 160, 3) and scene.image.dtype == np.uint8
        assert scene.depth.dtype == scene.raw_depth.dtype == np.float32
        assert np.all(np.isfinite(scene.depth)) and 0.2 < scene.depth.min() and scene.depth.max() < 20.0
        holes = scene.raw_depth == 0
        np.testing.assert_array_equal(scene.raw_depth[~holes], scene.depth[~holes])  # holes only, no other change
        assert scene.image.std() > 10  # not a flat image
        hfov = math.degrees(2 * math.atan(SMALL[0] / 2 / scene.intrinsics.fx))
        assert synthetic.HFOV_RANGE[0] <= hfov <= synthetic.HFOV_RANGE[1]
        hole_fraction.append(holes.mean())
    assert 0.0 < np.mean(hole_fraction) < 0.3


def test_default_size_is_nyu_frame() -> None:
    scene = render_scene(0)
    assert scene.image.shape == (480, 640, 3) and scene.depth.shape == scene.raw_depth.shape == (480, 640)
    assert scene.intrinsics.cx == pytest.approx(319.5) and scene.intrinsics.cy == pytest.approx(239.5)


def test_scene_seeds_depend_on_seed_and_index_not_on_their_sum() -> None:
    assert scene_seed(0, 1) != scene_seed(1, 0)
    assert len({scene_seed(seed, index) for seed in range(5) for index in range(50)}) == 250
    assert scene_seed(3, 4) == scene_seed(3, 4)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".jpg", ".png")}


def test_folder_holds_jpeg_and_millimetre_png_pairs(tmp_path: Path) -> None:
    summary = write_folder(tmp_path / "a", 3, (64, 48), seed=5, progress=False)
    assert (summary.rendered, summary.written, summary.skipped) == (3, 3, 0)
    assert sorted(_files(tmp_path / "a")) == [
        "000000.jpg",
        "000000.png",
        "000001.jpg",
        "000001.png",
        "000002.jpg",
        "000002.png",
    ]
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert (index["count"], index["size"], index["seed"], index["version"]) == (
        3,
        [64, 48],
        5,
        synthetic.GENERATOR_VERSION,
    )
    scene = render_scene(scene_seed(5, 2), (64, 48))
    depth16 = cv2.imread(str(tmp_path / "a" / "000002.png"), cv2.IMREAD_UNCHANGED)
    assert depth16.dtype == np.uint16 and depth16.shape == (48, 64)
    np.testing.assert_array_equal(depth16, np.round(scene.depth * 1000).astype(np.uint16))
    jpeg = cv2.cvtColor(cv2.imread(str(tmp_path / "a" / "000002.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(jpeg.astype(int) - scene.image).mean() < 3.0
    # The training reader takes the pair as the seed's layout with depth in millimetres.
    inverse = read_png_target(tmp_path / "a" / "000002.png", "depth_mm")
    np.testing.assert_allclose(inverse, 1.0 / scene.depth, rtol=2e-3)

    # Scene k does not depend on the count: a longer folder starts with the same files.
    write_folder(tmp_path / "b", 4, (64, 48), seed=5, progress=False)
    longer = _files(tmp_path / "b")
    assert all(longer[name] == data for name, data in _files(tmp_path / "a").items())


def test_folder_resumes_and_refuses_another_seed_or_size(tmp_path: Path) -> None:
    out = tmp_path / "scenes"
    write_folder(out, 3, (64, 48), seed=1, progress=False)
    before = _files(out)
    (out / "000001.jpg").unlink()  # as if the run had been killed between the depth and the image
    summary = write_folder(out, 4, (64, 48), seed=1, progress=False)
    assert (summary.rendered, summary.written, summary.skipped) == (2, 2, 2)
    after = _files(out)
    assert all(after[name] == data for name, data in before.items())
    assert json.loads((out / "index.json").read_text())["count"] == 4
    assert write_folder(out, 4, (64, 48), seed=1, progress=False).rendered == 0
    with pytest.raises(EdgedepthError, match="seed 1, size 64x48.*not seed 2, size 64x48"):
        write_folder(out, 4, (64, 48), seed=2, progress=False)
    with pytest.raises(EdgedepthError, match="not seed 1, size 32x24"):
        write_folder(out, 4, (32, 24), seed=1, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(EdgedepthError, match="not empty"):
        write_folder(tmp_path / "other", 1, (64, 48), progress=False)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_nyu_mat_pair_loads_through_the_nyu_reader(tmp_path: Path) -> None:
    out = tmp_path / "nyu"
    summary = write_folder(out, 3, (640, 480), seed=2, nyu_mat=True, progress=False)
    assert summary.nyu_mat == (2, 1)
    splits = read_splits(out / "splits.mat", num_images=3)
    np.testing.assert_array_equal(splits.train, [0, 1])
    np.testing.assert_array_equal(splits.test, [2])
    holes = 0
    with NyuLabeled(out / "nyu_depth_v2_labeled.mat") as labeled:
        assert len(labeled) == 3 and labeled.frame_size == (640, 480)
        for index in range(3):
            scene = render_scene(scene_seed(2, index))
            np.testing.assert_array_equal(labeled.image(index), scene.image)
            np.testing.assert_array_equal(labeled.depth(index, "depths"), scene.depth)
            raw = labeled.depth(index, "rawDepths")
            np.testing.assert_array_equal(raw, scene.raw_depth)
            missing = raw == 0
            holes += int(missing.sum())
            assert not np.any(valid_mask(raw) & missing)  # the evaluation never scores a hole
    assert holes > 0
    assert write_folder(out, 3, (640, 480), seed=2, nyu_mat=True, progress=False).rendered == 0  # done: skipped
    with pytest.raises(EdgedepthError, match="640x480"):
        write_folder(tmp_path / "small", 3, (160, 120), nyu_mat=True, progress=False)


def test_cli_synth_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--count", "2", "--size", "64x48", "--seed", "3"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("synth: 2 scene(s) rendered in") and "scenes/s" in line
    assert (out / "000001.png").is_file() and (out / "000001.jpg").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "--count must be a positive"),
        (["--count", "2", "--size", "64by48"], "argument --size: size '64by48' is not of the form WIDTHxHEIGHT"),
        (["--count", "2", "--size", "320x240", "--nyu-mat"], "needs NYU's frame size 640x480"),
    ],
)
def test_cli_synth_rejects_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    if "WIDTHxHEIGHT" in message:  # not a size at all: a usage error, at parse time
        with pytest.raises(SystemExit) as usage:
            main(["synth", str(tmp_path / "out"), *args])
        assert usage.value.code == 2
        prefix = "edgedepth synth: error:"
    else:
        assert main(["synth", str(tmp_path / "out"), *args]) == 2
        prefix = "edgedepth: error:"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix) and message in err[0]
    assert not (tmp_path / "out").exists()


def test_cli_synth_refuses_a_file_as_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "taken").write_text("x")
    assert main(["synth", str(tmp_path / "taken"), "--count", "1"]) == 2
    assert "is a file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Cameras on record and a moving camera (issue 15: the ground fit and the flicker measure need them)


def _floor_matches(depth: np.ndarray, camera: dict, size: tuple[int, int]) -> int:
    """How many pixels the recorded camera's floor plane predicts exactly; asserts none is seen below the floor."""
    from edgedepth.robot.geometry import Intrinsics, floor_inverse_depth

    floor = floor_inverse_depth(Intrinsics(**camera["intrinsics"]), size, camera["camera_height"],
                                camera["pitch_deg"], camera["roll_deg"])
    inverse = 1.0 / depth.astype(np.float64)
    below = floor > 0
    assert np.all(inverse[below] >= floor[below] * (1 - 1e-4))  # nothing is seen through the floor
    return int(np.count_nonzero(np.abs(inverse[below] / floor[below] - 1) < 1e-4))


def test_a_folder_records_each_scenes_camera(tmp_path: Path) -> None:
    write_folder(tmp_path, 3, SMALL, seed=4, progress=False)
    cameras = json.loads((tmp_path / synthetic.CAMERAS_NAME).read_text())
    assert sorted(cameras) == ["000000", "000001", "000002"]
    for key, camera in cameras.items():
        assert camera == synthetic.scene_camera(scene_seed(4, int(key)), SMALL)
        assert 1.0 <= camera["camera_height"] <= 1.7 and abs(camera["roll_deg"]) <= 4.0
        depth = read_png_target(tmp_path / f"{key}.png", "depth_mm") ** -1.0
        scene = render_scene(scene_seed(4, int(key)), SMALL)
        np.testing.assert_allclose(depth, scene.depth, atol=6e-4)
        assert _floor_matches(scene.depth, camera, SMALL) > 0.05 * SMALL[0] * SMALL[1]


def test_a_sequence_moves_one_camera_through_one_room(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "seq"
    assert main(["synth", str(out), "--sequence", "6", "--size", "96x72", "--seed", "2"]) == 0
    assert capsys.readouterr().out.startswith("synth: sequence of 6 frame(s) rendered in ")
    capture = cv2.VideoCapture(str(out / synthetic.SEQUENCE_VIDEO))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB))
    assert len(frames) == 6 and frames[0].shape == (72, 96, 3)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(synthetic.SEQUENCE_FPS)
    cameras = json.loads((out / synthetic.CAMERAS_NAME).read_text())
    description, expected = synthetic.sequence_cameras(2, 6, (96, 72))
    for k, key in enumerate(sorted(cameras)):
        scene = render(description, expected[k])
        depth16 = cv2.imread(str(out / synthetic.SEQUENCE_DEPTH / f"{key}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(depth16, synthetic.depth_to_png16(scene.depth))
        assert np.abs(frames[k].astype(int) - scene.image).mean() < 12  # the codec's loss (and the sensor's noise)
        assert cameras[key] == expected[k].metadata()
        assert _floor_matches(scene.depth, cameras[key], (96, 72)) > 500  # a robot's camera sees the floor
    heights = {camera["camera_height"] for camera in cameras.values()}
    low, high = synthetic.SEQUENCE_HEIGHT_RANGE
    assert len(heights) == 1 and low <= heights.pop() <= high
    steps = np.linalg.norm(np.diff([camera.position for camera in expected], axis=0), axis=1)
    assert np.all((steps > 0.005) & (steps <= synthetic.SEQUENCE_SPEED / synthetic.SEQUENCE_FPS + 1e-9))
    # Frame k is the same whatever the length; each frame draws its own sensor noise.
    assert np.allclose(synthetic.sequence_cameras(2, 3, (96, 72))[1][2].position, expected[2].position)
    assert main(["synth", str(out), "--sequence", "6", "--size", "96x72", "--seed", "2"]) == 0
    assert "already there" in capsys.readouterr().out


def test_sequence_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    done = tmp_path / "done"
    write_folder(done, 1, (64, 48), progress=False)
    cases = [
        (["--sequence", "1"], tmp_path / "a", "--sequence must be at least 2 frames"),
        (["--sequence", "3", "--size", "63x48"], tmp_path / "b", "a video needs positive, even sides"),
        (["--sequence", "3", "--nyu-mat"], tmp_path / "c", "--nyu-mat writes scenes, not a sequence"),
        (["--sequence", "3", "--count", "3"], tmp_path / "d", "not allowed with argument"),
        (["--sequence", "3", "--size", "64x48"], done, "holds another synth output"),
    ]
    for args, out, message in cases:
        with pytest.raises(SystemExit) if "--count" in args else nullcontext():
            assert main(["synth", str(out), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1], err
        assert out == done or not out.exists()


def test_nyu_tar_is_marigolds_layout_and_scores_through_the_suite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--nyu-tar``: scene k under the k-th name of NYU's test list, raw depth (with holes) as the scored depth."""
    import tarfile

    from edgedepth.data.marigold import EVAL_SETS, EvalArchive, load_sample, read_sample_list

    out = tmp_path / "scenes"
    assert main(["synth", str(out), "--count", "2", "--nyu-tar"]) == 0
    assert f"--data-root {out} --datasets nyu --limit 2" in capsys.readouterr().out
    tar = out / "nyuv2" / "nyu_labeled_extracted.tar"
    evalset = EVAL_SETS["nyu"]
    first, second = read_sample_list(evalset.split_path(), evalset)[:2]
    with tarfile.open(tar) as archive:
        assert archive.getnames()[:3] == [f"./{first.rgb}", f"./{first.depth}", f"./{first.third}"]
    scene = render_scene(scene_seed(0, 1), (640, 480))
    sample = load_sample(evalset, EvalArchive(tar, "nyu"), second)
    np.testing.assert_array_equal(sample.image, scene.image)
    np.testing.assert_allclose(sample.depth, scene.raw_depth, atol=5e-4)  # millimetres
    assert (sample.depth == 0).sum() == (scene.raw_depth == 0).sum() > 0
    assert main(["synth", str(out), "--count", "2", "--nyu-tar"]) == 0  # done: not written again
    assert json.loads((out / "index.json").read_text())["nyu_tar"] == {"count": 2}
    result = tmp_path / "eval"
    assert main(["eval", "zeroshot", "--data-root", str(out), "--datasets", "nyu", "--limit", "2", "--baseline", "ramp",
                 "--out", str(result)]) == 0
    assert json.loads((result / "metrics.json").read_text())["datasets"]["nyu"]["results"][
        "vertical ramp (no image input)"]["scored"] == 2
    assert main(["synth", str(tmp_path / "small"), "--count", "1", "--size", "320x240", "--nyu-tar"]) == 2
