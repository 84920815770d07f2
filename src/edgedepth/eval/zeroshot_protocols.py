"""The zero-shot protocols: how each evaluator (Marigold's, ZipDepth's) scores the five sets, and a sample made
ready to score under one (its crops, valid pixels and depth range)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedepth.core.sizes import Crop
from edgedepth.data.marigold import EvalSet, Sample, crop_array, eval_crop_box, kb_crop_box
from edgedepth.eval.metrics import valid_mask
from edgedepth.eval.zeroshot_metrics import Evaluator


@dataclass(frozen=True)
class ZeroShotProtocol:
    """How an evaluator scores the five sets, beyond what :class:`~edgedepth.data.marigold.EvalSet` says.

    Attributes:
        depth_ranges: valid range and clip range per set where they differ from Marigold's.
        range_cuts_mask_file: whether the range also cuts a set's mask file (DIODE); Marigold's mask is the file.
        crop_after_inference: KITTI's benchmark crop of the prediction of the whole image, instead of the input.
        alignment_max_res: per set, the ``--alignment-max-res`` its published scripts pass.
        evaluator: whose evaluator's details to follow (the fit's subsampling, the float32 of its δ ratios;
            :data:`edgedepth.eval.zeroshot_metrics.Evaluator`).
        min_pixels: fewest valid pixels of a frame that is scored.
    """

    name: str
    description: str
    depth_ranges: dict[str, tuple[float, float]]
    range_cuts_mask_file: bool
    crop_after_inference: bool
    alignment_max_res: dict[str, int]
    evaluator: Evaluator
    min_pixels: int


PROTOCOLS: dict[str, ZeroShotProtocol] = {
    "marigold": ZeroShotProtocol(
        "marigold",
        "Marigold's script/depth/eval.py: least-squares scale and shift (in disparity against 1/depth for inverse "
        "depth; in depth for affine-invariant depth), aligned disparity clipped at 1e-3 and inverted, depth clipped "
        "to the set's range; KITTI's benchmark crop before inference; ETH3D's fit on a subsample at most 1024 "
        "columns wide (--alignment_max_res 1024, Marigold's nearest-neighbour subsampling)",
        {}, False, False, {"eth3d": 1024}, "marigold", 1,
    ),
    "zipdepth": ZeroShotProtocol(
        "zipdepth",
        "ZipDepth's scripts/eval.py: Marigold's alignment with ZipDepth's depth caps (KITTI 1e-3 to 80 m, ETH3D "
        "up to 60 m, DIODE its mask within 0.6 to 80 m), KITTI cropped after inference on the whole image, the fit "
        "at full resolution, frames with fewer than 10 valid pixels not scored",
        {"kitti": (1e-3, 80.0), "eth3d": (1e-5, 60.0), "diode": (0.6, 80.0)}, True, True, {}, "zipdepth", 10,
    ),
}


@dataclass(frozen=True)
class SetSettings:
    """One set under one protocol: its valid and clip range and the fit's subsampling."""

    evalset: EvalSet
    protocol: ZeroShotProtocol
    min_depth: float
    max_depth: float
    alignment_max_res: int | None

    def describe(self) -> dict[str, Any]:
        return {"min_depth": self.min_depth, "max_depth": self.max_depth if np.isfinite(self.max_depth) else "inf",
                "alignment_max_res": self.alignment_max_res}


def set_settings(protocol: ZeroShotProtocol, evalset: EvalSet, alignment_max_res: int | None) -> SetSettings:
    """``evalset`` under ``protocol``; ``alignment_max_res`` (None: the protocol's own; 0: full resolution)."""
    low, high = protocol.depth_ranges.get(evalset.name, (evalset.min_depth, evalset.max_depth))
    max_res = protocol.alignment_max_res.get(evalset.name) if alignment_max_res is None else alignment_max_res
    return SetSettings(evalset, protocol, low, high, max_res or None)


@dataclass(frozen=True)
class Frame:
    """A sample as it is scored: the network's input, the ground truth, its valid pixels and, for a prediction of
    the whole image, the crop that brings it to the ground truth's frame."""

    sample: Sample
    image: np.ndarray | None
    depth: np.ndarray
    valid: np.ndarray
    prediction_crop: Crop | None = None


def prepare_frame(sample: Sample, settings: SetSettings) -> Frame:
    """Crop and mask ``sample`` as ``settings`` say (KITTI's benchmark crop, the evaluation crop, the range)."""
    evalset, protocol = settings.evalset, settings.protocol
    image, depth, mask_file = sample.image, sample.depth, sample.mask
    prediction_crop = None
    if evalset.benchmark_crop:
        box = kb_crop_box(*depth.shape)
        depth = crop_array(depth, box)
        mask_file = crop_array(mask_file, box) if mask_file is not None else None
        if protocol.crop_after_inference:
            prediction_crop = box
        elif image is not None:
            image = np.ascontiguousarray(crop_array(image, box))
    eval_box = eval_crop_box(evalset.eval_crop, *depth.shape)
    if mask_file is None or protocol.range_cuts_mask_file:
        valid = valid_mask(depth, settings.min_depth, settings.max_depth, eval_box)
    else:  # Marigold's DIODE: the mask file alone, less pixels without a positive depth (Marigold divides by them)
        valid = valid_mask(depth, 0.0, np.inf, eval_box)
    if mask_file is not None:
        valid &= mask_file
    return Frame(sample, image, depth, valid, prediction_crop)
