"""Image sources for ``edgedepth label``: a folder (recursive), a text file of paths, or tar shards of images.

A source is a list of :class:`SourceItem`, sorted by key, that says *where* each image is, not what it holds:
nothing is decoded until a worker asks (:meth:`SourceItem.load_image`), so a source of ten million images costs
a list of paths, not ten million images.

Conventions, one place for each:

* Keys are the path relative to the source's root without its suffix, ``/``-separated (``rooms/kitchen_01``).
  WebDataset splits a member's name into key and extension at the first dot of its base name, so dots in a
  base name become ``_``; two files that would share a key (``a.jpg``, ``a.webp``) keep their suffix
  (``a_jpg``, ``a_webp``). Keys of a tar source are ``<tar stem>/<member key>``.
* Depth (for the oracle teacher) is a 16-bit ``<name>.png`` of millimetres (0 = invalid) beside
  ``<name>.jpg`` or ``<name>.jpeg``: the seed's layout for its Places labels and the layout of
  ``edgedepth synth``. Such a PNG is that image's depth, never an image of its own. Tar sources carry no depth.
* Tar shards are read in place, without unpacking: the listing records each member's byte range, and a
  worker reads just those bytes. Only uncompressed ``.tar`` files can be read this way. A truncated tar gives
  the members before the cut, with a warning; an unreadable one among several is skipped with a warning, and
  alone is an error (:func:`list_tar_members`).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import tarfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import IMAGE_SUFFIXES, decode_rgb

logger = logging.getLogger(__name__)

#: Suffixes of an image whose same-named ``.png`` is its depth.
DEPTH_PARTNER_SUFFIXES = frozenset({".jpg", ".jpeg"})

#: Millimetres in a metre: depth PNGs hold millimetres.
MM_PER_M = 1000.0


@dataclass(frozen=True, slots=True)
class Blob:
    """The bytes of one file: a whole file (``size == -1``) or ``size`` bytes at ``offset`` (a tar member)."""

    path: str
    offset: int = 0
    size: int = -1

    def read(self) -> bytes:
        with open(self.path, "rb") as handle:
            if self.size < 0:
                return handle.read()
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise EdgedepthError(f"{self.path}: truncated tar (member at byte {self.offset} cut short)")
        return data


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One image of a source: its key, where it came from (for logs and labels), and where its bytes are."""

    key: str
    origin: str
    image: Blob
    depth: Blob | None = None

    def load_image(self) -> np.ndarray:
        """The image as ``H x W x 3`` uint8 RGB (:func:`edgedepth.core.imageio.decode_rgb`, with its pixel limit); an unreadable one raises EdgedepthError."""
        try:
            data = self.image.read()
        except OSError as exc:
            raise EdgedepthError(f"{self.origin}: cannot read ({exc.strerror or exc})") from exc
        return decode_rgb(data, self.origin)

    def load_depth(self) -> np.ndarray:
        """The depth in metres, ``H x W`` float32, 0 where invalid; EdgedepthError if there is none."""
        if self.depth is None:
            raise EdgedepthError(f"{self.origin}: no depth map (expected a 16-bit <name>.png beside <name>.jpg)")
        try:
            data = self.depth.read()
        except OSError as exc:
            raise EdgedepthError(f"{self.depth.path}: cannot read ({exc.strerror or exc})") from exc
        return decode_depth_mm(data, self.depth.path)


@dataclass(frozen=True)
class Source:
    """The images of a SOURCE argument, sorted by key."""

    description: str
    items: list[SourceItem]

    @property
    def has_depth(self) -> bool:
        """Whether the source comes with depth maps (judged by its first item)."""
        return bool(self.items) and self.items[0].depth is not None

    def fingerprint(self) -> str:
        """A digest of the keys, in order: equal fingerprints mean the same images in the same shards."""
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(item.key.encode())
            digest.update(b"\0")
        return digest.hexdigest()


def decode_depth_mm(data: bytes, origin: str) -> np.ndarray:
    """Decode a one-channel 16-bit PNG of millimetres to metres, float32, 0 where invalid."""
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise EdgedepthError(f"{origin}: unreadable depth PNG")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise EdgedepthError(
            f"{origin}: expected a one-channel 16-bit depth PNG (millimetres), got {raw.dtype} {raw.shape}"
        )
    return raw.astype(np.float32) / MM_PER_M


def open_source(source: str | Path) -> Source:
    """The images a SOURCE argument names: a folder, a text file of paths, a ``.tar``, or a glob of ``.tar`` files.

    A folder with no images but ``.tar`` files in it is read as tar shards. No image found is an EdgedepthError.
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        tars = [p for p in files if p.suffix == ".tar"]
        if images or not tars:
            items = _file_items(images, path)
            description = f"folder {path}"
        else:
            items, description = _tar_items(tars), f"{len(tars)} tar shard(s) in {path}"
    elif path.is_file() and path.suffix == ".tar":
        items, description = _tar_items([path]), f"tar shard {path}"
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        items, description = _file_items([path], path.parent), f"image {path}"
    elif path.is_file():
        items, description = _list_items(path), f"list {path}"
    elif glob.has_magic(text):
        tars = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)) if p.endswith(".tar"))
        items, description = _tar_items(tars), f"{len(tars)} tar shard(s) matching {text}"
    else:
        raise EdgedepthError(f"{text}: no such file or folder")
    if not items:
        raise EdgedepthError(
            f"{text}: no images found (expected a folder of images, a text file of image paths, or .tar shards of images)"
        )
    return Source(description, items)


def make_keys(relative: Sequence[PurePosixPath]) -> list[str]:
    """WebDataset keys for files given relative to their root (see the module docstring)."""
    stems = [_safe_key(path.with_suffix("")) for path in relative]
    counts = Counter(stems)
    keys = [
        f"{stem}_{path.suffix.lstrip('.').lower()}" if counts[stem] > 1 else stem for stem, path in zip(stems, relative)
    ]
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    if duplicates:
        raise EdgedepthError(f"two inputs map to the same key {duplicates[0]!r}; rename one of them")
    return keys


def _safe_key(path: PurePosixPath) -> str:
    return str(path.with_name(path.name.replace(".", "_")))


def _file_items(images: Iterable[Path], root: Path) -> list[SourceItem]:
    """Items for image files under ``root``; a ``.png`` beside a same-named JPEG is its depth, not an image."""
    images = list(images)
    present = {p for p in images}
    stems_with_jpeg = {p.with_suffix("") for p in images if p.suffix.lower() in DEPTH_PARTNER_SUFFIXES}
    kept = [p for p in images if not (p.suffix.lower() == ".png" and p.with_suffix("") in stems_with_jpeg)]
    relative = [PurePosixPath(p.relative_to(root).as_posix()) for p in kept]
    items = []
    for key, file in zip(make_keys(relative), kept):
        partner = file.with_suffix(".png")
        has_depth = file.suffix.lower() in DEPTH_PARTNER_SUFFIXES and (partner in present or partner.is_file())
        items.append(SourceItem(key, str(file), Blob(str(file)), Blob(str(partner)) if has_depth else None))
    return sorted(items, key=lambda item: item.key)


def _list_items(list_file: Path) -> list[SourceItem]:
    """Items for a text file of image paths, one a line (blank lines and ``#`` comments skipped).

    Relative paths are relative to the list's folder; keys are relative to the deepest folder holding them all.
    """
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgedepthError(f"{list_file}: not a readable text file of image paths ({exc})") from exc
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    files = [Path(os.path.normpath(list_file.parent / Path(entry).expanduser())) for entry in entries]
    for entry, file in zip(entries, files):
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise EdgedepthError(
                f"{list_file}: {entry!r} is not an image path (suffix not one of {sorted(IMAGE_SUFFIXES)})"
            )
    if not files:
        return []
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return _file_items(files, root)


def warn(message: str) -> None:
    """A warning line on stderr, from the first process only under ``torchrun`` (every rank lists the same files)."""
    if os.environ.get("RANK", "0") == "0":
        logger.warning(message)


def list_tar_members(tar: Path, alone: bool = True, what: str = "tar") -> tuple[list[tarfile.TarInfo], bool]:
    """The file members of an uncompressed tar whose bytes are all there, and whether the tar was cut short.

    A tar cut short (an interrupted copy) gives the members before the cut, with a warning naming it. A tar that
    gives nothing (empty, not a tar) is an EdgedepthError when it is ``alone``; among several shards it is
    skipped with a warning (an empty list). ``what`` names it in messages (``"label shard"``).
    """
    members: list[tarfile.TarInfo] = []
    problem = None
    try:
        size = tar.stat().st_size
        if size == 0:
            raise EdgedepthError("empty file (0 bytes)")
        with tarfile.open(tar, "r:") as archive:
            for member in archive:
                if member.isfile():
                    members.append(member)
    except (EdgedepthError, tarfile.TarError, OSError) as exc:
        problem = getattr(exc, "strerror", None) or str(exc)
    whole = [member for member in members if member.offset_data + member.size <= size]
    if not whole and problem is not None:
        message = f"{tar}: not a readable uncompressed {what} ({problem})"
        if alone:
            raise EdgedepthError(f"{message}; write or download it again")
        warn(f"{message}; skipped")
        return [], True
    cut = problem is not None or len(whole) < len(members)
    if cut:
        warn(f"{tar}: truncated ({problem or 'its last member cut short'}); the {len(whole)} whole member(s) before "
             "the cut are read, the rest is skipped")
    return whole, cut


def _tar_items(tars: Sequence[Path]) -> list[SourceItem]:
    """Items for the images in tar shards: per WebDataset key, its first member with an image extension."""
    items = []
    for tar in tars:
        chosen: dict[str, tarfile.TarInfo] = {}
        for member in list_tar_members(tar, alone=len(tars) == 1)[0]:
            key, extension = split_member_name(member.name)
            if "." + extension.lower() in IMAGE_SUFFIXES and key not in chosen:
                chosen[key] = member
        for key, member in chosen.items():
            blob = Blob(str(tar), member.offset_data, member.size)
            items.append(SourceItem(f"{_safe_key(PurePosixPath(tar.stem))}/{key}", f"{tar}:{member.name}", blob))
    items.sort(key=lambda item: item.key)
    duplicates = [key for key, count in Counter(item.key for item in items).items() if count > 1]
    if duplicates:
        raise EdgedepthError(f"two tar members map to the same key {duplicates[0]!r}")
    return items


def split_member_name(name: str) -> tuple[str, str]:
    """A tar member's WebDataset ``(key, extension)``: split at the first dot of the base name."""
    directory, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), extension
