"""Metrics and alignment against hand-computed values, degenerate predictions, the real NYU frame."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.core.depth import UnscorableImage, fit_scale_shift, inverse_to_depth_clamped
from edgedepth.eval.metrics import align, depth_metrics, mean_metrics, score_prediction, valid_mask

NYU_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fastdepth_nyu_sample"


def test_metrics_hand_computed() -> None:
    gt = np.array([[1.0, 1.0, 1.0, 1.0, 2.0]])
    pred = np.array([[1.2, 1.5, 1.9, 3.0, 99.0]])
    mask = np.array([[True, True, True, True, False]])  # the last pixel must not count
    m = depth_metrics(pred, gt, mask)
    diffs = np.array([0.2, 0.5, 0.9, 2.0])
    assert m["abs_rel"] == pytest.approx(diffs.sum() / 4)  # gt = 1, so |d| / gt = |d|
    assert m["sq_rel"] == pytest.approx((0.04 + 0.25 + 0.81 + 4.0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.04 + 0.25 + 0.81 + 4.0) / 4))
    logs = [math.log(1.2), math.log(1.5), math.log(1.9), math.log(3.0)]
    assert m["rmse_log"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))
    assert m["log10"] == pytest.approx(sum(v / math.log(10) for v in logs) / 4)
    # ratios 1.2, 1.5, 1.9, 3.0 against thresholds 1.25, 1.5625, 1.953125
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.25, 0.5, 0.75)


def test_delta_is_symmetric_and_strict() -> None:
    gt = np.array([1.0, 1.0, 1.25])
    pred = np.array([1.25, 0.8, 1.0])  # ratio exactly 1.25 each way: not below the threshold
    assert depth_metrics(pred, gt, np.ones(3, bool))["delta1"] == 0.0


def test_fit_scale_shift_hand_computed() -> None:
    # p = 0, 1, 2 against t = 1, 2, 2: mean p 1, mean t 5/3, cov 1, var 2 -> scale 1/2, shift 5/3 - 1/2.
    scale, shift = fit_scale_shift(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 2.0]), np.ones(3, bool))
    assert scale == pytest.approx(0.5, abs=1e-15) and shift == pytest.approx(7 / 6, abs=1e-15)


def test_alignment_recovers_known_scale_and_shift_exactly() -> None:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (48, 64))
    disparity = 1.0 / depth
    prediction = (disparity - 0.04) / 3.7  # relative: the truth is 3.7 * prediction + 0.04
    mask = valid_mask(depth, 0.0, 10.0)
    scale, shift = fit_scale_shift(prediction, np.where(mask, 1.0 / depth, 0.0), mask)
    assert scale == pytest.approx(3.7, rel=1e-12) and shift == pytest.approx(0.04, rel=1e-10)
    metrics, aligned_depth = score_prediction(prediction, depth, mask, "lsq-disparity", 10.0)
    np.testing.assert_allclose(aligned_depth, depth, rtol=1e-10)
    assert metrics["abs_rel"] < 1e-10 and metrics["rmse"] < 1e-9 and metrics["delta1"] == 1.0


def test_fit_matches_the_seeds_normal_equations() -> None:
    """The centred solution equals the seed's 2x2 system (a_00, a_01, a_11; b_0, b_1) solved directly."""
    rng = np.random.default_rng(1)
    p, t = rng.normal(size=200), rng.normal(size=200)
    mask = rng.random(200) < 0.7
    a = np.array([[np.sum(p[mask] ** 2), np.sum(p[mask])], [np.sum(p[mask]), mask.sum()]])
    b = np.array([np.sum(p[mask] * t[mask]), np.sum(t[mask])])
    np.testing.assert_allclose(fit_scale_shift(p, t, mask), np.linalg.solve(a, b), rtol=1e-12)


def test_median_depth_alignment() -> None:
    depth = np.array([1.0, 2.0, 4.0, 8.0, 3.0])
    prediction = 5.0 / depth  # depth up to scale: 1 / prediction = depth / 5
    prediction[-1] = 100.0  # outside the mask, must not move the median
    mask = np.array([True, True, True, True, False])
    aligned = align(prediction, depth, mask, "median-depth")
    np.testing.assert_allclose(1.0 / aligned[:4], depth[:4])
    # With an error: median(gt) = 3, median(1 / p) over [1, 2, 4, 16]/5 = 3/5 -> depth = 5 * (1 / p).
    prediction = 5.0 / np.array([1.0, 2.0, 4.0, 16.0])
    aligned = align(prediction, depth[:4], np.ones(4, bool), "median-depth")
    np.testing.assert_allclose(1.0 / aligned, [1.0, 2.0, 4.0, 16.0])


def test_no_alignment_and_depth_cap() -> None:
    np.testing.assert_array_equal(align(np.array([0.5, 2.0]), np.ones(2), np.ones(2, bool), "none"), [0.5, 2.0])
    # Disparity clamped below at 1 / 10 m, so anything at or beyond the horizon becomes 10 m.
    np.testing.assert_allclose(inverse_to_depth_clamped(np.array([-1.0, 0.0, 0.05, 0.1, 0.5]), 10.0), [10, 10, 10, 10, 2])
    np.testing.assert_allclose(inverse_to_depth_clamped(np.array([0.1]), 5.0), [5.0])


def test_valid_mask_limits_and_crop() -> None:
    depth = np.full((480, 640), 3.0)
    assert valid_mask(depth, 0.0, 10.0, (45, 471, 41, 601)).sum() == 426 * 560
    assert valid_mask(depth, 0.0, 10.0, (44, 471, 40, 601)).sum() == 427 * 561
    small = np.array([[0.0, 0.001, 9.999, 10.0, np.nan, np.inf, -1.0]])
    np.testing.assert_array_equal(valid_mask(small, 0.0, 10.0), [[False, True, True, False, False, False, False]])
    np.testing.assert_array_equal(valid_mask(small, 0.01, 9.0), [[False] * 7])
    with pytest.raises(ValueError, match="does not fit"):
        valid_mask(np.ones((10, 10)), 0.0, 10.0, (45, 471, 41, 601))


@pytest.mark.parametrize(
    ("prediction", "mask", "message"),
    [
        (np.full((4, 4), 0.3), np.ones((4, 4), bool), "constant prediction"),
        (np.arange(16.0).reshape(4, 4), np.zeros((4, 4), bool), "no valid"),
        (np.where(np.eye(4) > 0, np.nan, 1.0) + np.arange(16).reshape(4, 4), np.ones((4, 4), bool), "4 non-finite"),
        (np.where(np.eye(4) > 0, np.inf, 1.0) + np.arange(16).reshape(4, 4), np.ones((4, 4), bool), "non-finite"),
        (np.arange(16.0).reshape(4, 4), np.eye(4, dtype=bool) & (np.arange(4) == 0), "1 valid pixel"),
    ],
)
def test_unscorable_predictions_raise_a_defined_error(prediction: np.ndarray, mask: np.ndarray, message: str) -> None:
    depth = np.linspace(1.0, 5.0, 16).reshape(4, 4)
    with pytest.raises(UnscorableImage, match=message):
        score_prediction(prediction, depth, mask, "lsq-disparity", 10.0)


def test_median_alignment_needs_a_positive_prediction() -> None:
    with pytest.raises(UnscorableImage, match="no positive prediction"):
        align(-np.ones(4), np.ones(4), np.ones(4, bool), "median-depth")


def test_mean_is_over_images_not_pixels() -> None:
    big = {name: 1.0 for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")}
    small = {name: 0.0 for name in big}
    assert mean_metrics([big, small, small, small])["rmse"] == 0.25


# The real NYU frame from FastDepth's repository. Its prediction is METRIC depth. The figures below were
# computed once with these functions (mask: 0 < gt < 10 m, no crop since the frame is 224 x 224, every pixel
# valid) and cross-checked by the independent numpy computation in the test; they pin the implementation.
FASTDEPTH_UNALIGNED = {
    "abs_rel": 0.140498, "sq_rel": 0.098668, "rmse": 0.618001, "rmse_log": 0.193074,
    "log10": 0.062049, "delta1": 0.777264, "delta2": 0.964724, "delta3": 0.999621,
}  # fmt: skip
# Same prediction taken as 1 / depth and aligned with least squares in disparity, cap 10 m (the seed's way).
FASTDEPTH_LSQ = {
    "abs_rel": 0.128884, "sq_rel": 0.097042, "rmse": 0.621313, "rmse_log": 0.174540,
    "log10": 0.056029, "delta1": 0.784399, "delta2": 0.980110, "delta3": 0.998465,
}  # fmt: skip
FASTDEPTH_LSQ_SCALE_SHIFT = (1.382134, -0.146003)


def _independent_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    ratio = np.maximum(pred / gt, gt / pred)
    return {
        "abs_rel": np.mean(np.abs(pred - gt) / gt),
        "sq_rel": np.mean((pred - gt) ** 2 / gt),
        "rmse": np.sqrt(np.mean((pred - gt) ** 2)),
        "rmse_log": np.sqrt(np.mean(np.log(pred / gt) ** 2)),
        "log10": np.mean(np.abs(np.log10(pred / gt))),
        "delta1": np.count_nonzero(ratio < 1.25) / ratio.size,
        "delta2": np.count_nonzero(ratio < 1.5625) / ratio.size,
        "delta3": np.count_nonzero(ratio < 1.953125) / ratio.size,
    }


def test_real_nyu_frame_fastdepth_prediction() -> None:
    gt = np.load(NYU_SAMPLE / "depth.npy").astype(np.float64)
    pred = np.load(NYU_SAMPLE / "pred.npy")[0, 0].astype(np.float64)
    mask = valid_mask(gt, 0.0, 10.0)
    assert mask.all()

    unaligned = depth_metrics(pred, gt, mask)
    assert unaligned == pytest.approx(FASTDEPTH_UNALIGNED, abs=1e-6)
    assert unaligned == pytest.approx(_independent_metrics(pred, gt), rel=1e-12)

    aligned, aligned_depth = score_prediction(1.0 / pred, gt, mask, "lsq-disparity", 10.0)
    assert aligned == pytest.approx(FASTDEPTH_LSQ, abs=1e-6)
    # Independent: np.linalg.lstsq on [1/pred, 1] against 1/gt, clamp at 1/10, invert.
    design = np.stack([1.0 / pred.ravel(), np.ones(pred.size)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, 1.0 / gt.ravel(), rcond=None)
    assert (scale, shift) == pytest.approx(FASTDEPTH_LSQ_SCALE_SHIFT, abs=1e-6)
    by_hand = 1.0 / np.maximum(scale / pred + shift, 0.1)
    np.testing.assert_allclose(aligned_depth, by_hand, rtol=1e-10)
    assert aligned == pytest.approx(_independent_metrics(by_hand, gt), rel=1e-9)
    # Alignment fits disparity, not depth: it must lower the log errors FastDepth's metric output has here.
    assert aligned["rmse_log"] < unaligned["rmse_log"] and aligned["abs_rel"] < unaligned["abs_rel"]


# ---------------------------------------------------------------------------------------------------------------
# Metric scale at predict time and temporal stability (issue 15)


def test_robust_fit_ignores_a_fifth_of_wild_points() -> None:
    from edgedepth.robot.fits import fit_scale_shift_robust

    rng = np.random.default_rng(3)
    p = rng.uniform(0.0, 1.0, 500)
    t = 2.0 * p + 0.5
    wild = np.zeros(500, bool)
    wild[rng.choice(500, 100, replace=False)] = True
    t[wild] += rng.uniform(0.5, 3.0, 100)  # LiDAR returns through glass, a passer-by: all on one side
    mask = np.ones(500, bool)
    mask[:10] = False  # outside the mask: never used
    found = fit_scale_shift_robust(p, t, mask)
    assert (found.scale, found.shift) == (pytest.approx(2.0, abs=1e-12), pytest.approx(0.5, abs=1e-12))
    np.testing.assert_array_equal(found.used, mask & ~wild)
    plain = fit_scale_shift(p, t, mask)
    assert abs(plain[1] - 0.5) > 0.1  # least squares alone is dragged off: the test can tell


@pytest.mark.parametrize("size", [2, 3, 4, 5, 768, 1001])
def test_the_fits_fast_median_and_quartiles_are_numpys(size: int) -> None:
    """The robust fit's own median and quartiles (cheap on a video frame's few hundred points) give NumPy's
    ``median`` and linear ``percentile``, ties and even counts included."""
    from edgedepth.robot.fits import _median, _quartiles

    values = np.random.default_rng(size).standard_normal(size)
    values[: size // 3] = values[0]  # ties
    assert _median(values) == pytest.approx(float(np.median(values)), abs=1e-15)
    np.testing.assert_allclose(_quartiles(values), np.percentile(values, [25.0, 50.0, 75.0]), rtol=0, atol=1e-14)


def _floor_scene(table: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floor plane's inverse depth, true inverse depth, prediction) for a camera 1.5 m up, pitched 20 degrees down:
    the floor, and with ``table`` a table top 0.7 m high over most of the lower frame (its inverse depth is the
    floor's times 1.5 / 0.8: a plane parallel to the floor). The prediction is (truth - 0.1) / 2.5."""
    from edgedepth.robot.geometry import Intrinsics, floor_inverse_depth

    floor = floor_inverse_depth(Intrinsics(100.0, 100.0, 79.5, 59.5), (160, 120), 1.5, pitch_deg=20.0)
    truth = np.where(floor > 0, floor, 0.05)  # above the horizon: a far wall
    if table:
        truth[40:110, 10:150] = floor[40:110, 10:150] * 1.5 / 0.8
    return floor, truth, (truth - 0.1) / 2.5


def test_floor_fit_recovers_scale_and_shift_and_is_not_fooled_by_a_table_top() -> None:
    from edgedepth.robot.fits import fit_to_floor

    floor, truth, prediction = _floor_scene(table=True)
    found = fit_to_floor(prediction, floor, max_depth=10.0)
    assert (found.scale, found.shift) == (pytest.approx(2.5, rel=1e-9), pytest.approx(0.1, rel=1e-9))
    on_floor = (floor > 0.1) & (np.abs(truth - floor) < 1e-12)
    np.testing.assert_array_equal(found.used, on_floor)
    # The table covers more of the lower frame than the floor: only the cost of pixels seen below the floor (here
    # the real floor, under the table's plane) keeps the fit off it; with a symmetric cost it takes the table.
    assert np.count_nonzero(truth[floor > 0.1] > floor[floor > 0.1]) > np.count_nonzero(on_floor)
    fooled = fit_to_floor(prediction, floor, max_depth=10.0, below_penalty=1.0)
    assert fooled.scale == pytest.approx(2.5 * 0.8 / 1.5, rel=1e-6)


def test_no_floor_is_said() -> None:
    from edgedepth.robot.fits import NoFloor, fit_to_floor
    from edgedepth.robot.geometry import Intrinsics, floor_inverse_depth

    k = Intrinsics(100.0, 100.0, 79.5, 59.5)
    looking_up = floor_inverse_depth(k, (160, 120), 1.5, pitch_deg=-40.0)
    with pytest.raises(NoFloor, match="the floor would be out of view"):
        fit_to_floor(np.random.default_rng(0).random((120, 160)), looking_up)
    floor, _, _ = _floor_scene(table=False)
    wall = np.full((120, 160), 1 / 0.8)  # a wall 0.8 m ahead fills the frame: constant inverse depth
    with pytest.raises(NoFloor, match="no part of the lower frame rises towards the camera"):
        fit_to_floor((wall - 0.1) / 2.5, floor)
    rng = np.random.default_rng(1)
    with pytest.raises(NoFloor, match="no floor found"):  # clutter: nothing consistent with a plane
        fit_to_floor(rng.random((120, 160)), floor)


def test_depth_from_inverse_gives_zero_for_no_depth() -> None:
    from edgedepth.core.depth import inverse_to_depth_or_zero

    got = inverse_to_depth_or_zero(np.array([0.5, 0.2, 0.1, 0.05, 0.0, -1.0, np.nan, np.inf]), max_depth=10.0)
    np.testing.assert_array_equal(got, np.array([2.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32))
    assert got.dtype == np.float32


def test_frame_flicker_hand_computed() -> None:
    from edgedepth.core.depth import UnscorableImage
    from edgedepth.eval.metrics import frame_flicker

    depth_before = np.array([[1.0, 2.0], [4.0, 1.0]])
    depth_after = np.array([[1.0, 2.0], [2.0, 1.005]])  # pixel (1, 0) moved (50 %), (1, 1) by 0.5 %: static
    before = np.array([[1.0, 0.5], [0.25, 1.0]])
    after = np.array([[1.2, 0.4], [0.9, 1.0]])
    # static pixels: (0, 0) change 0.2, (0, 1) 0.1, (1, 1) 0; mean 0.1; median of `after` = (0.9 + 1.0) / 2
    assert frame_flicker(before, after, depth_before, depth_after) == pytest.approx(0.1 / 0.95)
    with pytest.raises(UnscorableImage, match="no pixel keeps"):
        frame_flicker(before, after, depth_before, depth_before * 2)


# The zero-shot evaluators' pieces (Marigold's script/depth/eval.py, ZipDepth's evaluator)


@pytest.mark.parametrize(
    ("height", "width", "max_res"),
    [(4032, 6048, 1024), (480, 640, 100), (375, 1242, 300), (352, 1216, 333), (48, 64, 16), (7, 50, 3), (30, 20, 25)],
)
def test_marigold_subsampling_is_torchs_one_dimensional_nearest(height: int, width: int, max_res: int) -> None:
    """Marigold passes ``1 x H x W`` to ``torch.nn.Upsample(scale_factor=s, mode="nearest")``, which PyTorch reads as
    one-dimensional: only the columns are subsampled. The columns kept here are those PyTorch keeps."""
    import torch

    from edgedepth.eval.zeroshot_metrics import alignment_subsample

    factor = float(np.min(max_res / np.array([height, width])))
    columns = np.broadcast_to(np.arange(width, dtype=np.float64), (height, width))
    (ours,) = alignment_subsample([columns], max_res, "marigold")
    if factor >= 1:
        assert ours is columns
        return
    theirs = torch.nn.Upsample(scale_factor=factor, mode="nearest")(torch.arange(width, dtype=torch.float64)[None, None])
    assert ours.shape == (height, theirs.shape[-1])  # every row kept
    np.testing.assert_array_equal(ours[0], theirs[0, 0].numpy())


def test_zipdepth_subsampling_is_opencvs_nearest_resize_of_both_sides() -> None:
    from edgedepth.eval.zeroshot_metrics import alignment_subsample

    values = np.arange(48 * 64, dtype=np.float64).reshape(48, 64)
    mask = values % 3 == 0
    small, small_mask = alignment_subsample([values, mask], 16, "zipdepth")
    assert small.shape == (12, 16) and small_mask.dtype == bool  # int(48 * 16 / 64), int(64 * 16 / 64)
    np.testing.assert_array_equal(small, cv2.resize(values, (16, 12), interpolation=cv2.INTER_NEAREST))
    np.testing.assert_array_equal(small_mask, small % 3 == 0)  # the mask follows the same pixels
    assert alignment_subsample([values], 64, "zipdepth")[0] is values  # nothing to do at or below max_res


def test_zero_shot_depth_clips_disparity_then_depth() -> None:
    from edgedepth.eval.zeroshot_metrics import zero_shot_depth

    # disparity: -1 and 0.0005 are below the 1e-3 floor (1000 m), clipped to 10 m; 0.5 -> 2 m; 40 -> 0.025 m -> 0.1
    np.testing.assert_allclose(zero_shot_depth(np.array([-1.0, 0.0005, 0.5, 40.0]), 1.0, 0.0, "disparity", 0.1, 10.0),
                               [10.0, 10.0, 2.0, 0.1])
    # depth: scale 2, shift -1; -3 -> min, 5 -> 9, 20 -> 39 -> max
    np.testing.assert_allclose(zero_shot_depth(np.array([-1.0, 5.0, 20.0]), 2.0, -1.0, "depth", 0.01, 10.0),
                               [0.01, 9.0, 10.0])
    assert zero_shot_depth(np.array([1e-4]), 1.0, 0.0, "disparity", 1e-5, np.inf)[0] == 1000.0  # ETH3D: no far cap


def test_zero_shot_metrics_by_hand() -> None:
    from edgedepth.eval.zeroshot_metrics import zero_shot_metrics

    # p = 2, 4 against g = 1, 4: 1/p - 1/g = -1/2, 0; d = ln p - ln g = ln 2, 0
    metrics = zero_shot_metrics(np.array([2.0, 4.0, 7.0]), np.array([1.0, 4.0, 7.0]), np.array([True, True, False]))
    assert metrics["i_rmse"] == pytest.approx(math.sqrt(0.25 / 2), abs=1e-15)
    assert metrics["silog_rmse"] == pytest.approx(100 * math.sqrt(math.log(2) ** 2 / 2 - (math.log(2) / 2) ** 2))
    assert metrics["abs_rel"] == pytest.approx(0.5) and metrics["delta1"] == 0.5
    exact = zero_shot_metrics(np.full(5, 3.0), np.full(5, 3.0))
    assert exact["silog_rmse"] == 0.0 and exact["i_rmse"] == 0.0  # never the NaN of a variance rounded below zero


def test_sums_by_chunks_give_the_numbers_of_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgedepth.core import depth as depth_module
    from edgedepth.eval.zeroshot_metrics import score_zero_shot

    rng = np.random.default_rng(5)
    depth = rng.uniform(0.5, 20.0, (60, 80))
    prediction = 1.0 / depth * rng.uniform(0.7, 1.3, depth.shape)
    valid = rng.random(depth.shape) > 0.2
    whole = score_zero_shot(prediction, depth, valid, "disparity", 1e-3, 10.0)
    monkeypatch.setattr(depth_module, "CHUNK_PIXELS", 7)
    chunked = score_zero_shot(prediction, depth, valid, "disparity", 1e-3, 10.0)
    for name, value in whole.items():
        assert chunked[name] == pytest.approx(value, rel=1e-12), name


def test_the_disparity_fit_needs_positive_predictions() -> None:
    from edgedepth.eval.zeroshot_metrics import zero_shot_fit

    depth = np.full((2, 3), 2.0)
    prediction = np.array([[-1.0, -2.0, 0.0], [-0.5, 0.3, -4.0]])  # one positive pixel
    with pytest.raises(UnscorableImage, match="1 valid pixel.s. where the prediction is positive"):
        zero_shot_fit(prediction, depth, np.ones((2, 3), bool), "disparity")
    scale, shift = zero_shot_fit(prediction, depth, np.ones((2, 3), bool), "depth")  # depth fits every valid pixel
    assert scale == pytest.approx(0.0, abs=1e-12) and shift == pytest.approx(2.0)


@pytest.mark.parametrize("evaluator", ["marigold", "zipdepth"])
def test_delta_ties_at_the_clipped_range_count_as_the_evaluators_float32_counts_them(evaluator: str) -> None:
    """Depth 6.4, 1, 0.5, 0.5 m (float32, as decoded) against prediction -5, 1, 2, 3: the fit uses the three
    positive pixels (scale 1/2, shift 2/3, as in tests/test_zeroshot.py), the first pixel's disparity is below 1e-3,
    so 1000 m, clipped to 10 m. 10 / 6.4 is 1.5625 = 1.25² exactly in float32 (Marigold's and ZipDepth's division),
    a hair below it in float64: the pixel is not within δ2, as their evaluators say."""
    from edgedepth.eval.zeroshot_metrics import score_zero_shot

    depth = np.array([[6.4, 1.0, 0.5, 0.5]], np.float32)
    assert np.float32(10.0) / depth[0, 0] == np.float32(1.5625) and 10.0 / float(depth[0, 0]) < 1.5625
    metrics = score_zero_shot(np.array([[-5.0, 1.0, 2.0, 3.0]]), depth, np.ones((1, 4), bool), "disparity", 1e-3,
                              10.0, evaluator=evaluator)
    assert (metrics["delta1"], metrics["delta2"], metrics["delta3"]) == (0.75, 0.75, 1.0)
    assert metrics["abs_rel"] == pytest.approx((3.6 / 6.4 + 1 / 7 + 1 / 5 + 1 / 13) / 4, rel=1e-6)
