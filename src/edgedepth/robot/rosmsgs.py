"""ROS 2 messages in and out of arrays: camera images, depth images, camera info and point clouds.

Pure conversions between ``sensor_msgs`` messages (as :mod:`rosbags` builds them, with the message definitions of
:data:`TYPESTORE`) and NumPy, following the conventions ROS's own tools use:

- images in: ``sensor_msgs/msg/Image`` in ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``mono16`` (its high
  byte, as every 16-bit image edgedepth reads), the Bayer mosaics (``bayer_rggb8`` ... and their 16-bit forms,
  demosaiced by OpenCV as ``cv_bridge`` does) and ``yuv422`` (UYVY) / ``yuv422_yuy2``; or
  ``sensor_msgs/msg/CompressedImage`` (JPEG, PNG). Rows may be padded (``step``) and 16-bit data big-endian.
- depth out, as ``depth_image_proc`` expects it: ``32FC1`` metres with NaN where there is no depth, or ``16UC1``
  millimetres with 0; relative inverse depth is ``32FC1`` too (no unit: its own topic says what it is);
- ``sensor_msgs/msg/CameraInfo``: the camera of a depth image registered to its colour image (``K``, ``P``);
- ``sensor_msgs/msg/PointCloud2``: organised (``height x width``, NaN where there is no depth, ``is_dense`` false),
  fields ``x y z`` float32 metres in the camera's optical frame (x right, y down, z forward) and ``rgb`` packed as
  ROS packs it (``0x00RRGGBB`` in a float32's bits).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.imageio import decode_rgb
from edgedepth.robot.geometry import Intrinsics, backproject

#: The message definitions read and written: ROS 2 Humble's, identical for these types from Humble to Jazzy.
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"
#: The message types an image topic may carry.
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

_TO_RGB = {
    "rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB,
    "8UC3": cv2.COLOR_BGR2RGB,  # cv_bridge reads an untyped 3-channel image as BGR
    "bayer_rggb8": cv2.COLOR_BayerRGGB2RGB, "bayer_bggr8": cv2.COLOR_BayerBGGR2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGBRG2RGB, "bayer_grbg8": cv2.COLOR_BayerGRBG2RGB,
    "bayer_rggb16": cv2.COLOR_BayerRGGB2RGB, "bayer_bggr16": cv2.COLOR_BayerBGGR2RGB,
    "bayer_gbrg16": cv2.COLOR_BayerGBRG2RGB, "bayer_grbg16": cv2.COLOR_BayerGRBG2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
#: Channels and bytes per channel of each image encoding read.
_LAYOUT = {"rgb8": (3, 1), "bgr8": (3, 1), "8UC3": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1),
           "8UC1": (1, 1), "mono16": (1, 2), "yuv422": (2, 1), "uyvy": (2, 1), "yuv422_yuy2": (2, 1), "yuyv": (2, 1),
           **{f"bayer_{pattern}8": (1, 1) for pattern in ("rggb", "bggr", "gbrg", "grbg")},
           **{f"bayer_{pattern}16": (1, 2) for pattern in ("rggb", "bggr", "gbrg", "grbg")}}
#: Image encodings edgedepth reads, for messages.
IMAGE_ENCODINGS = tuple(_LAYOUT)


class UnsupportedImage(EdgedepthError):
    """An image message edgedepth cannot read (an unknown encoding, a size that does not match its data)."""


def stamp_ns(message: Any) -> int:
    """A message's header stamp in nanoseconds."""
    stamp = message.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_namespace(topic: str) -> str:
    """The namespace of an image topic, where its camera info lives and its depth goes: ``/camera/image_raw`` and
    ``/camera/image_raw/compressed`` (a transport's suffix) give ``/camera``, ``/image`` gives ``""``."""
    parts = topic.rstrip("/").split("/")
    if parts[-1] in ("compressed", "compressedDepth", "theora", "zstd") and len(parts) > 2:
        parts = parts[:-1]
    return "/".join(parts[:-1])


def decode_image(message: Any, origin: str, max_pixels: int | None) -> np.ndarray:
    """An ``Image`` or ``CompressedImage`` message as ``H x W x 3`` uint8 RGB; UnsupportedImage if it cannot be."""
    if hasattr(message, "format"):  # CompressedImage: a JPEG or PNG file's bytes
        try:
            return decode_rgb(bytes(message.data), origin, max_pixels=max_pixels)
        except EdgedepthError as exc:
            raise UnsupportedImage(f"{origin}: compressed image ({message.format or 'no format'}): {exc}") from exc
    encoding = str(message.encoding)
    if encoding not in _LAYOUT:
        raise UnsupportedImage(f"{origin}: image encoding {encoding!r} is not read; edgedepth reads "
                               f"{', '.join(IMAGE_ENCODINGS)} and CompressedImage (JPEG, PNG)")
    channels, depth = _LAYOUT[encoding]
    height, width, step = int(message.height), int(message.width), int(message.step)
    data = np.asarray(message.data, dtype=np.uint8)
    if height < 1 or width < 1 or step < width * channels * depth or data.size < step * height:
        raise UnsupportedImage(f"{origin}: a {width}x{height} {encoding} image with step {step} and {data.size} "
                               "bytes of data does not hold together")
    if max_pixels and width * height > max_pixels:
        raise UnsupportedImage(f"{origin}: {width}x{height} is above the limit of {max_pixels} pixels")
    rows = data[: step * height].reshape(height, step)[:, : width * channels * depth]
    if depth == 2:
        samples = rows.view(">u2" if message.is_bigendian else "<u2").reshape(height, width, channels)
        pixels = (samples >> 8).astype(np.uint8)  # the high byte: a 16-bit image predicts as its 8-bit version
    else:
        pixels = rows.reshape(height, width, channels)
    code = _TO_RGB[encoding]
    image = pixels if code is None else cv2.cvtColor(pixels if channels != 1 else pixels[..., 0], code)
    return np.ascontiguousarray(image)


def header(stamp: int, frame_id: str) -> Any:
    """A ``std_msgs/msg/Header`` at ``stamp`` nanoseconds in ``frame_id``."""
    time_type = TYPESTORE.types["builtin_interfaces/msg/Time"]
    return TYPESTORE.types["std_msgs/msg/Header"](
        stamp=time_type(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id)


def float_image(values: np.ndarray, header_: Any) -> Any:
    """A ``32FC1`` image of ``values`` (little-endian float32)."""
    data = np.ascontiguousarray(values, dtype="<f4")
    height, width = data.shape
    return TYPESTORE.types[IMAGE](header=header_, height=height, width=width, encoding="32FC1", is_bigendian=0,
                                  step=width * 4, data=data.view(np.uint8).reshape(-1))


def millimetre_image(depth_m: np.ndarray, header_: Any) -> Any:
    """A ``16UC1`` image of depth in millimetres, 0 where there is no depth (NaN, 0 or beyond 65.535 m)."""
    with np.errstate(invalid="ignore"):
        millimetres = np.round(np.nan_to_num(depth_m, nan=0.0) * 1000.0)
    data = np.where((millimetres > 0) & (millimetres <= 65535), millimetres, 0).astype("<u2")
    height, width = data.shape
    return TYPESTORE.types[IMAGE](header=header_, height=height, width=width, encoding="16UC1", is_bigendian=0,
                                  step=width * 2, data=data.view(np.uint8).reshape(-1))


def read_depth_image(message: Any, origin: str) -> np.ndarray:
    """A depth ``Image`` (``32FC1`` metres or ``16UC1`` millimetres) as float64 metres, 0 where there is none."""
    encoding = str(message.encoding)
    kinds = {"32FC1": (">f4", "<f4", 1.0), "16UC1": (">u2", "<u2", 1e-3), "mono16": (">u2", "<u2", 1e-3)}
    if encoding not in kinds:
        raise UnsupportedImage(f"{origin}: a depth image is 32FC1 (metres) or 16UC1 (millimetres), not {encoding!r}")
    big, little, unit = kinds[encoding]
    dtype = np.dtype(big if message.is_bigendian else little)
    height, width, step = int(message.height), int(message.width), int(message.step)
    data = np.asarray(message.data, dtype=np.uint8)
    if step < width * dtype.itemsize or data.size < step * height:
        raise UnsupportedImage(f"{origin}: a {width}x{height} {encoding} image with step {step} and {data.size} "
                               "bytes of data does not hold together")
    values = data[: step * height].reshape(height, step)[:, : width * dtype.itemsize].copy().view(dtype)
    depth = values.astype(np.float64) * unit
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)


def intrinsics_of(camera_info: Any, size: tuple[int, int], origin: str) -> Intrinsics:
    """The pinhole intrinsics of a ``CameraInfo`` (its ``K``) for images of ``size``; another resolution is an error."""
    width, height = size
    if (int(camera_info.width), int(camera_info.height)) != (width, height):
        raise EdgedepthError(f"{origin}: its camera info is for {camera_info.width}x{camera_info.height} images, not "
                             f"{width}x{height}; give the camera with --intrinsics or --fov")
    k = np.asarray(camera_info.k, dtype=np.float64)
    if k.size != 9 or not (k[0] > 0 and k[4] > 0):
        raise EdgedepthError(f"{origin}: its camera info has no camera matrix (K = {k.tolist()})")
    return Intrinsics(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))


def distortion(camera_info: Any) -> str | None:
    """What is not a plain pinhole about a ``CameraInfo``: its distortion model and coefficients, or None."""
    coefficients = np.asarray(camera_info.d, dtype=np.float64)
    if not coefficients.size or not np.any(coefficients):
        return None
    return f"{camera_info.distortion_model or 'unnamed'} distortion {np.round(coefficients, 4).tolist()}"


def camera_info(header_: Any, size: tuple[int, int], intrinsics: Intrinsics, source: Any | None = None) -> Any:
    """The ``CameraInfo`` of a depth image registered to its colour image: the colour camera's own (``source``, with
    the depth's header) where the bag has it, else a distortion-free pinhole built from ``intrinsics``."""
    info_type = TYPESTORE.types[CAMERA_INFO]
    if source is not None:
        return info_type(header=header_, height=source.height, width=source.width,
                         distortion_model=source.distortion_model, d=source.d, k=source.k, r=source.r, p=source.p,
                         binning_x=source.binning_x, binning_y=source.binning_y, roi=source.roi)
    width, height = size
    k = intrinsics.matrix()
    projection = np.hstack([k, np.zeros((3, 1))])
    roi = TYPESTORE.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                               do_rectify=False)
    return info_type(header=header_, height=height, width=width, distortion_model="plumb_bob",
                     d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=projection.reshape(-1),
                     binning_x=0, binning_y=0, roi=roi)


#: ``sensor_msgs/msg/PointField``'s code for float32.
_FLOAT32 = 7
_POINT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])


def point_cloud(depth_m: np.ndarray, image: np.ndarray, intrinsics: Intrinsics, header_: Any) -> Any:
    """An organised ``PointCloud2`` of a depth map (metres, 0 = none) coloured by ``image`` (RGB uint8)."""
    height, width = depth_m.shape
    xyz = backproject(depth_m, intrinsics)
    xyz[np.asarray(depth_m) <= 0] = np.nan
    points = np.empty((height, width), dtype=_POINT)
    for axis, name in enumerate("xyz"):
        points[name] = xyz[..., axis]
    colour = image.astype(np.uint32)
    points["rgb"] = (colour[..., 0] << 16) | (colour[..., 1] << 8) | colour[..., 2]
    field = TYPESTORE.types["sensor_msgs/msg/PointField"]
    fields = [field(name=name, offset=offset, datatype=_FLOAT32, count=1)
              for name, offset in (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))]
    return TYPESTORE.types[POINT_CLOUD](header=header_, height=height, width=width, fields=fields, is_bigendian=False,
                                        point_step=_POINT.itemsize, row_step=_POINT.itemsize * width,
                                        data=points.view(np.uint8).reshape(-1), is_dense=False)
