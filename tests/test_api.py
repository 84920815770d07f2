"""The Python API (``edgedepth.load``): what it returns on images, paths and videos, and metric depth from each
reference against a scene's exact depth; and the README's Python snippet, run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgedepth
from edgedepth.core.card import ModelCard
from edgedepth.core.errors import EdgedepthError
from edgedepth.data.synthetic import render_scene, scene_camera
from edgedepth.export.graph import export_model
from edgedepth.models.weights import load_model
from edgedepth.runtime.predictor import Predictor, load_predictor

REPO = Path(__file__).resolve().parents[1]
SEED = 15  # a scene with floor in view (metric ground)


@pytest.fixture(scope="module")
def onnx_file(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "student.onnx"
    export_model(load_model(weights), path, "onnx", (128, 96))
    return path


@pytest.fixture
def photo(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 200x150 photo (not the network's 4:3 of 128x96 exactly: letterboxed) and its RGB pixels."""
    rgb = render_scene(SEED, (200, 140)).image
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, rgb


def test_a_file_predicts_from_a_path_an_rgb_or_a_bgr_array_alike(
    onnx_file: Path, photo: tuple[Path, np.ndarray]
) -> None:
    path, rgb = photo
    model = edgedepth.load(onnx_file, threads=1)
    assert isinstance(model, edgedepth.DepthModel) and model.runtime == "onnxruntime" and model.kind == "relative_inverse_depth"
    depth = model(path)
    assert depth.shape == (140, 200) and depth.dtype == np.float32
    np.testing.assert_array_equal(depth, model(rgb))
    np.testing.assert_array_equal(depth, model(rgb[:, :, ::-1], bgr=True))
    # The image keeps its shape, as on the command line: the export letterboxes it.
    np.testing.assert_array_equal(depth, load_predictor(onnx_file, threads=1, keep_aspect=True)(rgb))
    assert not np.array_equal(depth, load_predictor(onnx_file, threads=1, keep_aspect=False)(rgb))


def test_bad_arguments_are_one_line_errors(onnx_file: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgedepthError, match="neither a released network .* nor an existing file"):
        edgedepth.load(tmp_path / "missing.onnx")
    with pytest.raises(EdgedepthError, match=r"H x W x 3 \(RGB\), not an array of shape \(4, 4\)"):
        edgedepth.load(onnx_file)(np.zeros((4, 4), np.uint8))
    with pytest.raises(EdgedepthError, match="exactly one reference"):
        edgedepth.load(onnx_file).metric(np.zeros((8, 8, 3), np.uint8), ground=1.0, sparse=np.ones((8, 8)))


def test_a_video_streams_each_frame_with_its_depth(onnx_file: Path, tmp_path: Path) -> None:
    frames = [render_scene(SEED + k, (160, 120)).image for k in range(4)]
    video = tmp_path / "clip.avi"  # lossless, so the frames read back are the frames written
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (160, 120))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    model = edgedepth.load(onnx_file, threads=1)
    streamed = list(model.stream(video))
    assert len(streamed) == 4
    for (frame, depth), written in zip(streamed, frames, strict=True):
        np.testing.assert_array_equal(frame, written)
        np.testing.assert_array_equal(depth, model(written))
    stable = list(model.stream(video, stabilize=True))
    np.testing.assert_array_equal(stable[0][1], streamed[0][1])  # the first frame starts the estimate
    assert not np.array_equal(stable[1][1], streamed[1][1])  # later ones are blended into it


class ExactPredictor(Predictor):
    """A network whose relative depth is exact: the scene's true inverse depth, scaled and shifted."""

    runtime = "exact"

    def __init__(self, depth: np.ndarray) -> None:
        height, width = depth.shape
        super().__init__(ModelCard(name="exact", input_size=(width, height)))
        self.relative = (0.4 / depth + 0.05).astype(np.float32)

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[int, int], None]:
        return self.relative[None, None], self.size, None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return batch


def test_metric_depth_from_points_a_sparse_map_or_the_floor_is_the_scenes() -> None:
    scene = render_scene(SEED, (160, 120))
    camera = scene_camera(SEED, (160, 120))
    k = scene.intrinsics
    model = edgedepth.DepthModel(ExactPredictor(scene.depth))
    truth = np.where(scene.depth <= 10.0, scene.depth, 0.0)
    ys, xs = [10, 60, 110, 30, 90], [20, 80, 140, 120, 40]
    references = {
        "points": {"points": [(x, y, float(scene.depth[y, x])) for x, y in zip(xs, ys, strict=True)]},
        "sparse": {"sparse": scene.raw_depth},
        "ground": {"ground": camera["camera_height"], "pitch": camera["pitch_deg"], "roll": camera["roll_deg"],
                   "intrinsics": (k.fx, k.fy, k.cx, k.cy)},
    }
    for name, reference in references.items():
        metric = model.metric(scene.image, max_depth=10.0, **reference)
        assert metric.depth.shape == (120, 160) and metric.depth.dtype == np.float32
        np.testing.assert_allclose(metric.depth, truth, rtol=2e-3, atol=1e-4, err_msg=name)
    points = model.metric(scene.image, sparse=scene.raw_depth, intrinsics=(k.fx, k.fy, k.cx, k.cy)).points()
    assert points.shape == (int(np.count_nonzero(truth)), 3)
    np.testing.assert_allclose(np.sort(points[:, 2]), np.sort(truth[truth > 0]), rtol=2e-3)
    with pytest.raises(EdgedepthError, match="points need the camera"):
        model.metric(scene.image, sparse=scene.raw_depth).points()


@pytest.mark.slow
def test_the_readme_python_snippet_runs_as_written(tmp_path: Path) -> None:
    """The README's Python block, in a fresh interpreter: zipdepth_base from a local mirror, exported to ONNX once."""
    from tests.test_pretrained import git_blob_sha1, serve_release

    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) == 1, "the README has one Python snippet"
    snippet = blocks[0]
    assert 'edgedepth.load("zipdepth_base"' in snippet and 'model("photo.jpg")' in snippet
    cv2.imwrite(str(tmp_path / "photo.jpg"), cv2.cvtColor(render_scene(SEED, (320, 240)).image, cv2.COLOR_RGB2BGR))
    with serve_release("zipdepth_base") as (mirror, data):
        # The published hash is the checkpoint's own (the test's checkpoint stands in for ZipDepth's release).
        prelude = ("import dataclasses\nfrom edgedepth.core import releases\n"
                   "releases.RELEASES['zipdepth_base'] = dataclasses.replace(releases.RELEASES['zipdepth_base'], "
                   f"digest=releases.Digest('git-blob-sha1', '{git_blob_sha1(data)}'))\n")
        env = {**os.environ, "EDGEDEPTH_MIRROR": mirror, "EDGEDEPTH_CACHE": str(tmp_path / "cache"),
               "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", prelude + snippet], check=False, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "(240, 320) float32"
