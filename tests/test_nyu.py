"""NYU Depth v2 files: the official layouts written and read back, a hand-made HDF5 file, bad files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from scipy.io.matlab._miobase import matfile_version

from edgedepth.core.errors import EdgedepthError
from edgedepth.data.nyu import NYU_CROPS, NyuLabeled, read_splits, write_labeled_mat, write_splits_mat


def _frames(count: int = 3, height: int = 6, width: int = 8, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (count, height, width)).astype(np.float32)
    raw = np.where(rng.random((count, height, width)) < 0.3, 0.0, depths).astype(np.float32)
    return images, depths, raw


def test_writer_produces_the_official_layout_and_reads_back(tmp_path: Path) -> None:
    images, depths, raw = _frames(count=3, height=480, width=640)
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    write_labeled_mat(path, images, depths, raw)
    # MATLAB v7.3: 512-byte MATLAB header in front of HDF5, recognised as such by scipy.
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
    assert matfile_version(str(path)) == (2, 0)
    with h5py.File(path, "r") as handle:
        assert handle.userblock_size == 512
        assert handle["images"].shape == (3, 3, 640, 480) and handle["images"].dtype == np.uint8
        assert handle["depths"].shape == handle["rawDepths"].shape == (3, 640, 480)
        assert handle["depths"].dtype == np.float32
        assert handle["images"].attrs["MATLAB_class"] == b"uint8"
        assert handle["rawDepths"].attrs["MATLAB_class"] == b"single"
        # The public readers' idiom (BTS, the seed): images[i].transpose(2, 1, 0), depths[i].T.
        np.testing.assert_array_equal(handle["images"][1].transpose(2, 1, 0), images[1])
        np.testing.assert_array_equal(handle["depths"][2].T, depths[2])
    with NyuLabeled(path) as labeled:
        assert len(labeled) == 3 and labeled.frame_size == (640, 480)
        for i in range(3):
            np.testing.assert_array_equal(labeled.image(i), images[i])
            np.testing.assert_array_equal(labeled.depth(i, "depths"), depths[i])
            np.testing.assert_array_equal(labeled.depth(i), raw[i])  # rawDepths is the default
    assert not list(tmp_path.glob(".*part*"))  # the atomic write left no temporary file


def test_reader_axis_order_on_a_file_written_by_hand(tmp_path: Path) -> None:
    """Build the stored arrays element by element in MATLAB's transposed order, without our writer."""
    count, height, width = 2, 4, 6  # not square, so a swapped axis cannot go unnoticed
    path = tmp_path / "by_hand.mat"
    with h5py.File(path, "w") as handle:
        stored_images = np.zeros((count, 3, width, height), dtype=np.uint8)
        stored_depths = np.zeros((count, width, height), dtype=np.float32)
        for n in range(count):
            for x in range(width):
                for y in range(height):
                    stored_depths[n, x, y] = 1 + n + x / 10 + y / 100
                    for c in range(3):
                        stored_images[n, c, x, y] = 100 * c + 10 * y + x + n
        handle["images"] = stored_images
        handle["depths"] = stored_depths
        handle["rawDepths"] = stored_depths * 2
    with NyuLabeled(path) as labeled:
        image = labeled.image(1)
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        assert image[3, 5, 2] == 100 * 2 + 10 * 3 + 5 + 1  # row y=3, column x=5, blue
        assert image[0, 1, 0] == 1 + 1
        depth = labeled.depth(0, "depths")
        assert depth.shape == (height, width)
        assert depth[2, 4] == pytest.approx(1 + 0.4 + 0.02)
        assert labeled.depth(0)[2, 4] == pytest.approx(2 * 1.42)


def test_splits_roundtrip_and_numeric_types(tmp_path: Path) -> None:
    path = tmp_path / "splits.mat"
    write_splits_mat(path, train_indices=[0, 2, 5], test_indices=[1, 3])
    raw = scipy.io.loadmat(path)
    assert raw["trainNdxs"].shape == (3, 1) and raw["trainNdxs"].dtype == np.float64
    np.testing.assert_array_equal(raw["testNdxs"].ravel(), [2, 4])  # stored one-based
    splits = read_splits(path, num_images=6)
    np.testing.assert_array_equal(splits.train, [0, 2, 5])
    np.testing.assert_array_equal(splits.test, [1, 3])
    assert splits.test.dtype == np.int64
    # Integers of any width, row vectors: same zero-based result.
    for dtype in (np.uint16, np.int32, np.uint8):
        other = tmp_path / f"splits_{np.dtype(dtype).name}.mat"
        stored = {"trainNdxs": np.array([[1, 3, 6]], dtype=dtype), "testNdxs": np.array([2, 4], dtype=dtype)}
        scipy.io.savemat(other, stored)
        np.testing.assert_array_equal(read_splits(other, 6).train, [0, 2, 5])
    # A MATLAB -v7.3 save (HDF5) of the splits is read too.
    hdf5 = tmp_path / "splits73.mat"
    with h5py.File(hdf5, "w") as handle:
        handle["trainNdxs"] = np.array([[1.0, 2.0]])
        handle["testNdxs"] = np.array([[3.0]])
    np.testing.assert_array_equal(read_splits(hdf5, 3).test, [2])


def test_splits_with_repeated_or_shared_indices_warn_and_count_each_frame_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "splits.mat"
    # test: 3 is repeated once and 5 twice (3 extra entries), 0 and 2 are train frames too; train repeats 2.
    write_splits_mat(path, train_indices=[0, 2, 2, 4], test_indices=[5, 0, 3, 3, 2, 5, 5, 1])
    splits = read_splits(path, num_images=6)
    np.testing.assert_array_equal(splits.test, [5, 0, 3, 2, 1])  # first occurrences, in the file's order
    np.testing.assert_array_equal(splits.train, [0, 2, 4])
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"edgedepth: warning: {path}: 1 duplicate train index (e.g. frame 3); each frame counts once",
        f"edgedepth: warning: {path}: 3 duplicate test indices (e.g. frame 4); each frame counts once",
        (f"edgedepth: warning: {path}: 2 test indices also in the train split (e.g. frame 1); scores on frames the "
         "model trained on are not test scores"),
    ]
    # A clean split says nothing.
    write_splits_mat(path, train_indices=[0, 2], test_indices=[1, 3])
    read_splits(path, num_images=6)
    assert capsys.readouterr().err == ""


def test_crops_are_the_documented_boxes() -> None:
    assert NYU_CROPS["seed"] == (45, 471, 41, 601)  # 426 x 560, the seed's and BTS/AdaBins' eval_mask
    assert NYU_CROPS["eigen"] == (44, 471, 40, 601)  # 427 x 561, the NYU toolbox's get_projection_mask
    assert NYU_CROPS["none"] is None


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "text.mat"
    path.write_text("not a mat file")
    return path


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.mat"
    write_labeled_mat(path, *_frames(count=2, height=48, width=64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.mat", "no such file"),
        (_text_file, "not a MATLAB v7.3"),
        (_truncated, "truncated or corrupt"),
    ],
)
def test_unreadable_data_files(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(EdgedepthError, match=message), NyuLabeled(make(tmp_path)) as labeled:
        for i in range(len(labeled)):  # truncation may only show when a frame is read
            labeled.image(i)
            labeled.depth(i)


def test_data_without_the_expected_datasets(tmp_path: Path) -> None:
    path = tmp_path / "other.mat"
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((1, 3, 8, 6), dtype=np.uint8)
        handle["labels"] = np.zeros((1, 8, 6), dtype=np.uint16)
    with pytest.raises(EdgedepthError, match="missing dataset.*depths, rawDepths"):
        NyuLabeled(path)
    with h5py.File(path, "a") as handle:
        handle["depths"] = np.zeros((1, 8, 7), dtype=np.float32)
        handle["rawDepths"] = np.zeros((1, 8, 6), dtype=np.float32)
    with pytest.raises(EdgedepthError, match="'depths' has shape"):
        NyuLabeled(path)


def test_swapped_files_are_recognised(tmp_path: Path) -> None:
    data, splits = tmp_path / "nyu.mat", tmp_path / "splits.mat"
    write_labeled_mat(data, *_frames(count=2))
    write_splits_mat(splits, [0], [1])
    with pytest.raises(EdgedepthError, match="swapped"):
        NyuLabeled(splits)
    with pytest.raises(EdgedepthError, match="swapped"):
        read_splits(data)


@pytest.mark.parametrize(
    ("test_ndxs", "message"),
    [
        (np.array([[1.0], [4.0]]), r"index 4 out of range \(1..3"),
        (np.array([[0.0], [1.0]]), r"index 0 out of range"),
        (np.array([[1.5]]), "non-integer"),
        (np.array([[np.nan]]), "non-integer"),
        (np.zeros((0, 1)), "empty"),
    ],
)
def test_bad_split_indices(tmp_path: Path, test_ndxs: np.ndarray, message: str) -> None:
    path = tmp_path / "splits.mat"
    scipy.io.savemat(path, {"trainNdxs": np.array([[1.0]]), "testNdxs": test_ndxs})
    with pytest.raises(EdgedepthError, match=message):
        read_splits(path, num_images=3)


def test_splits_without_the_keys_or_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "splits.mat"
    scipy.io.savemat(path, {"trainNdxs": np.array([[1.0]])})
    with pytest.raises(EdgedepthError, match="missing testNdxs"):
        read_splits(path)
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(EdgedepthError, match="not a readable MATLAB splits file"):
        read_splits(garbage)
    with pytest.raises(EdgedepthError, match="no such file"):
        read_splits(tmp_path / "nope.mat")
