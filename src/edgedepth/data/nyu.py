"""NYU Depth v2, labeled set: read and write the official files.

``nyu_depth_v2_labeled.mat`` is MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB header. MATLAB stores arrays
column-major, so its ``images`` (480 x 640 x 3 x 1449 in MATLAB) appear to HDF5 readers as
``N x 3 x W x H`` uint8, and ``depths`` / ``rawDepths`` (480 x 640 x 1449 single) as ``N x W x H`` float32,
in metres; ``rawDepths`` is 0 where the sensor gave nothing. ``splits.mat`` is MATLAB v5 with ``trainNdxs``
(795) and ``testNdxs`` (654), column vectors of one-based indices, doubles as MATLAB writes them.

The reader opens the data file lazily (one frame per read, never the whole 2.8 GB) and hands out
zero-based integer indices whatever numeric type the splits file stores. The writers produce the same
layouts, so tests and synthetic scenes go through exactly the reader that the real files go through.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, check_input_file

logger = logging.getLogger(__name__)

# h5py and SciPy read the official files; they are imported where a file is read, so that the facts here (frame
# size, crops) cost nothing to import.

#: The two ground truths of the labeled set: ``depths`` is in-painted (dense), ``rawDepths`` is the sensor's.
GroundTruth = Literal["depths", "rawDepths"]

#: Frame size of every NYU Depth v2 image, ``(width, height)``.
NYU_FRAME_SIZE = (640, 480)

#: Evaluation crops ``(top, bottom, left, right)``, zero-based half-open, on the 480 x 640 frame.
#: ``seed``: rows 45:471, columns 41:601, the seed's crop, identical to the ``eigen_crop`` of BTS, AdaBins
#: and ZoeDepth for NYU (426 x 560). ``eigen``: rows 44:471, columns 40:601, the NYU toolbox's projection
#: mask (``get_projection_mask.m``: MATLAB rows 45..471, columns 41..601, one-based inclusive; 427 x 561),
#: the region Eigen et al. and the MATLAB evaluations score; the Python line copied the MATLAB numbers
#: into zero-based slices and so drops one row and one column. ``none``: the whole frame.
NYU_CROPS: dict[str, tuple[int, int, int, int] | None] = {
    "seed": (45, 471, 41, 601),
    "eigen": (44, 471, 40, 601),
    "none": None,
}

_DATASETS = ("images", "depths", "rawDepths")
_SPLIT_KEYS = ("trainNdxs", "testNdxs")
_MATLAB_USERBLOCK = 512
_CHUNK_CACHE_BYTES = 32 * 1024 * 1024


# ---------------------------------------------------------------------------------------------------------------
# Writers


def write_labeled_mat(path: str | Path, images: np.ndarray, depths: np.ndarray, raw_depths: np.ndarray) -> None:
    """Write a labeled set in the layout of ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 / HDF5), atomically.

    Args:
        path: output file.
        images: ``N x H x W x 3`` uint8 RGB (the official frames are 480 x 640).
        depths: ``N x H x W`` float32 filled depth in metres.
        raw_depths: ``N x H x W`` float32 raw sensor depth in metres, 0 where missing.

    The datasets are stored transposed as MATLAB does (``images`` ``N x 3 x W x H``, depths ``N x W x H``),
    one chunk per frame, with MATLAB's 512-byte header and ``MATLAB_class`` attributes, so MATLAB, h5py-based
    readers and :class:`NyuLabeled` all read it like the real file.
    """
    import h5py

    images = np.asarray(images)
    depths = np.asarray(depths, dtype=np.float32)
    raw_depths = np.asarray(raw_depths, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be N x H x W x 3 uint8, got {images.shape} {images.dtype}")
    count, height, width = images.shape[:3]
    for name, array in (("depths", depths), ("raw_depths", raw_depths)):
        if array.shape != (count, height, width):
            raise ValueError(f"{name} must be {(count, height, width)} to match images, got {array.shape}")

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=_MATLAB_USERBLOCK) as handle:
            stored = {
                "images": (images, (count, 3, width, height), "uint8"),
                "depths": (depths, (count, width, height), "single"),
                "rawDepths": (raw_depths, (count, width, height), "single"),
            }
            for name, (array, shape, matlab_class) in stored.items():
                dataset = handle.create_dataset(name, shape=shape, dtype=array.dtype, chunks=(1, *shape[1:]))
                dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
                for index in range(count):
                    dataset[index] = array[index].T  # H x W (x 3) -> (3 x) W x H, MATLAB's column-major view
        with open(tmp, "r+b") as raw:
            raw.write(_matlab_header())


def write_splits_mat(path: str | Path, train_indices: np.ndarray, test_indices: np.ndarray) -> None:
    """Write a ``splits.mat`` (MATLAB v5) from ZERO-based indices, atomically.

    The file stores ``trainNdxs`` and ``testNdxs`` as one-based column vectors of doubles, as the official
    file does; :func:`read_splits` gives back the zero-based indices passed here.
    """
    import scipy.io

    columns = {}
    for key, indices in zip(_SPLIT_KEYS, (train_indices, test_indices)):
        array = np.asarray(indices).ravel()
        if array.size and (array.min() < 0 or not np.array_equal(array, np.round(array))):
            raise ValueError(f"{key}: indices must be non-negative integers (zero-based), got {array[:5]}...")
        columns[key] = (array.astype(np.float64) + 1.0).reshape(-1, 1)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        scipy.io.savemat(handle, columns, format="5")


def _matlab_header() -> bytes:
    """MATLAB's 128-byte v7.3 preamble: text, 8 bytes of subsystem offset, version 0x0200 and ``IM``."""
    created = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime())
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 ."
    return text.encode("ascii").ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


# ---------------------------------------------------------------------------------------------------------------
# Readers


@dataclass(frozen=True)
class Splits:
    """The official train/test split as zero-based int64 indices into the labeled set."""

    train: np.ndarray
    test: np.ndarray


class NyuLabeled:
    """Lazy reader of ``nyu_depth_v2_labeled.mat``: each call reads one frame from disk.

    Use as a context manager (or call :meth:`close`). Indices are zero-based. Any problem with the file
    (missing, not HDF5, truncated, wrong datasets) raises :class:`EdgedepthError` with a one-line message.
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        _check_exists(self.path, "labeled data")
        if not h5py.is_hdf5(self.path):
            if _looks_like_splits(self.path):
                raise EdgedepthError(
                    f"{self.path}: this is a splits file (trainNdxs/testNdxs), not the labeled data; "
                    "were --data and --splits swapped?"
                )
            raise EdgedepthError(
                f"{self.path}: not a MATLAB v7.3 (HDF5) file; expected nyu_depth_v2_labeled.mat (2.8 GB)"
            )
        try:
            # A chunk cache of a few frames: the official file's chunks may span neighbouring frames.
            self._file = h5py.File(self.path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
        except OSError as exc:
            raise EdgedepthError(f"{self.path}: cannot open as HDF5, truncated or corrupt? ({exc})") from exc
        try:
            self._check_layout()
        except Exception:
            self._file.close()
            raise

    def _check_layout(self) -> None:
        import h5py

        missing = [name for name in _DATASETS if not isinstance(self._file.get(name), h5py.Dataset)]
        if missing:
            if all(isinstance(self._file.get(key), h5py.Dataset) for key in _SPLIT_KEYS):
                raise EdgedepthError(
                    f"{self.path}: this is a splits file (trainNdxs/testNdxs), not the labeled data; "
                    "were --data and --splits swapped?"
                )
            raise EdgedepthError(
                f"{self.path}: missing dataset(s) {', '.join(missing)}; expected nyu_depth_v2_labeled.mat "
                f"with {', '.join(_DATASETS)}"
            )
        images = self._file["images"].shape
        if len(images) != 4 or images[1] != 3:
            raise EdgedepthError(f"{self.path}: 'images' has shape {images}, expected N x 3 x W x H")
        count, _, width, height = images
        for name in ("depths", "rawDepths"):
            if self._file[name].shape != (count, width, height):
                raise EdgedepthError(
                    f"{self.path}: '{name}' has shape {self._file[name].shape}, expected {(count, width, height)} "
                    "to match 'images'"
                )
        self._count = int(count)
        self.frame_size = (int(width), int(height))

    def __len__(self) -> int:
        return self._count

    def image(self, index: int) -> np.ndarray:
        """Frame ``index`` as an ``H x W x 3`` uint8 RGB array."""
        return np.ascontiguousarray(self._read("images", index).transpose(2, 1, 0))

    def depth(self, index: int, ground_truth: GroundTruth = "rawDepths") -> np.ndarray:
        """Depth of frame ``index`` as an ``H x W`` float32 array in metres (0 = missing for ``rawDepths``)."""
        if ground_truth not in ("depths", "rawDepths"):
            raise EdgedepthError(f"unknown ground truth {ground_truth!r}; use depths or rawDepths")
        return np.ascontiguousarray(self._read(ground_truth, index).T.astype(np.float32, copy=False))

    def _read(self, name: str, index: int) -> np.ndarray:
        if not 0 <= index < self._count:
            raise EdgedepthError(f"{self.path}: frame index {index} out of range (0..{self._count - 1})")
        try:
            return self._file[name][int(index)]
        except OSError as exc:
            message = f"{self.path}: cannot read '{name}' frame {index}, truncated or corrupt? ({exc})"
            raise EdgedepthError(message) from exc

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def read_splits(path: str | Path, num_images: int | None = None, quiet: bool = False) -> Splits:
    """Read ``splits.mat`` into zero-based int64 indices.

    Accepts the official MATLAB v5 file and v7.3 (HDF5) saves alike, indices stored as doubles or integers,
    row or column vectors. With ``num_images``, every index must fall inside the labeled set. A repeated index
    is kept once (first occurrence, order kept), with a warning on stderr; test indices that are also train
    indices are kept, with a warning. ``quiet=True`` keeps them to itself (a reader that has warned once already).
    """
    import h5py
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    _check_exists(path, "splits")
    if h5py.is_hdf5(path):
        raw = _read_splits_hdf5(path)
    else:
        try:
            raw = scipy.io.loadmat(path, variable_names=list(_SPLIT_KEYS))
        except (MatReadError, ValueError, OSError, TypeError) as exc:
            raise EdgedepthError(f"{path}: not a readable MATLAB splits file ({exc})") from exc
        missing = [key for key in _SPLIT_KEYS if key not in raw]
        if missing:
            expected = "expected splits.mat with trainNdxs and testNdxs"
            raise EdgedepthError(f"{path}: missing {', '.join(missing)}; {expected}")
    train, test = (_zero_based(path, key, raw[key], num_images) for key in _SPLIT_KEYS)
    return _checked_splits(path, train, test, quiet)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _checked_splits(path: Path, train: np.ndarray, test: np.ndarray, quiet: bool) -> Splits:
    """Drop repeated indices (a frame scored twice would weigh double in the mean) and warn about a split that
    repeats frames or shares test frames with the train split (the official file does neither)."""
    deduplicated = []
    for name, indices in (("train", train), ("test", test)):
        _, first = np.unique(indices, return_index=True)
        repeats = indices.size - first.size
        if repeats and not quiet:
            example = int(np.setdiff1d(np.arange(indices.size), first)[0])
            logger.warning(
                f"{path}: {_plural(repeats, f'duplicate {name} index', f'duplicate {name} indices')} (e.g. frame "
                f"{int(indices[example]) + 1}); each frame counts once"
            )
        deduplicated.append(indices[np.sort(first)])
    train, test = deduplicated
    shared = np.intersect1d(train, test)
    if shared.size and not quiet:
        logger.warning(
            f"{path}: {_plural(int(shared.size), 'test index', 'test indices')} also in the train split (e.g. frame "
            f"{int(shared[0]) + 1}); scores on frames the model trained on are not test scores"
        )
    return Splits(train=train, test=test)


def _read_splits_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if all(key in handle for key in _SPLIT_KEYS):
                return {key: handle[key][()] for key in _SPLIT_KEYS}
            if "images" in handle:
                raise EdgedepthError(
                    f"{path}: this is the labeled data, not a splits file; were --data and --splits swapped?"
                )
    except OSError as exc:
        raise EdgedepthError(f"{path}: cannot open as HDF5, truncated or corrupt? ({exc})") from exc
    raise EdgedepthError(f"{path}: missing trainNdxs/testNdxs; expected splits.mat")


def _zero_based(path: Path, key: str, values: np.ndarray, num_images: int | None) -> np.ndarray:
    """One-based indices of any numeric type to zero-based int64, checked for integrality and range."""
    array = np.asarray(values).ravel()
    if not np.issubdtype(array.dtype, np.number):
        raise EdgedepthError(f"{path}: {key} is not numeric ({array.dtype})")
    if array.size == 0:
        raise EdgedepthError(f"{path}: {key} is empty")
    as_float = array.astype(np.float64)
    if not np.all(np.isfinite(as_float)) or not np.array_equal(as_float, np.round(as_float)):
        raise EdgedepthError(f"{path}: {key} holds non-integer values; expected one-based frame indices")
    indices = as_float.astype(np.int64) - 1
    upper = num_images if num_images is not None else np.iinfo(np.int64).max
    bad = indices[(indices < 0) | (indices >= upper)]
    if bad.size:
        limit = f"1..{num_images}" if num_images is not None else "1 or more"
        raise EdgedepthError(f"{path}: {key} has index {int(bad[0]) + 1} out of range ({limit}, one-based)")
    return indices


def _check_exists(path: Path, what: str) -> None:
    expected = "nyu_depth_v2_labeled.mat" if what == "labeled data" else "splits.mat"
    check_input_file(path, f"the {what} ({expected})", f"no such file ({what})")


def _looks_like_splits(path: Path) -> bool:
    """Whether a non-HDF5 file is a MATLAB v5 file holding the split indices."""
    import scipy.io

    try:
        names = {name for name, _, _ in scipy.io.whosmat(path)}
    except Exception:  # noqa: BLE001 - scipy raises ValueError, IndexError, MatReadError...: all mean "not a splits file"
        return False
    return all(key in names for key in _SPLIT_KEYS)
