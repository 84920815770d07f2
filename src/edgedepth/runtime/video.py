"""The real-time loop: frames from a video file or a camera, depth colour-mapped with an FPS overlay.

Frames are processed as they come, on one thread: one is read, pre-processed, inferred, brought back to
its size, colour-mapped and written (or shown) before the next is read, so nothing queues; a camera's
driver buffer is held to one frame, so a slow model drops frames instead of falling behind. (A reader
thread decoding ahead was tried: on a two-core machine it slowed the network by a quarter through shared
caches and memory, more than the decoding it hid.) The summary gives the end-to-end rate and each
stage's time, so the cost of everything around the network is visible.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from edgedepth.errors import EdgedepthError
from edgedepth.imageio import atomic_path
from edgedepth.processing import preprocess, upsample_prediction
from edgedepth.runtime.predictor import Predictor
from edgedepth.viz import colorize

WINDOW = "edgedepth"


@dataclass(frozen=True)
class LoopSummary:
    """Frames processed and seconds: the whole loop's wall clock, and each stage's own share of it.

    ``read_seconds`` is decoding and pre-processing, ``model_seconds`` the network alone, ``post_seconds``
    upsampling, colour map, overlay and output.
    """

    frames: int
    seconds: float
    model_seconds: float
    read_seconds: float = 0.0
    post_seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def overhead(self) -> float:
        """What the loop adds to the network's time, as a fraction of it (0.15 = 15 %)."""
        return self.seconds / self.model_seconds - 1.0 if self.model_seconds > 0 else 0.0


def open_capture(source: str | int) -> cv2.VideoCapture:
    """A video file (path) or a camera (index); either that cannot be opened is a clear error."""
    capture = cv2.VideoCapture(source)
    if isinstance(source, int):
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"{source}: video"
        raise EdgedepthError(f"{what} cannot be opened (no such device or file, or an unsupported codec)")
    return capture


def colour_depth(prediction: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A ``1 x 1 x h x w`` prediction to its colour map at ``size = (width, height)``, BGR uint8 for OpenCV."""
    return colorize(upsample_prediction(prediction, size)[0, 0].numpy(), bgr=True)


def draw_fps(image: np.ndarray, fps: float) -> None:
    """Write ``NN.N FPS`` in the top-left corner, white on a dark outline, in place."""
    text = f"{fps:.1f} FPS"
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
        cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, thickness, cv2.LINE_AA)


def run_loop(
    predictor: Predictor, source: str | int, out: Path | None = None, show: bool = False, limit: int | None = None
) -> LoopSummary:
    """Run the loop until the source ends (or ``limit`` frames, or ``q`` in the window); write ``out`` (.mp4)."""
    if show:
        _open_window()
    capture = open_capture(source)
    frames, read_seconds, model_seconds, post_seconds, fps = 0, 0.0, 0.0, 0.0, 0.0
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            writer = None
            while limit is None or frames < limit:
                tick = time.perf_counter()
                ok, bgr = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                batch = preprocess([rgb], predictor.size, predictor.card.mean, predictor.card.std,
                                   predictor.interpolation)
                read = time.perf_counter()
                prediction = predictor.infer(batch)
                inferred = time.perf_counter()
                output = colour_depth(prediction, (rgb.shape[1], rgb.shape[0]))
                draw_fps(output, fps)
                if out is not None:
                    if writer is None:
                        tmp = stack.enter_context(atomic_path(out))
                        writer = _open_writer(tmp, capture, output.shape)
                        stack.callback(writer.release)
                    writer.write(output)
                if show and _show(output):
                    break
                frames += 1
                done = time.perf_counter()
                read_seconds += read - tick
                model_seconds += inferred - read
                post_seconds += done - inferred
                fps = 1.0 / (done - tick) if fps == 0.0 else 0.9 * fps + 0.1 / (done - tick)  # smoothed for display
            if frames == 0:
                raise EdgedepthError(f"{source}: no frame could be read")
            seconds = time.perf_counter() - start
    finally:
        capture.release()
        if show:
            cv2.destroyAllWindows()
    return LoopSummary(frames, seconds, model_seconds, read_seconds, post_seconds)


def _open_writer(path: Path, capture: cv2.VideoCapture, shape: tuple[int, ...]) -> cv2.VideoWriter:
    rate = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), rate, (shape[1], shape[0]))
    if not writer.isOpened():
        raise EdgedepthError(f"{path}: cannot write a video here (use an .mp4 name in a writable folder)")
    return writer


def _open_window() -> None:
    """Open the display window; a headless OpenCV build (or no display) is a clear error."""
    try:
        cv2.namedWindow(WINDOW)
    except cv2.error:
        raise EdgedepthError(
            "--show needs OpenCV with a GUI (pip install opencv-python) and a display; write --out FILE.mp4 instead"
        ) from None


def _show(image: np.ndarray) -> bool:
    """Show a frame; True when the user pressed ``q``."""
    cv2.imshow(WINDOW, image)
    return (cv2.waitKey(1) & 0xFF) == ord("q")
