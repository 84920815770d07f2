"""The real-time loop: frames from a video file or a camera, depth colour-mapped with an FPS overlay.

The frames go through :func:`edgedepth.predict.pipeline.pipelined`: a reader thread decodes and pre-processes, an
inference thread runs the network (its runtime on the threads it was given, e.g. ``--threads 1``), and this
module's loop, in the calling thread, brings the prediction back to the frame's size, colour-maps it, draws the FPS
and writes or shows it (OpenCV's windows belong to the main thread). A camera's newest frame replaces one the
network has not taken yet (and the driver's own buffer is held to one frame), so a slow model drops frames instead
of falling behind.

Threads are sized so that the stages and the network do not fight over the cores (:func:`run`): the network
runs on every core this process may use, but its idle threads sleep instead of spin-waiting (``share_cores``),
and OpenCV runs on one thread in each stage, since the stages are the parallelism. On a 2-core EPYC (AVX-512) a
256x192 ONNX student ran a 640x480 clip at about 85 FPS with the runtimes' own defaults (spinning network threads,
OpenCV on every core in every stage) and about 119 FPS sized this way; see ``benchmarks/runtime_only.py``.

The summary reports the end-to-end rate and each stage's own busy time per frame, so what everything
around the network costs is visible, overlapped or not.

With ``stabilize``, the third stage first runs :class:`~edgedepth.robot.stabilize.Stabilizer` on the network's
output, before upsampling it: no extra network run, and its own time is reported (``stabilize_seconds``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edgedepth.core.cores import available_cores
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import atomic_path
from edgedepth.core.processing import upsample_prediction
from edgedepth.core.viz import colorize
from edgedepth.predict.pipeline import pipelined
from edgedepth.robot.stabilize import Stabilizer
from edgedepth.runtime.predictor import Predictor

WINDOW = "edgedepth"


@dataclass(frozen=True)
class LoopSummary:
    """Frames processed, the loop's wall-clock seconds, and each stage's busy seconds.

    ``read_seconds``: decoding and pre-processing; ``model_seconds``: the network alone; ``post_seconds``:
    upsampling, colour map, overlay and output. The stages overlap, so they may add up to more than ``seconds``.
    """

    frames: int
    seconds: float
    model_seconds: float
    read_seconds: float = 0.0
    post_seconds: float = 0.0
    stabilize_seconds: float = 0.0  # part of post_seconds
    threads: int | None = None  # the network's, where the caller sized them

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def overhead(self) -> float:
        """What the loop adds to the network's own time, as a fraction of it (0.15 = 15 %)."""
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


def capture_frames(capture: cv2.VideoCapture) -> Iterator[tuple[None, np.ndarray]]:
    """Each frame a capture gives, as RGB, untagged (the pipeline's ``(tag, image)``), until it gives none."""
    while True:
        ok, bgr = capture.read()
        if not ok:
            return
        yield None, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colour_depth(prediction: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``1 x 1 x h x w`` prediction to its colour map at ``size = (width, height)``, BGR uint8 for OpenCV."""
    return colorize(upsample_prediction(prediction, size)[0, 0], bgr=True)


def draw_fps(image: np.ndarray, fps: float) -> None:
    """Write ``NN.N FPS`` in the top-left corner, white on a dark outline, in place."""
    text = f"{fps:.1f} FPS"
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
        cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, thickness, cv2.LINE_AA)


def run_loop(
    predictor: Predictor,
    source: str | int,
    out: Path | None = None,
    show: bool = False,
    limit: int | None = None,
    stabilize: bool = False,
) -> LoopSummary:
    """Run the loop until the source ends (or ``limit`` frames, or ``q`` in the window); write ``out`` (.mp4)."""
    stabilizer = Stabilizer() if stabilize else None
    if show:
        _open_window()
    capture = open_capture(source)

    frame_count, read_seconds, model_seconds, post_seconds, stabilize_seconds, fps, last = 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            writer = None
            stream = stack.enter_context(closing(pipelined(predictor, capture_frames(capture), latest=isinstance(source, int))))
            for frame in stream:
                tick = time.perf_counter()
                prediction = frame.prediction
                assert prediction is not None
                if stabilizer is not None:
                    prediction = stabilizer(prediction[0, 0])[None, None]
                    stabilize_seconds += time.perf_counter() - tick
                output = colour_depth(prediction, (frame.image.shape[1], frame.image.shape[0]))
                draw_fps(output, fps)
                if out is not None:
                    if writer is None:
                        tmp = stack.enter_context(atomic_path(out))
                        writer = _open_writer(tmp, capture, output.shape)
                        stack.callback(writer.release)
                    writer.write(output)
                if show and _show(output):
                    break
                frame_count += 1
                done = time.perf_counter()
                read_seconds += frame.read_seconds
                model_seconds += frame.model_seconds
                post_seconds += done - tick
                if last:  # the FPS shown is the rate frames come out at, smoothed
                    fps = 1.0 / (done - last) if fps == 0.0 else 0.9 * fps + 0.1 / (done - last)
                last = done
                if limit is not None and frame_count >= limit:
                    break
            if frame_count == 0:
                raise EdgedepthError(f"{source}: no frame could be read")
            seconds = time.perf_counter() - start
    finally:
        capture.release()
        if show:
            cv2.destroyAllWindows()
    return LoopSummary(frame_count, seconds, model_seconds, read_seconds, post_seconds, stabilize_seconds)


def _open_writer(path: Path, capture: cv2.VideoCapture, shape: tuple[int, ...]) -> cv2.VideoWriter:
    rate = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), rate, (shape[1], shape[0]))
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


@dataclass(frozen=True)
class VideoConfig:
    """What ``edgedepth predict --video FILE | --camera N`` was asked to do."""

    weights: Path
    source: str | int  # a video file, or a camera index
    out: Path | None = None  # the .mp4 to write; None: write nothing
    size: tuple[int, int] | None = None
    device: str = "cpu"
    threads: int | None = None  # the network's; None: every core this process may use
    show: bool = False
    limit: int | None = None
    stabilize: bool = False


def run(cfg: VideoConfig) -> LoopSummary:
    """Load the predictor ``cfg`` names, sized to share the cores with the loop's stages (see the module docstring),
    and run the real-time loop over its source (:func:`run_loop`)."""
    from edgedepth.runtime.predictor import load_predictor

    if cfg.out is not None and cfg.out.suffix.lower() != ".mp4":
        raise EdgedepthError(f"--out {cfg.out}: with --video or --camera, --out names the .mp4 file to write")
    threads = cfg.threads if cfg.threads is not None else available_cores()
    predictor = load_predictor(cfg.weights, cfg.size, cfg.device, threads=threads, share_cores=True)
    cv2.setNumThreads(1)  # each stage is a thread of its own; OpenCV's pool on top of them would fight the network
    summary = run_loop(predictor, cfg.source, cfg.out, cfg.show, cfg.limit, stabilize=cfg.stabilize)
    return replace(summary, threads=threads)
