"""The three-stage pipeline that streams frames through a network: the video loop's and the bag job's.

As real-time video systems are built, so that each core does one thing:

1. a reader thread takes the caller's next frame (decoding it is the caller's iterator's work) and pre-processes it;
2. an inference thread runs the network (its runtime on the threads it was given);
3. the caller's thread gets each prediction, in order, from :func:`pipelined` and does the rest (upsampling,
   colour, metric fits, writing).

Between stages sits a queue of ONE item, so nothing piles up and a frame is never more than a stage behind: a
file's reader waits for the network; a camera's newest frame replaces one the network has not taken yet
(``latest``), so a slow model drops frames instead of falling behind. OpenCV, NumPy and the runtimes release the
GIL while they work. An exception in a stage (the caller's iterator included) reaches the caller's thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from edgedepth.core.processing import crop_box
from edgedepth.core.sizes import Box
from edgedepth.runtime.predictor import Predictor

#: What a stage puts in its queue after its last item.
END = object()
#: What the caller's iterator gives with each image (its size, stamp, frame id...): handed back with the prediction.
Tag = TypeVar("Tag")


@dataclass
class Predicted(Generic[Tag]):
    """A frame's way through the pipeline: the caller's ``tag`` and image, the prediction at the network's size
    (``1 x 1 x h x w``, a letterbox's padding cropped off), and the reader's and the network's seconds on it."""

    tag: Tag
    image: np.ndarray
    batch: np.ndarray
    input_size: tuple[int, int]
    box: Box | None
    read_seconds: float
    prediction: np.ndarray | None = None
    model_seconds: float = 0.0


class Slot:
    """A one-item queue between two stages. ``latest``: a new item replaces one not yet taken (a camera)."""

    def __init__(self, stop: threading.Event, latest: bool = False) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop, self._latest = stop, latest

    def put(self, item: Any) -> None:
        if self._latest and item is not END and not isinstance(item, BaseException):
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        """The next item, or :data:`END`; an exception raised in the stage that feeds this slot is raised here."""
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return END
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass


def _start_stage(name: str, work: Callable[[], None], outbox: Slot) -> threading.Thread:
    """Run ``work`` in a daemon thread; an exception it raises is handed on through ``outbox``."""

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001  (raised again by the stage that reads outbox)
            outbox.put(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def pipelined(
    predictor: Predictor, frames: Iterator[tuple[Tag, np.ndarray]], latest: bool = False
) -> Generator[Predicted[Tag], None, None]:
    """Each ``(tag, RGB image)`` of ``frames`` with its prediction, in order, read and predicted in threads of their
    own while the caller works on the previous one. Closing the iterator (a ``break``, an exception) stops both
    threads (within 50 ms, or when the caller's iterator next returns)."""
    stop = threading.Event()
    frames_slot, predictions_slot = Slot(stop, latest=latest), Slot(stop)

    def read() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                tag, image = next(frames)
            except StopIteration:
                break
            batch, input_size, box = predictor.prepare([image])
            frames_slot.put(Predicted(tag, image, batch, input_size, box, time.perf_counter() - start))
        frames_slot.put(END)

    def infer() -> None:
        while (frame := frames_slot.get()) is not END:
            start = time.perf_counter()
            frame.prediction = crop_box(predictor.infer(frame.batch), frame.box, frame.input_size)
            frame.model_seconds = time.perf_counter() - start
            predictions_slot.put(frame)
        predictions_slot.put(END)

    threads = [_start_stage("edgedepth-read", read, frames_slot),
               _start_stage("edgedepth-infer", infer, predictions_slot)]
    try:
        while (done := predictions_slot.get()) is not END:
            yield done
    finally:
        stop.set()
        for slot in (frames_slot, predictions_slot):
            slot.drain()
        for thread in threads:
            thread.join(timeout=5.0)
