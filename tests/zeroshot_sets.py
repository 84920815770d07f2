"""Tiny zero-shot evaluation sets in each dataset's published layout, with depth whose valid pixels are known.

Each set takes the first samples of Marigold's real list (so the file names are real), at the published frame
size where the protocol needs it (NYU's eigen crop needs 640x480, KITTI's benchmark crop 1216x352 and more) and
small elsewhere. Every depth map is a smooth field (:func:`true_depth`) with marked regions that the set's mask or
range must remove, so that the count of valid pixels of each set is known by hand (:data:`VALID_PIXELS`) and an
oracle prediction made from the smooth field scores exactly zero wherever it is not clipped.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from edgedepth.data.marigold import EVAL_SETS, EvalSetWriter, SampleEntry, read_sample_list

#: (width, height) of the tiny sets' frames.
SIZES = {"nyu": (640, 480), "kitti": (1242, 375), "eth3d": (64, 48), "scannet": (64, 48), "diode": (64, 48)}

#: Valid pixels per frame under each protocol, counted by hand from the regions :func:`stored_depth` marks:
#: NYU: the eigen crop rows 45:471 x columns 41:601, less rows 0:50 (holes), column 300 (holes) and a 10 x 20
#: patch at 12 m; KITTI: the benchmark crop (rows 23:375, columns 13:1229 of 375 x 1242) and, inside it, its eigen
#: crop (rows 117:321, columns 43:1172), of which LiDAR gives every 4th row of the frame (51 of the 204 rows);
#: ETH3D: all but columns 0:10 (inf), and ZipDepth's 60 m cap also drops the 6 x 8 patch at 70 m; ScanNet: all
#: but row 0 (holes) and a 4 x 4 patch at 12 m; DIODE: the mask file (columns 8:64), which Marigold takes alone and
#: ZipDepth cuts to 0.6 - 80 m (dropping a 4 x 5 patch at 0.5 m and a 3 x 6 patch at 100 m).
VALID_PIXELS = {
    "marigold": {"nyu": 421 * 559 - 200, "kitti": 51 * 1129, "eth3d": 48 * 54, "scannet": 47 * 64 - 16,
                 "diode": 48 * 56},
    "zipdepth": {"nyu": 421 * 559 - 200, "kitti": 51 * 1129, "eth3d": 48 * 54 - 48, "scannet": 47 * 64 - 16,
                 "diode": 48 * 56 - 20 - 18},
}

#: DIODE's 0.5 m patch (4 x 5 pixels inside the mask), which Marigold scores with the prediction clipped at 0.6 m.
DIODE_NEAR_PATCH = (slice(10, 14), slice(20, 25))


def true_depth(name: str, index: int) -> np.ndarray:
    """The smooth depth field of sample ``index`` of set ``name`` (metres, float64, inside the set's range)."""
    width, height = SIZES[name]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    near, far = {"nyu": (1.0, 6.0), "kitti": (5.0, 60.0), "eth3d": (1.0, 30.0), "scannet": (0.5, 5.0),
                 "diode": (1.0, 50.0)}[name]
    ramp = 0.6 * y / height + 0.4 * x / width
    depth = near + (far - near) * (0.2 * (index % 3) + 0.8 * ramp) / 1.2 + 0.1 * np.sin(x / 7.0) * (1 + index)
    evalset = EVAL_SETS[name]
    if evalset.depth_encoding == "png16":  # what a 16-bit PNG can hold: its decoded depth is this one
        depth = np.round(depth * evalset.depth_units) / evalset.depth_units
    return depth


def stored_depth(name: str, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The depth as the set stores it (0 where the sensor has none) and DIODE's mask: see :data:`VALID_PIXELS`."""
    depth = true_depth(name, index)
    mask = None
    if name == "nyu":
        depth[:50] = 0.0
        depth[:, 300] = 0.0
        depth[100:110, 100:120] = 12.0
    elif name == "kitti":
        lidar = np.zeros(depth.shape, dtype=bool)
        lidar[::4] = True
        depth[~lidar] = 0.0
    elif name == "eth3d":
        depth[:, :10] = 0.0  # written as inf
        depth[20:26, 30:38] = 70.0
    elif name == "scannet":
        depth[0] = 0.0
        depth[30:34, 40:44] = 12.0
    else:
        mask = np.ones(depth.shape, dtype=bool)
        mask[:, :8] = False
        depth[DIODE_NEAR_PATCH] = 0.5
        depth[30:33, 40:46] = 100.0
    return depth, mask


def image(name: str, index: int) -> np.ndarray:
    """An image that depends on the sample (the ramp baseline ignores it; probe models read its shape)."""
    width, height = SIZES[name]
    rng = np.random.default_rng((zlib.crc32(name.encode()), index))
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def entries(name: str, count: int) -> list[SampleEntry]:
    """The first ``count`` samples of the set's shipped list."""
    evalset = EVAL_SETS[name]
    return read_sample_list(evalset.split_path(), evalset)[:count]


def write_set(root: Path, name: str, count: int) -> list[SampleEntry]:
    """Write set ``name``'s first ``count`` samples as Marigold's tar under ``root``; returns their entries."""
    evalset = EVAL_SETS[name]
    chosen = entries(name, count)
    with EvalSetWriter(root / evalset.archive, evalset) as writer:
        for index, entry in enumerate(chosen):
            depth, mask = stored_depth(name, index)
            writer.add(entry, image(name, index), depth, filled=true_depth(name, index), mask=mask)
    return chosen


def kitti_crop(array: np.ndarray) -> np.ndarray:
    """KITTI's benchmark crop of a 375 x 1242 frame, written out: rows 23:375, columns 13:1229."""
    return array[23:375, 13:1229]


def oracle_depth(name: str, index: int) -> np.ndarray:
    """The depth an oracle predicts: the stored depth where there is one, the smooth field elsewhere, at the ground
    truth's size (KITTI's benchmark crop)."""
    stored, _ = stored_depth(name, index)
    depth = np.where(stored > 0, stored, true_depth(name, index))
    return kitti_crop(depth) if name == "kitti" else depth


def write_oracle(folder: Path, name: str, count: int, kind: str) -> None:
    """Predictions in Marigold's layout that are exact up to scale and shift: ``0.3 / depth + 0.002`` (disparity) or
    ``2.5 * depth - 0.7`` (depth) of :func:`oracle_depth` (positive: Marigold fits disparity where it is)."""
    evalset = EVAL_SETS[name]
    for index, entry in enumerate(entries(name, count)):
        depth = oracle_depth(name, index)
        prediction = 0.3 / depth + 0.002 if kind == "disparity" else 2.5 * depth - 0.7
        path = folder / name / evalset.prediction_path(entry.rgb)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, prediction.astype(np.float32))
