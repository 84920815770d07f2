"""The runtime without the training stack: predict, the video loop, metric depth, serve and models run in a process
where importing PyTorch (and timm, transformers, NNCF, ...) fails, as on a board with ``pip install edgedepth``; the
commands that need the training stack say in one line which extra to install."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.bench.networks import calibration
from edgedepth.core.imageio import encode_png, read_rgb
from edgedepth.data.synthetic import render_scene
from edgedepth.export.graph import export_model
from edgedepth.models import create_model, prepare_for_inference
from edgedepth.models.complexity import count_macs, count_parameters
from edgedepth.runtime.predictor import load_predictor

#: What a runtime-only install lacks; each is made unimportable in the child process (``sys.modules[name] = None``
#: is what Python does for a package that is not there: ``import`` raises ModuleNotFoundError, ``find_spec`` is None).
TRAINING_STACK = ("torch", "torchvision", "timm", "transformers", "nncf", "onnx", "safetensors", "h5py", "scipy",
                  "yaml", "matplotlib", "kornia")
SIZE = (128, 96)

@functools.cache
def _blocking_site() -> str:
    """A folder whose ``sitecustomize.py`` makes the training stack unimportable in every Python started with it on
    ``PYTHONPATH``: the command's process and any it spawns (bench's timing processes)."""
    folder = Path(tempfile.mkdtemp(prefix="edgedepth-no-torch-"))
    (folder / "sitecustomize.py").write_text(f"import sys\nfor name in {TRAINING_STACK!r}:\n    sys.modules[name] = None\n")
    return str(folder)


def without_training_stack() -> dict[str, str]:
    """The environment of a process that cannot import the training stack."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_blocking_site(), os.environ.get("PYTHONPATH")]))}


def run_without_training_stack(*args: str, cwd: Path | None = None, timeout: float = 300,
                               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``edgedepth ARGS`` in a fresh process that cannot import the training stack (``env``: variables to add)."""
    return subprocess.run([sys.executable, "-m", "edgedepth.cli", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**without_training_stack(), **(env or {})})


def test_the_training_stack_is_really_blocked() -> None:
    done = run_without_training_stack("--version")
    assert done.returncode == 0, done.stderr
    probe = subprocess.run([sys.executable, "-c", "import torch"], check=False, capture_output=True, text=True,
                           env=without_training_stack())
    assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory, randomize_batchnorm) -> Path:  # type: ignore[no-untyped-def]
    """A student exported to ONNX at 128x96: what a board receives."""
    model = randomize_batchnorm(create_model("fastdepth_v3", card={"input_size": SIZE}), 3).eval()
    path = tmp_path_factory.mktemp("student") / "student.onnx"
    export_model(model, path, "onnx", SIZE)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "room.png"
    path.write_bytes(encode_png(render_scene(3, (200, 150)).image))
    return path


def test_predict_runs_an_onnx_file_without_the_training_stack(student: Path, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_without_training_stack("predict", str(photo), "--weights", str(student), "--out", str(out), "--npy")
    assert done.returncode == 0, done.stderr
    inverse_depth = np.load(out / "room.npy")
    expected = load_predictor(student, keep_aspect=True)(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB))
    np.testing.assert_allclose(inverse_depth, expected, rtol=0, atol=1e-6)  # the same numbers as with torch around
    assert (out / "room.color.png").is_file() and (out / "room.depth.png").is_file()


def test_predict_runs_an_openvino_file_without_the_training_stack(photo: Path, tmp_path: Path) -> None:
    """The [openvino] extra beside the runtime: an INT8 IR made by NNCF runs with OpenVINO alone."""
    model = create_model("fastdepth_v3", card={"input_size": SIZE}).eval()
    xml = tmp_path / "student_int8.xml"
    export_model(model, xml, "openvino", SIZE, calibration=calibration(model.card), quantizer="nncf",
                 min_correlation=None)
    done = run_without_training_stack("predict", str(photo), "--weights", str(xml), "--out", str(tmp_path / "out"),
                                      "--npy")
    assert done.returncode == 0, done.stderr
    expected = load_predictor(xml, keep_aspect=True)(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB))
    np.testing.assert_allclose(np.load(tmp_path / "out" / "room.npy"), expected, rtol=0, atol=1e-6)


def test_a_folder_a_video_stabilised_and_metric_depth_run_too(student: Path, tmp_path: Path) -> None:
    frames = tmp_path / "in"
    frames.mkdir()
    writer = cv2.VideoWriter(str(frames / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (160, 120))
    for k in range(4):
        scene = render_scene(k, (160, 120))
        writer.write(cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        (frames / f"{k}.png").write_bytes(encode_png(scene.image))
    writer.release()
    done = run_without_training_stack("predict", str(frames), "--weights", str(student), "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.suffix == ".png") == sorted(
        [f"{k}.{kind}.png" for k in range(4) for kind in ("color", "depth")])
    done = run_without_training_stack("predict", str(frames / "clip.mp4"), "--weights", str(student), "--stabilize",
                                      "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "b" / "clip").glob("*.color.png"))) == 4
    # Points whose depth the network's own prediction fits (a random student knows no real depth): 1 / (2 p + 0.1).
    prediction = load_predictor(student, keep_aspect=True)(render_scene(0, (160, 120)).image)
    pixels = [(20, 100), (150, 20), (80, 60), (40, 30)]
    points = tmp_path / "points.json"
    points.write_text(json.dumps([{"x": x, "y": y, "depth": 1.0 / (2.0 * float(prediction[y, x]) + 0.1)}
                                  for x, y in pixels]))
    done = run_without_training_stack("predict", str(frames / "0.png"), "--weights", str(student), "--metric",
                                      str(points), "--fov", "58", "--pointcloud", "--out", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "c").iterdir()} >= {"0.metric.png", "0.metric.npy", "0.metric.json", "0.ply"}


def test_the_live_loop_writes_a_video_without_the_training_stack(student: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (160, 120))
    for k in range(5):
        writer.write(cv2.cvtColor(render_scene(k, (160, 120)).image, cv2.COLOR_RGB2BGR))
    writer.release()
    done = run_without_training_stack("predict", "--video", str(clip), "--weights", str(student), "--stabilize",
                                      "--out", str(tmp_path / "depth.mp4"))
    assert done.returncode == 0, done.stderr
    assert "video: 5 frame(s)" in done.stdout
    capture = cv2.VideoCapture(str(tmp_path / "depth.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_answers_without_the_training_stack(student: Path, photo: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "edgedepth.cli", "serve", "--weights", str(student), "--port",
                               str(port), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=without_training_stack())
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    assert json.loads(answer.read())["runtime"] == "onnxruntime"
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict?format=npy", data=photo.read_bytes(),
                                         headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert np.load(io.BytesIO(body)).shape == (150, 200)


def test_bench_times_exported_files_without_the_training_stack(student: Path, tmp_path: Path) -> None:
    """Each file on the runtime its metadata names (an INT8 ONNX file on onnx-int8), with the parameters and MACs
    counted at export, in timing processes that cannot import PyTorch either."""
    model = create_model("fastdepth_v3", card={"input_size": SIZE}).eval()
    int8 = tmp_path / "student_int8.onnx"
    export_model(model, int8, "onnx", SIZE, calibration=calibration(model.card), quantizer="onnxruntime",
                 min_correlation=None)
    out = tmp_path / "bench"
    done = run_without_training_stack("bench", "--files", str(student), str(int8), "--threads", "1", "--runs", "3",
                                      "--warmup", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    cells = json.loads((out / "bench.json").read_text())["cells"]
    assert [(c["model"], c["runtime"], c["input_size"]) for c in cells] == [
        ("fastdepth_v3", "onnx", list(SIZE)), ("fastdepth_v3", "onnx-int8", list(SIZE))]
    fused = prepare_for_inference(model)
    assert {c["macs"] for c in cells} == {count_macs(fused, SIZE)}
    assert {c["params"] for c in cells} == {count_parameters(fused)}
    assert all(len(c["latencies_ms"]) == 3 and c["error"] is None for c in cells)
    assert "| fastdepth_v3 | onnx-int8 | 1 | 128x96 |" in done.stdout


@pytest.mark.parametrize(("extra", "message"), [
    (["--models", "fastdepth"], "drop --models, --weights, --runtimes and --size"),
    (["--size", "64x48"], "drop --models, --weights, --runtimes and --size"),
])
def test_bench_files_refuses_registry_options(student: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    done = run_without_training_stack("bench", "--files", str(student), *extra, "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "b").exists()


def test_bench_files_names_a_missing_file(tmp_path: Path) -> None:
    done = run_without_training_stack("bench", "--files", str(tmp_path / "gone.onnx"), "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "gone.onnx" in done.stderr, done.stderr


def _image_bag(path: Path, count: int) -> Path:
    from edgedepth.robot import rosmsgs
    from edgedepth.robot.bags import BagWriter

    writer = BagWriter(path)
    for k in range(count):
        image = render_scene(k, (160, 120)).image
        message = rosmsgs.TYPESTORE.types[rosmsgs.IMAGE](
            header=rosmsgs.header(10**9 + k * 10**8, "cam"), height=120, width=160, encoding="rgb8", is_bigendian=0,
            step=480, data=image.reshape(-1))
        writer.write("/camera/image_raw", rosmsgs.IMAGE, 10**9 + k * 10**8, message)
    writer.close()
    return path


def test_a_ros_bag_predicts_without_the_training_stack(student: Path, tmp_path: Path) -> None:
    bag = _image_bag(tmp_path / "run.mcap", 3)
    done = run_without_training_stack("predict", str(bag), "--weights", str(student), "--out", str(tmp_path / "d.mcap"))
    assert done.returncode == 0, done.stderr
    assert "bag: 3 frame(s)" in done.stdout and "/camera/depth/relative_inverse (3)" in done.stdout


def test_a_ros_bag_without_rosbags_names_the_extra(student: Path, tmp_path: Path) -> None:
    bag = _image_bag(tmp_path / "run.mcap", 1)
    code = ("import sys\nsys.modules['rosbags'] = None\nfrom edgedepth.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", code, "predict", str(bag), "--weights", str(student)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "reading ROS 2 bags needs rosbags, which is not installed: pip install 'edgedepth[ros]'" in done.stderr


def test_models_lists_the_catalogue_without_the_training_stack() -> None:
    done = run_without_training_stack("models", "zipdepth_*")
    assert done.returncode == 0, done.stderr
    assert "| `zipdepth_base` |" in done.stdout


@pytest.mark.parametrize("command", [["train"], ["export", "--weights", "w.safetensors"], ["eval", "nyu"],
                                     ["label", "a", "b", "--teacher", "oracle"], ["bench"], ["convert", "a", "b"],
                                     ["prune"], ["demo"], ["synth", "out", "--count", "1"]])
def test_a_command_that_needs_the_training_stack_names_its_extra(command: list[str]) -> None:
    done = run_without_training_stack(*command)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "not installed: pip install 'edgedepth[train]'" in done.stderr, done.stderr


def test_our_weights_need_the_training_stack_and_say_so(weights: Path, photo: Path, tmp_path: Path) -> None:
    done = run_without_training_stack("predict", str(photo), "--weights", str(weights), "--out", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "the torch runtime needs torch, which is not installed: pip install 'edgedepth[train]'" in done.stderr


@pytest.mark.slow  # a fresh virtual environment and a first install from the package registry: a minute or two
def test_a_runtime_only_install_runs_predict(student: Path, photo: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m build`` makes a wheel and an sdist; the wheel installed (no extra) into a fresh environment gives
    ``edgedepth --version`` and a working ``edgedepth predict``, ``models`` and ``bench --files`` on an ONNX file, and
    no PyTorch; the sdist holds the package's data and installs too."""
    repo = Path(__file__).resolve().parents[1]
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(repo)], check=False,
                           capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    version = metadata.version("edgedepth")
    wheel, sdist = dist / f"edgedepth-{version}-py3-none-any.whl", dist / f"edgedepth-{version}.tar.gz"
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"README.md", "CHANGELOG.md", "LICENSE", "src/edgedepth/core/catalog.json", "src/edgedepth/static/index.html",
            "src/edgedepth/data/marigold_splits/LICENSE"} <= names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # The fresh environment sees only itself: a PYTHONPATH of the caller's (a checkout's src/) would make pip take
    # edgedepth as installed already.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=False,
                             capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-2000:]
    edgedepth = str(venv / "bin" / "edgedepth")
    assert subprocess.run([edgedepth, "--version"], check=True, capture_output=True, text=True).stdout == (
        f"edgedepth {version}\n")
    probe = "import importlib.util as u; print([n for n in ('torch', 'timm', 'transformers') if u.find_spec(n)])"
    assert subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True).stdout == "[]\n"
    out = tmp_path / "out"
    done = subprocess.run([str(venv / "bin" / "edgedepth"), "predict", str(photo), "--weights", str(student), "--out",
                           str(out), "--npy"], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert np.load(out / "room.npy").shape == (150, 200)
    models = subprocess.run([str(venv / "bin" / "edgedepth"), "models"], check=False, capture_output=True, text=True)
    assert models.returncode == 0 and "| `fastdepth_v3` |" in models.stdout
    bench = subprocess.run([str(venv / "bin" / "edgedepth"), "bench", "--files", str(student), "--threads", "1",
                            "--runs", "2", "--warmup", "0", "--out", str(tmp_path / "bench")], check=False,
                           capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0 and "| fastdepth_v3 | onnx | 1 |" in bench.stdout, bench.stderr
    assert "torch not installed" in bench.stdout  # the versions line says what this environment lacks
    reinstall = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                                str(sdist)], check=False, capture_output=True, text=True, timeout=1200)
    assert reinstall.returncode == 0, reinstall.stderr[-2000:]
    done = subprocess.run([edgedepth, "predict", str(photo), "--weights", str(student), "--out", str(tmp_path / "o")],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("argv", [
    ("eval", "nyu", "--limit", "x"), ("eval", "zeroshot", "--limit", "x"), ("bench", "--runs", "x"),
    ("export", "model.safetensors", "--size", "x"), ("label", "--batch", "x"), ("prune", "--step", "x"),
    ("demo", "--epochs", "x"), ("predict", "--size", "x"), ("serve", "--port", "x"),
])
def test_a_wrong_option_fails_before_the_training_framework_loads(argv: tuple[str, ...]) -> None:
    """Options parse from light config modules: a typo costs a blink, not the seconds PyTorch takes to import."""
    code = ("import sys\nfrom edgedepth.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(name for name in ('torch', 'timm', 'transformers') if name in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], check=False, capture_output=True, text=True, timeout=60)
    assert "error: argument" in done.stderr, done.stderr
    assert done.stdout.strip() == "[]", f"{' '.join(argv)} imported {done.stdout.strip()} before failing"


def test_a_named_model_runs_from_the_cache_without_the_training_stack(student: Path, photo: Path,
                                                                      tmp_path: Path) -> None:
    """Building a release's export needs PyTorch; running one already in the cache (built on another machine and
    copied in, as here) needs only the runtime, from the command line and from Python."""
    cache = tmp_path / "cache"
    env = {"EDGEDEPTH_CACHE": str(cache), "EDGEDEPTH_MIRROR": "http://127.0.0.1:9"}  # and offline
    argv = ("predict", str(photo), "--model", "zipdepth_base", "--runtime", "onnx", "--size", "128x96", "--out",
            str(tmp_path / "out"), "--npy")
    done = run_without_training_stack(*argv, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"edgedepth: error: --model zipdepth_base (the first time: download, convert and "
                                   f"export into {cache}) needs torch, which is not installed: pip install "
                                   "'edgedepth[train]'")
    cached = cache / "exports" / "zipdepth_base" / "128x96" / "zipdepth_base.onnx.onnx"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(student, cached)
    done = run_without_training_stack(*argv, env=env)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "room.npy"),
                                  load_predictor(student, keep_aspect=True)(read_rgb(photo)))
    script = ("import edgedepth\nmodel = edgedepth.load('zipdepth_base', runtime='onnx', size=(128, 96))\n"
              f"print(model, model({str(photo)!r}).shape)")
    probe = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                           env={**without_training_stack(), **env})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "DepthModel(fastdepth_v3, runtime=onnxruntime, input 128x96) (150, 200)"
