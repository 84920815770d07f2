"""``edgedepth predict run.mcap --topic /camera/image_raw --out depth.mcap``: a ROS 2 bag of camera images in, a bag of
depth out.

Every image on the topic (``sensor_msgs/msg/Image`` or ``CompressedImage``, :mod:`edgedepth.robot.rosmsgs`) goes
through the video loop's pipeline (:func:`edgedepth.predict.pipeline.pipelined`, threads sized as the loop's) and
becomes, under the topic's namespace (``/camera`` for ``/camera/image_raw``), with the image's header (stamp and
frame id) and log time:

- ``<ns>/depth/relative_inverse``: relative inverse depth, ``32FC1`` at the image's size;
- ``<ns>/depth/camera_info``: the camera of those depth images (the bag's own ``<ns>/camera_info`` where it has one,
  else the pinhole of ``--intrinsics`` / ``--fov``), when the camera is known;
- with ``--metric``, ``<ns>/depth/image``: depth in metres as ``32FC1``, NaN where there is none (or millimetres as
  ``16UC1``, 0 where there is none, with ``--depth-mm``), as ``depth_image_proc`` reads them; a frame whose fit
  fails keeps its message, all NaN (or 0), and is counted;
- with ``--pointcloud``, ``<ns>/depth/points``: an organised ``PointCloud2`` (x, y, z, rgb).

``--metric`` takes what predict takes (``ground``, points.json, a sparse map file) or a depth topic of the bag (a
LiDAR projected to the image: ``32FC1`` metres or ``16UC1`` millimetres), matched to each image by header stamp
within ``--sync-tolerance`` seconds. ``--stabilize`` runs over the frames in the bag's order.

The output is written through a partial bag moved into place at the end (:class:`~edgedepth.robot.bags.BagWriter`).
A fault in the middle (the bag ends early, an image that cannot be read) stops the run with one line and exit
status 2, and the output holds every frame done before it; a killed run leaves no output.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edgedepth.core.cores import available_cores
from edgedepth.core.depth import inverse_to_depth_or_zero
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.files import check_output_folder
from edgedepth.core.imageio import DEFAULT_MAX_IMAGE_PIXELS
from edgedepth.core.processing import upsample_prediction
from edgedepth.predict.pipeline import pipelined
from edgedepth.robot import metric_scale, rosmsgs
from edgedepth.robot.bags import BagReader, BagWriter, Record
from edgedepth.robot.geometry import Intrinsics
from edgedepth.robot.stabilize import Stabilizer
from edgedepth.runtime.predictor import load_predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BagConfig:
    """What ``edgedepth predict BAG`` was asked to do."""

    source: Path
    weights: Path
    topic: str | None = None  # None: the bag's one image topic
    out: Path | None = None  # a bag folder, or NAME.mcap / NAME.db3; None: predict_out/<bag name>.mcap
    size: tuple[int, int] | None = None
    device: str = "cpu"
    threads: int | None = None  # the network's; None: every core this process may use
    metric: metric_scale.MetricConfig = field(default_factory=metric_scale.MetricConfig)
    stabilize: bool = False
    millimetres: bool = False  # metric depth as 16UC1 millimetres instead of 32FC1 metres
    sync_tolerance: float = 0.05  # seconds between an image's stamp and its --metric topic's depth
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS

    @property
    def metric_topic(self) -> str | None:
        """``--metric`` when it names a topic of the bag."""
        return self.metric.metric if self.metric.metric is not None and self.metric.metric.startswith("/") else None

    def output(self) -> Path:
        return self.out if self.out is not None else Path("predict_out") / f"{self.source.name.split('.')[0]}.mcap"


@dataclass(frozen=True)
class BagSummary:
    """What a run did: frames written, the seconds they took (model loading apart), messages per output topic,
    frames without metric depth, and notes (a distorted camera, a stamp that went back)."""

    frames: int
    seconds: float
    out: Path
    topics: dict[str, int]
    without_metric: int = 0
    notes: tuple[str, ...] = ()
    threads: int = 1

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Topics:
    """The bag's topics this run reads, and those it writes."""

    image: str
    camera_info: str | None
    depth: str | None
    namespace: str

    def out(self, name: str) -> str:
        return f"{self.namespace}/depth/{name}"


@dataclass
class _Tag:
    """What the reader thread hands on with each image: where it came from and what goes with it."""

    index: int
    log_ns: int
    stamp: int
    frame_id: str
    camera_info: Any | None
    depth: np.ndarray | None = None  # the --metric topic's depth matched to it (metres, 0 = none)


def run(cfg: BagConfig) -> BagSummary:
    """Read ``cfg.source``, write the depth bag; see the module docstring."""
    reader = BagReader(cfg.source)
    with closing(reader):
        topics = _choose_topics(reader, cfg)
        metric_cfg = cfg.metric
        metric_scale.check_config(metric_cfg, camera_known=topics.camera_info is not None)
        if cfg.sync_tolerance < 0:
            raise EdgedepthError(f"--sync-tolerance {cfg.sync_tolerance:g}: give seconds, 0 or more")
        reference = (metric_scale.load_reference(metric_cfg)
                     if metric_cfg.metric is not None and topics.depth is None else None)
        out = cfg.output()
        check_output_folder(out.parent)
        threads = cfg.threads if cfg.threads is not None else available_cores()
        predictor = load_predictor(cfg.weights, cfg.size, cfg.device, threads=threads, share_cores=True)
        cv2.setNumThreads(1)  # the pipeline's stages are the parallelism, as in the video loop
        writer = BagWriter(out)
        frames, without_metric, notes = 0, 0, _Notes()
        stabilizer = Stabilizer() if cfg.stabilize else None
        start = time.perf_counter()
        total = reader.topics[topics.image][1] or None
        try:
            stream = pipelined(predictor, _frames(reader, topics, cfg))
            with closing(stream):
                last_stamp = None
                for frame in tqdm(stream, desc=cfg.source.name, unit="frame", total=total, disable=None):
                    tag = frame.tag
                    assert frame.prediction is not None
                    low = frame.prediction[0, 0]
                    if stabilizer is not None:
                        if last_stamp is not None and tag.stamp < last_stamp:
                            notes.once(f"{cfg.source} {topics.image}: stamps go back at frame {tag.index}; "
                                       "--stabilize follows the bag's order")
                        last_stamp = tag.stamp
                        low = stabilizer(low)
                    height, width = frame.image.shape[:2]
                    inverse_depth = upsample_prediction(low[None, None], (width, height))[0, 0]
                    ok = _write_frame(writer, topics, cfg, reference, tag, frame.image, inverse_depth, notes)
                    without_metric += not ok
                    frames += 1
        except BaseException as exc:  # keep the frames done; a killed process keeps none (the partial bag)
            _finish(writer, frames)
            if isinstance(exc, EdgedepthError):
                done = f"; wrote the {frames} frame(s) before it to {out}" if frames else "; nothing written"
                raise EdgedepthError(f"{exc}{done}") from exc
            raise
        seconds = time.perf_counter() - start
        if frames == 0:
            writer.abort()
            cut = f"; {reader.cut}" if reader.cut else ""
            raise EdgedepthError(f"{cfg.source}: no image on {topics.image} could be read{cut}; nothing written")
        written = writer.close()
        if reader.cut is not None:
            raise EdgedepthError(f"{cfg.source}: {reader.cut}; wrote the {frames} frame(s) before it to {written}")
        return BagSummary(frames, seconds, written, dict(writer.counts), without_metric, tuple(notes.lines), threads)


def _finish(writer: BagWriter, frames: int) -> None:
    """Keep what was done: the bag with its frames moved into place, or nothing when there is none."""
    if frames:
        writer.close()
    else:
        writer.abort()


def _choose_topics(reader: BagReader, cfg: BagConfig) -> _Topics:
    """The image topic (``--topic``, or the bag's only one), its camera info and the ``--metric`` depth topic."""
    depth = cfg.metric_topic
    if depth is not None and reader.topics.get(depth, ("", 0))[0] != rosmsgs.IMAGE:
        found = reader.topics.get(depth)
        what = f"it carries {found[0]}" if found else "the bag has no such topic"
        raise EdgedepthError(f"--metric {depth}: a depth topic is a sensor_msgs/msg/Image (32FC1 m or 16UC1 mm); "
                             f"{what}")
    images = {t: info for t, info in reader.topics.items() if info[0] in rosmsgs.IMAGE_TYPES and t != depth}
    listing = ", ".join(f"{t} ({info[0].rsplit('/', 1)[-1]}, {info[1]})" for t, info in sorted(images.items()))
    damage = f" (it ends early: {reader.damage})" if reader.damage else ""
    if cfg.topic is None:
        if len(images) != 1:
            what = f"it has {len(images)}: {listing}" if images else "it has none"
            raise EdgedepthError(f"{cfg.source}: say which image topic to read with --topic; {what}{damage}")
        topic = next(iter(images))
    elif cfg.topic not in reader.topics:
        has = f"its image topics: {listing}" if images else "it has no image topic"
        raise EdgedepthError(f"{cfg.source}: no topic {cfg.topic}; {has}{damage}")
    elif cfg.topic not in images:
        raise EdgedepthError(f"{cfg.source}: {cfg.topic} carries {reader.topics[cfg.topic][0]}, not images; "
                             f"its image topics: {listing or 'none'}")
    else:
        topic = cfg.topic
    namespace = rosmsgs.image_namespace(topic)
    info = f"{namespace}/camera_info"
    camera_info = info if reader.topics.get(info, ("", 0))[0] == rosmsgs.CAMERA_INFO else None
    return _Topics(topic, camera_info, depth, namespace)


def _frames(reader: BagReader, topics: _Topics, cfg: BagConfig) -> Iterator[tuple[_Tag, np.ndarray]]:
    """The images of the topic in the bag's order, each with its camera info (the latest before it; the first one for
    images before it) and, with a ``--metric`` topic, the depth whose stamp is nearest its own within the
    tolerance."""
    wanted = [t for t in (topics.image, topics.camera_info, topics.depth) if t is not None]
    matcher = _DepthMatcher(round(cfg.sync_tolerance * 1e9)) if topics.depth is not None else None
    camera_info = None  # the latest; before the first arrives, the first (a camera's info rarely changes)
    if topics.camera_info is not None:
        first = next(iter(reader.records([topics.camera_info])), None)
        camera_info = first.message() if first is not None else None
    index = 0
    for record in reader.records(wanted):
        if record.topic == topics.camera_info:
            camera_info = record.message()
        elif record.topic == topics.depth:
            assert matcher is not None
            message = record.message()
            matcher.add_depth(rosmsgs.stamp_ns(message), rosmsgs.read_depth_image(message, _origin(cfg, record)))
            yield from matcher.ready()
        else:
            message = record.message()
            image = rosmsgs.decode_image(message, _origin(cfg, record), cfg.max_image_pixels)
            tag = _Tag(index, record.log_ns, rosmsgs.stamp_ns(message), str(message.header.frame_id), camera_info)
            index += 1
            if matcher is None:
                yield tag, image
            else:
                matcher.add_image(tag, image)
                yield from matcher.ready()
    if matcher is not None:
        yield from matcher.flush()


def _origin(cfg: BagConfig, record: Record) -> str:
    return f"{cfg.source} {record.topic} at {record.log_ns / 1e9:.3f} s"


class _DepthMatcher:
    """Pairs images with the depth message nearest in stamp (within ``tolerance`` ns), in image order: an image
    waits until a depth later than its stamp plus the tolerance has arrived (or the bag ends)."""

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance
        self.waiting: deque[tuple[_Tag, np.ndarray]] = deque()
        self.depths: deque[tuple[int, np.ndarray]] = deque()

    def add_image(self, tag: _Tag, image: np.ndarray) -> None:
        self.waiting.append((tag, image))

    def add_depth(self, stamp: int, depth: np.ndarray) -> None:
        self.depths.append((stamp, depth))

    def ready(self) -> Iterator[tuple[_Tag, np.ndarray]]:
        latest = self.depths[-1][0] if self.depths else None
        while self.waiting and latest is not None and latest > self.waiting[0][0].stamp + self.tolerance:
            yield self._match(*self.waiting.popleft())

    def flush(self) -> Iterator[tuple[_Tag, np.ndarray]]:
        while self.waiting:
            yield self._match(*self.waiting.popleft())

    def _match(self, tag: _Tag, image: np.ndarray) -> tuple[_Tag, np.ndarray]:
        near = [(abs(stamp - tag.stamp), k) for k, (stamp, _) in enumerate(self.depths)
                if abs(stamp - tag.stamp) <= self.tolerance]
        if near:
            tag.depth = self.depths[min(near)[1]][1]
        while self.depths and self.depths[0][0] < tag.stamp - self.tolerance:  # no later image can match them
            self.depths.popleft()
        return tag, image


class _Notes:
    """Things to tell once: a distorted camera, a camera of another resolution, stamps that go back."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def once(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)
            logger.warning(line)


def _camera(cfg: BagConfig, tag: _Tag, size: tuple[int, int], notes: _Notes, source: str) -> Intrinsics | None:
    """This frame's camera: ``--intrinsics`` / ``--fov`` where given, else the bag's camera info, else None."""
    if cfg.metric.intrinsics is not None or cfg.metric.fov is not None:
        return cfg.metric.camera(size, source)
    if tag.camera_info is None:
        return None
    note = rosmsgs.distortion(tag.camera_info)
    if note is not None:
        notes.once(f"{source}: the camera has {note}: depth and points assume the images are rectified (a pinhole)")
    return rosmsgs.intrinsics_of(tag.camera_info, size, source)


def _write_frame(
    writer: BagWriter, topics: _Topics, cfg: BagConfig, reference: metric_scale.Reference | None, tag: _Tag,
    image: np.ndarray, inverse_depth: np.ndarray, notes: _Notes,
) -> bool:
    """Write one frame's messages; False when it has no metric depth though ``--metric`` asked for it."""
    height, width = inverse_depth.shape
    source = f"{cfg.source} {topics.image} frame {tag.index}"
    header = rosmsgs.header(tag.stamp, tag.frame_id)
    writer.write(topics.out("relative_inverse"), rosmsgs.IMAGE, tag.log_ns, rosmsgs.float_image(inverse_depth, header))
    camera = _camera(cfg, tag, (width, height), notes, f"{cfg.source} {topics.image}")
    if camera is not None:
        own = tag.camera_info if cfg.metric.intrinsics is None and cfg.metric.fov is None else None
        writer.write(topics.out("camera_info"), rosmsgs.CAMERA_INFO, tag.log_ns,
                     rosmsgs.camera_info(header, (width, height), camera, own))
    if cfg.metric.metric is None:
        return True
    depth = _metric_depth(cfg, reference, tag, inverse_depth, camera, source)
    fitted = depth is not None
    if depth is None:
        depth = np.zeros_like(inverse_depth, dtype=np.float64)
    metric = (rosmsgs.millimetre_image(depth, header) if cfg.millimetres
              else rosmsgs.float_image(np.where(depth > 0, depth, np.nan), header))
    writer.write(topics.out("image"), rosmsgs.IMAGE, tag.log_ns, metric)
    if cfg.metric.pointcloud:
        assert camera is not None  # check_config: --pointcloud needs a camera, from the flags or the bag
        writer.write(topics.out("points"), rosmsgs.POINT_CLOUD, tag.log_ns,
                     rosmsgs.point_cloud(depth, image, camera, header))
    return fitted


def _metric_depth(
    cfg: BagConfig, reference: metric_scale.Reference | None, tag: _Tag, inverse_depth: np.ndarray,
    camera: Intrinsics | None, source: str,
) -> np.ndarray | None:
    """This frame's depth in metres (0 where none), or None when it has no fit (logged)."""
    if cfg.metric_topic is not None:
        if tag.depth is None:
            logger.warning(f"{source}: no {cfg.metric_topic} message within {cfg.sync_tolerance:g} s of its stamp; "
                           "no metric depth")
            return None
        reference = metric_scale.Sparse(f"{cfg.metric_topic} at {tag.stamp / 1e9:.3f} s", tag.depth)
    assert reference is not None
    frame_cfg = cfg.metric
    if camera is not None and frame_cfg.intrinsics is None and frame_cfg.fov is None:
        frame_cfg = dataclasses.replace(frame_cfg, intrinsics=camera)  # the bag's camera, for ground and rays
    try:
        found = metric_scale.fit(inverse_depth, reference, frame_cfg, source)
    except metric_scale.MetricFitError as exc:
        logger.warning(f"{exc}; no metric depth")
        return None
    return inverse_to_depth_or_zero(found.scale * np.asarray(inverse_depth, np.float64) + found.shift,
                                    cfg.metric.max_depth)
