"""The networks whose trained weights edgedepth downloads by name, one record each: the one owner of those facts.

A release names the registered network its checkpoint converts to (the converter recognises the layout, and
ZipDepth's NPU head), the URL it is published at and the hash its publisher gives. ZipDepth's checkpoints are
plain git blobs in its repository, so their git blob SHA-1 is published with the repository. MiDaS's release asset
and Depth Anything's files on the Hugging Face hub come with no hash we can pin: their SHA-256 is recorded at the
first download and checked on every later one ("trust on first use"). The licence of each is its network's, in the
shipped catalogue (:mod:`edgedepth.core.catalog`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from edgedepth.core.catalog import catalog
from edgedepth.core.errors import EdgedepthError

#: How a digest is computed: git's blob id (SHA-1 of ``b"blob <size>\0" + content``) or a plain SHA-256.
HashAlgorithm = Literal["git-blob-sha1", "sha256"]
#: The catalogue's word for a release without a published hash.
TRUST_ON_FIRST_USE = "trust on first use"


@dataclass(frozen=True)
class Digest:
    """A hash a file must have."""

    algorithm: HashAlgorithm
    value: str

    def __str__(self) -> str:
        return f"{self.algorithm} {self.value}"


@dataclass(frozen=True)
class Release:
    """One published checkpoint that ``--model NAME`` fetches.

    ``model`` is the registered network it converts to; ``digest`` the hash its publisher gives (``None``: none is
    published, so the SHA-256 of the first download is recorded and later ones must match it).
    """

    name: str
    model: str
    url: str
    digest: Digest | None
    publisher: str

    @property
    def file_name(self) -> str:
        """The upstream file's name, as its URL gives it."""
        return urlsplit(self.url).path.rsplit("/", 1)[-1]

    @property
    def licence(self) -> str:
        """The licence of the weights: their network's, as the shipped catalogue records it."""
        return catalog(self.model)[0].licence

    @property
    def verification(self) -> str:
        """How a download is checked, in words: the pinned hash, or trust on first use."""
        return str(self.digest) if self.digest is not None else f"SHA-256, {TRUST_ON_FIRST_USE}"


_ZIPDEPTH = "https://github.com/fabiotosi92/ZipDepth/raw/main/checkpoints/"
_HUGGING_FACE = "https://huggingface.co/depth-anything/"

RELEASES: dict[str, Release] = {release.name: release for release in (
    Release("zipdepth_base", "zipdepth_base", _ZIPDEPTH + "zipdepth_base.pth",
            Digest("git-blob-sha1", "bc629a21c3e975fcbfc8cfc29b5179ca2cec8b06"), "ZipDepth (Tosi et al.)"),
    Release("zipdepth_base_npu", "zipdepth_base", _ZIPDEPTH + "zipdepth_base_npu.pth",
            Digest("git-blob-sha1", "5dbd1715b30f76d50c12db41e19e526fa3d7cdc7"),
            "ZipDepth (Tosi et al.), its NPU head (upsample=blend)"),
    Release("midas_v21_small", "midas_v21_small",
            "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_small_256.pt", None, "MiDaS v2.1 (Intel ISL)"),
    Release("depth_anything_v2_small", "depth_anything_v2_small",
            _HUGGING_FACE + "Depth-Anything-V2-Small/resolve/main/depth_anything_v2_vits.pth", None,
            "Depth Anything V2 (Yang et al.)"),
    Release("depth_anything_v2_base", "depth_anything_v2_base",
            _HUGGING_FACE + "Depth-Anything-V2-Base/resolve/main/depth_anything_v2_vitb.pth", None,
            "Depth Anything V2 (Yang et al.)"),
)}


def find_release(name: str) -> Release:
    """The release called ``name``; another name is a one-line error listing them."""
    if name not in RELEASES:
        raise EdgedepthError(f"--model {name}: no released weights by that name; edgedepth downloads "
                             f"{', '.join(RELEASES)} (other networks: --weights FILE)")
    return RELEASES[name]


def released_weights(*names: str) -> str:
    """Where the catalogue says the weights of a network come from: ``--model NAME`` and the URL, for each name."""
    return "; ".join(f"--model {name} downloads {RELEASES[name].url}" for name in names)
