"""Draw docs/images/example.png: a synthetic scene beside its exact depth, both made by edgedepth itself.

The scene is the one ``edgedepth synth`` and ``make demo`` render (``data.synthetic.render_scene``); its depth is
the renderer's exact depth, shown as inverse depth with the colour map ``predict`` writes (``core.viz.colorize``:
magma, near is bright). It is not a prediction. Run from the repository root:

    PYTHONPATH=src .venv/bin/python docs/make_example.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from edgedepth.core.viz import colorize
from edgedepth.data.synthetic import render_scene, scene_seed

OUT = Path(__file__).resolve().parent / "images" / "example.png"


def example(seed: int, index: int, size: tuple[int, int]) -> np.ndarray:
    """The scene ``index`` of a folder made with ``seed`` (as ``edgedepth synth --seed SEED`` numbers them),
    its image and its colour-mapped exact inverse depth side by side, ``H x 2W x 3`` uint8 RGB."""
    scene = render_scene(scene_seed(seed, index), size)
    inverse = np.where(scene.depth > 0, 1.0 / np.maximum(scene.depth, 1e-6), 0.0).astype(np.float32)
    return np.concatenate([scene.image, colorize(inverse)], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=4)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(example(args.seed, args.index, (320, 240))).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
