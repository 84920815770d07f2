"""ROS 2 bags read and written with :mod:`rosbags` (pure Python, no ROS installation).

A bag is a rosbag2 folder (``metadata.yaml`` beside its ``.mcap`` or ``.db3`` files) or one ``.mcap`` / ``.db3``
file. :class:`BagReader` reads either in log-time order. A recording cut short (power lost while recording: an MCAP
without its footer and index, a folder whose ``metadata.yaml`` was never written) is read up to the cut, and
:attr:`BagReader.cut` says why reading stopped, so the caller can keep what came before. (SQLite refuses a ``.db3``
cut mid-page outright.)

:class:`BagWriter` writes a new bag through a partial folder beside its target and moves it into place only when it
is closed: a killed run leaves no bag under the target's name (and an older one there stays whole). The target's
suffix chooses the form: ``NAME.mcap`` or ``NAME.db3`` is that one file (what ``ros2 bag play`` and Foxglove open
directly), any other name a rosbag2 folder with ``metadata.yaml`` (MCAP inside, ROS 2's default since Iron).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Self

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError, WriterError
from rosbags.rosbag2.storage_mcap import decompress

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import BAG_SUFFIXES
from edgedepth.robot.rosmsgs import TYPESTORE

#: Faults that mean the data ends before its end: rosbags', SQLite's (a file cut mid-page), a short read.
_CUT_ERRORS = (ReaderError, sqlite3.DatabaseError, struct.error, EOFError, ValueError, KeyError)


@dataclass(frozen=True)
class Record:
    """One message of a bag, not yet deserialised: its topic and type, log time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    log_ns: int
    data: bytes

    def message(self) -> Any:
        """The message, deserialised with :data:`~edgedepth.robot.rosmsgs.TYPESTORE`'s definitions."""
        return TYPESTORE.deserialize_cdr(self.data, self.msgtype)


def _storage_files(folder: Path) -> list[Path]:
    """The ``.mcap`` or ``.db3`` files of a bag folder, in split order (``run_0``, ``run_1``, ... ``run_10``)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in BAG_SUFFIXES]
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


class BagReader:
    """A bag opened for reading; ``topics`` maps each topic to its message type and count."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise EdgedepthError(f"{self.path}: no such bag (a rosbag2 folder, or an .mcap or .db3 file)")
        self.cut: str | None = None
        self.unclosed = self.path.is_dir() and not (self.path / "metadata.yaml").is_file()
        if self.unclosed:
            files = _storage_files(self.path)
            if not files:
                raise EdgedepthError(f"{self.path}: not a ROS 2 bag (no metadata.yaml, no .mcap or .db3 file)")
            self._parts = [_open_part(file) for file in files]
        else:
            self._parts = [_open_part(self.path)]
        #: Why the bag is known to end early before it is read (its topics are those seen before the cut), or None.
        self.damage = next((part.damage for part in self._parts if part.damage), None)
        self.topics: dict[str, tuple[str, int]] = {}
        for part in self._parts:
            for topic, (msgtype, count) in part.topics.items():
                previous = self.topics.get(topic, (msgtype, 0))[1]
                self.topics[topic] = (msgtype, previous + count)

    def records(self, topics: Sequence[str]) -> Iterator[Record]:
        """The messages of ``topics`` in log-time order (file by file for a split recording); a fault ends it early,
        with :attr:`cut` saying why."""
        for part in self._parts:
            yield from part.records(set(topics))
            if part.cut is not None:
                self.cut = part.cut
                return
        if self.unclosed:
            self.cut = "it has no metadata.yaml (the recording was not closed)"

    def close(self) -> None:
        for part in self._parts:
            part.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Part(ABC):
    """One readable unit of a bag: rosbags' reader over a folder or a file, or the scan of a cut MCAP file."""

    cut: str | None = None
    #: Known at opening: the part ends early (a cut MCAP), so its topics are those seen before the cut.
    damage: str | None = None
    topics: dict[str, tuple[str, int]]

    @abstractmethod
    def records(self, topics: set[str]) -> Iterator[Record]:
        """The messages of ``topics``, in order, until the end or a fault (then ``cut`` says why)."""

    def close(self) -> None:
        """Nothing to release unless the part holds a reader."""


class _RosbagsPart(_Part):
    def __init__(self, path: Path) -> None:
        self.reader = Reader(path)
        self.reader.open()
        self.topics = {topic: (info.msgtype or "", info.msgcount) for topic, info in self.reader.topics.items()}

    def records(self, topics: set[str]) -> Iterator[Record]:
        connections = [c for c in self.reader.connections if c.topic in topics]
        if not connections:
            return
        try:
            for connection, log_ns, data in self.reader.messages(connections=connections):
                yield Record(connection.topic, connection.msgtype, log_ns, bytes(data))
        except _CUT_ERRORS as exc:
            self.cut = f"it ends early ({_reason(exc)})"

    def close(self) -> None:
        if self.reader.is_open:
            self.reader.close()


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _open_part(path: Path) -> _Part:
    """rosbags' reader where it opens the file or folder; an MCAP file without its footer scanned up to its cut.

    A ``.db3`` cut mid-page is not read at all: SQLite refuses the whole file (its schema included), so it is a
    one-line error like any unreadable bag."""
    try:
        return _RosbagsPart(path)
    except (ReaderError, sqlite3.DatabaseError, OSError, struct.error, KeyError, ValueError) as exc:
        message = _reason(exc)
        if path.suffix.lower() == ".mcap" and "end magic" in message:
            return _McapScan(path)
        raise EdgedepthError(f"{path}: not a readable ROS 2 bag ({message})") from exc


class _McapScan(_Part):
    """An MCAP file without its footer (the recorder stopped before closing it): its records read in file order,
    chunk by chunk, up to the first incomplete one, the way ``mcap recover`` reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.channels: dict[int, tuple[str, str]] = {}
        counts: dict[int, int] = {}
        with path.open("rb") as stream:
            for kind, value in self._scan(stream):
                if kind == "message":
                    counts[value[0]] = counts.get(value[0], 0) + 1
        self.damage, self.cut = self.cut, None  # cut is set again when the records are read
        self.topics = {topic: (msgtype, counts.get(key, 0)) for key, (topic, msgtype) in self.channels.items()}

    def records(self, topics: set[str]) -> Iterator[Record]:
        with self.path.open("rb") as stream:
            for kind, value in self._scan(stream):
                if kind == "message":
                    channel, log_ns, data = value
                    topic, msgtype = self.channels[channel]
                    if topic in topics:
                        yield Record(topic, msgtype, log_ns, data)

    def _scan(self, stream: BinaryIO) -> Iterator[tuple[str, Any]]:
        """``("message", (channel, log_ns, data))`` for each complete message record; schemas and channels are
        recorded on the way; the scan stops at the data's end or at the first incomplete record (``cut``)."""
        if stream.read(8) != b"\x89MCAP0\r\n":
            raise EdgedepthError(f"{self.path}: not an MCAP file (its magic bytes are wrong)")
        schemas: dict[int, str] = {}
        try:
            while True:
                head = stream.read(9)
                if not head:
                    self.cut = "it ends early (no MCAP footer: the recording was not closed)"
                    return
                opcode, length = head[0], struct.unpack("<Q", head[1:9])[0] if len(head) == 9 else -1
                body = stream.read(length) if length >= 0 else b""
                if length < 0 or len(body) < length:
                    self.cut = "it ends early (cut inside a record: the recording was not closed)"
                    return
                if opcode in (0x02, 0x0F):  # footer, data end: the data section is over
                    return
                if opcode == 0x06:
                    yield from self._chunk(body, schemas)
                else:
                    yield from self._record(opcode, body, schemas)
        except _CUT_ERRORS as exc:
            self.cut = f"it ends early ({_reason(exc)})"

    def _chunk(self, body: bytes, schemas: dict[int, str]) -> Iterator[tuple[str, Any]]:
        _, _, size, crc = struct.unpack_from("<QQQI", body, 0)
        offset = 28
        (name_length,) = struct.unpack_from("<I", body, offset)
        compression = body[offset + 4 : offset + 4 + name_length].decode()
        offset += 4 + name_length
        (records_length,) = struct.unpack_from("<Q", body, offset)
        records = decompress(body[offset + 8 : offset + 8 + records_length], compression, size, crc)
        inner = 0
        while inner < len(records):
            opcode, length = records[inner], struct.unpack_from("<Q", records, inner + 1)[0]
            yield from self._record(opcode, records[inner + 9 : inner + 9 + length], schemas)
            inner += 9 + length

    def _record(self, opcode: int, body: bytes, schemas: dict[int, str]) -> Iterator[tuple[str, Any]]:
        if opcode == 0x03:  # schema: id, name, encoding, data
            (key,) = struct.unpack_from("<H", body, 0)
            schemas[key] = _string(body, 2)[0]
        elif opcode == 0x04:  # channel: id, schema id, topic, message encoding, metadata
            key, schema = struct.unpack_from("<HH", body, 0)
            self.channels[key] = (_string(body, 4)[0], schemas.get(schema, ""))
        elif opcode == 0x05:  # message: channel, sequence, log time, publish time, data
            channel, _, log_ns, _ = struct.unpack_from("<HIQQ", body, 0)
            if channel in self.channels:
                yield "message", (channel, log_ns, bytes(body[22:]))


def _string(body: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<I", body, offset)
    return body[offset + 4 : offset + 4 + length].decode(), offset + 4 + length


class BagWriter:
    """A new bag at ``target`` (see the module docstring), written in a partial folder beside it until
    :meth:`close`."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        suffix = self.target.suffix.lower()
        if self.target.is_dir() and not (self.target / "metadata.yaml").is_file():
            raise EdgedepthError(f"--out {self.target}: a folder that is not a bag is there; name a new bag "
                                 "(a folder, or NAME.mcap / NAME.db3)")
        if self.target.is_file() and suffix not in BAG_SUFFIXES:
            raise EdgedepthError(f"--out {self.target}: a file is there; name a bag (a folder, or NAME.mcap / NAME.db3)")
        self.partial = self.target.with_name(f".{self.target.name}.partial")
        if self.partial.exists():  # a run that was killed left it: ours, and incomplete
            shutil.rmtree(self.partial)
        plugin = StoragePlugin.SQLITE3 if suffix == ".db3" else StoragePlugin.MCAP
        self.writer = Writer(self.partial, version=8, storage_plugin=plugin)
        try:
            self.writer.open()
        except (WriterError, OSError) as exc:
            raise EdgedepthError(f"--out {self.target}: cannot write a bag here ({_reason(exc)})") from exc
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, log_ns: int, message: Any) -> None:
        """Write ``message`` (of ``msgtype``) on ``topic`` at log time ``log_ns``."""
        if topic not in self._connections:
            self._connections[topic] = self.writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        self.writer.write(self._connections[topic], log_ns, TYPESTORE.serialize_cdr(message, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> Path:
        """Finish the bag and move it into place (replacing an older bag of that name); returns its path."""
        self.writer.close()
        if self.target.suffix.lower() in BAG_SUFFIXES:
            (stored,) = _storage_files(self.partial)
            stored.replace(self.target)
            shutil.rmtree(self.partial)
            return self.target
        old = self.target.with_name(f".{self.target.name}.old")
        if self.target.exists():
            self.target.replace(old)
        self.partial.replace(self.target)
        for file in _storage_files(self.target):  # rosbags names the storage after the folder it wrote in
            file.replace(self.target / (self.target.name + file.suffix))
        _rename_in_metadata(self.target / "metadata.yaml", self.partial.name, self.target.name)
        if old.exists():
            shutil.rmtree(old)
        return self.target

    def abort(self) -> None:
        """Drop the partial bag: nothing is left under the target's name."""
        with contextlib.suppress(Exception):  # a writer that failed to close: its folder goes anyway
            self.writer.close()
        shutil.rmtree(self.partial, ignore_errors=True)


def _rename_in_metadata(path: Path, old: str, new: str) -> None:
    """Point ``metadata.yaml``'s file list at the storage file's new name."""
    path.write_text(path.read_text().replace(old, new))
