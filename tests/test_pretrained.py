"""Released weights by name (``--model NAME``): downloaded from a local HTTP server (``EDGEDEPTH_MIRROR``), verified,
converted, cached, and run again offline; every way a download goes wrong is one line, and no partial file is used."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgedepth.cli import main
from edgedepth.core import releases
from edgedepth.core.errors import EdgedepthError
from edgedepth.models.weights import load_model, read_metadata
from edgedepth.pretrained import download, store
from edgedepth.pretrained.build import CALIBRATION_SET
from edgedepth.runtime.predictor import load_predictor
from tests.foreign import weights_for

ZIPDEPTH_PATH = "/fabiotosi92/ZipDepth/raw/main/checkpoints/zipdepth_base.pth"


@dataclass
class FileServer:
    """What the local server serves (path -> bytes) and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    #: path -> bytes to send before dropping the connection, once (an interrupted download).
    cut_once: dict[str, int] = field(default_factory=dict)
    honour_ranges: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""


@contextmanager
def file_server() -> Iterator[FileServer]:
    """A local HTTP server of :class:`FileServer`'s files, honouring ranges (or not) and cutting once where told."""
    state = FileServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            ranged = self.headers.get("Range")
            if ranged and state.honour_ranges:
                start = int(ranged.removeprefix("bytes=").rstrip("-"))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = state.cut_once.pop(self.path, None)
            self.wfile.write(body if cut is None else body[:cut])
            if cut is not None:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as state:
        yield state


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FileServer) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGEDEPTH_CACHE", str(folder))
    monkeypatch.setenv("EDGEDEPTH_MIRROR", server.url)
    return folder


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@functools.cache
def zipdepth_bytes() -> bytes:
    """A checkpoint in ZipDepth's own layout and wrapping, as its repository publishes them."""
    buffer = io.BytesIO()
    state = weights_for("zipdepth_base")
    torch.save({"epoch": 5, "model_state_dict": {f"module._orig_mod.{k}": v for k, v in state.items()}}, buffer)
    return buffer.getvalue()


@pytest.fixture
def zipdepth_checkpoint() -> bytes:
    return zipdepth_bytes()


@contextmanager
def serve_release(name: str) -> Iterator[tuple[str, bytes]]:
    """Serve a ZipDepth checkpoint as release ``name``'s file: yields the mirror's URL and the bytes."""
    data = zipdepth_bytes()
    with file_server() as state:
        state.files[download.urlsplit(releases.RELEASES[name].url).path] = data
        yield state.url, data


def publish(monkeypatch: pytest.MonkeyPatch, server: FileServer, name: str, data: bytes, pinned: bool = True) -> None:
    """Serve ``data`` as release ``name``'s file, its published hash (git blob SHA-1) that of ``data``."""
    release = releases.RELEASES[name]
    digest = releases.Digest("git-blob-sha1", git_blob_sha1(data)) if pinned else None
    monkeypatch.setitem(releases.RELEASES, name, replace(release, digest=digest))
    server.files[download.urlsplit(release.url).path] = data


def error_line(stderr: str) -> str:
    """The one error line of a failed command; any other line must be the download's licence notice."""
    errors = [line for line in stderr.splitlines() if line.startswith("edgedepth: error: ")]
    others = [line for line in stderr.splitlines() if line not in errors]
    assert len(errors) == 1 and all(line.startswith("downloading ") for line in others), stderr
    return errors[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return path


def test_the_published_hashes_are_pinned_and_computed_as_git_does(tmp_path: Path) -> None:
    assert releases.RELEASES["zipdepth_base"].digest == releases.Digest(
        "git-blob-sha1", "bc629a21c3e975fcbfc8cfc29b5179ca2cec8b06")
    assert releases.RELEASES["zipdepth_base_npu"].digest == releases.Digest(
        "git-blob-sha1", "5dbd1715b30f76d50c12db41e19e526fa3d7cdc7")
    path = tmp_path / "blob"
    path.write_bytes(b"some checkpoint bytes\0\x01\x02")
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert download.file_digest(path, "git-blob-sha1") == git.stdout.strip()
    assert download.file_digest(path, "sha256") == hashlib.sha256(path.read_bytes()).hexdigest()
    # Each release converts to a registered network, whose licence the catalogue carries.
    assert {r.name: r.licence for r in releases.RELEASES.values()} == {
        "zipdepth_base": "MIT", "zipdepth_base_npu": "MIT", "midas_v21_small": "MIT",
        "depth_anything_v2_small": "Apache-2.0", "depth_anything_v2_base": "CC-BY-NC-4.0"}


def test_download_verify_convert_cache_then_run_offline(
    monkeypatch: pytest.MonkeyPatch, server: FileServer, cache: Path, zipdepth_checkpoint: bytes, photo: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    publish(monkeypatch, server, "zipdepth_base", zipdepth_checkpoint)
    out = tmp_path / "out"
    assert main(["predict", str(photo), "--model", "zipdepth_base", "--out", str(out), "--npy"]) == 0
    err = capsys.readouterr().err
    assert "downloading zipdepth_base: ZipDepth (Tosi et al.)'s weights, licence MIT" in err
    assert server.requests == [(ZIPDEPTH_PATH, None)]
    weights = cache / "weights" / "zipdepth_base.safetensors"
    card, provenance = read_metadata(weights)
    assert card.name == "zipdepth_base"
    assert provenance["licence"] == "MIT" and provenance["release"] == "zipdepth_base"
    assert provenance["verified"] == f"git-blob-sha1 {git_blob_sha1(zipdepth_checkpoint)}"
    assert list((cache / "downloads").rglob("*.pth*")) == []  # the checkpoint is gone once converted
    # The cached weights are the checkpoint converted by `edgedepth convert`, tensor for tensor.
    by_hand = tmp_path / "by_hand.safetensors"
    (tmp_path / "zipdepth_base.pth").write_bytes(zipdepth_checkpoint)
    assert main(["convert", str(tmp_path / "zipdepth_base.pth"), str(by_hand)]) == 0
    ours, theirs = load_model(weights).state_dict(), load_model(by_hand).state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    first = np.load(out / "photo.npy")

    # Offline: the server is gone; the second run needs nothing from it.
    monkeypatch.setenv("EDGEDEPTH_MIRROR", "http://127.0.0.1:9")
    server.requests.clear()
    assert main(["predict", str(photo), "--model", "zipdepth_base", "--out", str(tmp_path / "again"), "--npy"]) == 0
    assert server.requests == [] and "downloading" not in capsys.readouterr().err
    np.testing.assert_array_equal(first, np.load(tmp_path / "again" / "photo.npy"))


def test_a_wrong_hash_deletes_the_file_and_names_both(
    monkeypatch: pytest.MonkeyPatch, server: FileServer, cache: Path, zipdepth_checkpoint: bytes, photo: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publish(monkeypatch, server, "zipdepth_base", zipdepth_checkpoint)
    changed = bytearray(zipdepth_checkpoint)
    changed[len(changed) // 2] ^= 0xFF  # one byte changed on the way
    server.files[ZIPDEPTH_PATH] = bytes(changed)
    assert main(["predict", str(photo), "--model", "zipdepth_base", "--out", str(cache.parent / "o")]) == 2
    err = error_line(capsys.readouterr().err)
    assert git_blob_sha1(zipdepth_checkpoint) in err and git_blob_sha1(server.files[ZIPDEPTH_PATH]) in err
    assert "deleted" in err
    assert [p for p in cache.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("honour_ranges", [True, False])
def test_an_interrupted_download_is_never_used_and_resumes(
    monkeypatch: pytest.MonkeyPatch, server: FileServer, cache: Path, zipdepth_checkpoint: bytes, photo: Path,
    capsys: pytest.CaptureFixture[str], honour_ranges: bool,
) -> None:
    publish(monkeypatch, server, "zipdepth_base", zipdepth_checkpoint)
    server.honour_ranges = honour_ranges
    half = len(zipdepth_checkpoint) // 2
    server.cut_once[ZIPDEPTH_PATH] = half
    assert main(["predict", str(photo), "--model", "zipdepth_base", "--out", str(cache.parent / "o")]) == 2
    err = error_line(capsys.readouterr().err)
    assert err.endswith(f"stopped after {half} of {len(zipdepth_checkpoint)} bytes; run the command again to resume it")
    release = releases.RELEASES["zipdepth_base"]
    assert not store.download_path(release).exists() and not store.weights_path(release).exists()
    assert download.partial_path(store.download_path(release)).stat().st_size == half

    assert main(["predict", str(photo), "--model", "zipdepth_base", "--out", str(cache.parent / "o")]) == 0
    # Resumed where it stopped (or, from a server without ranges, started again), and verified whole.
    assert server.requests[-1] == (ZIPDEPTH_PATH, f"bytes={half}-")
    assert store.weights_path(release).exists()


def test_offline_with_nothing_cached_names_the_url_and_where_to_put_the_file(
    monkeypatch: pytest.MonkeyPatch, cache: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEDEPTH_MIRROR", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert main(["predict", str(photo), "--model", "midas_v21_small", "--out", str(cache.parent / "o")]) == 2
    err = error_line(capsys.readouterr().err)
    assert "http://127.0.0.1:9/isl-org/MiDaS/releases/download/v2_1/midas_v21_small_256.pt is unreachable" in err
    assert str(cache / "downloads" / "midas_v21_small" / "midas_v21_small_256.pt") in err


def test_a_file_put_in_the_cache_by_hand_is_verified_and_used(
    monkeypatch: pytest.MonkeyPatch, server: FileServer, cache: Path, zipdepth_checkpoint: bytes
) -> None:
    publish(monkeypatch, server, "zipdepth_base", zipdepth_checkpoint)
    server.files.clear()  # offline
    release = releases.RELEASES["zipdepth_base"]
    store.download_path(release).parent.mkdir(parents=True)
    store.download_path(release).write_bytes(zipdepth_checkpoint)
    assert store.fetch(release) == store.download_path(release) and server.requests == []
    store.download_path(release).write_bytes(b"not it")
    with pytest.raises(EdgedepthError, match=f"not {git_blob_sha1(zipdepth_checkpoint)}; the file is deleted"):
        store.fetch(release)
    assert not store.download_path(release).exists()


def test_without_a_published_hash_the_first_download_is_trusted_and_later_ones_checked(
    server: FileServer, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = releases.RELEASES["depth_anything_v2_base"]
    assert release.digest is None and release.verification == "SHA-256, trust on first use"
    server.files[download.urlsplit(release.url).path] = b"first weights"
    store.fetch(release)
    assert "licence CC-BY-NC-4.0 (non-commercial use only)" in capsys.readouterr().err
    recorded = json.loads((cache / "trusted-sha256.json").read_text())
    assert recorded == {"depth_anything_v2_base": hashlib.sha256(b"first weights").hexdigest()}

    store.download_path(release).unlink()
    server.files[download.urlsplit(release.url).path] = b"other weights"
    with pytest.raises(EdgedepthError) as caught:
        store.fetch(release)
    assert hashlib.sha256(b"first weights").hexdigest() in str(caught.value)
    assert hashlib.sha256(b"other weights").hexdigest() in str(caught.value)
    assert not store.download_path(release).exists() and not download.partial_path(store.download_path(release)).exists()


def test_the_mirror_replaces_scheme_and_host_and_keeps_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    url = releases.RELEASES["zipdepth_base"].url
    monkeypatch.delenv("EDGEDEPTH_MIRROR", raising=False)
    assert download.mirrored(url) == url
    monkeypatch.setenv("EDGEDEPTH_MIRROR", "https://mirror.example.com/models/")
    assert download.mirrored(url) == "https://mirror.example.com/models" + ZIPDEPTH_PATH
    monkeypatch.setenv("EDGEDEPTH_MIRROR", "mirror.example.com")
    with pytest.raises(EdgedepthError, match="not an http:// or https:// URL"):
        download.mirrored(url)


def test_the_cache_folder_defaults_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEDEPTH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_root() == tmp_path / "xdg" / "edgedepth"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.cache_root() == tmp_path / "home" / ".cache" / "edgedepth"


def test_a_cache_that_cannot_be_written_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a_file").write_text("in the way")
    monkeypatch.setenv("EDGEDEPTH_CACHE", str(tmp_path / "a_file" / "cache"))
    assert main(["predict", str(photo), "--model", "zipdepth_base", "--out", str(tmp_path / "o")]) == 2
    err = error_line(capsys.readouterr().err)
    assert "is not writable" in err and "EDGEDEPTH_CACHE" in err, err


def test_named_models_and_runtimes_are_checked_before_any_work(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.safetensors"
    for argv, message in (
        (["--model", "zipdepth_huge"], "invalid choice: 'zipdepth_huge'"),
        (["--weights", str(weights), "--model", "zipdepth_base"], "not allowed with argument"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(["predict", str(photo), *argv])
        assert exited.value.code == 2 and message in capsys.readouterr().err
    assert main(["predict", str(photo), "--weights", str(weights), "--runtime", "onnx"]) == 2
    assert "--runtime goes with --model NAME" in capsys.readouterr().err


@pytest.mark.slow
def test_a_runtime_builds_its_export_once_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, server: FileServer, cache: Path, zipdepth_checkpoint: bytes, photo: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    publish(monkeypatch, server, "zipdepth_base", zipdepth_checkpoint)
    command = ["predict", str(photo), "--model", "zipdepth_base", "--runtime", "onnx-int8", "--size", "128x96",
               "--out", str(tmp_path / "out")]
    assert main(command) == 0
    assert "building its onnx-int8 file at 128x96 (once)" in capsys.readouterr().err
    export = cache / "exports" / "zipdepth_base" / "128x96" / "zipdepth_base.onnx-int8.onnx"
    predictor = load_predictor(export)
    assert predictor.export is not None and predictor.export.precision == "int8"
    assert predictor.export.calibration_set == CALIBRATION_SET and predictor.export.calibration_images == 32
    assert predictor.provenance["licence"] == "MIT"  # the licence travels with the export
    built = export.stat().st_mtime_ns
    assert main(command) == 0
    assert "building" not in capsys.readouterr().err and export.stat().st_mtime_ns == built
