"""The cache of released weights: where each file lives, what is already there, and verified downloads into it.

The cache is ``$EDGEDEPTH_CACHE``, else ``$XDG_CACHE_HOME/edgedepth``, else ``~/.cache/edgedepth``::

    downloads/<release>/<upstream file>      the checkpoint as published (removed once converted)
    weights/<release>.safetensors            converted by our strict converter
    exports/<release>/<W>x<H>/<release>.<runtime><suffix>      built from those weights, once per runtime and size
    trusted-sha256.json                      the SHA-256 first seen of each release that publishes no hash

Finding a cached file needs no training framework, so a runtime-only install runs a network whose export is in the
cache (built elsewhere, or copied in).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from edgedepth.core.catalog import catalog
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path
from edgedepth.core.releases import Release
from edgedepth.core.sizes import format_size
from edgedepth.pretrained.download import download, file_digest
from edgedepth.runtime.runtimes import Runtime

CACHE_ENV = "EDGEDEPTH_CACHE"
_TRUSTED = "trusted-sha256.json"


def cache_root() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "edgedepth"


def download_path(release: Release) -> Path:
    return cache_root() / "downloads" / release.name / release.file_name


def weights_path(release: Release) -> Path:
    return cache_root() / "weights" / f"{release.name}.safetensors"


def export_path(release: Release, runtime: Runtime, size: tuple[int, int], calib: Path | None = None) -> Path:
    """Where the export of ``release`` for ``runtime`` at ``size`` lives; INT8 calibrated on the user's ``calib``
    images is kept apart from the default calibration's (keyed by the folder's absolute path)."""
    stem = release.name
    if calib is not None and runtime.int8:
        stem += ".calib-" + hashlib.sha256(str(calib.resolve()).encode()).hexdigest()[:12]
    return cache_root() / "exports" / release.name / format_size(size) / runtime.file_name(stem)


def writable_folder(folder: Path) -> Path:
    """``folder``, made if missing; a cache that cannot be written is one line naming ``EDGEDEPTH_CACHE``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise EdgedepthError(f"cache folder {folder} is not writable ({exc.strerror or exc}); set {CACHE_ENV} to a "
                             "writable folder") from exc
    return folder


def fetch(release: Release, announce: bool = True) -> Path:
    """The release's checkpoint, downloaded into the cache and verified (or a file put there by hand, verified).

    A file whose hash differs from the published one, or from the one first seen (trust on first use), is deleted
    and the error names both hashes. The licence is printed (on stderr) when the file is downloaded.
    """
    dest = download_path(release)
    writable_folder(dest.parent)
    algorithm = release.digest.algorithm if release.digest is not None else "sha256"
    expected = release.digest.value if release.digest is not None else trusted_digests().get(release.name)
    what = f"--model {release.name}"
    if dest.exists():
        actual = file_digest(dest, algorithm)
        if expected is not None and actual != expected:
            dest.unlink()
            raise EdgedepthError(f"{what}: {dest} has {algorithm} {actual}, not {expected}; the file is deleted "
                                 "(run the command again to download it)")
    else:
        if announce:
            print(_licence_notice(release), file=sys.stderr)
        actual = download(release.url, dest, algorithm, expected, what)
    if release.digest is None and expected is None:
        _trust(release, actual)
    return dest


def _licence_notice(release: Release) -> str:
    notice = f"downloading {release.name}: {release.publisher}'s weights, licence {release.licence}"
    if "NC" in release.licence.split("-"):
        notice += " (non-commercial use only)"
    return notice


def trusted_digests() -> dict[str, str]:
    """The SHA-256 first seen of each release without a published hash."""
    path = cache_root() / _TRUSTED
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text())
        return {str(name): str(value) for name, value in records.items()}
    except (ValueError, AttributeError) as exc:
        raise EdgedepthError(f"{path}: corrupt ({exc}); delete it to trust the next downloads afresh") from exc


def _trust(release: Release, sha256: str) -> None:
    records = {**trusted_digests(), release.name: sha256}
    with atomic_path(cache_root() / _TRUSTED) as tmp:
        tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")


def default_size(release: Release) -> tuple[int, int]:
    """The input size a release's network runs at unless told otherwise: its card's, from the shipped catalogue."""
    return catalog(release.model)[0].input_size


def cached(release: Release, runtime: Runtime | None, size: tuple[int, int] | None, calib: Path | None) -> Path | None:
    """The cached file that runs ``release`` on ``runtime`` (``None`` or ``torch``: the converted weights), if any."""
    if runtime is None or runtime.fmt == "safetensors":
        path = weights_path(release)
    else:
        path = export_path(release, runtime, size or default_size(release), calib)
    return path if path.exists() else None
