"""The zero-shot benchmark's five evaluation sets as Marigold publishes them: sample lists, reading, decoding.

Marigold (prs-eth/Marigold, ``src/dataset/*_dataset.py``, ``config/dataset_depth/*.yaml``) evaluates on five
preprocessed tars under one base folder, each with a list of samples (``marigold_splits/``, shipped with this
package under Apache-2.0, their licence beside them): one line per sample, the RGB path, the depth path, then
NYU's filled-depth path, KITTI's focal length or DIODE's mask path, relative to the tar's root. Each set's
decoding, valid range, crop and prediction naming is one :class:`EvalSet` of :data:`EVAL_SETS`.

An evaluation set is read in place from its uncompressed tar (members found by name; each read is one seek and
the member's bytes, so ETH3D's 24-megapixel frames stream one at a time) or from the same layout unpacked into
a folder (:class:`EvalArchive`). A member that is missing, cut short or undecodable makes its sample an
:class:`EdgedepthError`, which the caller skips with a warning. :class:`EvalSetWriter` writes the same layouts,
so tests and synthetic scenes go through exactly the reader the published tars go through.
"""

from __future__ import annotations

import io
import logging
import tarfile
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Literal, Self

import cv2
import numpy as np
from PIL import Image

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path, check_input_file
from edgedepth.core.imageio import decode_rgb
from edgedepth.core.sizes import Crop
from edgedepth.data.nyu import NYU_CROPS
from edgedepth.data.sources import Blob

logger = logging.getLogger(__name__)

#: How a set stores depth: a 16-bit PNG of ``units`` per metre (0 = invalid), ETH3D's raw little-endian float32
#: at the image's size (inf = invalid), or DIODE's ``.npy`` (H x W x 1 float32) with a mask ``.npy`` beside it.
DepthEncoding = Literal["png16", "float32", "npy"]

#: Marigold's prediction file names (``get_pred_name``): ``rgb_id`` takes ``rgb_0001.png`` to ``pred_0001.npy``
#: (NYU), ``id`` takes ``X.png`` to ``pred_X.npy`` (the others); both beside the RGB's relative path.
PredictionName = Literal["rgb_id", "id"]

#: The evaluation mask inside the frame: NYU's eigen crop, KITTI's eigen crop (fractions of the benchmark crop,
#: as BTS and Marigold compute them), or none.
EvalCrop = Literal["nyu_eigen", "kitti_eigen"]

#: KITTI's benchmark crop ``(width, height)``: the bottom 352 rows, the central 1216 columns.
KB_CROP_SIZE = (1216, 352)

#: The sample lists, shipped inside the package (Apache-2.0, LICENSE and README beside them).
SPLITS_PACKAGE = "edgedepth.data"
SPLITS_FOLDER = "marigold_splits"

_JPEG_QUALITY = 95


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set as Marigold's dataset class and its config read it.

    Attributes:
        name: key on the command line (``--datasets nyu,kitti``) and folder name of saved predictions.
        title: column heading, as papers print it.
        archive: where Marigold's configs find it under the base data folder; unpacked, the same path without
            ``.tar`` is a folder.
        split: the shipped sample list, relative to ``marigold_splits/``.
        depth_encoding, depth_units: see :data:`DepthEncoding` (units per metre of a ``png16``).
        min_depth, max_depth: Marigold's valid range (``min < d < max``) and the range its predictions are
            clipped to; DIODE's mask is its mask file alone, the range only clips.
        eval_crop: the evaluation mask inside the frame (:data:`EvalCrop`), None for the whole frame.
        benchmark_crop: KITTI's benchmark crop (:func:`kb_crop_box`) of image and depth.
        prediction_name: see :data:`PredictionName`.
        frame_size: ``(width, height)`` of the published frames (KITTI's vary around it).
    """

    name: str
    title: str
    archive: str
    split: str
    depth_encoding: DepthEncoding
    depth_units: float
    min_depth: float
    max_depth: float
    eval_crop: EvalCrop | None
    benchmark_crop: bool
    prediction_name: PredictionName
    frame_size: tuple[int, int]

    @property
    def has_mask_file(self) -> bool:
        """Whether the list's third column is a mask file (DIODE) that defines the valid pixels."""
        return self.depth_encoding == "npy"

    def split_path(self) -> Path:
        """The shipped sample list."""
        return Path(str(resources.files(SPLITS_PACKAGE).joinpath(SPLITS_FOLDER, self.split)))

    def prediction_path(self, rgb: str) -> str:
        """Where Marigold's inference script saves the prediction of the sample whose RGB is ``rgb``."""
        path = PurePosixPath(rgb)
        stem = path.stem.split("_")[1] if self.prediction_name == "rgb_id" else path.stem
        return str(path.with_name(f"pred_{stem}.npy"))


#: The five sets, in the order papers print them.
EVAL_SETS: dict[str, EvalSet] = {
    s.name: s
    for s in (
        EvalSet("nyu", "NYUv2", "nyuv2/nyu_labeled_extracted.tar", "nyu_depth/labeled/filename_list_test.txt",
                "png16", 1000.0, 1e-3, 10.0, "nyu_eigen", False, "rgb_id", (640, 480)),
        EvalSet("kitti", "KITTI", "kitti/kitti_eigen_split_test.tar", "kitti_depth/eigen_test_files_with_gt.txt",
                "png16", 256.0, 1e-5, 80.0, "kitti_eigen", True, "id", (1242, 375)),
        EvalSet("eth3d", "ETH3D", "eth3d/eth3d.tar", "eth3d_depth/eth3d_filename_list.txt",
                "float32", 1.0, 1e-5, float("inf"), None, False, "id", (6048, 4032)),
        EvalSet("scannet", "ScanNet", "scannet/scannet_val_sampled_800_1.tar",
                "scannet_depth/scannet_val_sampled_list_800_1.txt", "png16", 1000.0, 1e-3, 10.0, None, False, "id",
                (640, 480)),
        EvalSet("diode", "DIODE", "diode/diode_val.tar", "diode_depth/diode_val_all_filename_list.txt",
                "npy", 1.0, 0.6, 350.0, None, False, "id", (1024, 768)),
    )
}


def kb_crop_box(height: int, width: int) -> Crop:
    """KITTI's benchmark crop of an ``height x width`` frame: the bottom 352 rows, 1216 columns from the centre."""
    crop_width, crop_height = KB_CROP_SIZE
    if height < crop_height or width < crop_width:
        raise EdgedepthError(f"{width}x{height} frame is smaller than KITTI's benchmark crop {crop_width}x{crop_height}")
    top, left = height - crop_height, int((width - crop_width) / 2)
    return top, top + crop_height, left, left + crop_width


def eval_crop_box(crop: EvalCrop | None, height: int, width: int) -> Crop | None:
    """The evaluation mask's box on an ``height x width`` frame (KITTI's after the benchmark crop)."""
    if crop == "nyu_eigen":
        return NYU_CROPS["seed"]  # rows 45:471, columns 41:601: Marigold's eigen_valid_mask is the seed's crop
    if crop == "kitti_eigen":
        return (int(0.3324324 * height), int(0.91351351 * height), int(0.0359477 * width), int(0.96405229 * width))
    return None


def crop_array(array: np.ndarray, box: Crop) -> np.ndarray:
    """``array[top:bottom, left:right]`` (a view)."""
    top, bottom, left, right = box
    return array[top:bottom, left:right]


# ---------------------------------------------------------------------------------------------------------------
# Sample lists


@dataclass(frozen=True)
class SampleEntry:
    """One line of a sample list: paths relative to the set's root (``line`` is one-based, for messages)."""

    line: int
    rgb: str
    depth: str
    third: str | None = None  # NYU's filled depth, KITTI's focal length, DIODE's mask file


def read_sample_list(path: Path, evalset: EvalSet) -> list[SampleEntry]:
    """The samples of a list in Marigold's format; KITTI's lines without ground truth (``None``) are left out, as
    Marigold's KITTI class leaves them. A malformed list is an EdgedepthError naming the line."""
    path = check_input_file(path, f"a sample list in Marigold's format ({evalset.name})", "no such sample list")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgedepthError(f"{path}: not a readable text file ({exc})") from exc
    needed = 3 if evalset.has_mask_file else 2
    entries = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < needed:
            expected = "<rgb> <depth> <mask>" if evalset.has_mask_file else "<rgb> <depth> ..."
            raise EdgedepthError(
                f"{path}: line {number} has {len(fields)} field(s), expected {expected} as in Marigold's "
                f"{evalset.title} list"
            )
        if fields[1] == "None":
            continue
        rgb, depth, *rest = (field.removeprefix("./") for field in fields)
        entries.append(SampleEntry(number, rgb, depth, rest[0] if rest else None))
    if not entries:
        raise EdgedepthError(f"{path}: no sample with ground truth in the list")
    return entries


# ---------------------------------------------------------------------------------------------------------------
# Reading a set: its tar in place, or its folder


class EvalArchive:
    """The members of one evaluation set: an uncompressed tar read in place, or the same layout in a folder.

    Opening a tar lists its members (headers only: one seek each); a tar whose headers break off part-way keeps
    the members before, with a warning. Member names are compared without a leading ``./`` (Marigold's tars
    have it). No file stays open between reads.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.members: dict[str, tuple[int, int]] = {}  # name -> (offset of its data, size)
        if self.path.is_dir():
            self.is_tar = False
            return
        check_input_file(self.path, f"an evaluation tar ({what})", f"no such file or folder ({what})")
        self.is_tar = True
        self._size = self.path.stat().st_size
        count, end = 0, 0
        try:
            with tarfile.open(self.path, "r:") as archive:
                for member in archive:
                    count, end = count + 1, member.offset_data + member.size
                    if member.isfile():
                        self.members[member.name.removeprefix("./")] = (member.offset_data, member.size)
        except (tarfile.TarError, OSError) as exc:
            if not count:
                raise EdgedepthError(f"{self.path}: not a readable uncompressed tar ({exc}); copy it again") from exc
            if end <= self._size:  # headers break off (a last member cut short is found when it is read)
                logger.warning(f"{self.path}: unreadable after its first {count} member(s) ({exc}); samples past it are missing")

    def origin(self, name: str) -> str:
        """How messages name a member: ``tar:member`` or the file's path."""
        return f"{self.path}:{name}" if self.is_tar else str(self.path / name)

    def _blob(self, name: str) -> Blob:
        if not self.is_tar:
            file = self.path / name
            if not file.is_file():
                raise EdgedepthError(f"{file}: no such file")
            return Blob(str(file))
        if name not in self.members:
            raise EdgedepthError(f"{self.origin(name)}: not in the tar")
        offset, size = self.members[name]
        if offset + size > self._size:
            raise EdgedepthError(f"{self.origin(name)}: cut short (truncated tar)")
        return Blob(str(self.path), offset, size)

    def read(self, name: str) -> bytes:
        """A member's bytes; EdgedepthError naming it if it is missing, cut short or unreadable."""
        try:
            return self._blob(name).read()
        except OSError as exc:
            raise EdgedepthError(f"{self.origin(name)}: cannot read ({exc.strerror or exc})") from exc

    def read_float32(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        """A member of raw little-endian float32 of ``shape``, read straight into an array (no copy of the bytes)."""
        blob = self._blob(name)
        size = (blob.size if blob.size >= 0 else Path(blob.path).stat().st_size)
        expected = shape[0] * shape[1] * 4
        if size != expected:
            raise EdgedepthError(
                f"{self.origin(name)}: {size:,} bytes, expected {expected:,} (float32 {shape[1]}x{shape[0]}, the image's "
                "size)"
            )
        try:
            values = np.fromfile(blob.path, dtype="<f4", count=shape[0] * shape[1], offset=blob.offset)
        except OSError as exc:
            raise EdgedepthError(f"{self.origin(name)}: cannot read ({exc.strerror or exc})") from exc
        return values.reshape(shape)


@dataclass(frozen=True)
class Sample:
    """One decoded sample at full frame: image (None if not asked for), depth in metres (0 = invalid, float32)
    and DIODE's mask file."""

    entry: SampleEntry
    origin: str
    image: np.ndarray | None
    depth: np.ndarray
    mask: np.ndarray | None = None


def load_sample(evalset: EvalSet, archive: EvalArchive, entry: SampleEntry, with_image: bool = True) -> Sample:
    """Decode one sample as Marigold's dataset class does; EdgedepthError naming the member if it cannot be.

    Images keep their stored pixel grid (no EXIF turn), as Marigold's ``np.asarray(Image.open(...))`` reads them.
    Without ``with_image`` only the image's header is read (ETH3D's raw depth takes the image's size).
    """
    origin = archive.origin(entry.rgb)
    data = archive.read(entry.rgb)
    image: np.ndarray | None = None
    if with_image:
        image = decode_rgb(data, origin, orient=False)
        height, width = image.shape[:2]
    else:
        width, height = _image_size(data, origin)
    if evalset.depth_encoding == "png16":
        depth = _decode_png16(archive.read(entry.depth), archive.origin(entry.depth), evalset.depth_units)
    elif evalset.depth_encoding == "float32":
        depth = archive.read_float32(entry.depth, (height, width))
        depth[depth == np.inf] = 0.0  # ETH3D marks missing depth with inf
    else:
        depth = _decode_npy(archive.read(entry.depth), archive.origin(entry.depth), np.float32)
    mask = None
    if evalset.has_mask_file:
        assert entry.third is not None, "read_sample_list gives DIODE's entries their mask file"
        mask = _decode_npy(archive.read(entry.third), archive.origin(entry.third), bool)
        if mask.shape != depth.shape:
            raise EdgedepthError(f"{archive.origin(entry.third)}: mask {mask.shape}, depth {depth.shape}")
    if depth.shape != (height, width):
        raise EdgedepthError(
            f"{archive.origin(entry.depth)}: depth {depth.shape[1]}x{depth.shape[0]}, image {width}x{height}"
        )
    return Sample(entry, origin, image, depth, mask)


def _image_size(data: bytes, origin: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise EdgedepthError(f"{origin}: unreadable image ({exc})") from exc


def _decode_png16(data: bytes, origin: str, units: float) -> np.ndarray:
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if raw is None:
        raise EdgedepthError(f"{origin}: unreadable depth PNG" + ("" if data else " (empty member)"))
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise EdgedepthError(f"{origin}: depth PNG is {raw.dtype} with shape {raw.shape}, expected one 16-bit channel")
    return (raw / units).astype(np.float32)  # divided in float64 and rounded once, as Marigold's numpy / torch do


def _decode_npy(data: bytes, origin: str, dtype: type) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise EdgedepthError(f"{origin}: unreadable .npy ({exc})") from exc
    array = np.squeeze(array)
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise EdgedepthError(f"{origin}: .npy of {array.dtype} with shape {array.shape}, expected one H x W map")
    return array.astype(dtype)


# ---------------------------------------------------------------------------------------------------------------
# Writing a set (tests, synthetic scenes)


class EvalSetWriter:
    """Writes samples into a tar in an evaluation set's published layout, atomically, one sample at a time.

    ``with EvalSetWriter(path, evalset) as w: w.add(entry, image, depth)``. Members are named ``./<relative
    path>`` as in Marigold's tars (its readers ask for exactly that name). ``depth`` is in metres, 0 where
    invalid; each set's encoding is the inverse of :func:`load_sample`'s decoding (ETH3D's invalid depth is
    written as inf; NYU's filled depth, the entry's third path, defaults to the raw one; DIODE's mask to
    ``depth > 0``).
    """

    def __init__(self, path: str | Path, evalset: EvalSet) -> None:
        self.path, self.evalset = Path(path), evalset
        self._stack = ExitStack()
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> Self:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._tar = self._stack.enter_context(tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT))
        return self

    def add(
        self,
        entry: SampleEntry,
        image: np.ndarray,
        depth: np.ndarray,
        filled: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """Add one sample's members, in the list's order."""
        files = {entry.rgb: _encode_image(entry.rgb, image)}
        evalset = self.evalset
        if evalset.depth_encoding == "png16":
            files[entry.depth] = _encode_png16(depth, evalset.depth_units)
            if evalset.name == "nyu" and entry.third is not None:
                files[entry.third] = _encode_png16(depth if filled is None else filled, evalset.depth_units)
        elif evalset.depth_encoding == "float32":
            files[entry.depth] = np.where(depth > 0, depth, np.inf).astype("<f4").tobytes()
        else:
            files[entry.depth] = _encode_npy(np.asarray(depth, np.float32)[:, :, None])
            assert entry.third is not None, "a DIODE entry names its mask file"
            files[entry.third] = _encode_npy((depth > 0 if mask is None else mask).astype(np.float32))
        for name, data in files.items():
            self.add_member(name, data)

    def add_member(self, name: str, data: bytes) -> None:
        """Add one member (``./name``) as it is: for tests that need a broken one."""
        assert self._tar is not None, "EvalSetWriter.add outside its with-block"
        info = tarfile.TarInfo(f"./{name}")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        self._tar.addfile(info, io.BytesIO(data))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, traceback)


def _encode_image(name: str, image: np.ndarray) -> bytes:
    suffix = PurePosixPath(name).suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise EdgedepthError(f"{name}: cannot encode the image as {suffix}")
    return encoded.tobytes()


def _encode_png16(depth: np.ndarray, units: float) -> bytes:
    values = np.round(np.nan_to_num(np.asarray(depth, np.float64), nan=0.0, posinf=0.0) * units)
    ok, encoded = cv2.imencode(".png", np.where((values > 0) & (values <= 65535), values, 0).astype(np.uint16))
    assert ok
    return encoded.tobytes()


def _encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
