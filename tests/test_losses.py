"""Losses against values computed by hand, by an independent NumPy implementation and, for the seed's loss, by a
reference written from kornia calls in the structure of the seed's ``DepthLoss``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgedepth.core.errors import EdgedepthError
from edgedepth.train.losses import (
    central_gradients,
    compute_scale_and_shift,
    get_loss,
    seed_loss,
    seed_pyramid,
    seed_reach,
    ssi_loss,
    ssi_trim_loss,
)


def _t(array: np.ndarray | list) -> torch.Tensor:
    """A 2-D array as a 1 x 1 x H x W float32 tensor (double only where noted)."""
    return torch.tensor(np.asarray(array, dtype=np.float32))[None, None]


# ---------------------------------------------------------------------------------------------------------------
# An independent NumPy reference of the seed's loss (Keys cubic a = -0.75, half-pixel centres, clamped edges).


def _keys(x: float, a: float = -0.75) -> float:
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def _bicubic_1d(values: np.ndarray, out: int) -> np.ndarray:
    """Resize along axis 0 as PyTorch's bicubic with align_corners=False does."""
    n = values.shape[0]
    scale = n / out
    rows = []
    for i in range(out):
        s = (i + 0.5) * scale - 0.5
        base = int(np.floor(s))
        t = s - base
        row = np.zeros(values.shape[1:], dtype=np.float64)
        for offset, weight in zip((-1, 0, 1, 2), (_keys(1 + t), _keys(t), _keys(1 - t), _keys(2 - t)), strict=True):
            row += weight * values[min(max(base + offset, 0), n - 1)]
        rows.append(row)
    return np.stack(rows)


def _bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return _bicubic_1d(_bicubic_1d(image, height).T, width).T


def _central(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    padded = np.pad(image, 1, mode="edge")
    return padded[1:-1, 2:] - padded[1:-1, :-2], padded[2:, 1:-1] - padded[:-2, 1:-1]


def _numpy_seed_loss(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(l1, grad)`` for a batch ``N x H x W`` in float64: the prediction's pyramid against the target's full-size
    gradients."""
    n, h, w = pred.shape
    l1 = np.abs(pred - target).mean()
    grad = 0.0
    for image_p, image_t in zip(pred, target, strict=True):
        tgx, tgy = _central(image_t)
        for level, weight in enumerate((0.5, 0.25, 0.125)):
            step = 2**level
            p = _bicubic(image_p[::step, ::step], h, w) if level else image_p
            pgx, pgy = _central(p)
            grad += weight * (np.abs(pgx - tgx).sum() + np.abs(pgy - tgy).sum())
    return float(l1), float(grad / (n * h * w))


# ---------------------------------------------------------------------------------------------------------------
# The seed's DepthLoss (L1Loss + MultiScaleGradientLoss(alpha=0.5, k=3)) written here from kornia calls.


def _kornia_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kornia = pytest.importorskip("kornia")
    grads = kornia.filters.spatial_gradient(x, mode="diff", order=1, normalized=False)
    return grads[:, :, 0], grads[:, :, 1]


def _kornia_seed_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(l1, grad)``: the target's gradients once at full size; the prediction, then its nearest x0.5 reductions
    (each of the previous reduction) upsampled back bicubically, against them with weights 0.5, 0.25, 0.125; the
    sum of absolute differences over everything divided by the number of target elements."""
    l1 = F.l1_loss(pred, target)
    dx_true, dy_true = _kornia_gradients(target)
    grad, weight, small, scaled = 0.0, 0.5, pred, pred
    for level in range(3):
        dx_pred, dy_pred = _kornia_gradients(scaled)
        grad = grad + weight * ((dy_pred - dy_true).abs().sum() + (dx_pred - dx_true).abs().sum())
        weight /= 2
        if level < 2:
            small = F.interpolate(small, scale_factor=0.5, mode="nearest")
            scaled = F.interpolate(small, size=target.shape[2:], mode="bicubic", align_corners=False)
    return l1, grad / target.numel()


# ---------------------------------------------------------------------------------------------------------------
# The seed's loss


def test_central_gradients_by_hand() -> None:
    x = _t([[0, 1, 4, 9], [1, 2, 5, 10], [3, 3, 3, 3], [0, 0, 0, 0]])
    gx, gy = central_gradients(x)
    # x: replicate padding makes the edge columns one-sided differences, not halved.
    assert gx[0, 0].tolist() == [[1, 4, 8, 5], [1, 4, 8, 5], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert gy[0, 0].tolist() == [[1, 1, 1, 1], [3, 2, -1, -6], [-1, -2, -5, -10], [-3, -3, -3, -3]]


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (3, 1, 47, 63), (2, 1, 5, 2)])
def test_central_gradients_are_kornias_diff(shape: tuple[int, ...]) -> None:
    """Same kernel, sign, scale and (replicate) padding as kornia's unnormalised 'diff' gradients, which the seed uses."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    (gx, gy), (kx, ky) = central_gradients(x), _kornia_gradients(x)
    torch.testing.assert_close(gx, kx, rtol=0, atol=1e-6)
    torch.testing.assert_close(gy, ky, rtol=0, atol=1e-6)


def test_seed_pyramid_is_nearest_then_bicubic() -> None:
    x = _t(np.arange(16).reshape(4, 4))
    level0, level1, level2 = seed_pyramid(x, 3)
    assert torch.equal(level0, x)
    # 1/4 of a 4x4 map is its top-left pixel, upsampled to a constant.
    assert torch.allclose(level2, torch.zeros_like(x))
    expected = _bicubic(np.array([[0.0, 2.0], [8.0, 10.0]]), 4, 4)
    np.testing.assert_allclose(level1[0, 0].numpy(), expected, atol=1e-5)


def test_seed_loss_ramp_by_hand() -> None:
    """A horizontal ramp 0, 1, 2, 3 in each of 4 rows against a zero target (zero target gradients at every scale).

    L1: mean of the ramp = 1.5. Scale 0: x differences per row 1, 2, 2, 1 -> 6, times 4 rows = 24, weight 0.5 -> 12.
    Scale 1: the 2x2 map [[0, 2], [0, 2]] upsampled with Keys a = -0.75 gives per row
    -0.2109375, 0.453125, 1.546875, 2.2109375 (weights k(1.25) = -0.10546875, k(0.75) + k(1.75) = 0.2265625);
    x differences 0.6640625, 1.7578125, 1.7578125, 0.6640625 -> 4.84375 per row, 19.375 in all, weight 0.25
    -> 4.84375. Scale 2: a constant -> 0. grad = (12 + 4.84375) / 16 = 1.052734375.
    """
    pred = _t(np.tile(np.arange(4.0), (4, 1)))
    parts = seed_loss(pred, torch.zeros_like(pred))
    assert parts["l1"].item() == pytest.approx(1.5)
    assert parts["grad"].item() == pytest.approx(1.052734375, abs=1e-6)
    assert parts["total"].item() == pytest.approx(2.552734375, abs=1e-6)


def test_seed_loss_ramp_target_by_hand() -> None:
    """A zero prediction against the ramp target: the target's gradients are taken at full size only.

    L1 1.5. The target's x differences per row 1, 2, 2, 1 -> 6, 24 over 4 rows (y: 0); the zero prediction's
    gradients are 0 at every scale, so each scale adds 24: (0.5 + 0.25 + 0.125) * 24 / 16 = 1.3125. (Sending the
    target through the pyramid too, as this loss once did, gives (12 + 4.84375 + 0) / 16 = 1.052734375.)
    """
    target = _t(np.tile(np.arange(4.0), (4, 1)))
    parts = seed_loss(torch.zeros_like(target), target)
    assert parts["l1"].item() == pytest.approx(1.5)
    assert parts["grad"].item() == pytest.approx(1.3125, abs=1e-6)
    assert parts["total"].item() == pytest.approx(2.8125, abs=1e-6)


def test_seed_loss_identical_maps_by_hand() -> None:
    """The seed's loss is not zero for a prediction equal to the target: its coarse scales are blurred.

    Prediction = target = the ramp. Scale 0: 0. Scale 1: the prediction's x differences per row 0.6640625,
    1.7578125, 1.7578125, 0.6640625 (see the ramp test) against 1, 2, 2, 1 -> 0.3359375 + 0.2421875 + 0.2421875
    + 0.3359375 = 1.15625 per row, 4.625 in all, weight 0.25 -> 1.15625. Scale 2: the prediction is the constant
    0 (its top-left pixel), the target's 24 -> weight 0.125 -> 3. grad = 4.15625 / 16 = 0.259765625, L1 0.
    """
    ramp = _t(np.tile(np.arange(4.0), (4, 1)))
    parts = seed_loss(ramp.clone(), ramp)
    assert parts["l1"].item() == 0.0
    assert parts["grad"].item() == pytest.approx(0.259765625, abs=1e-6)
    assert parts["total"].item() == pytest.approx(0.259765625, abs=1e-6)


def test_seed_loss_matches_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    pred, target = rng.random((2, 12, 16)), rng.random((2, 12, 16))
    parts = seed_loss(torch.tensor(pred)[:, None].float(), torch.tensor(target)[:, None].float())
    l1, grad = _numpy_seed_loss(pred, target)
    assert parts["l1"].item() == pytest.approx(l1, rel=1e-5)
    assert parts["grad"].item() == pytest.approx(grad, rel=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 48, 64), (4, 1, 48, 64), (3, 1, 47, 63), (2, 1, 31, 17), (5, 1, 23, 40)])
def test_seed_loss_matches_kornia_reference(shape: tuple[int, ...]) -> None:
    """Value and gradient (w.r.t. the prediction) equal the seed's computation on random maps, odd sizes included.

    (The old definition, which sent the target through the pyramid too, is about 6% off here.)
    """
    generator = torch.Generator().manual_seed(sum(shape))
    pred, target = torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)
    ours_pred, ref_pred = pred.clone().requires_grad_(True), pred.clone().requires_grad_(True)
    parts = seed_loss(ours_pred, target)
    ref_l1, ref_grad = _kornia_seed_loss(ref_pred, target)
    assert parts["l1"].item() == pytest.approx(ref_l1.item(), rel=1e-6)
    assert parts["grad"].item() == pytest.approx(ref_grad.item(), rel=1e-6)
    assert parts["total"].item() == pytest.approx((ref_l1 + ref_grad).item(), rel=1e-6)
    parts["total"].backward()
    (ref_l1 + ref_grad).backward()
    assert ours_pred.grad is not None and ref_pred.grad is not None
    scale = ref_pred.grad.abs().max().item()
    assert (ours_pred.grad - ref_pred.grad).abs().max().item() <= 1e-6 * scale


def test_seed_loss_differentiable() -> None:
    target = torch.rand(2, 1, 8, 8)
    pred = torch.rand(2, 1, 8, 8, requires_grad=True)
    seed_loss(pred, target)["total"].backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_seed_loss_mask_ignores_invalid_pixels() -> None:
    """Whatever sits at masked-out pixels (in prediction and target) does not change the loss."""
    torch.manual_seed(0)
    pred, target = torch.rand(1, 1, 48, 64), torch.rand(1, 1, 48, 64)
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[..., 20:23, 30:34] = False
    base = seed_loss(pred, target, mask)
    assert torch.equal(seed_loss(pred, target, torch.ones_like(mask))["total"], seed_loss(pred, target)["total"])
    pred2, target2 = pred.clone(), target.clone()
    pred2[~mask], target2[~mask] = 100.0, -50.0
    changed = seed_loss(pred2, target2, mask)
    for key in ("total", "l1", "grad"):
        assert changed[key].item() == pytest.approx(base[key].item(), rel=1e-6)
    # and the valid pixels do count: the L1 is the mean over the 48*64 - 12 valid pixels.
    expected_l1 = (pred - target).abs()[mask].sum().item() / (48 * 64 - 12)
    assert base["l1"].item() == pytest.approx(expected_l1, rel=1e-6)
    # The target's gradients count where valid: a valid pixel's gradient far from the hole changes the loss.
    target3 = target.clone()
    target3[..., 5, 5] += 1.0
    assert seed_loss(pred, target3, mask)["grad"].item() != pytest.approx(base["grad"].item(), rel=1e-6)


@pytest.mark.parametrize(
    ("shape", "holes"), [((2, 1, 47, 63), [(0, 0, 0), (0, 23, 31), (1, 46, 62), (1, 10, 50)]), ((1, 1, 71, 19), [(0, 40, 8)])]
)
def test_seed_loss_mask_invalid_pixels_reach_nothing(shape: tuple[int, ...], holes: list[tuple[int, int, int]]) -> None:
    """No counted term depends on an invalid pixel of the prediction or the target: their gradients are exactly
    zero, at odd sizes (where the pyramid's upsampling drifts) and with a fourth scale. Height 71 is the worst for
    it: pixel (40, 8), kept by every reduction, reaches row 66 through the pyramid (26 rows) and row 67 through the
    difference, so :func:`seed_reach` (3) must be 27."""
    generator = torch.Generator().manual_seed(sum(shape))
    pred = torch.rand(shape, generator=generator).requires_grad_(True)
    target = torch.rand(shape, generator=generator).requires_grad_(True)
    mask = torch.ones(shape, dtype=torch.bool)
    for image, row, column in holes:
        mask[image, 0, row, column] = False
    seed_loss(pred, target, mask, weights=(0.5, 0.25, 0.125, 0.0625))["total"].backward()
    assert pred.grad is not None and target.grad is not None
    assert (pred.grad[~mask] == 0).all() and (target.grad[~mask] == 0).all()
    assert (pred.grad[mask] != 0).any()


def test_seed_reach() -> None:
    assert [seed_reach(level) for level in range(4)] == [1, 6, 13, 27]


# ---------------------------------------------------------------------------------------------------------------
# MiDaS's scale-and-shift-invariant loss


def test_compute_scale_and_shift_recovers_known_values() -> None:
    torch.manual_seed(0)
    pred = torch.rand(3, 1, 6, 5, dtype=torch.float64)
    scales, shifts = torch.tensor([2.5, 0.1, -3.0], dtype=torch.float64), torch.tensor([-0.3, 4.0, 0.0])
    target = scales.view(-1, 1, 1, 1) * pred + shifts.view(-1, 1, 1, 1).double()
    scale, shift = compute_scale_and_shift(pred, target)
    torch.testing.assert_close(scale, scales, rtol=0, atol=1e-12)
    torch.testing.assert_close(shift, shifts.double(), rtol=0, atol=1e-12)


def test_compute_scale_and_shift_singular_image_gives_zero() -> None:
    pred = torch.ones(1, 1, 3, 3)
    scale, shift = compute_scale_and_shift(pred, torch.rand(1, 1, 3, 3))
    assert scale.item() == 0.0 and shift.item() == 0.0


def test_ssi_loss_by_hand() -> None:
    """pred 0, 1, 2, 3 against target 0, 1, 2, 5 (2x2 maps).

    Least squares: mean x 1.5, mean y 2, Sxy = 8, Sxx = 5 -> scale 1.6, shift -0.4; aligned -0.4, 1.2, 2.8, 4.4;
    residuals -0.4, 0.2, 0.8, -0.6. Data: 2.0 / (2 * 4) = 0.25. Gradient matching at scale 0: x |0.6| + |1.4|,
    y |1.2| + |0.8| -> 4.0 / 4 = 1.0; coarser scales are 1x1 -> 0. Total 0.25 + 0.5 * 1.0 = 0.75.
    Trimmed: keep the 3 smallest residuals 0.2 + 0.4 + 0.6 = 1.2 -> 1.2 / 8 = 0.15; total 0.65.
    """
    pred, target = _t([[0, 1], [2, 3]]), _t([[0, 1], [2, 5]])
    scale, shift = compute_scale_and_shift(pred, target)
    assert scale.item() == pytest.approx(1.6) and shift.item() == pytest.approx(-0.4)
    parts = ssi_loss(pred, target)
    assert parts["ssi"].item() == pytest.approx(0.25, abs=1e-6)
    assert parts["grad"].item() == pytest.approx(1.0, abs=1e-6)
    assert parts["total"].item() == pytest.approx(0.75, abs=1e-6)
    trimmed = ssi_trim_loss(pred, target)
    assert trimmed["ssi"].item() == pytest.approx(0.15, abs=1e-6)
    assert trimmed["total"].item() == pytest.approx(0.65, abs=1e-6)


def test_ssi_gradient_matching_uses_coarser_scales() -> None:
    """A 4x4 residual with only even-indexed pixels nonzero: scale 1 sees it as a 2x2 map.

    Residual r = target (pred = 0 is singular, so scale = shift = 0 and aligned = 0): target 1 at (0, 0) only.
    Scale 0: x |r01 - r00| = 1, y |r10 - r00| = 1 -> 2 / 16. Scale 1 (2x2 map [[1, 0], [0, 0]]): 2 / 4.
    Scales 2 and 3 (1x1): 0. grad = 0.125 + 0.5 = 0.625.
    """
    target = torch.zeros(1, 1, 4, 4)
    target[..., 0, 0] = 1.0
    parts = ssi_loss(torch.zeros_like(target), target)
    assert parts["grad"].item() == pytest.approx(0.625)
    assert parts["ssi"].item() == pytest.approx(1 / 32)


def test_ssi_loss_zero_for_affine_prediction_and_invariant() -> None:
    torch.manual_seed(1)
    target = torch.rand(2, 1, 16, 12, dtype=torch.float64)
    pred = torch.stack([3.0 * target[0] + 0.7, 0.2 * target[1] - 5.0])
    # The loss works in float32: zero up to float32 rounding of the alignment.
    assert ssi_loss(pred, target)["total"].item() == pytest.approx(0.0, abs=1e-5)
    other = torch.rand_like(target)
    base = ssi_loss(other, target)["total"].item()
    assert ssi_loss(4.0 * other - 2.0, target)["total"].item() == pytest.approx(base, rel=1e-5)
    assert ssi_trim_loss(pred, target)["total"].item() == pytest.approx(0.0, abs=1e-5)


def test_ssi_loss_mask_excludes_pixels() -> None:
    target = _t([[0, 1], [2, 3]])
    pred = _t([[0, 1], [2, 99]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    # Without the outlier the prediction is the target exactly; no gradient pair with both pixels valid differs.
    assert ssi_loss(pred, target, mask)["total"].item() == pytest.approx(0.0, abs=1e-6)


def test_get_loss_names() -> None:
    assert get_loss("seed") is seed_loss
    assert get_loss("ssi_trim") is ssi_trim_loss
    with pytest.raises(EdgedepthError, match="unknown loss 'l2'"):
        get_loss("l2")
