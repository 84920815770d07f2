"""Pre- and post-processing: the one definition used by predict, eval, train, export and bench.

A student sees an RGB image in [0, 1], resized to its input size and normalised with its mean and std;
it predicts relative inverse depth at that size, which is brought back to the image's size here too. NumPy and
OpenCV only: OpenCV's resizes are the definition (training's pairs, evaluation, every runtime), so a deployed
network needs no training framework, and PyTorch's side converts at its own boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from edgedepth.core.sizes import Box

Interpolation = Literal["cubic", "area", "linear", "nearest"]
#: How an image meets the network: ``stretch`` to the input size (the seed's; its evaluation protocol),
#: ``aspect`` resized keeping its shape to sides the network takes, near the input's pixel count (PyTorch),
#: ``letterbox`` fitted inside a fixed input and padded, the padding cropped off the output (fixed-size exports).
Fit = Literal["stretch", "aspect", "letterbox"]
#: A FastDepth decoder's upsampling, which :func:`final_upsample` applies after an export whose graph stops before it.
Upsample = Literal["bilinear", "nearest"]

_CV2_INTERPOLATION = {
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
}

#: ImageNet's per-channel mean and std of RGB in [0, 1]: ImageNet encoders', MiDaS v2.1's and ONNX teachers' default.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_image(image: np.ndarray, size: tuple[int, int], interpolation: Interpolation = "cubic") -> np.ndarray:
    """Resize an ``H x W x C`` array to ``size = (width, height)`` with OpenCV, as the seed does."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return cv2.resize(image, tuple(size), interpolation=_CV2_INTERPOLATION[interpolation])


def aspect_size(image_size: tuple[int, int], pixels_of: tuple[int, int], multiple: int) -> tuple[int, int]:
    """A network input for an image of ``image_size``: its aspect ratio, about as many pixels as ``pixels_of``
    (the model's input size), and sides that are multiples of ``multiple`` (Depth Anything's and MiDaS's rule).

    A 3:4 portrait photo and the 256x192 default give 192x256 (not 256x192, 1.78x stretched).
    """
    width, height = image_size
    scale = math.sqrt(pixels_of[0] * pixels_of[1] / (width * height))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def letterbox_box(image_size: tuple[int, int], size: tuple[int, int]) -> Box:
    """Where an image of ``image_size`` sits, aspect kept and centred, inside a network input of ``size``."""
    scale = min(size[0] / image_size[0], size[1] / image_size[1])
    width, height = max(1, round(image_size[0] * scale)), max(1, round(image_size[1] * scale))
    return (size[0] - width) // 2, (size[1] - height) // 2, width, height


def crop_box(prediction: np.ndarray, box: Box | None, size: tuple[int, int]) -> np.ndarray:
    """The part of an ``N x 1 x h x w`` prediction for a network input of ``size`` that shows the image in ``box``
    (the padding of a letterbox cropped off; the box scaled if the output is not at the input's size)."""
    if box is None:
        return prediction
    sx, sy = prediction.shape[-1] / size[0], prediction.shape[-2] / size[1]
    x, y, width, height = box
    left, top = round(x * sx), round(y * sy)
    return prediction[..., top : top + max(1, round(height * sy)), left : left + max(1, round(width * sx))]


def preprocess(
    images: Sequence[np.ndarray],
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: Interpolation = "cubic",
    box: Box | None = None,
) -> np.ndarray:
    """Turn RGB images (uint8, or float in [0, 1]) into a normalised ``N x 3 x H x W`` float32 batch.

    Each image is taken to [0, 1] (uint8 / 255), resized to ``size = (width, height)`` (bicubic by default,
    the seed's inference and evaluation resize), then normalised as ``(x - mean) / std`` per channel. With
    ``box`` (a letterbox, :func:`letterbox_box`), the image is resized into that box of the input and the rest is
    0, the mean colour after normalisation. Aspect-kept sizes are the caller's choice (:func:`aspect_size`).

    Resizing is linear, so it is done first, on the image's values as float32, and the division by 255
    is folded into the normalisation of the small result, done per channel plane: the same numbers (to
    float rounding) for a fraction of the work on a video frame (0.3 ms at 640x480 instead of 5).
    """
    width, height = size
    std_array = np.asarray(std, dtype=np.float32)[:, None, None]
    shift = np.asarray(mean, dtype=np.float32)[:, None, None] / std_array
    batch = np.empty((len(images), 3, height, width), dtype=np.float32)
    x, y, box_width, box_height = box if box is not None else (0, 0, width, height)
    if box is not None:
        batch[...] = 0.0
    for image_planes, image in zip(batch, images, strict=True):
        unit = np.float32(1.0 / 255.0) if image.dtype == np.uint8 else np.float32(1.0)
        planes = image_planes[:, y : y + box_height, x : x + box_width]
        resized = resize_image(image.astype(np.float32, copy=False), (box_width, box_height), interpolation)
        planes[...] = resized.transpose(2, 0, 1)
        planes *= unit / std_array
        planes -= shift
    return batch


def upsample_prediction(prediction: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``N x 1 x h x w`` prediction to ``size = (width, height)``: bicubic, align_corners=False.

    This is how the seed brings its output to the ground truth's 640x480 before evaluation (PyTorch's
    ``F.interpolate``, bicubic with half-pixel centres). It is computed by OpenCV's float32 bicubic, the
    same kernel (a = -0.75, clamped borders), which is within 1e-6 of a float64 computation where
    PyTorch's float32 kernel is 5e-5 off, and some 20 times faster. The result is float32.
    """
    width, height = size
    prediction = np.asarray(prediction, dtype=np.float32)
    if prediction.shape[-2:] == (height, width):
        return prediction
    maps = np.ascontiguousarray(prediction.reshape(-1, *prediction.shape[-2:]))
    resized = np.empty((len(maps), height, width), dtype=np.float32)
    for source, target in zip(maps, resized, strict=True):
        cv2.resize(source, (width, height), dst=target, interpolation=cv2.INTER_CUBIC)
    return resized.reshape(*prediction.shape[:-2], height, width)


def final_upsample(output: np.ndarray, mode: Upsample) -> np.ndarray:
    """A FastDepth's last x2 upsampling and ReLU, on an export's ``N x 1 x h x w`` output, by OpenCV.

    ``mode`` is the network's: ``bilinear`` (OpenCV's float32 linear resize: half-pixel centres and clamped borders,
    PyTorch's ``align_corners=False``) or ``nearest`` (the source pixel ``floor(x / 2)``, as PyTorch's). Equal to
    ``NNConv5Decoder.final_upsample`` within 1e-6 of the output's peak, float32 rounding (tests/test_processing.py).
    The exported graph ends before it: OpenVINO runs a one-channel upsampling in a 16-channel blocked layout, a tenth
    of an INT8 run, where OpenCV takes microseconds.
    """
    maps = np.ascontiguousarray(output, dtype=np.float32)
    height, width = maps.shape[-2] * 2, maps.shape[-1] * 2
    flag = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[mode]
    resized = np.empty((*maps.shape[:-2], height, width), dtype=np.float32)
    for source, target in zip(maps.reshape(-1, *maps.shape[-2:]), resized.reshape(-1, height, width), strict=True):
        cv2.resize(source, (width, height), dst=target, interpolation=flag)
    return np.maximum(resized, 0.0, out=resized)


