"""Training losses: pure functions of ``(prediction, target, mask)`` returning the total and its named parts.

All maps are ``N x 1 x H x W``; ``mask`` (same shape, bool or 0/1) marks the target pixels that count, ``None``
meaning all. Losses are computed in float32 whatever the prediction's dtype (mixed precision).

- :func:`seed_loss`: the seed's loss, mean L1 plus its multi-scale gradient loss (prediction pyramid against
  full-size target gradients; the default recipe).
- :func:`ssi_loss`: MiDaS's scale-and-shift-invariant loss (least-squares alignment per image, mean absolute
  error, multi-scale gradient matching); ``trim=0.2`` gives its trimmed variant (:func:`ssi_trim_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from edgedepth.core.errors import EdgedepthError

LossParts = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], LossParts]

#: The seed's gradient-loss weights, one per scale (full size, 1/2, 1/4).
SEED_GRADIENT_WEIGHTS = (0.5, 0.25, 0.125)
#: MiDaS's defaults: gradient-matching weight, number of scales, share of residuals dropped by the trimmed loss.
MIDAS_ALPHA = 0.5
MIDAS_SCALES = 4
MIDAS_TRIM = 0.2


def _as_float_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(like)
    return mask.to(like.dtype)


def central_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y central differences ``f[i+1] - f[i-1]`` (not halved) with replicate padding, same size as ``x``.

    Exactly kornia's ``spatial_gradient(x, mode='diff', order=1, normalized=False)``, which the seed uses: the
    kernel ``[-1, 0, 1]`` (x along the width, y along the height, positive when values grow), unscaled, over the
    replicate-padded map; at an edge pixel this gives the one-sided difference, not halved.
    """
    padded_x = F.pad(x, (1, 1, 0, 0), mode="replicate")
    padded_y = F.pad(x, (0, 0, 1, 1), mode="replicate")
    return padded_x[..., :, 2:] - padded_x[..., :, :-2], padded_y[..., 2:, :] - padded_y[..., :-2, :]


def seed_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The seed's scales of the prediction, all at full size: ``x``, then repeatedly halved and upsampled back.

    Level ``k`` is the level ``k - 1`` map (at its reduced size) downsampled by 2 with nearest-neighbour
    (``scale_factor=0.5``, so reduced pixel ``j`` is pixel ``2 j``), upsampled to ``x``'s size bicubically with
    ``align_corners=False``.
    """
    size = x.shape[-2:]
    maps, small = [x], x
    for _ in range(1, levels):
        small = F.interpolate(small, scale_factor=0.5, mode="nearest")
        maps.append(F.interpolate(small, size=size, mode="bicubic", align_corners=False))
    return maps


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels whose ``(2 radius + 1)``-square neighbourhood is all valid (out-of-image counts as valid)."""
    if radius == 0:
        return mask
    return -F.max_pool2d(-mask, 2 * radius + 1, stride=1, padding=radius)


def seed_reach(level: int) -> int:
    """How far (in full-size pixels, per axis) a prediction pixel can reach a gradient at pyramid level ``level``.

    Level ``k >= 1`` keeps the pixels at multiples of ``2^k`` (nearest) and upsamples them bicubically: a kept
    pixel feeds the output pixels whose sample point lies under 2 reduced pixels (``2^(k+1)`` full-size pixels)
    from it, and a sample point lies less than ``2^(k-1) + 2^k - 1`` pixels from its output pixel (half-pixel
    centres, plus the drift when the size is not a multiple of ``2^k``). So less than ``3.5 * 2^k - 1`` pixels,
    that is at most ``3.5 * 2^k - 2`` (attained, e.g. 5, 12, 26 for heights 7, 19, 71); the central difference
    adds one. At level 0 only the central difference: 1, which is also the reach of the target's gradients.
    """
    return 7 * 2 ** (level - 1) - 1 if level else 1


def seed_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: Sequence[float] = SEED_GRADIENT_WEIGHTS,
) -> LossParts:
    """The seed's loss (its ``DepthLoss``): mean absolute error plus its multi-scale gradient loss.

    The target's :func:`central_gradients` are taken once, at full size. Only the prediction goes through
    :func:`seed_pyramid`; at scale ``k`` the absolute differences of its gradients from the target's are summed
    over pixels and both directions and weighted by ``weights[k]``; the weighted sums are added and divided by
    the number of target pixels (``N x H x W``). So the loss is not zero for a prediction equal to the target:
    its coarse scales compare a smoothed prediction with the sharp target, as the seed's did.

    With a mask, both terms count valid pixels only, and at scale ``k`` a gradient counts only if no invalid
    pixel lies within :func:`seed_reach` of it, so neither the target's values at invalid pixels (its gradients
    count only where valid) nor the prediction's reach a counted term; the divisor becomes the number of valid
    pixels. Without a mask (or with an all-valid one) the value is the seed's.

    Returns:
        ``{"total", "l1", "grad"}``, scalars.
    """
    prediction, target = prediction.float(), target.float()
    valid = _as_float_mask(mask, target)
    count = valid.sum().clamp(min=1.0)
    l1 = ((prediction - target).abs() * valid).sum() / count
    target_gx, target_gy = central_gradients(target)
    grad = prediction.new_zeros(())
    for level, (weight, pred_k) in enumerate(zip(weights, seed_pyramid(prediction, len(weights)), strict=True)):
        pred_gx, pred_gy = central_gradients(pred_k)
        valid_k = valid if mask is None else _erode(valid, seed_reach(level))
        grad = grad + weight * (
            ((pred_gy - target_gy).abs() * valid_k).sum() + ((pred_gx - target_gx).abs() * valid_k).sum()
        )
    grad = grad / count
    return {"total": l1 + grad, "l1": l1, "grad": grad}


def compute_scale_and_shift(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the ``(scale, shift)`` minimising ``sum(mask * (scale * prediction + shift - target)^2)``.

    The closed-form solution of MiDaS's 2x2 normal equations, written with masked means (``scale = cov / var``)
    so that float32 keeps its precision when the maps carry a large offset. Images whose system is singular
    (fewer than two distinct valid prediction values) get scale = shift = 0. Returns two tensors of shape ``N``.
    """
    valid = _as_float_mask(mask, target)
    dims = tuple(range(1, prediction.dim()))
    count = valid.sum(dims)
    safe_count = count.clamp(min=1.0).view(-1, *[1] * len(dims))
    mean_p = (valid * prediction).sum(dims, keepdim=True) / safe_count
    mean_t = (valid * target).sum(dims, keepdim=True) / safe_count
    centred_p = valid * (prediction - mean_p)
    variance = (centred_p * centred_p).sum(dims)
    covariance = (centred_p * (target - mean_t)).sum(dims)
    solvable = variance > 0
    scale = torch.where(solvable, covariance / torch.where(solvable, variance, torch.ones_like(variance)), 0.0)
    shift = torch.where(solvable, mean_t.flatten() - scale * mean_p.flatten(), torch.zeros_like(scale))
    return scale, shift


def gradient_matching(residual: torch.Tensor, mask: torch.Tensor, scales: int = MIDAS_SCALES) -> torch.Tensor:
    """MiDaS's multi-scale gradient matching of a residual map (aligned prediction minus target).

    At scale ``k`` the maps are subsampled by ``2^k`` (every ``2^k``-th pixel); the absolute forward
    differences of the masked residual, where both pixels are valid, are summed over the batch and divided by
    the number of valid pixels at that scale; the scales are added.
    """
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r, m = residual[..., ::step, ::step], mask[..., ::step, ::step]
        r = r * m
        grad_x = (r[..., :, 1:] - r[..., :, :-1]).abs() * m[..., :, 1:] * m[..., :, :-1]
        grad_y = (r[..., 1:, :] - r[..., :-1, :]).abs() * m[..., 1:, :] * m[..., :-1, :]
        count = m.sum()
        if count > 0:
            total = total + (grad_x.sum() + grad_y.sum()) / count
    return total


def ssi_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    alpha: float = MIDAS_ALPHA,
    scales: int = MIDAS_SCALES,
    trim: float = 0.0,
) -> LossParts:
    """MiDaS's scale-and-shift-invariant loss (Ranftl et al., TPAMI 2022, eqs. 2-7).

    The prediction is aligned to the target per image by least squares (:func:`compute_scale_and_shift`);
    the data term is ``sum |aligned - target| / (2 M)`` over the batch (``M`` valid pixels), keeping per image
    only the smallest ``(1 - trim)`` share of residuals when ``trim > 0``; ``alpha`` times
    :func:`gradient_matching` of the residual is added.

    Returns:
        ``{"total", "ssi", "grad"}``, scalars.
    """
    prediction, target = prediction.float(), target.float()
    valid = _as_float_mask(mask, target)
    scale, shift = compute_scale_and_shift(prediction, target, valid)
    aligned = scale.view(-1, 1, 1, 1) * prediction + shift.view(-1, 1, 1, 1)
    residual = aligned - target
    absolute = (residual.abs() * valid).flatten(1)
    valid_count = valid.flatten(1).sum(1)
    if trim > 0:
        keep = torch.floor((1.0 - trim) * valid_count).long()
        # Invalid pixels sort last (+inf), so the first ``keep`` entries are the smallest valid residuals.
        ordered = torch.where(valid.flatten(1) > 0, absolute, torch.full_like(absolute, float("inf"))).sort(1).values
        ranks = torch.arange(ordered.shape[1], device=ordered.device).unsqueeze(0)
        absolute = torch.where(ranks < keep.unsqueeze(1), ordered, torch.zeros_like(ordered))
    data = absolute.sum() / (2.0 * valid_count.sum()).clamp(min=1.0)
    grad = gradient_matching(residual, valid, scales) if alpha > 0 else data.new_zeros(())
    return {"total": data + alpha * grad, "ssi": data, "grad": grad}


def ssi_trim_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> LossParts:
    """MiDaS's trimmed scale-and-shift-invariant loss: :func:`ssi_loss` dropping the largest 20% residuals."""
    return ssi_loss(prediction, target, mask, trim=MIDAS_TRIM)


LOSSES: dict[str, LossFn] = {"seed": seed_loss, "ssi": ssi_loss, "ssi_trim": ssi_trim_loss}


def get_loss(name: str) -> LossFn:
    """The loss function registered under ``name`` (``seed``, ``ssi`` or ``ssi_trim``)."""
    if name not in LOSSES:
        raise EdgedepthError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]
