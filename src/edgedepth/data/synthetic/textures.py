"""Procedural textures: a periodic smooth-noise tile and the albedo of each material at surface coordinates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgedepth.data.synthetic.scene import Material

#: Texels per side of the periodic smooth-noise tile used by the textures.
NOISE_TILE = 64


@dataclass(frozen=True, eq=False)
class Noise:
    """Per-scene noise: a periodic smooth tile (unit std) and a table of white values for per-tile jitter."""

    smooth: np.ndarray
    white: np.ndarray

    @classmethod
    def make(cls, rng: np.random.Generator) -> Noise:
        white = rng.standard_normal((NOISE_TILE, NOISE_TILE))
        freq = np.fft.fftfreq(NOISE_TILE) * NOISE_TILE
        falloff = np.exp(-(freq[:, None] ** 2 + freq[None, :] ** 2) / (2 * 4.0**2))
        smooth = np.fft.ifft2(np.fft.fft2(white) * falloff).real
        smooth = (smooth - smooth.mean()) / smooth.std()
        return cls(smooth.astype(np.float32).ravel(), rng.standard_normal(256).astype(np.float32))

    def sample(self, u: np.ndarray, v: np.ndarray, texels_per_metre: float) -> np.ndarray:
        """Bilinear lookup of the smooth tile, wrapped, at ``texels_per_metre``."""
        x, y = u * np.float32(texels_per_metre), v * np.float32(texels_per_metre)
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        mask = NOISE_TILE - 1
        ix, iy = x0.astype(np.int32) & mask, y0.astype(np.int32) & mask
        ix1, iy1 = (ix + 1) & mask, (iy + 1) & mask
        row, row1 = iy * NOISE_TILE, iy1 * NOISE_TILE
        s = self.smooth
        a, b, c, e = s[row + ix], s[row + ix1], s[row1 + ix], s[row1 + ix1]
        top = a + fx * (b - a)
        return top + fy * (c + fx * (e - c) - top)

    def jitter(self, cell: np.ndarray) -> np.ndarray:
        """A white value per integer cell index (planks, tiles)."""
        return self.white[cell.astype(np.int32) & 255]


def material_albedo(material: Material, u: np.ndarray, v: np.ndarray, noise: Noise) -> np.ndarray:
    """Linear RGB albedo (3 x n) of ``material`` at texture coordinates ``(u, v)`` in metres."""
    if material.turn:
        u, v = v, u
    scale = np.float32(material.scale)
    mix: np.ndarray | float = 0.0
    shade: np.ndarray | float = 1.0
    if material.texture == "plaster":
        shade = 1.0 + 0.07 * noise.sample(u, v, 6.0) + 0.03 * noise.sample(u, v, 45.0)
    elif material.texture == "wood":
        across = v / scale
        plank = np.floor(across)
        grain = np.sin(
            np.float32(2 * math.pi) * (across * 3.0 + 0.8 * noise.sample(u, v, 3.0)) + 5.0 * noise.jitter(plank)
        )
        mix = 0.35 + 0.3 * grain + 0.15 * noise.sample(u, v, 24.0)
        seam = (across - plank) < 0.04
        shade = np.where(seam, np.float32(0.45), 1.0 + 0.12 * noise.jitter(plank * 7.0 + np.floor(u / (6 * scale))))
    elif material.texture == "tiles":
        gu, gv = u / scale, v / scale
        cu, cv = np.floor(gu), np.floor(gv)
        grout = np.minimum(gu - cu, gv - cv) < 0.05
        mix = grout.astype(np.float32)
        shade = 1.0 + 0.06 * noise.jitter(cu * 31.0 + cv * 17.0) + 0.02 * noise.sample(u, v, 30.0)
    elif material.texture == "fabric":
        weave = np.sin(np.float32(2 * math.pi) * u / scale) * np.sin(np.float32(2 * math.pi) * v / scale)
        mix = 0.3 + 0.25 * weave + 0.2 * noise.sample(u, v, 25.0)
        shade = 1.0 + 0.1 * noise.sample(u, v, 4.0)
    elif material.texture == "stripes":
        phase = u / scale
        mix = ((phase - np.floor(phase)) < 0.5).astype(np.float32)
        shade = 1.0 + 0.03 * noise.sample(u, v, 20.0)
    base = np.asarray(material.base, dtype=np.float32)[:, None]
    accent = np.asarray(material.accent, dtype=np.float32)[:, None]
    albedo = (base + (accent - base) * mix) * shade
    return np.clip(np.broadcast_to(albedo, (3, u.shape[0])), 0.0, 1.0).astype(np.float32)
