"""Bad input to every command, as one table (issue 14): what each class of bad file does to each subcommand.

Each case runs the real command line in this process and asserts, for an error: exit status 2, exactly one line on
stderr (``edgedepth: error: <path>: <what is wrong>...``) naming the file, no traceback, and no file written (none
half-written, no temporary left); for a skip inside a folder or a stream of inputs: exit status 0, exactly one
``edgedepth: warning:`` line naming the file and what is wrong, the other inputs done, nothing of the bad one and
no temporary left; for a posted image (``serve``): the HTTP status and one log line. The README's Troubleshooting
table is this table (:func:`test_readme_table_is_what_these_cases_prove`).

Unusual but valid images (16-bit, grayscale, RGBA, CMYK, palette, 1x1, EXIF-rotated JPEGs) predict as their plain
8-bit RGB equivalent (:func:`test_unusual_valid_images_predict_as_their_plain_rgb_equivalent`).
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from test_predict import _exif_jpeg, _write_bilevel_png
from test_train import write_pairs
from zeroshot_sets import entries, image, oracle_depth, write_set

from edgedepth.cli import main
from edgedepth.data.marigold import EVAL_SETS, EvalSetWriter, SampleEntry
from edgedepth.data.nyu import write_labeled_mat, write_splits_mat
from edgedepth.data.shards import FORMAT as LABEL_FORMAT
from edgedepth.data.shards import FORMAT_VERSION as LABEL_VERSION
from edgedepth.data.shards import ShardWriter
from edgedepth.models import create_model, save_weights
from edgedepth.models.weights import FORMAT as WEIGHTS_FORMAT

REPO = Path(__file__).resolve().parents[1]
#: A student that builds in milliseconds (timm's test EfficientNet under our decoder): what the model is does not
#: matter here, only that its file is ours and its output depends on the image.
TINY = "fastdepth_test_efficientnet"
COMMANDS = ("predict", "eval nyu", "eval zeroshot", "label", "train", "export", "bench", "serve", "convert", "synth",
            "demo")
#: The table's rows: every class of bad input, in the README's order.
INPUT_CLASSES = (
    "missing file",
    "zero-byte file",
    "truncated or corrupt image",
    "image above the pixel limit (20000x20000)",
    "truncated or corrupt `.mat`",
    "swapped `.mat` files (`--data` and `--splits`)",
    "out-of-range split indices",
    "truncated or corrupt `.safetensors`",
    "truncated or corrupt `.onnx`",
    "truncated or corrupt OpenVINO `.xml`",
    "truncated or corrupt `.pth` / `.pt`",
    "truncated or corrupt tar shard",
    "truncated or corrupt `.npy`",
    "member missing from an evaluation tar",
    "malformed sample list",
    "weights of another model",
    "config value of a wrong type",
    "port in use",
    "a folder where a file is expected",
    "a file where a folder is expected",
    "truncated or corrupt `--metric` file (points `.json`, sparse `.npy` / `.png`)",
    "degenerate `--metric` reference (one point, no floor in view)",
    "intrinsics that do not match the image",
)

#: What a cell of the table says: the command stops (one line, exit status 2, nothing written), or skips the bad
#: input with a warning and does the rest (one bad file among many), or, for an image posted to ``serve``, answers
#: the HTTP error and serves on.
ERROR, SKIP, HTTP_400, HTTP_413 = "error, exit 2", "skipped with a warning", "HTTP 400", "HTTP 413"
OUTCOMES = (ERROR, SKIP, HTTP_400, HTTP_413)
OTHER = "weights do not fit model 'fastdepth_test_resnet'"


# ---------------------------------------------------------------------------------------------------------------
# Inputs shared by the cases (built once; no case changes them)


def _onnx_model(path: Path, height: int = 32, width: int = 32) -> Path:
    """A valid ONNX depth model written by hand: the mean over the channels, N x 3 x H x W -> N x 1 x H x W."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["depth"], axes=[1], keepdims=1)],
        "mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["N", 1, height, width])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _png(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb)
    return path


def _label_shard(folder: Path, count: int = 5, size: tuple[int, int] = (64, 64)) -> Path:
    """A finished label folder (what ``edgedepth label`` writes) of ``count`` samples, by hand."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    with ShardWriter(folder / "shard-000000.tar") as writer:
        for index in range(count):
            image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            label = rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16)
            writer.write(f"{index:03d}", {"jpg": cv2.imencode(".jpg", image)[1].tobytes(),
                                          "depth.png": cv2.imencode(".png", label)[1].tobytes(),
                                          "json": json.dumps({"key": f"{index:03d}"}).encode()})
    index = {"format": LABEL_FORMAT, "version": LABEL_VERSION, "complete": True, "count": count,
             "recipe": {"size": list(size)}, "shards": [{"name": "shard-000000.tar", "count": count}]}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


@dataclass(frozen=True)
class Shared:
    root: Path
    weights: Path  # a tiny student of ours
    other_model: Path  # its tensors under a card that names another architecture
    state_dict: Path  # torch.save(its state_dict())
    onnx: Path  # a valid ONNX depth model (a teacher)
    nyu: Path  # 3 frames of 48x64
    splits: Path
    out_of_range: Path  # a splits.mat whose test split names frame 9 of 3
    pairs: Path  # 4 training pairs in the seed's layout
    suite: Path  # Marigold's base data folder with 2 NYU samples (eval zeroshot)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One PyTorch thread: these networks are tiny, and a second thread only waits for cores others use."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what edgedepth.core.cores leaves standing (train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, randomize_batchnorm: Callable[..., torch.nn.Module]) -> Shared:
    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)  # the same weights on every run (module fixtures come before the per-test seeding)
    weights = save_weights(randomize_batchnorm(create_model(TINY), 0), root / "tiny.safetensors")
    tensors = load_file(str(weights))
    card = {**create_model(TINY).card.to_dict(), "name": "fastdepth_test_resnet", "model_args": {}}
    other = root / "resnet.safetensors"
    save_file(tensors, str(other), metadata={"format": WEIGHTS_FORMAT, "card": json.dumps(card), "provenance": "{}"})
    torch.save(tensors, root / "student.pth")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    depths = rng.uniform(1.0, 5.0, (3, 48, 64)).astype(np.float32)
    write_labeled_mat(root / "nyu_depth_v2_labeled.mat", images, depths, depths)
    write_splits_mat(root / "splits.mat", [0], [1, 2])
    write_splits_mat(root / "splits_9.mat", [0], [1, 8])
    return Shared(root, weights, other, root / "student.pth", _onnx_model(root / "teacher.onnx"),
                  root / "nyu_depth_v2_labeled.mat", root / "splits.mat", root / "splits_9.mat",
                  write_pairs(root / "pairs", 4), _suite_root(root / "suite"))


def _suite_root(root: Path) -> Path:
    write_set(root, "nyu", 2)
    return root


# ---------------------------------------------------------------------------------------------------------------
# The cases


@dataclass
class Run:
    """One command line and what it must say: ``names`` (a path) and ``says`` (what is wrong) in the one line.

    ``made``: files (relative to the case's folder) a skip case must have written for the good inputs. ``post``:
    the body to POST to a server instead of running ``argv``; ``status`` its expected answer.
    """

    argv: list[str]
    names: str
    says: str
    made: tuple[str, ...] = ()
    post: bytes | None = None
    status: int = 0
    hold: Any = None  # kept alive while the command runs (a bound socket)


class Case:
    """A cell's evidence: ``command`` given ``row``'s bad input (``setup`` builds it) answers as ``cell`` says."""

    def __init__(self, command: str, row: str, cell: str, setup: Callable[[Path, Shared], Run], what: str) -> None:
        assert command in COMMANDS and row in INPUT_CLASSES and cell in OUTCOMES, (command, row, cell)
        self.command, self.row, self.cell, self.setup, self.what = command, row, cell, setup, what
        self.kind = "skip" if cell.startswith(SKIP) else "http" if cell.startswith("HTTP") else "error"

    @property
    def id(self) -> str:
        return f"{self.command}-{self.what}".replace(" ", "-")


def _predict(tmp: Path, image: Path | str, weights: Path | str, *more: str) -> list[str]:
    return ["predict", str(image), "--weights", str(weights), "--out", str(tmp / "out"), "--size", "64x64", *more]


def _predict_folder(tmp: Path, s: Shared, bad_name: str, write_bad: Callable[[Path], Any], says: str) -> Run:
    folder = tmp / "photos"
    _png(folder / "good.png")
    write_bad(folder / bad_name)
    return Run(_predict(tmp, folder, s.weights), str(folder / bad_name), says,
               made=("out/good.color.png", "out/good.depth.png"))


def _predict_alone(tmp: Path, s: Shared, name: str, write_bad: Callable[[Path], Any], says: str) -> Run:
    write_bad(tmp / name)
    return Run(_predict(tmp, tmp / name, s.weights), str(tmp / name), says)


def _eval(tmp: Path, s: Shared, *, data: Path | None = None, splits: Path | None = None,
          weights: Path | None = None, more: tuple[str, ...] = ()) -> list[str]:
    return ["eval", "nyu", "--data", str(data or s.nyu), "--splits", str(splits or s.splits), "--weights",
            str(weights or s.weights), "--crop", "none", "--out", str(tmp / "out"), *more]


def _label(tmp: Path, source: Path, teacher: str = "oracle", out: Path | None = None) -> list[str]:
    return ["label", str(source), str(out or tmp / "out"), "--teacher", teacher, "--crop", "64x48", "--size",
            "32x32", "--workers", "0"]


def _label_folder(tmp: Path, s: Shared, bad: Callable[[Path], Any], says: str) -> Run:
    """Label pairs in the seed's layout (oracle teacher) with one bad image among them, its depth beside it."""
    folder = tmp / "scenes"
    write_pairs(folder, 3)
    bad(folder / "bad.jpg")
    cv2.imwrite(str(folder / "bad.png"), np.full((48, 64), 2000, np.uint16))
    return Run(_label(tmp, folder), str(folder / "bad.jpg"), says,
               made=("out/index.json", "out/shard-000000.tar", "out/skipped.jsonl"))


#: A run of one step: the tiny student at 64x64, a batch of 4, one epoch, no workers unless a case asks for them.
TRAIN = (f"model.name={TINY}", "model.pretrained=false", "data.input_size=64x64", "data.num_workers=0",
         "optim.batch_size=4", "run.device=cpu", "schedule.epochs=1", "logging.progress_bar=false",
         "logging.tensorboard=false")


def _train(tmp: Path, data: Path | str, *more: str) -> list[str]:
    return ["train", f"data.path={data}", f"run.dir={tmp / 'out'}", *TRAIN, *more]


def _train_folder(tmp: Path, bad: str, write_bad: Callable[[Path], Any], says: str, workers: int = 0) -> Run:
    """Train on 3 good pairs and 1 bad one: the bad one is skipped, a good one takes its place in the batch."""
    folder = write_pairs(tmp / "pairs", 3)
    cv2.imwrite(str(folder / "bad.jpg"), np.full((48, 64, 3), 128, np.uint8))
    cv2.imwrite(str(folder / "bad.png"), np.full((48, 64), 2000, np.uint16))
    write_bad(folder / bad)
    return Run(_train(tmp, folder, f"data.num_workers={workers}"), str(folder / bad), says,
               made=("out/final.safetensors", "out/checkpoint.pt"))


def _other_run(tmp: Path, s: Shared) -> Run:
    """A run folder whose checkpoint trains another model: resuming it with this one is refused."""
    from edgedepth.core.config import load_config, to_dict
    from edgedepth.train.config import TrainConfig

    other = to_dict(load_config(TrainConfig, None, [*_train(tmp, s.pairs)[1:], "model.name=fastdepth_v3"]))
    checkpoint = tmp / "out" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "scaler": {}, "rng": {}, "position": {},
                "config": other}, checkpoint)
    return Run(_train(tmp, s.pairs), str(checkpoint), f"model.name: 'fastdepth_v3' -> '{TINY}'")


def _hf_teacher(tmp: Path, weights: bytes) -> Path:
    """A transformers model folder (a tiny DPT's config and processor, as save_pretrained writes) with these weights."""
    folder = tmp / "dpt"
    folder.mkdir()
    config = {"model_type": "dpt", "architectures": ["DPTForDepthEstimation"], "hidden_size": 16,
              "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 16, "image_size": 32,
              "patch_size": 8, "backbone_out_indices": [0, 1, 2, 3], "neck_hidden_sizes": [8, 8, 16, 16],
              "fusion_hidden_size": 8, "head_hidden_size": 8}
    processor = {"image_processor_type": "DPTImageProcessor", "size": {"height": 32, "width": 32},
                 "keep_aspect_ratio": False, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def _train_validation(tmp: Path, s: Shared, data: Path, splits: Path) -> list[str]:
    return _train(tmp, s.pairs, f"validation.nyu_data_path={data}", f"validation.nyu_splits_path={splits}")


def _export(tmp: Path, weights: Path | str, *more: str) -> list[str]:
    return ["export", "--weights", str(weights), "--format", "onnx", "--out", str(tmp / "out" / "student.onnx"),
            *more]


def _calib(tmp: Path, s: Shared, bad: Callable[[Path], Any], name: str = "bad.png") -> list[str]:
    folder = tmp / "calib"
    _png(folder / "good.png")
    bad(folder / name)
    return _export(tmp, s.weights, "--int8", "--calib", str(folder))


def _serve(weights: Path | str, *more: str) -> list[str]:
    return ["serve", "--weights", str(weights), "--port", "0", *more]


def _convert(tmp: Path, source: Path | str, out: Path | None = None, *more: str) -> list[str]:
    return ["convert", str(source), str(out or tmp / "out" / "student.safetensors"), *more]


def _suite(tmp: Path, s: Shared, *more: str, tar: Path | None = None,
           model: tuple[str, ...] = ("--baseline", "ramp")) -> list[str]:
    """``eval zeroshot`` on two NYU samples: the shared data root's, or those of ``tar``."""
    sets = ["--tar", f"nyu={tar}"] if tar is not None else ["--data-root", str(s.suite)]
    return ["eval", "zeroshot", *sets, "--datasets", "nyu", "--limit", "2", *model, "--out",
            str(tmp / "out"), *more]


def _nyu_tar(path: Path, second: Callable[[EvalSetWriter, SampleEntry], Any]) -> Path:
    """A NYU evaluation tar whose first sample is whole and whose second is what ``second`` writes of it."""
    first, other = entries("nyu", 2)
    with EvalSetWriter(path, EVAL_SETS["nyu"]) as writer:
        writer.add(first, image("nyu", 0), oracle_depth("nyu", 0))
        second(writer, other)
    return path


def _suite_skip(tmp: Path, s: Shared, second: Callable[[EvalSetWriter, SampleEntry], Any], member: str,
                says: str) -> Run:
    """The suite on a NYU tar whose second sample is broken: skipped with a warning naming its member."""
    tar = _nyu_tar(tmp / "nyu.tar", second)
    bad = getattr(entries("nyu", 2)[1], member)
    return Run(_suite(tmp, s, tar=tar), f"{tar}:{bad}", says, made=("out/table.md", "out/metrics.json"))


def _predictions(tmp: Path, bad: bytes) -> Path:
    """A folder of predictions in Marigold's layout for the two NYU samples, the second's file ``bad``."""
    folder = tmp / "predictions"
    for index, entry in enumerate(entries("nyu", 2)):
        path = folder / "nyu" / EVAL_SETS["nyu"].prediction_path(entry.rgb)
        path.parent.mkdir(parents=True, exist_ok=True)
        if index == 0:
            np.save(path, (1.0 / oracle_depth("nyu", 0)).astype(np.float32))
        else:
            path.write_bytes(bad)
    return folder


def _write(data: bytes) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return write


def _half(source: Path) -> Callable[[Path], Path]:
    """Writes the first half of ``source``: a file cut short by an interrupted copy or download."""
    return lambda path: _write(source.read_bytes()[: source.stat().st_size // 2])(path)


def _truncated_png(path: Path) -> Path:
    data = _png(path.with_name("whole.png"), seed=3).read_bytes()
    path.with_name("whole.png").unlink()
    return _write(data[: len(data) // 2])(path)


def _write_npy(path: Path) -> Path:
    np.save(path, np.random.default_rng(5).uniform(0.5, 5.0, (48, 64)))
    return path


def _truncated_jpeg(path: Path) -> Path:
    image = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    return _write(data[: len(data) // 2])(path)


def _bomb(path: Path) -> Path:
    _write_bilevel_png(path, 20000, 20000)  # 48 KB of PNG that would decode to 1.2 GB of RGB
    return path


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "inside.txt").write_text("a folder, not a file")
    return path


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a file, not a folder")
    return path


def _image_tar(path: Path, count: int = 3) -> Path:
    """A tar shard of ``count`` PNG images, ``0.png`` ..."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for index in range(count):
            rgb = np.random.default_rng(index).integers(0, 256, (48, 64, 3), dtype=np.uint8)
            data = cv2.imencode(".png", rgb)[1].tobytes()
            info = tarfile.TarInfo(f"{index}.png")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _cut_last_member(path: Path) -> Path:
    """Cut a tar inside its last member's bytes, as an interrupted copy would."""
    with tarfile.open(path) as archive:
        last = archive.getmembers()[-1]
    return _write(path.read_bytes()[: last.offset_data + last.size // 2])(path)


def _truncated_tar(path: Path) -> Path:
    """A tar of three images cut inside the last one: the first two are whole."""
    return _cut_last_member(_image_tar(path))


def _tars(folder: Path, bad: Callable[[Path], Any]) -> Path:
    """A folder of two tar shards of images, the second one bad."""
    _image_tar(folder / "a.tar")
    bad(folder / "b.tar")
    return folder


def _port_in_use(tmp: Path, s: Shared) -> Run:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    argv = ["serve", "--weights", str(s.weights), "--port", str(port)]
    return Run(argv, f"127.0.0.1:{port}", "Address already in use", hold=taken)


def _post(body: bytes | Callable[[Path], bytes], status: int, says: str) -> Callable[[Path, Shared], Run]:
    def setup(tmp: Path, s: Shared) -> Run:
        data = body(tmp) if callable(body) else body
        return Run([], "POST /predict", says, post=data, status=status)

    return setup


def _seed_config(text: str) -> Callable[[Path, Shared], Run]:
    def setup(tmp: Path, s: Shared) -> Run:
        config = _write(text.encode())(tmp / "config.yaml")
        return Run(_eval(tmp, s, more=("--config", str(config))), str(config), "width/height")

    return setup


def _train_config(text: str, says: str) -> Callable[[Path, Shared], Run]:
    def setup(tmp: Path, s: Shared) -> Run:
        config = _write(text.encode())(tmp / "config.yaml")
        return Run(["train", "--config", str(config), *_train(tmp, s.pairs)[1:]], str(config), says)

    return setup


C = Case
CASES: list[Case] = [
    # ---------------------------------------------------------------------------------------- missing file
    C("predict", "missing file", ERROR, lambda t, s: Run(_predict(t, t / "nope.png", s.weights), str(t / "nope.png"),
                                                         "no such file or folder"), "image"),
    C("predict", "missing file", ERROR, lambda t, s: Run(_predict(t, _png(t / "a.png"), t / "nope.safetensors"),
                                                         str(t / "nope.safetensors"), "no such weights file"),
      "weights"),
    C("eval nyu", "missing file", ERROR, lambda t, s: Run(_eval(t, s, data=t / "nope.mat"), str(t / "nope.mat"),
                                                      "no such file (labeled data)"), "data"),
    C("eval nyu", "missing file", ERROR, lambda t, s: Run(_eval(t, s, splits=t / "nope.mat"), str(t / "nope.mat"),
                                                      "no such file (splits)"), "splits"),
    C("eval nyu", "missing file", ERROR, lambda t, s: Run(_eval(t, s, weights=t / "nope.onnx"), str(t / "nope.onnx"),
                                                      "no such model file"), "weights"),
    C("label", "missing file", ERROR, lambda t, s: Run(_label(t, t / "nope"), str(t / "nope"),
                                                       "no such file or folder"), "source"),
    C("label", "missing file", ERROR, lambda t, s: Run(_label(t, s.pairs, f"onnx:{t / 'nope.onnx'}"),
                                                       str(t / "nope.onnx"), "no such ONNX file"), "teacher"),
    C("train", "missing file", ERROR, lambda t, s: Run(["train", "--config", str(t / "nope.yaml")],
                                                       str(t / "nope.yaml"), "no such config file"), "config"),
    C("train", "missing file", ERROR, lambda t, s: Run(_train(t, t / "nope"), str(t / "nope"), "does not exist"),
      "data"),
    C("train", "missing file", ERROR, lambda t, s: Run(_train_validation(t, s, t / "nope.mat", s.splits),
                                                       str(t / "nope.mat"), "no such file (labeled data)"),
      "validation data"),
    C("export", "missing file", ERROR, lambda t, s: Run(_export(t, t / "nope.safetensors"),
                                                        str(t / "nope.safetensors"), "no such weights file"),
      "weights"),
    C("export", "missing file", ERROR, lambda t, s: Run(_export(t, s.weights, "--int8", "--calib", str(t / "nope")),
                                                        str(t / "nope"), "no such file or folder"), "calib"),
    C("serve", "missing file", ERROR, lambda t, s: Run(_serve(t / "nope.xml"), str(t / "nope.xml"),
                                                       "no such model file"), "weights"),
    C("convert", "missing file", ERROR, lambda t, s: Run(_convert(t, t / "nope.pth"), str(t / "nope.pth"),
                                                         "no such file"), "checkpoint"),
    # -------------------------------------------------------------------------------------- zero-byte file
    C("predict", "zero-byte file", ERROR, lambda t, s: _predict_alone(t, s, "empty.jpg", _write(b""),
                                                                      "empty file (0 bytes)"), "image"),
    C("predict", "zero-byte file", SKIP, lambda t, s: _predict_folder(t, s, "empty.jpg", _write(b""),
                                                                           "empty file (0 bytes)"), "image in folder"),
    C("predict", "zero-byte file", ERROR, lambda t, s: Run(_predict(t, _png(t / "a.png"),
                                                                    _write(b"")(t / "w.safetensors")),
                                                           str(t / "w.safetensors"), "empty file (0 bytes)"),
      "weights"),
    C("eval nyu", "zero-byte file", ERROR, lambda t, s: Run(_eval(t, s, data=_write(b"")(t / "nyu.mat")),
                                                        str(t / "nyu.mat"), "empty file (0 bytes)"), "data"),
    C("eval nyu", "zero-byte file", ERROR, lambda t, s: Run(_eval(t, s, splits=_write(b"")(t / "splits.mat")),
                                                        str(t / "splits.mat"), "empty file (0 bytes)"), "splits"),
    C("eval nyu", "zero-byte file", ERROR, lambda t, s: Run(_eval(t, s, weights=_write(b"")(t / "w.xml")),
                                                        str(t / "w.xml"), "empty file (0 bytes)"), "weights"),
    C("label", "zero-byte file", SKIP, lambda t, s: _label_folder(t, s, _write(b""), "empty file (0 bytes)"),
      "image in folder"),
    C("label", "zero-byte file", ERROR, lambda t, s: Run(_label(t, _write(b"")(t / "shard.tar"), "oracle"),
                                                         str(t / "shard.tar"), "empty file (0 bytes)"), "tar"),
    C("train", "zero-byte file", ERROR, _train_config("", "empty file (0 bytes)"), "config"),
    C("train", "zero-byte file", SKIP, lambda t, s: _train_folder(t, "bad.jpg", _write(b""), "empty file (0 bytes)"),
      "image in folder"),
    C("export", "zero-byte file", ERROR, lambda t, s: Run(_export(t, _write(b"")(t / "w.safetensors")),
                                                          str(t / "w.safetensors"), "empty file (0 bytes)"),
      "weights"),
    C("export", "zero-byte file", ERROR, lambda t, s: Run(_calib(t, s, _write(b"")), str(t / "calib" / "bad.png"),
                                                          "empty file (0 bytes)"), "calib image"),
    C("serve", "zero-byte file", ERROR, lambda t, s: Run(_serve(_write(b"")(t / "w.onnx")), str(t / "w.onnx"),
                                                         "empty file (0 bytes)"), "weights"),
    C("serve", "zero-byte file", HTTP_400, _post(b"", 400, "empty body"), "posted body"),
    C("convert", "zero-byte file", ERROR, lambda t, s: Run(_convert(t, _write(b"")(t / "seed.pth")),
                                                           str(t / "seed.pth"), "empty file (0 bytes)"), "checkpoint"),
    C("synth", "zero-byte file", ERROR, lambda t, s: Run(["synth", str(t / "out"), "--count", "1", "--size", "64x48"],
                                                         str(_write(b"")(t / "out" / "index.json")),
                                                         "unreadable"), "index"),
    C("demo", "zero-byte file", ERROR, lambda t, s: Run(["demo", "--out", str(t / "out")],
                                                        str(_write(b"")(t / "out" / "scenes_train" / "index.json")),
                                                        "unreadable"), "index"),
    # --------------------------------------------------------------------------- truncated or corrupt image
    C("predict", "truncated or corrupt image", ERROR, lambda t, s: _predict_alone(t, s, "cut.png", _truncated_png,
                                                                                  "unreadable image"), "truncated"),
    C("predict", "truncated or corrupt image", ERROR,
      lambda t, s: _predict_alone(t, s, "fake.png", _write(b"not an image at all"), "not an image file"), "corrupt"),
    C("predict", "truncated or corrupt image", SKIP,
      lambda t, s: _predict_folder(t, s, "cut.jpg", _truncated_jpeg, "unreadable image"), "truncated in folder"),
    C("label", "truncated or corrupt image", SKIP, lambda t, s: _label_folder(t, s, _truncated_jpeg,
                                                                              "unreadable image"), "image in folder"),
    C("train", "truncated or corrupt image", SKIP, lambda t, s: _train_folder(t, "bad.jpg", _truncated_jpeg,
                                                                              "unreadable image"), "image in folder"),
    C("train", "truncated or corrupt image", SKIP,
      lambda t, s: _train_folder(t, "bad.png", _write(b"\x89PNG garbage"), "unreadable PNG", workers=1),
      "depth png in folder, loader worker"),
    C("export", "truncated or corrupt image", ERROR, lambda t, s: Run(_calib(t, s, _truncated_png),
                                                                      str(t / "calib" / "bad.png"),
                                                                      "unreadable image"), "calib image"),
    C("serve", "truncated or corrupt image", HTTP_400,
      _post(lambda t: _truncated_png(t / "cut.png").read_bytes(), 400, "unreadable image"), "posted image"),
    # ------------------------------------------------------------------------------- above the pixel limit
    C("predict", "image above the pixel limit (20000x20000)", ERROR,
      lambda t, s: _predict_alone(t, s, "huge.png", _bomb, "above the pixel limit"), "image"),
    C("predict", "image above the pixel limit (20000x20000)", SKIP,
      lambda t, s: _predict_folder(t, s, "huge.png", _bomb, "above the pixel limit"), "image in folder"),
    C("label", "image above the pixel limit (20000x20000)", SKIP,
      lambda t, s: _label_folder(t, s, _bomb, "above the pixel limit"), "image in folder"),
    C("train", "image above the pixel limit (20000x20000)", SKIP,
      lambda t, s: _train_folder(t, "bad.jpg", _bomb, "above the pixel limit"), "image in folder"),
    C("export", "image above the pixel limit (20000x20000)", ERROR,
      lambda t, s: Run(_calib(t, s, _bomb), str(t / "calib" / "bad.png"), "above the pixel limit"), "calib image"),
    C("serve", "image above the pixel limit (20000x20000)", HTTP_413,
      _post(lambda t: _bomb(t / "huge.png").read_bytes(), 413, "above the pixel limit"), "posted image"),
    # ------------------------------------------------------------------------------ truncated or corrupt .mat
    C("eval nyu", "truncated or corrupt `.mat`", ERROR, lambda t, s: Run(_eval(t, s, data=_half(s.nyu)(t / "nyu.mat")),
                                                                     str(t / "nyu.mat"), "truncated or corrupt"),
      "data"),
    C("eval nyu", "truncated or corrupt `.mat`", ERROR,
      lambda t, s: Run(_eval(t, s, splits=_half(s.splits)(t / "splits.mat")), str(t / "splits.mat"),
                       "not a readable MATLAB splits file"), "splits"),
    C("train", "truncated or corrupt `.mat`", ERROR,
      lambda t, s: Run(_train_validation(t, s, _half(s.nyu)(t / "nyu.mat"), s.splits), str(t / "nyu.mat"),
                       "truncated or corrupt"), "validation data"),
    # --------------------------------------------------------------------------------- swapped .mat files
    C("eval nyu", "swapped `.mat` files (`--data` and `--splits`)", ERROR,
      lambda t, s: Run(_eval(t, s, data=s.splits, splits=s.nyu), str(s.splits), "swapped"), "data and splits"),
    C("train", "swapped `.mat` files (`--data` and `--splits`)", ERROR,
      lambda t, s: Run(_train_validation(t, s, s.splits, s.nyu), str(s.splits), "swapped"), "validation files"),
    # ----------------------------------------------------------------------------- out-of-range split indices
    C("eval nyu", "out-of-range split indices", ERROR,
      lambda t, s: Run(_eval(t, s, splits=s.out_of_range), str(s.out_of_range), "index 9 out of range (1..3"),
      "splits"),
    C("train", "out-of-range split indices", ERROR,
      lambda t, s: Run(_train_validation(t, s, s.nyu, s.out_of_range), str(s.out_of_range),
                       "index 9 out of range (1..3"), "validation splits"),
    # ------------------------------------------------------------------------ truncated or corrupt weights
    C("predict", "truncated or corrupt `.safetensors`", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), _half(s.weights)(t / "w.safetensors")),
                       str(t / "w.safetensors"), "not a readable .safetensors weights file"), "weights"),
    C("eval nyu", "truncated or corrupt `.safetensors`", ERROR,
      lambda t, s: Run(_eval(t, s, weights=_write(b"\x00garbage" * 9)(t / "w.safetensors")),
                       str(t / "w.safetensors"), "not a readable .safetensors weights file"), "weights"),
    C("export", "truncated or corrupt `.safetensors`", ERROR,
      lambda t, s: Run(_export(t, _half(s.weights)(t / "w.safetensors")), str(t / "w.safetensors"),
                       "not a readable .safetensors weights file"), "weights"),
    C("serve", "truncated or corrupt `.safetensors`", ERROR,
      lambda t, s: Run(_serve(_half(s.weights)(t / "w.safetensors")), str(t / "w.safetensors"),
                       "not a readable .safetensors weights file"), "weights"),
    C("label", "truncated or corrupt `.safetensors`", ERROR,
      lambda t, s: Run(_label(t, s.pairs, f"hf:{_hf_teacher(t, b'garbage' * 9)}"), str(t / "dpt" / "model.safetensors"),
                       "not a readable .safetensors weights file"), "transformers teacher"),
    C("predict", "truncated or corrupt `.onnx`", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), _half(s.onnx)(t / "w.onnx")), str(t / "w.onnx"),
                       "not a readable ONNX model"), "weights"),
    C("eval nyu", "truncated or corrupt `.onnx`", ERROR,
      lambda t, s: Run(_eval(t, s, weights=_half(s.onnx)(t / "w.onnx")), str(t / "w.onnx"),
                       "not a readable ONNX model"), "weights"),
    C("label", "truncated or corrupt `.onnx`", ERROR,
      lambda t, s: Run(_label(t, s.pairs, f"onnx:{_half(s.onnx)(t / 'teacher.onnx')}"), str(t / "teacher.onnx"),
                       "not a readable ONNX model"), "teacher"),
    C("serve", "truncated or corrupt `.onnx`", ERROR,
      lambda t, s: Run(_serve(_write(b"\x08garbage" * 9)(t / "w.onnx")), str(t / "w.onnx"),
                       "not a readable ONNX model"), "weights"),
    C("predict", "truncated or corrupt OpenVINO `.xml`", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), _write(b'<?xml version="1.0"?>\n<net name="m" ver')(
          t / "w.xml")), str(t / "w.xml"), "not a readable OpenVINO IR"), "weights"),
    C("eval nyu", "truncated or corrupt OpenVINO `.xml`", ERROR,
      lambda t, s: Run(_eval(t, s, weights=_write(b"<net><layers>")(t / "w.xml")), str(t / "w.xml"),
                       "not a readable OpenVINO IR"), "weights"),
    C("serve", "truncated or corrupt OpenVINO `.xml`", ERROR,
      lambda t, s: Run(_serve(_write(b"<net><layers>")(t / "w.xml")), str(t / "w.xml"),
                       "not a readable OpenVINO IR"), "weights"),
    C("predict", "truncated or corrupt `.pth` / `.pt`", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), _half(s.state_dict)(t / "w.pt")), str(t / "w.pt"),
                       "a PyTorch checkpoint, not edgedepth weights"), "weights"),
    C("eval nyu", "truncated or corrupt `.pth` / `.pt`", ERROR,
      lambda t, s: Run(_eval(t, s, weights=_half(s.state_dict)(t / "w.pt")), str(t / "w.pt"),
                       "a PyTorch checkpoint, not edgedepth weights"), "weights"),
    C("serve", "truncated or corrupt `.pth` / `.pt`", ERROR,
      lambda t, s: Run(_serve(_half(s.state_dict)(t / "w.pth")), str(t / "w.pth"),
                       "a PyTorch checkpoint, not edgedepth weights"), "weights"),
    C("train", "truncated or corrupt `.pth` / `.pt`", ERROR,
      lambda t, s: Run(_train(t, s.pairs), str(_half(s.state_dict)(t / "out" / "checkpoint.pt")),
                       "unreadable checkpoint"), "checkpoint in run.dir"),
    C("convert", "truncated or corrupt `.pth` / `.pt`", ERROR,
      lambda t, s: Run(_convert(t, _half(s.state_dict)(t / "seed.pth")), str(t / "seed.pth"),
                       "not a readable PyTorch checkpoint"), "checkpoint"),
    # ---------------------------------------------------------------------- truncated or corrupt tar shard
    C("label", "truncated or corrupt tar shard", ERROR,
      lambda t, s: Run(_label(t, _write(b"\x00garbage" * 200)(t / "shard.tar"), f"onnx:{s.onnx}"),
                       str(t / "shard.tar"), "not a readable uncompressed tar"), "corrupt"),
    C("label", "truncated or corrupt tar shard", SKIP,
      lambda t, s: Run(_label(t, _truncated_tar(t / "shard.tar"), f"onnx:{s.onnx}"), str(t / "shard.tar"),
                       "truncated", made=("out/index.json", "out/shard-000000.tar")), "truncated"),
    C("label", "truncated or corrupt tar shard", SKIP,
      lambda t, s: Run(_label(t, _tars(t / "tars", _write(b"\x00garbage" * 200)), f"onnx:{s.onnx}"),
                       str(t / "tars" / "b.tar"), "not a readable uncompressed tar",
                       made=("out/index.json", "out/shard-000000.tar")), "corrupt among several"),
    C("train", "truncated or corrupt tar shard", ERROR,
      lambda t, s: Run(_train(t, _label_shard(t / "labels"), "data.format=shards"),
                       str(_write(b"\x00garbage" * 200)(t / "labels" / "shard-000000.tar")),
                       "not a readable uncompressed label shard"), "corrupt"),
    C("train", "truncated or corrupt tar shard", SKIP,
      lambda t, s: Run(_train(t, _label_shard(t / "labels"), "data.format=shards"),
                       str(_cut_last_member(t / "labels" / "shard-000000.tar")), "truncated",
                       made=("out/final.safetensors",)), "truncated"),
    C("export", "truncated or corrupt tar shard", ERROR,
      lambda t, s: Run(_export(t, s.weights, "--int8", "--calib", str(_write(b"\x00garbage" * 200)(t / "c.tar"))),
                       str(t / "c.tar"), "not a readable uncompressed tar"), "calib"),
    # ---------------------------------------------------------------------------- weights of another model
    C("predict", "weights of another model", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.other_model), str(s.other_model), OTHER), "weights"),
    C("eval nyu", "weights of another model", ERROR,
      lambda t, s: Run(_eval(t, s, weights=s.other_model), str(s.other_model), OTHER), "weights"),
    C("export", "weights of another model", ERROR,
      lambda t, s: Run(_export(t, s.other_model), str(s.other_model), OTHER), "weights"),
    C("serve", "weights of another model", ERROR, lambda t, s: Run(_serve(s.other_model), str(s.other_model), OTHER),
      "weights"),
    C("train", "weights of another model", ERROR, _other_run, "checkpoint of another model in run.dir"),
    C("convert", "weights of another model", ERROR,
      lambda t, s: Run(_convert(t, s.state_dict, None, "--model", "fastdepth_v3"), str(s.state_dict),
                       "does not fit model 'fastdepth_v3'"), "state dict of another family"),
    # ------------------------------------------------------------------------------ config of a wrong type
    C("train", "config value of a wrong type", ERROR, _train_config("optim:\n  lr: fast\n", "optim.lr"), "yaml"),
    C("train", "config value of a wrong type", ERROR, _train_config("- a list\n- of things\n", "mapping"), "list"),
    C("eval nyu", "config value of a wrong type", ERROR, _seed_config("width: wide\nheight: 192\n"), "seed config"),
    # --------------------------------------------------------------------------------------- port in use
    C("serve", "port in use", ERROR, _port_in_use, "port"),
    # ------------------------------------------------------------------------ folder where a file is expected
    C("predict", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), _folder(t / "w.safetensors")), str(t / "w.safetensors"),
                       "a folder, not a file"), "weights"),
    C("eval nyu", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_eval(t, s, data=_folder(t / "nyu.mat")), str(t / "nyu.mat"), "a folder, not a file"), "data"),
    C("eval nyu", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_eval(t, s, weights=_folder(t / "w.onnx")), str(t / "w.onnx"), "a folder, not a file"),
      "weights"),
    C("label", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_label(t, s.pairs, f"onnx:{_folder(t / 'teacher.onnx')}"), str(t / "teacher.onnx"),
                       "a folder, not a file"), "teacher"),
    C("train", "a folder where a file is expected", ERROR,
      lambda t, s: Run(["train", "--config", str(_folder(t / "config.yaml"))], str(t / "config.yaml"),
                       "a folder, not a file"), "config"),
    C("export", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_export(t, _folder(t / "w.safetensors")), str(t / "w.safetensors"), "a folder, not a file"),
      "weights"),
    C("export", "a folder where a file is expected", ERROR,
      lambda t, s: Run(["export", "--weights", str(s.weights), "--format", "torchscript", "--size", "64x64",
                        "--out", str(_folder(t / "out" / "student.pt"))], str(t / "out" / "student.pt"),
                       "a folder, not a file"), "out"),
    C("serve", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_serve(_folder(t / "w.xml")), str(t / "w.xml"), "a folder, not a file"), "weights"),
    C("convert", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_convert(t, _folder(t / "seed.pth")), str(t / "seed.pth"), "a folder, not a file"),
      "checkpoint"),
    C("convert", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_convert(t, s.state_dict, _folder(t / "out" / "student.safetensors"), "--model", TINY),
                       str(t / "out" / "student.safetensors"), "a folder, not a file"),
      "output"),
    C("synth", "a folder where a file is expected", ERROR,
      lambda t, s: Run(["synth", str(t / "out"), "--count", "1", "--size", "64x48"],
                       str(_folder(t / "out" / "index.json")), "a folder, not a file"), "index"),
    # ------------------------------------------------------------------------ file where a folder is expected
    C("predict", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights), str(_file(t / "out")), "a file, not a folder"),
      "out"),
    C("eval nyu", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_eval(t, s), str(_file(t / "out")), "a file, not a folder"), "out"),
    C("label", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_label(t, s.pairs), str(_file(t / "out")), "not a label folder"), "out"),
    C("train", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_train(t, s.pairs), str(_file(t / "out")), "a file, not a folder"), "run.dir"),
    C("train", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_train(t, _file(t / "pairs")), str(t / "pairs"), "a file, not a folder"), "data.path"),
    C("export", "a file where a folder is expected", ERROR,
      lambda t, s: Run(["export", "--weights", str(s.weights), "--format", "torchscript", "--size", "64x64",
                        "--out", str(t / "out" / "student.pt")], str(_file(t / "out")), "a file, not a folder"),
      "out"),
    C("bench", "a file where a folder is expected", ERROR,
      lambda t, s: Run(["bench", "--models", "fastdepth_v3", "--runtimes", "torch", "--threads", "1", "--out",
                        str(t / "out")], str(_file(t / "out")), "a file, not a folder"), "out"),
    C("convert", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_convert(t, s.state_dict, t / "out" / "student.safetensors", "--model", TINY),
                       str(_file(t / "out")), "a file, not a folder"), "output"),
    C("synth", "a file where a folder is expected", ERROR,
      lambda t, s: Run(["synth", str(t / "out" / "scenes"), "--count", "1", "--size", "64x48"],
                       str(_file(t / "out")), "a file, not a folder"), "out"),
    C("demo", "a file where a folder is expected", ERROR,
      lambda t, s: Run(["demo", "--out", str(t / "out")], str(_file(t / "out")), "a file, not a folder"), "out"),
    # ---------------------------------------------------------------- predict --metric's references (issue 15)
    C("predict", "missing file", ERROR, lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric",
                                                                  str(t / "nope.json")), str(t / "nope.json"),
                                                         "no such file (--metric)"), "metric points"),
    C("predict", "zero-byte file", ERROR, lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric",
                                                                    str(_write(b"")(t / "lidar.npy"))),
                                                           str(t / "lidar.npy"), "empty file (0 bytes)"),
      "metric sparse map"),
    C("predict", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric", str(_folder(t / "points.json"))),
                       str(t / "points.json"), "a folder, not a file"), "metric points"),
    C("predict", "truncated or corrupt `--metric` file (points `.json`, sparse `.npy` / `.png`)", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric",
                                str(_write(b'[{"x": 1, "y": 2, "dep')(t / "points.json"))), str(t / "points.json"),
                       "not a readable JSON points file"), "points"),
    C("predict", "truncated or corrupt `--metric` file (points `.json`, sparse `.npy` / `.png`)", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric",
                                str(_half(_write_npy(t / "whole.npy"))(t / "lidar.npy"))), str(t / "lidar.npy"),
                       "not a readable .npy file"), "sparse npy"),
    C("predict", "truncated or corrupt `--metric` file (points `.json`, sparse `.npy` / `.png`)", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric", str(_truncated_png(t / "lidar.png"))),
                       str(t / "lidar.png"), "not a readable PNG"), "sparse png"),
    C("predict", "degenerate `--metric` reference (one point, no floor in view)", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric",
                                str(_write(b'[{"x": 1, "y": 2, "depth": 1.5}]')(t / "points.json"))),
                       str(t / "points.json"), "1 point(s); a scale and a shift need at least 2"), "one point"),
    C("predict", "degenerate `--metric` reference (one point, no floor in view)", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric", "ground", "--camera-height", "1",
                                "--fov", "60", "--pitch", "-60"), str(t / "a.png"), "the floor would be out of view"),
      "no floor"),
    C("predict", "intrinsics that do not match the image", ERROR,
      lambda t, s: Run(_predict(t, _png(t / "a.png"), s.weights, "--metric", "ground", "--camera-height", "1",
                                "--intrinsics", "525,525,319.5,239.5"), str(t / "a.png"),
                       "intrinsics 525,525,319.5,239.5 do not match its 64x48 pixels"), "ground"),
    # ---------------------------------------------------------------------------------- eval zeroshot (issue 13)
    C("eval zeroshot", "missing file", ERROR,
      lambda t, s: Run(_suite(t, s, tar=t / "nope.tar"), str(t / "nope.tar"), "no such file or folder"), "tar"),
    C("eval zeroshot", "missing file", ERROR,
      lambda t, s: Run(_suite(t, s, "--split-file", str(t / "nope.txt")), str(t / "nope.txt"), "no such sample list"),
      "sample list"),
    C("eval zeroshot", "missing file", ERROR,
      lambda t, s: Run(_suite(t, s, model=("--weights", str(t / "nope.onnx"))), str(t / "nope.onnx"),
                       "no such model file"), "weights"),
    C("eval zeroshot", "zero-byte file", ERROR,
      lambda t, s: Run(_suite(t, s, tar=_write(b"")(t / "nyu.tar")), str(t / "nyu.tar"), "empty file (0 bytes)"),
      "tar"),
    C("eval zeroshot", "zero-byte file", SKIP,
      lambda t, s: _suite_skip(t, s, lambda w, e: w.add_member(e.rgb, b""), "rgb", "empty file (0 bytes)"),
      "member"),
    C("eval zeroshot", "truncated or corrupt image", SKIP,
      lambda t, s: _suite_skip(t, s, lambda w, e: w.add_member(e.rgb, _truncated_png(t / "cut.png").read_bytes()),
                               "rgb", "unreadable image"), "member"),
    C("eval zeroshot", "image above the pixel limit (20000x20000)", SKIP,
      lambda t, s: _suite_skip(t, s, lambda w, e: w.add_member(e.rgb, _bomb(t / "bomb.png").read_bytes()), "rgb",
                               "above the pixel limit"), "member"),
    C("eval zeroshot", "truncated or corrupt `.safetensors`", ERROR,
      lambda t, s: Run(_suite(t, s, model=("--weights", str(_write(b"\x00garbage" * 9)(t / "w.safetensors")))),
                       str(t / "w.safetensors"), "not a readable .safetensors weights file"), "weights"),
    C("eval zeroshot", "truncated or corrupt `.onnx`", ERROR,
      lambda t, s: Run(_suite(t, s, model=("--weights", str(_half(s.onnx)(t / "w.onnx")))), str(t / "w.onnx"),
                       "not a readable ONNX model"), "weights"),
    C("eval zeroshot", "truncated or corrupt tar shard", ERROR,
      lambda t, s: Run(_suite(t, s, tar=_write(b"\x00garbage" * 200)(t / "nyu.tar")), str(t / "nyu.tar"),
                       "not a readable uncompressed tar"), "corrupt"),
    C("eval zeroshot", "truncated or corrupt tar shard", SKIP,
      lambda t, s: Run(_suite(t, s, tar=_cut_last_member(_nyu_tar(t / "nyu.tar", lambda w, e: (
          w.add_member(e.rgb, cv2.imencode(".png", image("nyu", 1))[1].tobytes()),
          w.add_member(e.depth, cv2.imencode(".png", np.full((480, 640), 2000, np.uint16))[1].tobytes()))))),
          f"{t / 'nyu.tar'}:{entries('nyu', 2)[1].depth}", "cut short (truncated tar)", made=("out/table.md",)),
      "truncated"),
    C("eval zeroshot", "truncated or corrupt `.npy`", SKIP,
      lambda t, s: Run(_suite(t, s, model=("--predictions", str(_predictions(t, b"\x93NUMPY garbage")),
                                           "--prediction-kind", "disparity")),
                       str(t / "predictions" / "nyu" / "test" / "kitchen_0004" / "pred_0002.npy"), "unreadable .npy",
                       made=("out/table.md",)), "prediction"),
    C("eval zeroshot", "member missing from an evaluation tar", SKIP,
      lambda t, s: _suite_skip(t, s, lambda w, e: None, "rgb", "not in the tar"), "sample"),
    C("eval zeroshot", "malformed sample list", ERROR,
      lambda t, s: Run(_suite(t, s, "--split-file", str(_write(b"test/a/rgb_0001.png\n")(t / "list.txt"))),
                       str(t / "list.txt"), "line 1 has 1 field(s)"), "one field"),
    C("eval zeroshot", "weights of another model", ERROR,
      lambda t, s: Run(_suite(t, s, model=("--weights", str(s.other_model))), str(s.other_model), OTHER), "weights"),
    C("eval zeroshot", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_suite(t, s, "--split-file", str(_folder(t / "list.txt"))), str(t / "list.txt"),
                       "a folder, not a file"), "sample list"),
    C("eval zeroshot", "a folder where a file is expected", ERROR,
      lambda t, s: Run(_suite(t, s, model=("--weights", str(_folder(t / "w.onnx")))), str(t / "w.onnx"),
                       "a folder, not a file"), "weights"),
    C("eval zeroshot", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_suite(t, s), str(_file(t / "out")), "a file, not a folder"), "out"),
    C("eval zeroshot", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_suite(t, s, "--save-predictions", str(_file(t / "saved"))), str(t / "saved"),
                       "a file, not a folder"), "save-predictions"),
    C("eval zeroshot", "a file where a folder is expected", ERROR,
      lambda t, s: Run(_suite(t, s, model=("--predictions", str(_file(t / "predictions")), "--prediction-kind",
                                           "depth")), str(t / "predictions"), "a file, not a folder"), "predictions"),
    C("eval zeroshot", "a file where a folder is expected", ERROR,
      lambda t, s: Run(["eval", "zeroshot", "--data-root", str(_file(t / "root")), "--baseline", "ramp",
                        "--out", str(t / "out")], str(t / "root"), "a file, not a folder"), "data-root"),
]


# ---------------------------------------------------------------------------------------------------------------
# Running a case


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if not path.is_dir()}


def _shown(recorded: pytest.WarningsRecorder) -> list[str]:
    """Python warnings a user would see on stderr (all but DeprecationWarning, which Python hides outside __main__)."""
    return [f"{w.category.__name__}: {w.message}" for w in recorded if not issubclass(w.category, DeprecationWarning)]


def _stderr_lines(err: str) -> list[str]:
    """What a reader sees on stderr: each line's last carriage-return segment; progress bars (``NN%|``) dropped."""
    lines = (line.split("\r")[-1] for line in err.split("\n"))
    return [line for line in lines if line.strip() and not re.search(r"\d+%\|", line)]


def _serve_and_post(weights: Path, body: bytes) -> int:
    from edgedepth.runtime.predictor import load_predictor
    from edgedepth.serve import make_server

    server = make_server(load_predictor(weights, size=(64, 64)), port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
        connection.request("POST", "/predict", body=body, headers={"Content-Length": str(len(body))})
        status = connection.getresponse().status
        connection.close()
    finally:
        server.shutdown()  # waits for the request's handler thread to log its line
        server.server_close()
    time.sleep(0.05)
    return status


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, shared: Shared, tmp_path: Path, capfd: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder) -> None:
    from edgedepth.serve import DepthServer

    if case.command == "serve" and case.kind == "error":  # a wrong success returns: it cannot hang the test
        monkeypatch.setattr(DepthServer, "serve_forever", lambda self, poll_interval=0.5: None)
    run = case.setup(tmp_path, shared)
    before = _files(tmp_path)
    capfd.readouterr()
    with ExitStack() as stack:
        if run.hold is not None:
            stack.enter_context(run.hold)
        if run.post is not None:
            code = _serve_and_post(shared.weights, run.post)
        else:
            code = main(run.argv)
    err = capfd.readouterr().err
    lines = _stderr_lines(err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert not _shown(recwarn), _shown(recwarn)
    new = _files(tmp_path) - before
    assert not [path for path in new if ".part" in path.name or path.name.startswith(".")], new  # no temporaries
    if case.kind == "error":
        assert code == 2, (code, err)
        assert len(lines) == 1 and lines[0].startswith("edgedepth: error: "), err
        assert run.names in lines[0] and run.says in lines[0], lines[0]
        assert not new, f"left behind: {sorted(map(str, new))}"
    elif case.kind == "skip":
        assert code == 0, (code, err)
        warnings = [line for line in lines if line.startswith("edgedepth: warning: ")]
        assert len(warnings) == 1 and run.names in warnings[0] and run.says in warnings[0], err
        assert not [line for line in lines if line.startswith("edgedepth: error")], err
        for made in run.made:
            assert (tmp_path / made).is_file(), (made, sorted(map(str, new)))
        bad_stem = Path(run.names).stem
        assert not [path for path in new if path.name.startswith(bad_stem + ".")], new
    else:
        assert code == run.status, (code, err)
        assert len(lines) == 1 and lines[0].startswith("edgedepth serve: ") and f" {run.status}: " in lines[0], err
        assert run.names in lines[0] and run.says in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------------------------
# A real process: exit status and stderr as a shell sees them


def test_a_real_process_exits_2_with_one_line(tmp_path: Path, shared: Shared) -> None:
    """Through every import a real run makes (torch, timm, OpenCV: none may print a warning of its own)."""
    cut = _truncated_png(tmp_path / "cut.png")
    command = [sys.executable, "-m", "edgedepth.cli", "predict", str(cut), "--weights", str(shared.weights)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr.startswith(f"edgedepth: error: {cut}: unreadable image (") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr and not (tmp_path / "predict_out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Unusual but valid images


def _smooth_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth picture (JPEG keeps it within a few levels), asymmetric so that a turn would show."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _displayed(jpeg: Path, orientation: int) -> np.ndarray:
    """A JPEG's pixels as a viewer shows them, by other code than ours: OpenCV's decoder told to ignore the EXIF
    orientation, then the turn that orientation asks for (3: 180 degrees, 6: 90 clockwise, 8: 90 counter-clockwise)."""
    stored = cv2.imread(str(jpeg), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(stored, {1: 0, 3: 2, 6: -1, 8: 1}[orientation]))


def _unusual(folder: Path, plain: Path) -> list[str]:
    """Unusual but valid files in ``folder``, and beside each (same stem, in ``plain``) its plain 8-bit RGB PNG.

    The lossless files' equivalent is their picture as 8-bit RGB (16-bit samples: the high byte). An EXIF-rotated
    JPEG's is its decoded pixels as displayed (:func:`_displayed`), which are the upright picture up to JPEG's loss.
    """
    rng = np.random.default_rng(11)
    folder.mkdir()
    plain.mkdir()
    rgb = _smooth_rgb(48, 64, 12)
    gray = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    deep = rng.integers(0, 65536, (48, 64, 3), dtype=np.uint16)
    alpha = rng.integers(0, 256, (48, 64, 1), dtype=np.uint8)
    high = (deep >> 8).astype(np.uint8)
    lossless: dict[str, tuple[Callable[[Path], Any], np.ndarray]] = {
        "gray8.png": (lambda p: cv2.imwrite(str(p), gray), np.dstack([gray] * 3)),
        "gray16.png": (lambda p: cv2.imwrite(str(p), deep[:, :, 0]), np.dstack([high[:, :, 0]] * 3)),
        "rgb16.png": (lambda p: cv2.imwrite(str(p), deep[:, :, ::-1]), high),
        "rgba.png": (lambda p: cv2.imwrite(str(p), np.dstack([rgb[:, :, ::-1], alpha])), rgb),
        "cmyk.tif": (lambda p: Image.fromarray(rgb).convert("CMYK").save(p), rgb),
        "palette.png": (lambda p: Image.fromarray(gray).convert("P").save(p), np.dstack([gray] * 3)),
        "one.png": (lambda p: cv2.imwrite(str(p), rgb[:1, :1, ::-1]), rgb[:1, :1]),
        "one16.png": (lambda p: cv2.imwrite(str(p), deep[:1, :1, 0]), np.dstack([high[:1, :1, 0]] * 3)),
    }
    for name, (write, equivalent) in lossless.items():
        write(folder / name)
        assert cv2.imwrite(str(plain / f"{Path(name).stem}.png"), np.ascontiguousarray(equivalent[:, :, ::-1]))
    for orientation, turned in ((3, np.rot90(rgb, 2)), (6, np.rot90(rgb, 1)), (8, np.rot90(rgb, -1))):
        jpeg = folder / f"exif{orientation}.jpg"
        _exif_jpeg(jpeg, turned, orientation)  # stored turned, displayed upright
        displayed = _displayed(jpeg, orientation)
        assert displayed.shape == rgb.shape and np.abs(displayed.astype(int) - rgb).mean() < 4  # JPEG's loss only
        assert cv2.imwrite(str(plain / f"exif{orientation}.png"), displayed[:, :, ::-1])
    return sorted(path.stem for path in plain.iterdir())


def test_unusual_valid_images_predict_as_their_plain_rgb_equivalent(
    tmp_path: Path, shared: Shared, capfd: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    stems = _unusual(tmp_path / "odd", tmp_path / "plain")
    for folder in ("odd", "plain"):
        argv = ["predict", str(tmp_path / folder), "--weights", str(shared.weights), "--out",
                str(tmp_path / f"{folder}_out"), "--npy", "--size", "64x64"]
        assert main(argv) == 0
    out, err = capfd.readouterr()
    assert not _stderr_lines(err) and out.count(f"predicted {len(stems)} image(s)") == 2, (out, err)
    assert not _shown(recwarn), _shown(recwarn)
    for stem in stems:
        odd, plain = (np.load(tmp_path / f"{folder}_out" / f"{stem}.npy") for folder in ("odd", "plain"))
        assert odd.shape == plain.shape and np.isfinite(odd).all(), stem
        assert plain.size == 1 or float(plain.std()) > 0, stem  # the map depends on the image: equality means something
        np.testing.assert_array_equal(odd, plain, err_msg=stem)


# ---------------------------------------------------------------------------------------------------------------
# The README's table is this file's table


def expected_table() -> dict[str, dict[str, str]]:
    """``{row: {command: cell}}``: each cell the outcomes its cases prove (in :data:`OUTCOMES` order), or n/a."""
    proven: dict[tuple[str, str], set[str]] = {}
    for case in CASES:
        proven.setdefault((case.row, case.command), set()).add(case.cell)
    return {
        row: {command: "; ".join(o for o in OUTCOMES if o in proven.get((row, command), ())) or "n/a"
              for command in COMMANDS}
        for row in INPUT_CLASSES
    }


def markdown_table() -> str:
    """The Troubleshooting table as README.md holds it."""
    lines = ["| input | " + " | ".join(f"`{command}`" for command in COMMANDS) + " |",
             "| --- |" + " --- |" * len(COMMANDS)]
    for row, cells in expected_table().items():
        lines.append(f"| {row} | " + " | ".join(cells[command] for command in COMMANDS) + " |")
    return "\n".join(lines)


def test_readme_table_is_what_these_cases_prove() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Troubleshooting\n", 1)
    assert len(section) == 2, "README.md has no Troubleshooting section"
    body = re.split(r"^## ", section[1], flags=re.MULTILINE)[0]
    table = "\n".join(line for line in body.splitlines() if line.startswith("|"))
    assert table == markdown_table(), "README.md's table differs from the cases; print(markdown_table()) gives it"


def test_every_command_and_every_input_class_has_a_case() -> None:
    assert {case.command for case in CASES} == set(COMMANDS)
    assert {case.row for case in CASES} == set(INPUT_CLASSES)
