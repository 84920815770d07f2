"""The Python API in five lines::

    import edgedepth

    model = edgedepth.load("zipdepth_base", runtime="onnx")  # a released name, or a file
    depth = model("photo.jpg")  # float32 H x W relative inverse depth at the photo's size

:func:`load` opens a released network by name (downloaded, verified and cached once, like ``--model``) or a file
(our ``.safetensors`` or an export), on any runtime of the table, and returns a :class:`DepthModel`: called on an
image it gives depth; :meth:`DepthModel.stream` runs a video or camera through the CLI's pipelined loop, optionally
stabilised; :meth:`DepthModel.metric` brings a frame to metres from known points, a sparse depth map or the floor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedepth.core.card import RELATIVE_INVERSE_DEPTH
from edgedepth.core.depth import DEFAULT_MAX_DEPTH, inverse_to_depth_or_zero
from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import read_rgb
from edgedepth.core.processing import upsample_prediction
from edgedepth.predict.pipeline import pipelined
from edgedepth.predict.video import capture_frames, open_capture
from edgedepth.robot.geometry import Intrinsics, backproject
from edgedepth.robot.metric_scale import Ground, MetricConfig, MetricFit, Points, Sparse, fit, load_reference
from edgedepth.robot.stabilize import Stabilizer
from edgedepth.runtime.predictor import Predictor, load_predictor

Image = np.ndarray | str | Path


@dataclass(frozen=True)
class MetricDepth:
    """A frame in metres: ``depth`` (``H x W`` float32, 0 where there is none: beyond ``max_depth`` or behind the
    camera), the ``fit`` that made it (metric inverse depth = scale * prediction + shift) and the ``camera``, if
    known, which :meth:`points` needs."""

    depth: np.ndarray
    fit: MetricFit
    camera: Intrinsics | None

    def points(self) -> np.ndarray:
        """The pixels with depth as ``N x 3`` float32 points in metres, camera frame (x right, y down, z forward)."""
        if self.camera is None:
            raise EdgedepthError("points need the camera: give metric(..., fov=DEG) or intrinsics=(fx, fy, cx, cy)")
        xyz = backproject(self.depth, self.camera)
        return xyz[self.depth > 0].astype(np.float32)


class DepthModel:
    """A depth network ready to run. ``kind`` says what calling it returns: relative inverse depth (larger is
    nearer, up to an unknown scale and shift), as MiDaS's; :meth:`metric` makes it metres."""

    kind = RELATIVE_INVERSE_DEPTH

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @property
    def name(self) -> str:
        """The network's registered name (its model card's)."""
        return self.predictor.name

    @property
    def runtime(self) -> str:
        """The library that runs it (``torch``, ``onnxruntime``, ``openvino``...)."""
        return self.predictor.runtime

    def __repr__(self) -> str:
        width, height = self.predictor.size
        return f"DepthModel({self.name}, runtime={self.runtime}, input {width}x{height})"

    def __call__(self, image: Image, *, bgr: bool = False) -> np.ndarray:
        """Depth of one image: an RGB ``H x W x 3`` uint8 array (``bgr=True`` for OpenCV's order), or a path to an
        image file. Returns ``H x W`` float32 relative inverse depth at the image's size (the image keeps its shape
        in the network: letterboxed or aspect-kept, as the CLI does)."""
        return self.predictor(_rgb(image, bgr))

    def stream(self, source: str | Path | int, *, stabilize: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(frame, depth)`` for each frame of a video file or camera index, in order: ``frame`` RGB uint8, ``depth``
        as :meth:`__call__` gives it. Reading, the network and the caller each have a thread (the CLI's real-time
        loop); a camera's newest frame replaces one the network has not taken yet. ``stabilize``: each depth is
        aligned to a running estimate and blended in, so it does not flicker."""
        stabilizer = Stabilizer() if stabilize else None
        capture = open_capture(source if isinstance(source, int) else str(source))
        try:
            with closing(pipelined(self.predictor, capture_frames(capture), latest=isinstance(source, int))) as predicted:
                for done in predicted:
                    assert done.prediction is not None
                    prediction = done.prediction
                    if stabilizer is not None:
                        prediction = stabilizer(prediction[0, 0])[None, None]
                    height, width = done.image.shape[:2]
                    yield done.image, upsample_prediction(prediction, (width, height))[0, 0]
        finally:
            capture.release()

    def metric(
        self,
        image: Image,
        *,
        points: Sequence[tuple[float, float, float]] | str | Path | None = None,
        sparse: np.ndarray | str | Path | None = None,
        ground: float | None = None,
        pitch: float = 0.0,
        roll: float = 0.0,
        fov: float | None = None,
        intrinsics: tuple[float, float, float, float] | None = None,
        max_depth: float = DEFAULT_MAX_DEPTH,
        bgr: bool = False,
    ) -> MetricDepth:
        """The image's depth in metres, its scale and shift fitted to one reference (exactly one of):

        ``points``: ``(x, y, depth)`` triples (column, row at the image's resolution; metres along the optical
        axis), or a ``points.json`` as ``predict --metric`` reads; ``sparse``: an ``H x W`` array of metres, 0 where
        unknown (a LiDAR scan), or a ``.npy``/16-bit ``.png`` file; ``ground``: the camera's height in metres over
        a flat floor, looking ``pitch`` degrees down (and ``roll``), which needs the camera: ``fov`` (horizontal,
        degrees) or ``intrinsics`` ``(fx, fy, cx, cy)`` in pixels. Depth beyond ``max_depth`` is 0.
        """
        given = [name for name, value in (("points", points), ("sparse", sparse), ("ground", ground))
                 if value is not None]
        if len(given) != 1:
            raise EdgedepthError("metric() needs exactly one reference: points=, sparse= or ground= "
                                 f"(given: {', '.join(given) or 'none'})")
        rgb = _rgb(image, bgr)
        origin = str(image) if isinstance(image, (str, Path)) else "the image"
        camera = Intrinsics(*intrinsics) if intrinsics is not None else None
        cfg = MetricConfig(metric=str(points) if isinstance(points, (str, Path)) else
                           str(sparse) if isinstance(sparse, (str, Path)) else "ground" if ground is not None else None,
                           camera_height=ground, pitch_deg=pitch, roll_deg=roll, intrinsics=camera, fov=fov,
                           max_depth=max_depth)
        if isinstance(points, (str, Path)) or isinstance(sparse, (str, Path)) or ground is not None:
            reference = load_reference(cfg)
        elif points is not None:
            known = np.asarray(points, dtype=np.float64).reshape(-1, 3)
            reference = Points("points", known[:, :2], known[:, 2], np.full(len(known), np.nan))
        else:
            reference = Sparse("sparse", np.asarray(sparse, dtype=np.float64))
        if isinstance(reference, Ground) or fov is not None or camera is not None:
            height, width = rgb.shape[:2]
            camera = cfg.camera((width, height), origin)
        prediction = self.predictor(rgb)
        found = fit(prediction, reference, cfg, origin)
        depth = inverse_to_depth_or_zero(found.scale * prediction.astype(np.float64) + found.shift, max_depth)
        return MetricDepth(depth.astype(np.float32), found, camera)


def load(
    model: str | Path,
    runtime: str | None = None,
    threads: int | None = None,
    size: tuple[int, int] | None = None,
    device: str = "cpu",
) -> DepthModel:
    """A :class:`DepthModel` for a released network by name (``zipdepth_base``, ``midas_v21_small``,
    ``depth_anything_v2_small``...: downloaded, verified and converted once into the cache, and on an export
    ``runtime`` built once there) or for a file (our ``.safetensors``, ``.onnx``, OpenVINO ``.xml``, TorchScript
    ``.pt``). ``runtime`` names one of the runtime table (``onnx``, ``onnx-int8``, ``openvino``, ``openvino-int8``,
    ``torch``...; for a file, default: its suffix's); ``threads`` the network's threads (default: every core);
    ``size`` its input ``(width, height)`` (default: the network's own)."""
    from edgedepth.core.releases import RELEASES

    if isinstance(model, str) and model in RELEASES:
        from edgedepth.pretrained.resolve import model_file

        path = model_file(model, runtime, size)
        exported = runtime not in (None, "torch")
        return DepthModel(load_predictor(path, None if exported else size, device, threads=threads,
                                         runtime=runtime))
    path = Path(model)
    if not path.exists():
        raise EdgedepthError(f"{model}: neither a released network ({', '.join(RELEASES)}) nor an existing file")
    return DepthModel(load_predictor(path, size, device, threads=threads, runtime=runtime))


def _rgb(image: Image, bgr: bool) -> np.ndarray:
    """An image argument as an RGB array: a path is read (EXIF orientation applied), an array's channels swapped
    from BGR when asked."""
    if isinstance(image, (str, Path)):
        return read_rgb(image)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise EdgedepthError(f"an image is H x W x 3 (RGB), not an array of shape {array.shape}")
    return array[:, :, ::-1] if bgr else array
