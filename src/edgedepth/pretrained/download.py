"""Files fetched over HTTP(S), whole and checked, or not at all.

A download goes to ``NAME.part`` beside its destination and is moved into place only once its hash is checked, so
a partial file is never taken for a whole one. An interrupted download resumes from its ``.part`` where the server
honours ranges (``Range``/``206``), else starts again. ``urllib`` honours the usual proxy variables (``https_proxy``,
``http_proxy``, ``no_proxy``). ``EDGEDEPTH_MIRROR`` (a base URL) replaces each download's scheme and host, the path
kept: a mirror behind a firewall, or a local server in tests.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.releases import HashAlgorithm

MIRROR_ENV = "EDGEDEPTH_MIRROR"
#: Seconds a connection may stay silent before the download counts as failed (it resumes on the next call).
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def mirrored(url: str) -> str:
    """``url`` with its scheme and host replaced by ``$EDGEDEPTH_MIRROR``'s (its path prefixed), if set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    if urlsplit(mirror).scheme not in ("http", "https"):
        raise EdgedepthError(f"{MIRROR_ENV}={mirror}: not an http:// or https:// URL")
    return mirror.rstrip("/") + urlsplit(url).path


def file_digest(path: Path, algorithm: HashAlgorithm) -> str:
    """The hex digest of a file: SHA-256, or git's blob id (SHA-1 of ``b"blob <size>\\0"`` + the content)."""
    if algorithm == "sha256":
        digest = hashlib.sha256()
    else:
        digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def partial_path(dest: Path) -> Path:
    """Where the download of ``dest`` is written until it is whole and checked."""
    return dest.with_name(dest.name + ".part")


def download(url: str, dest: Path, algorithm: HashAlgorithm, expected: str | None, what: str) -> str:
    """Fetch ``url`` (mirrored) into ``dest``; return its digest by ``algorithm``.

    With ``expected``, a file of another digest is deleted and the error names both; nothing is written at ``dest``
    unless the file is whole and matches. Network failures are one line that names the URL and where to put the file
    by hand. A ``.part`` left by an interrupted call is resumed.
    """
    source = mirrored(url)
    part = partial_path(dest)
    _fetch(source, part, what, dest)
    actual = file_digest(part, algorithm)
    if expected is not None and actual != expected.lower():
        part.unlink()
        raise EdgedepthError(f"{what}: {source} has {algorithm} {actual}, not {expected}; the file is deleted (a "
                             "corrupted or changed download: run the command again, or check the mirror)")
    os.replace(part, dest)
    return actual


def _fetch(url: str, part: Path, what: str, dest: Path) -> None:
    """Download ``url`` into ``part``, resuming what is there."""
    done = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "edgedepth", **({"Range": f"bytes={done}-"} if done else {})}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            resumed = done > 0 and response.status == 206
            if not resumed:
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            with part.open("ab" if resumed else "wb") as out, tqdm(
                total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc=what,
                file=sys.stderr, disable=None, leave=False,
            ) as bar:
                try:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
                except http.client.IncompleteRead as exc:
                    out.write(exc.partial)
            if total is not None and part.stat().st_size != total:
                raise EdgedepthError(f"{what}: the download from {url} stopped after {part.stat().st_size} of {total} "
                                     "bytes; run the command again to resume it")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # the range starts at or past the end: the .part is stale, start again
            part.unlink()
            _fetch(url, part, what, dest)
            return
        raise EdgedepthError(f"{what}: {url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise EdgedepthError(
            f"{what} needs the network, and {url} is unreachable ({reason}); download it where it is reachable and "
            f"put it at {dest}"
        ) from exc
    except PermissionError as exc:
        raise EdgedepthError(f"{part.parent}: cannot write the download there ({exc.strerror}); set "
                             "EDGEDEPTH_CACHE to a writable folder") from exc
