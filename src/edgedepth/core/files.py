"""Paths in and out: the checks of input files and output folders, and atomic writes of every output file.

Input files other than images are checked by :func:`check_input_file` (missing, a folder, empty), output folders by
:func:`check_output_folder` before the work and :func:`make_folder` when writing, and every output file is written
through :func:`atomic_path`, so a crash or a full disk never leaves a half-written file under its final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgedepth.core.errors import EdgedepthError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_input_file(path: str | Path, what: str, missing: str = "no such file") -> Path:
    """``path``, if it is a file with something in it; else an EdgedepthError naming it and what is wrong.

    ``what`` is what the file should be (``"edgedepth weights (.safetensors)"``), for the messages of a folder
    and of an empty file; ``missing`` is the message for a path where nothing is.
    """
    path = Path(path)
    if not path.exists():
        raise EdgedepthError(f"{path}: {missing}")
    if path.is_dir():
        raise EdgedepthError(f"{path}: a folder, not a file; expected {what}")
    if path.stat().st_size == 0:
        raise EdgedepthError(f"{path}: empty file (0 bytes), not {what}; copy or download it again")
    return path


def check_output_folder(path: str | Path) -> Path:
    """``path``, if it is a folder or could be made one; else an EdgedepthError naming the file in the way.

    Commands call it before their work, so that an output folder given as (or under) an existing file fails at
    once, not after minutes of work; nothing is created.
    """
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        if folder.exists() or folder.is_symlink():
            if folder == path:
                raise EdgedepthError(f"{path}: a file, not a folder; choose another output folder")
            raise EdgedepthError(
                f"{folder}: a file, not a folder, so {path} cannot be made in it; choose another output folder"
            )
    return path


def make_folder(path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents) if need be; a file in the way is an EdgedepthError naming it."""
    path = check_output_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgedepthError(f"{path}: cannot make the folder ({exc.strerror or exc})") from exc
    return path


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only if the block succeeds.

    A crash or a full disk never leaves a half-written file under the final name. A folder at ``final``, or a
    file where its folder should be, is an EdgedepthError before anything is written.
    """
    final = Path(final)
    if final.is_dir():
        raise EdgedepthError(f"{final}: a folder, not a file; choose another output file name")
    make_folder(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the file open()'s usual mode
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write a NumPy array atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> None:
    """Write ``value`` as JSON (with a final newline), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=indent) + "\n")
