"""Label shards (writer, streaming reader) and image sources (folders, lists, tar shards)."""

from __future__ import annotations

import errno
import io
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import decode_rgb, read_rgb
from edgedepth.data.shards import ShardWriter, iter_tar_samples
from edgedepth.data.sources import make_keys, open_source, split_member_name


def _jpeg(path: Path, image: np.ndarray, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90, exif=exif or Image.Exif())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _image(seed: int, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 5, size[0] // 5, 3), dtype=np.uint8)
    return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)


def _samples() -> list[tuple[str, dict[str, bytes]]]:
    return [(f"dir/k{i}", {"jpg": bytes([i]) * (100 + i), "depth.png": b"p" * i, "json": b"{}"}) for i in range(3)]


# ---------------------------------------------------------------- writer and reader


def test_shard_round_trip_is_streamed_grouped_and_deterministic(tmp_path: Path) -> None:
    for name in ("a.tar", "b.tar"):
        with ShardWriter(tmp_path / name) as writer:
            for key, files in _samples():
                writer.write(key, files)
        assert writer.count == 3
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()  # mtime 0, no owner
    assert list(iter_tar_samples(tmp_path / "a.tar")) == _samples()
    with tarfile.open(tmp_path / "a.tar") as archive:
        assert archive.getnames()[:3] == ["dir/k0.jpg", "dir/k0.depth.png", "dir/k0.json"]
        assert {m.mtime for m in archive} == {0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "b.tar"]


def test_a_writer_that_fails_mid_shard_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def full_disk(self: tarfile.TarFile, info: tarfile.TarInfo, fileobj: object = None) -> None:
        calls.append(info.name)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, info, fileobj)

    original = tarfile.TarFile.addfile
    monkeypatch.setattr(tarfile.TarFile, "addfile", full_disk)
    with pytest.raises(OSError, match="No space"), ShardWriter(tmp_path / "s.tar") as writer:
        for key, files in _samples():
            writer.write(key, files)
    assert list(tmp_path.iterdir()) == []


def test_truncated_shard_is_a_clear_error(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "s.tar") as writer:
        for key, files in _samples():
            writer.write(key, files)
    (tmp_path / "cut.tar").write_bytes((tmp_path / "s.tar").read_bytes()[:700])
    with pytest.raises(EdgedepthError, match="cut.tar: not a readable tar shard"):
        list(iter_tar_samples(tmp_path / "cut.tar"))


def test_member_names_split_at_the_first_dot_of_the_base_name() -> None:
    assert split_member_name("a/b.c/000001.depth.png") == ("a/b.c/000001", "depth.png")
    assert split_member_name("x.jpg") == ("x", "jpg")


# ---------------------------------------------------------------- sources


def test_keys_replace_dots_and_keep_suffixes_only_on_collision() -> None:
    from pathlib import PurePosixPath as P

    assert make_keys([P("r/a.b.jpg"), P("r/c.jpg"), P("r/c.webp")]) == ["r/a_b", "r/c_jpg", "r/c_webp"]
    with pytest.raises(EdgedepthError, match="same key 'a_b_jpg'"):
        make_keys([P("a.b.jpg"), P("a_b.jpg")])


def test_folder_pairs_a_png_with_its_jpeg_as_depth(tmp_path: Path) -> None:
    _jpeg(tmp_path / "room" / "x.jpg", _image(0))
    cv2.imwrite(str(tmp_path / "room" / "x.png"), np.full((30, 40), 1500, np.uint16))
    cv2.imwrite(str(tmp_path / "lone.png"), _image(1))  # no JPEG beside it: an image
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(tmp_path)
    assert [item.key for item in source.items] == ["lone", "room/x"]
    lone, room = source.items
    assert lone.depth is None and room.depth is not None and source.has_depth is False  # judged by the first item
    np.testing.assert_array_equal(room.load_depth(), np.full((30, 40), 1.5, np.float32))
    with pytest.raises(EdgedepthError, match="no depth map"):
        lone.load_depth()
    np.testing.assert_array_equal(lone.load_image(), read_rgb(tmp_path / "lone.png"))


def test_list_source_resolves_relative_paths_from_the_list(tmp_path: Path) -> None:
    _jpeg(tmp_path / "data" / "a" / "1.jpg", _image(0))
    _jpeg(tmp_path / "data" / "b" / "2.jpg", _image(1))
    listing = tmp_path / "data" / "list.txt"
    listing.write_text("# two images\na/1.jpg\n\n" + str(tmp_path / "data" / "b" / "2.jpg") + "\n")
    source = open_source(listing)
    assert [item.key for item in source.items] == ["a/1", "b/2"]
    assert source.items[0].origin == str(tmp_path / "data" / "a" / "1.jpg")
    listing.write_text("a/1.jpg\nlist.txt\n")
    with pytest.raises(EdgedepthError, match="'list.txt' is not an image path"):
        open_source(listing)


def test_tar_source_reads_members_in_place(tmp_path: Path) -> None:
    images = [_image(i) for i in range(3)]
    with tarfile.open(tmp_path / "places-0.tar", "w") as archive:
        for i, image in enumerate(images):
            data = _jpeg(tmp_path / "tmp.jpg", image)
            for name, payload in ((f"{i:04d}.jpg", data), (f"{i:04d}.cls", b"7")):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
    (tmp_path / "tmp.jpg").unlink()
    for spec in (tmp_path / "places-0.tar", tmp_path, str(tmp_path / "*.tar")):
        source = open_source(spec)
        assert [item.key for item in source.items] == ["places-0/0000", "places-0/0001", "places-0/0002"]
        assert not source.has_depth
    expected = read_rgb(tmp_path / "x.jpg", _jpeg(tmp_path / "x.jpg", images[2]))
    np.testing.assert_array_equal(source.items[2].load_image(), expected)
    assert source.items[2].origin == f"{tmp_path / 'places-0.tar'}:0002.jpg"


def test_no_images_and_missing_source_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("")
    with pytest.raises(EdgedepthError, match="no images found"):
        open_source(tmp_path)
    with pytest.raises(EdgedepthError, match="no such file or folder"):
        open_source(tmp_path / "nope")


def test_fast_jpeg_decode_matches_read_rgb_and_keeps_its_errors(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    for name, tags in (("plain.jpg", None), ("rotated.jpg", exif)):
        data = _jpeg(tmp_path / name, _image(3, (48, 32)), tags)
        decoded = decode_rgb(data, name)
        np.testing.assert_array_equal(decoded, read_rgb(tmp_path / name))
    assert decoded.shape == (48, 32, 3)  # the EXIF rotation was applied
    gray = io.BytesIO()
    Image.fromarray(_image(4)[:, :, 0]).save(gray, "JPEG")
    assert decode_rgb(gray.getvalue(), "gray.jpg").shape == (30, 40, 3)
    data = (tmp_path / "plain.jpg").read_bytes()
    with pytest.raises(EdgedepthError, match="cut.jpg: unreadable image"):
        decode_rgb(data[: len(data) // 2], "cut.jpg")
    with pytest.raises(EdgedepthError, match="junk.jpg: not an image"):
        decode_rgb(b"\xff\xd8 junk \xff\xd9", "junk.jpg")
