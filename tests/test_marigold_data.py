"""The five zero-shot evaluation sets: shipped lists, published layouts, decoding by hand, tar and folder alike."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from zeroshot_sets import SIZES, entries, image, stored_depth, true_depth, write_set

from edgedepth.core.errors import EdgedepthError
from edgedepth.data.marigold import (
    EVAL_SETS,
    EvalArchive,
    EvalSetWriter,
    SampleEntry,
    eval_crop_box,
    kb_crop_box,
    load_sample,
    read_sample_list,
)


def test_the_shipped_lists_are_marigolds_with_their_licence() -> None:
    counts = {name: len(read_sample_list(s.split_path(), s)) for name, s in EVAL_SETS.items()}
    # NYU 654, KITTI's 697 lines less the 45 without ground truth, ETH3D 454, ScanNet 800, DIODE val (all) 771
    assert counts == {"nyu": 654, "kitti": 652, "eth3d": 454, "scannet": 800, "diode": 771}
    folder = EVAL_SETS["nyu"].split_path().parents[2]
    assert "Apache License" in (folder / "LICENSE").read_text() and "Marigold" in (folder / "README.md").read_text()
    first = {name: read_sample_list(s.split_path(), s)[0] for name, s in EVAL_SETS.items()}
    assert first["nyu"] == SampleEntry(1, "test/kitchen_0004/rgb_0001.png", "test/kitchen_0004/depth_0001.png",
                                       "test/kitchen_0004/filled_0001.png")
    assert first["kitti"].depth == "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png"
    assert first["diode"].third == ("indoors/scene_00021/scan_00189/00021_00189_indoors_200_010_depth_mask.npy")


def test_prediction_names_are_those_of_marigolds_inference_script() -> None:
    names = {name: s.prediction_path(read_sample_list(s.split_path(), s)[0].rgb) for name, s in EVAL_SETS.items()}
    assert names == {
        "nyu": "test/kitchen_0004/pred_0001.npy",
        "kitti": "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/pred_0000000069.npy",
        "eth3d": "rgb/office/images/dslr_images/pred_DSC_0219.npy",
        "scannet": "scene0406_02/color/pred_000300.npy",
        "diode": "indoors/scene_00021/scan_00189/pred_00021_00189_indoors_200_010.npy",
    }


def test_crop_boxes() -> None:
    assert kb_crop_box(375, 1242) == (23, 375, 13, 1229)  # bottom 352 rows, 1216 columns from the centre
    assert kb_crop_box(370, 1224) == (18, 370, 4, 1220)
    assert eval_crop_box("kitti_eigen", 352, 1216) == (117, 321, 43, 1172)  # BTS's fractions of the crop
    assert eval_crop_box("nyu_eigen", 480, 640) == (45, 471, 41, 601)
    assert eval_crop_box(None, 48, 64) is None
    with pytest.raises(EdgedepthError, match="smaller than KITTI's benchmark crop"):
        kb_crop_box(300, 1242)


@pytest.mark.parametrize("name", list(EVAL_SETS))
def test_each_set_reads_back_in_its_published_layout(tmp_path: Path, name: str) -> None:
    evalset = EVAL_SETS[name]
    chosen = write_set(tmp_path, name, 2)
    with tarfile.open(tmp_path / evalset.archive) as archive:
        members = archive.getnames()
        # Marigold's readers ask for exactly "./" + the list's path
        assert archive.extractfile("./" + chosen[0].rgb) is not None
    expected = {f"./{e.rgb}" for e in chosen} | {f"./{e.depth}" for e in chosen}
    if name in ("nyu", "diode"):  # NYU's filled depth, DIODE's mask: the list's third column
        expected |= {f"./{e.third}" for e in chosen}
    assert set(members) == expected
    tar = EvalArchive(tmp_path / evalset.archive, name)
    for index, entry in enumerate(chosen):
        sample = load_sample(evalset, tar, entry)
        depth, mask = stored_depth(name, index)
        assert sample.depth.dtype == np.float32 and sample.depth.shape == depth.shape
        np.testing.assert_allclose(sample.depth, depth.astype(np.float32), rtol=0, atol=0)  # encodings are exact here
        assert sample.image is not None and sample.image.shape == (SIZES[name][1], SIZES[name][0], 3)
        if entry.rgb.lower().endswith(".png"):
            np.testing.assert_array_equal(sample.image, image(name, index))
        assert (sample.mask is None) == (name != "diode")
        if mask is not None:
            np.testing.assert_array_equal(sample.mask, mask)
        assert sample.origin == f"{tmp_path / evalset.archive}:{entry.rgb}"


def _png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


@pytest.mark.parametrize(
    ("name", "stored", "metres"),
    [
        ("nyu", np.array([[1234, 0], [65535, 1]], np.uint16), [[1.234, 0.0], [65.535, 0.001]]),  # millimetres
        ("scannet", np.array([[1234, 0], [65535, 1]], np.uint16), [[1.234, 0.0], [65.535, 0.001]]),
        ("kitti", np.array([[256 * 12, 0], [3200, 1]], np.uint16), [[12.0, 0.0], [12.5, 1 / 256]]),  # 1/256 m
    ],
)
def test_16_bit_depth_decodes_as_marigold_divides_it(tmp_path: Path, name: str, stored: np.ndarray,
                                                      metres: list) -> None:
    evalset = EVAL_SETS[name]
    entry = SampleEntry(1, "a/rgb_0001.png", "a/depth_0001.png")
    _member_pair(tmp_path / "set.tar", entry, _png(np.zeros((2, 2, 3), np.uint8)), _png(stored))
    sample = load_sample(evalset, EvalArchive(tmp_path / "set.tar", name), entry)
    # float32 of the float64 quotient, as Marigold's numpy division then torch's .float() give it
    np.testing.assert_array_equal(sample.depth, np.array(metres, np.float64).astype(np.float32))


def _member_pair(path: Path, entry: SampleEntry, rgb: bytes, depth: bytes, more: dict[str, bytes] | None = None) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in {entry.rgb: rgb, entry.depth: depth, **(more or {})}.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_eth3d_depth_is_raw_float32_at_the_image_size_with_inf_for_missing(tmp_path: Path) -> None:
    entry = SampleEntry(1, "rgb/s/images/dslr_images/DSC_1.JPG", "depth/s/ground_truth_depth/dslr_images/DSC_1.JPG")
    values = np.array([[1.5, np.inf, 2.0], [np.nan, 7.25, 0.0]], "<f4")
    rgb = cv2.imencode(".jpg", np.zeros((2, 3, 3), np.uint8))[1].tobytes()
    _member_pair(tmp_path / "eth3d.tar", entry, rgb, values.tobytes())
    archive = EvalArchive(tmp_path / "eth3d.tar", "eth3d")
    for with_image in (True, False):  # without the image, its size comes from the JPEG's header
        depth = load_sample(EVAL_SETS["eth3d"], archive, entry, with_image).depth
        np.testing.assert_array_equal(depth, np.array([[1.5, 0.0, 2.0], [np.nan, 7.25, 0.0]], np.float32))
    _member_pair(tmp_path / "short.tar", entry, rgb, values.tobytes()[:-4])
    with pytest.raises(EdgedepthError, match=r"short.tar:depth/.*: 20 bytes, expected 24 \(float32 3x2"):
        load_sample(EVAL_SETS["eth3d"], EvalArchive(tmp_path / "short.tar", "eth3d"), entry)


def test_diode_depth_and_mask_npy_are_squeezed(tmp_path: Path) -> None:
    entry = SampleEntry(1, "indoors/s/a.png", "indoors/s/a_depth.npy", "indoors/s/a_depth_mask.npy")
    depth = np.arange(6, dtype=np.float32).reshape(2, 3, 1)  # DIODE stores H x W x 1
    mask = np.array([[1, 0, 1], [0, 1, 1]], np.float32)
    saved = {}
    for key, array in (("depth", depth), ("mask", mask)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        saved[key] = buffer.getvalue()
    _member_pair(tmp_path / "diode.tar", entry, _png(np.zeros((2, 3, 3), np.uint8)), saved["depth"],
                 {entry.third: saved["mask"]})  # type: ignore[dict-item]
    sample = load_sample(EVAL_SETS["diode"], EvalArchive(tmp_path / "diode.tar", "diode"), entry)
    np.testing.assert_array_equal(sample.depth, depth[:, :, 0])
    np.testing.assert_array_equal(sample.mask, mask.astype(bool))


def test_an_unpacked_folder_reads_like_the_tar(tmp_path: Path) -> None:
    evalset = EVAL_SETS["diode"]
    chosen = write_set(tmp_path / "root", "diode", 2)
    folder = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "root" / evalset.archive) as archive:
        archive.extractall(folder, filter="data")
    tar, unpacked = EvalArchive(tmp_path / "root" / evalset.archive, "diode"), EvalArchive(folder, "diode")
    assert not unpacked.is_tar and unpacked.origin("x/y.png") == str(folder / "x/y.png")
    for entry in chosen:
        a, b = load_sample(evalset, tar, entry), load_sample(evalset, unpacked, entry)
        for field in ("image", "depth", "mask"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_broken_members_are_errors_naming_them(tmp_path: Path) -> None:
    evalset = EVAL_SETS["scannet"]
    good, missing, corrupt, empty = entries("scannet", 4)
    path = tmp_path / "scannet.tar"
    depth_png = _png((true_depth("scannet", 0) * 1000).astype(np.uint16))
    with EvalSetWriter(path, evalset) as writer:
        writer.add(good, image("scannet", 0), true_depth("scannet", 0))
        writer.add_member(corrupt.rgb, _png(image("scannet", 1)))
        writer.add_member(corrupt.depth, b"\x89PNG\r\n\x1a\n cut short")
        writer.add_member(empty.rgb, b"")
        writer.add_member(empty.depth, depth_png)
    tar = EvalArchive(path, "scannet")
    assert load_sample(evalset, tar, good).depth.shape == (48, 64)
    cases = {missing: f"{path}:{missing.rgb}: not in the tar", corrupt: f"{path}:{corrupt.depth}: unreadable depth PNG",
             empty: f"{path}:{empty.rgb}: empty file (0 bytes)"}
    for entry, message in cases.items():
        with pytest.raises(EdgedepthError) as raised:
            load_sample(evalset, tar, entry)
        assert str(raised.value).startswith(message), str(raised.value)


def test_a_truncated_tar_keeps_the_members_before_the_cut(tmp_path: Path) -> None:
    evalset = EVAL_SETS["scannet"]
    chosen = write_set(tmp_path, "scannet", 3)
    path = tmp_path / evalset.archive
    with tarfile.open(path) as archive:
        last = archive.getmembers()[-1]
    path.write_bytes(path.read_bytes()[: last.offset_data + last.size // 2])
    tar = EvalArchive(path, "scannet")
    for entry in chosen[:2]:
        load_sample(evalset, tar, entry)
    with pytest.raises(EdgedepthError, match=f"{chosen[2].depth}: cut short \\(truncated tar\\)"):
        load_sample(evalset, tar, chosen[2])


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file or folder"), (b"", "empty file (0 bytes)"), (b"not a tar" * 100, "not a readable uncompressed tar")],
)
def test_unreadable_sets_are_one_line_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "nyu_labeled_extracted.tar"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EdgedepthError, match=re.escape(message)) as raised:
        EvalArchive(path, "NYUv2")
    assert str(raised.value).startswith(str(path)) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("a.png\n", "line 1 has 1 field(s)"), ("\n\n", "no sample with ground truth"),
     ("a.png None 721.5\n", "no sample with ground truth")],
)
def test_malformed_sample_lists(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(EdgedepthError, match=re.escape(message)):
        read_sample_list(path, EVAL_SETS["kitti"])
    path.write_text("a.png a_depth.npy\n")
    with pytest.raises(EdgedepthError, match=r"expected <rgb> <depth> <mask>"):
        read_sample_list(path, EVAL_SETS["diode"])
