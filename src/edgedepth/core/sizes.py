"""Sizes and boxes of images and network inputs: one definition of each, no arrays.

Sizes are ``(width, height)`` and written ``WIDTHxHEIGHT``; the students take sides that are multiples of
:data:`SIZE_MULTIPLE`, and :data:`DEFAULT_INPUT_SIZE` wherever no size is chosen.
"""

from __future__ import annotations

import re

from edgedepth.core.errors import EdgedepthError

#: Every student downsamples by 32, so its input sides must be multiples of this (a model card's default
#: ``size_multiple``; Depth Anything's is its 14-pixel patch).
SIZE_MULTIPLE = 32

#: The network input ``(width, height)`` wherever none is chosen: the seed's, NYU's 4:3 at 0.4x (its pixel count is
#: what aspect-kept resizing aims at). The one definition: cards, configs, bench, label and the CLI read it here.
DEFAULT_INPUT_SIZE: tuple[int, int] = (256, 192)

#: ``(x, y, width, height)`` of an image inside a letterboxed network input.
Box = tuple[int, int, int, int]
#: A crop box ``(top, bottom, left, right)``: zero-based, half-open rows ``top:bottom`` and columns ``left:right``.
Crop = tuple[int, int, int, int]


def parse_size(text: str, divisor: int = 1) -> tuple[int, int]:
    """Parse ``"WIDTHxHEIGHT"`` (e.g. ``"256x192"``) into ``(width, height)``.

    Raises :class:`EdgedepthError` on malformed text or sides not divisible by ``divisor``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise EdgedepthError(f"size {text!r} is not of the form WIDTHxHEIGHT, e.g. 256x192")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise EdgedepthError(f"size {text!r} must be positive")
    if width % divisor or height % divisor:
        raise EdgedepthError(f"size {text!r}: width and height must be multiples of {divisor}")
    return width, height


def format_size(size: tuple[int, int]) -> str:
    """``(width, height)`` as ``"WIDTHxHEIGHT"``."""
    return f"{size[0]}x{size[1]}"
