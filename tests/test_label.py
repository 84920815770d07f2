"""``edgedepth label`` on tiny synthetic scenes with the oracle teacher (exact depth), and one transformers teacher."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from edgedepth.cli import main
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import read_rgb
from edgedepth.core.processing import resize_image
from edgedepth.data.shards import LabelShards, ShardWriter, iter_tar_samples, read_index
from edgedepth.data.synthetic import write_folder
from edgedepth.label import job as label
from edgedepth.label import recipe
from edgedepth.teachers.oracle import OracleTeacher
from edgedepth.teachers.tiny import save_tiny_dpt

SCENE_SIZE = (160, 120)
# A square crop of a 4:3 scene: the covering image is 128x96, so the crop's x offset is drawn from 0..32.
RECIPE = recipe.Recipe(crop=(96, 96), size=(48, 48), seed=5)
COUNT = 7


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    write_folder(folder, COUNT, SCENE_SIZE, seed=3, progress=False)
    return folder


def config(source: Path | str, out: Path, **changes: object) -> label.LabelConfig:
    base = label.LabelConfig(
        source=str(source),
        out=out,
        teacher="oracle",
        recipe=RECIPE,
        batch_size=3,
        shard_size=3,
        workers=0,
        progress=False,
    )
    return replace(base, **changes)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


def samples(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    return {key: (image, depth, meta) for key, image, depth, meta in LabelShards(out)}


@pytest.fixture(scope="module")
def reference(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean single-process run that the other runs are compared with."""
    out = tmp_path_factory.mktemp("reference") / "labels"
    summary = label.run(config(scenes, out))
    assert (summary.processed, summary.skipped, summary.shards_written, summary.total) == (COUNT, 0, 3, COUNT)
    return out


# ---------------------------------------------------------------- the recipe


def test_cover_size_and_crop_origin() -> None:
    assert recipe.cover_size((640, 480), (512, 384)) == (512, 384)
    assert recipe.cover_size((500, 250), (512, 384)) == (768, 384)  # enlarged: the height binds
    assert recipe.cover_size((160, 120), (96, 96)) == (128, 96)
    origins = {recipe.crop_origin(5, f"{k:06d}", (128, 96), (96, 96)) for k in range(50)}
    assert {y for _, y in origins} == {0} and min(x for x, _ in origins) >= 0 and max(x for x, _ in origins) <= 32
    assert len(origins) > 15  # spread over the 33 possible offsets
    assert recipe.crop_origin(5, "a", (128, 96), (96, 96)) == recipe.crop_origin(5, "a", (128, 96), (96, 96))
    assert recipe.cover_interpolation((160, 120), (128, 96)) == "linear"
    assert recipe.cover_interpolation((1600, 1200), (512, 384)) == "area"
    assert recipe.crop_box_in_source((10, 0), (96, 96), (128, 96), (160, 120)) == [12.5, 0.0, 132.5, 120.0]


def test_labels_are_the_area_resized_inverse_depth_of_the_crop(scenes: Path, reference: Path) -> None:
    index = read_index(reference)
    assert index["complete"] and index["count"] == COUNT and index["recipe"]["seed"] == 5
    assert [s["count"] for s in index["shards"]] == [3, 3, 1] and index["teacher"]["name"] == "oracle"
    found = samples(reference)
    assert sorted(found) == [f"{k:06d}" for k in range(COUNT)]
    x_offsets = set()
    for key, (image, normalised, meta) in found.items():
        depth_mm = cv2.imread(str(scenes / f"{key}.png"), cv2.IMREAD_UNCHANGED)
        x, y = recipe.crop_origin(5, key, (128, 96), (96, 96))
        x_offsets.add(x)
        assert meta["crop_box"] == pytest.approx([x * 1.25, 0.0, (x + 96) * 1.25, 120.0])
        assert meta["source"] == str(scenes / f"{key}.jpg") and meta["teacher"] == "oracle"
        depth = cv2.resize(depth_mm, (128, 96), interpolation=cv2.INTER_NEAREST)[y : y + 96, x : x + 96] / 1000.0
        expected = cv2.resize((1.0 / depth).astype(np.float32), (48, 48), interpolation=cv2.INTER_AREA)
        low, high = meta["label_min"], meta["label_max"]
        assert (low, high) == pytest.approx((expected.min(), expected.max()), rel=1e-6)
        assert high > 1.5 * low  # the scene has depth structure, so the check below means something
        restored = low + normalised.astype(np.float64) * (high - low)
        np.testing.assert_allclose(restored, expected, rtol=0, atol=(high - low) / 65535 * 0.5 + 1e-6)
        crop = resize_image(read_rgb(scenes / f"{key}.jpg"), (128, 96), "linear")[y : y + 96, x : x + 96]
        want = resize_image(crop, (48, 48), "area")
        _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(want, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        np.testing.assert_array_equal(image, cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    assert len(x_offsets) > 2


def test_rerun_with_other_batch_and_workers_gives_identical_bytes(
    scenes: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    label.run(config(scenes, out, batch_size=2, workers=2))
    assert shard_bytes(out) == shard_bytes(reference)
    assert len(shard_bytes(out)) == 3
    other_seed = tmp_path / "seed6"
    label.run(config(scenes, other_seed, recipe=replace(RECIPE, seed=6)))
    boxes = [meta["crop_box"] for _, _, _, meta in LabelShards(other_seed)]
    assert boxes != [meta["crop_box"] for _, _, _, meta in LabelShards(reference)]


# ---------------------------------------------------------------- resuming, failing


def _fail_after(monkeypatch: pytest.MonkeyPatch, samples_written: int, error: BaseException) -> None:
    original = ShardWriter.write
    calls = []

    def write(self: ShardWriter, key: str, files: dict[str, bytes]) -> None:
        calls.append(key)
        if len(calls) > samples_written:
            raise error
        original(self, key, files)

    monkeypatch.setattr(ShardWriter, "write", write)


def test_killed_run_resumes_with_nothing_lost_or_duplicated(
    scenes: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "killed"
    _fail_after(monkeypatch, 4, KeyboardInterrupt())  # shard 0 done, shard 1 holds one sample when killed
    with pytest.raises(KeyboardInterrupt):
        label.run(config(scenes, out))
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-000000.json", "shard-000000.tar"]
    assert not read_index(out)["complete"]
    (out / ".shard-000001.tar.x1y2.part.tar").write_bytes(b"left by a SIGKILL")
    monkeypatch.undo()
    summary = label.run(config(scenes, out))
    assert (summary.shards_already_done, summary.shards_written, summary.processed, summary.total) == (1, 2, 4, COUNT)
    assert shard_bytes(out) == shard_bytes(reference)
    assert not list(out.glob(".*"))
    assert read_index(out) == read_index(reference)
    again = label.run(config(scenes, out))
    assert (again.processed, again.shards_already_done) == (0, 3)


def test_disk_full_leaves_no_shard_that_looks_complete(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "full"
    _fail_after(monkeypatch, 4, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(EdgedepthError, match=r"shard-000001.tar: writing failed \(No space left on device\)"):
        label.run(config(scenes, out))
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-000000.json", "shard-000000.tar"]


def test_a_folder_of_another_run_is_refused(scenes: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels"
    shutil.copytree(reference, out)
    cases = [
        ({"recipe": replace(RECIPE, seed=6)}, r"another recipe \(seed 5 there, 6 now\)"),
        ({"recipe": replace(RECIPE, size=(32, 32))}, r"another recipe \(size \[48, 48\] there, \[32, 32\] now\)"),
        ({"shard_size": 4}, "shards of 3, not 4"),
    ]
    for changes, message in cases:
        with pytest.raises(EdgedepthError, match=message) as excinfo:
            label.run(config(scenes, out, **changes))
        assert "label into a new folder" in str(excinfo.value) and "\n" not in str(excinfo.value)
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for key in ("000000", "000001"):
        for suffix in (".jpg", ".png"):
            shutil.copy(scenes / f"{key}{suffix}", fewer)
    with pytest.raises(EdgedepthError, match=r"other images \(7 inputs then, 2 now"):
        label.run(config(fewer, out))
    with pytest.raises(EdgedepthError, match="is not a label folder"):
        label.run(config(scenes, scenes))
    assert shard_bytes(out) == shard_bytes(reference)


def test_another_teacher_is_refused(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "labels"
    shutil.copytree(reference, out)
    photos = tmp_path / "photos"
    photos.mkdir()
    with pytest.raises(EdgedepthError, match="holds labels from teacher 'oracle', not 'hf:"):
        label.run(config(_photo_tar(photos), out, teacher=f"hf:{save_tiny_dpt(tmp_path / 'dpt')}"))


def test_corrupt_images_and_nan_labels_are_skipped_and_logged(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "scenes"
    shutil.copytree(scenes, source)
    data = (source / "000002.jpg").read_bytes()
    (source / "000002.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (source / "000004.jpg").write_bytes(b"not a jpeg at all")
    original, calls = OracleTeacher._infer, []

    def poisoned(self: OracleTeacher, images: list, depths: list | None) -> torch.Tensor:
        out = original(self, images, depths)
        calls.append(len(images))
        if len(calls) == 1:  # the first batch, 000000 and 000001 (000002 was skipped): one NaN in 000001
            out[-1, 0, 5, 5] = float("nan")
        return out

    monkeypatch.setattr(OracleTeacher, "_infer", poisoned)
    out = tmp_path / "labels"
    summary = label.run(config(source, out))
    assert (summary.processed, summary.skipped, summary.total) == (COUNT - 3, 3, COUNT - 3)
    logged = [json.loads(line) for line in (out / label.SKIPPED_NAME).read_text().splitlines()]
    assert calls == [2, 2, 1]
    assert [entry["key"] for entry in logged] == ["000001", "000002", "000004"]
    assert "non-finite" in logged[0]["reason"]
    assert "unreadable image" in logged[1]["reason"] and logged[1]["source"] == str(source / "000002.jpg")
    assert "not an image file" in logged[2]["reason"]
    index = read_index(out)
    assert [(s["count"], s["skipped"]) for s in index["shards"]] == [(1, 2), (2, 1), (1, 0)]
    assert sorted(samples(out)) == ["000000", "000003", "000005", "000006"]


def test_bad_inputs_are_one_line_errors(scenes: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for key in ("a", "b"):
        (photos / f"{key}.jpg").parent.mkdir(exist_ok=True)
        shutil.copy(scenes / "000000.jpg", photos / f"{key}.jpg")
    cases = [
        (config(photos, tmp_path / "o1"), "needs depth with each image, and folder .* has none"),
        (config(tmp_path / "empty.txt", tmp_path / "o2"), "no images found"),
        (config(scenes, tmp_path / "o3", teacher="magic"), "teacher 'magic' not understood"),
        (config(scenes, tmp_path / "o4", batch_size=0), "--batch must be a positive number"),
    ]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    for cfg, message in cases:
        with pytest.raises(EdgedepthError, match=message) as excinfo:
            label.run(cfg)
        assert "\n" not in str(excinfo.value)
        assert not cfg.out.exists()


# ---------------------------------------------------------------- other sources and a network teacher


def test_list_source(scenes: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{scenes / f'{k:06d}.jpg'}\n" for k in (4, 1)))
    out = tmp_path / "labels"
    label.run(config(listing, out))
    found = samples(out)
    assert sorted(found) == ["000001", "000004"]
    # same key, same seed, same crop: the labels of a list equal those of the whole folder
    whole = tmp_path / "whole"
    label.run(config(scenes, whole))
    for key, (_, depth, meta) in found.items():
        np.testing.assert_array_equal(depth, samples(whole)[key][1])
        assert meta["crop_box"] == samples(whole)[key][2]["crop_box"]


def _photo_tar(folder: Path, count: int = 3) -> Path:
    rng = np.random.default_rng(1)
    tar = folder / "photos-000.tar"
    with ShardWriter(tar) as writer:
        for i in range(count):
            image = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (200, 100))
            _, jpeg = cv2.imencode(".jpg", image)
            writer.write(f"img{i}", {"jpg": jpeg.tobytes(), "cls": b"3"})
    return tar


def test_transformers_teacher_on_a_tar_of_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tar = _photo_tar(tmp_path)
    teacher = f"hf:{save_tiny_dpt(tmp_path / 'dpt')}"
    out = tmp_path / "labels"
    summary = label.run(config(tar, out, teacher=teacher, recipe=recipe.Recipe((64, 48), (32, 24), 0)))
    assert (summary.processed, summary.skipped) == (3, 0)
    found = samples(out)
    assert sorted(found) == ["photos-000/img0", "photos-000/img1", "photos-000/img2"]
    from edgedepth.teachers import create_teacher

    network = create_teacher(teacher)
    source_image = cv2.cvtColor(cv2.imdecode(np.frombuffer(dict(iter_tar_samples(tar))["img1"]["jpg"], np.uint8), 1),
                                cv2.COLOR_BGR2RGB)  # fmt: skip
    image, normalised, meta = found["photos-000/img1"]
    assert meta["teacher"] == teacher and meta["source_size"] == [200, 100] and image.shape == (24, 32, 3)
    x0 = round(meta["crop_box"][0] * 96 / 200)  # the image covers 64x48 at 96x48
    crop = resize_image(source_image, (96, 48), "area")[:, x0 : x0 + 64]
    expected = resize_image(network.predict_batch([crop])[0, 0], (32, 24), "area")
    assert (meta["label_min"], meta["label_max"]) == pytest.approx((expected.min(), expected.max()), rel=1e-5)
    assert normalised.std() > 0.05
    restored = meta["label_min"] + normalised * (meta["label_max"] - meta["label_min"])
    np.testing.assert_allclose(restored, expected, rtol=0, atol=(expected.max() - expected.min()) * 1e-4)


# ---------------------------------------------------------------- the reader


def test_reader_splits_shards_over_workers(reference: Path) -> None:
    single = samples(reference)
    loader = DataLoader(LabelShards(reference), batch_size=None, num_workers=2)
    seen = [key for key, *_ in loader]
    assert sorted(seen) == sorted(single) and len(seen) == COUNT
    _, image, depth, _ = next(iter(LabelShards(reference)))
    assert image.dtype == np.uint8 and depth.dtype == np.float32 and depth.min() == 0.0 and depth.max() == 1.0
    shuffled = LabelShards(reference, shuffle=True, seed=1)
    orders = set()
    for epoch in range(4):
        shuffled.set_epoch(epoch)
        orders.add(tuple(k for k, *_ in shuffled))
    assert len(orders) > 1 and all(sorted(order) == sorted(single) for order in orders)


# ---------------------------------------------------------------- command line and torchrun


def test_cli_label(scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "labels"
    args = ["label", str(scenes), str(out), "--teacher", "oracle", "--crop", "96x96", "--size", "48x48", "--seed", "5",
            "--shard-size", "3", "--workers", "0"]  # fmt: skip
    assert main(args) == 0
    assert f"labelled {COUNT} image(s), skipped 0" in capsys.readouterr().out
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "labelled 0 image(s), skipped 0" in printed and "3 already done" in printed
    assert main([*args[:-4], "--shard-size", "5", "--workers", "0"]) == 2
    assert capsys.readouterr().err.startswith("edgedepth: error: ")
    with pytest.raises(SystemExit) as usage:  # a bad size is a usage error at once, before any work
        main(["label", str(scenes), str(tmp_path / "x"), "--teacher", "oracle", "--crop", "big"])
    assert usage.value.code == 2
    assert "argument --crop: size 'big' is not of the form WIDTHxHEIGHT" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_write_the_shards_of_one_process(scenes: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29541",
        "-m", "edgedepth.cli", "label", str(scenes), str(out), "--teacher", "oracle", "--crop", "96x96",
        "--size", "48x48", "--seed", "5", "--shard-size", "3", "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("labelled 7 image(s)") == 1  # rank 0 reports, for both ranks
    assert shard_bytes(out) == shard_bytes(reference)
    assert read_index(out)["shards"] == read_index(reference)["shards"]
    with tarfile.open(out / "shard-000001.tar") as archive:  # written by rank 1
        assert archive.getnames()[0] == "000003.jpg"
