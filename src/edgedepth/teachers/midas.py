"""MiDaS torch.hub teachers: ``midas:<model type>[@<repo dir>][:<weights path>]``.

The network comes from MiDaS's ``hubconf.py`` (``torch.hub.load``): from a local MiDaS checkout given
with ``@<repo dir>``, otherwise from GitHub (``intel-isl/MiDaS``). Without ``:<weights path>`` the hub entry
downloads its own weights; with it, the entry builds the bare network (``pretrained=False``) and the file,
a MiDaS ``.pt`` state dict, is loaded with ``torch.load(weights_only=True)``.

``MiDaS_small`` is the exception: it runs on the registry's ``midas_v21_small``, edgedepth's own implementation of
the same network (equal to MiDaS's to the last bit), so the teacher and ``edgedepth convert midas_v21_small_256.pt``
share one network and need no checkout. Its weights come from the file, or else from MiDaS's release URL.

Pre-processing is MiDaS's own (``midas/model_loader.py`` and ``midas/transforms.py``, reproduced, not
imported): RGB in [0, 1], bicubic resize to a size derived from the model's square size with sides
multiples of 32, then its normalisation. The v2.1 CNNs take the largest such size that fits in the square
(``upper_bound``, aspect kept); the DPT models scale the image as little as possible (``minimal``, aspect
kept) so a 512x384 crop runs at 512x384; the Swin and LeViT models take the square itself. The output,
relative inverse depth, is brought back to the image with bicubic interpolation as MiDaS's ``run.py`` does.
"""

from __future__ import annotations

import logging
import pickle
import re
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import IMAGENET_MEAN, IMAGENET_STD, preprocess
from edgedepth.teachers.base import Teacher

logger = logging.getLogger(__name__)

ResizeMethod = Literal["upper_bound", "minimal"]

#: MiDaS's GitHub repository, where ``torch.hub`` finds ``hubconf.py`` when no checkout is given.
MIDAS_HUB_REPO = "intel-isl/MiDaS"

#: Every MiDaS network needs input sides that are multiples of this.
MIDAS_MULTIPLE = 32

HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class MidasModel:
    """One MiDaS network: its hub entry point, checkpoint name and pre-processing (``model_loader.py``)."""

    entry: str
    checkpoint: str
    size: int
    keep_aspect_ratio: bool
    resize_method: ResizeMethod
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_MODELS = (
    MidasModel("DPT_BEiT_L_512", "dpt_beit_large_512", 512, True, "minimal", HALF, HALF),
    MidasModel("DPT_BEiT_L_384", "dpt_beit_large_384", 384, True, "minimal", HALF, HALF),
    MidasModel("DPT_BEiT_B_384", "dpt_beit_base_384", 384, True, "minimal", HALF, HALF),
    MidasModel("DPT_SwinV2_L_384", "dpt_swin2_large_384", 384, False, "minimal", HALF, HALF),
    MidasModel("DPT_SwinV2_B_384", "dpt_swin2_base_384", 384, False, "minimal", HALF, HALF),
    MidasModel("DPT_SwinV2_T_256", "dpt_swin2_tiny_256", 256, False, "minimal", HALF, HALF),
    MidasModel("DPT_Swin_L_384", "dpt_swin_large_384", 384, False, "minimal", HALF, HALF),
    MidasModel("DPT_Next_ViT_L_384", "dpt_next_vit_large_384", 384, True, "minimal", HALF, HALF),
    MidasModel("DPT_LeViT_224", "dpt_levit_224", 224, False, "minimal", HALF, HALF),
    MidasModel("DPT_Large", "dpt_large_384", 384, True, "minimal", HALF, HALF),
    MidasModel("DPT_Hybrid", "dpt_hybrid_384", 384, True, "minimal", HALF, HALF),
    MidasModel("MiDaS", "midas_v21_384", 384, True, "upper_bound", IMAGENET_MEAN, IMAGENET_STD),
    MidasModel("MiDaS_small", "midas_v21_small_256", 256, True, "upper_bound", IMAGENET_MEAN, IMAGENET_STD),
)

#: Every MiDaS network by hub entry point (``DPT_Large``) and by checkpoint name (``dpt_large_384``).
MIDAS_MODELS: dict[str, MidasModel] = {
    **{model.entry: model for model in _MODELS},
    **{model.checkpoint: model for model in _MODELS},
}


def midas_input_size(image_size: tuple[int, int], model: MidasModel) -> tuple[int, int]:
    """The ``(width, height)`` MiDaS resizes an image of ``image_size`` to before its network.

    Same maths as ``midas.transforms.Resize.get_size`` with ``ensure_multiple_of=32``: sides are rounded to
    the nearest multiple (half to even, as NumPy does). ``upper_bound``'s cap at the model's size never binds
    here: the fitted side lands exactly on the size, a multiple of 32, and the other side is at most that.
    """
    width, height = image_size
    scale_width, scale_height = model.size / width, model.size / height
    if model.keep_aspect_ratio:
        if model.resize_method == "upper_bound":
            scale_width = scale_height = min(scale_width, scale_height)
        elif abs(1 - scale_width) < abs(1 - scale_height):  # "minimal": scale as little as possible
            scale_height = scale_width
        else:
            scale_width = scale_height
    return (
        round(scale_width * width / MIDAS_MULTIPLE) * MIDAS_MULTIPLE,
        round(scale_height * height / MIDAS_MULTIPLE) * MIDAS_MULTIPLE,
    )


def parse_midas_spec(text: str) -> tuple[MidasModel, Path | None, Path | None]:
    """Parse ``<model type>[@<repo dir>][:<weights path>]`` (the part after ``midas:``)."""
    match = re.fullmatch(r"(?P<type>[A-Za-z0-9_]+)(?:@(?P<repo>[^:]+))?(?::(?P<weights>.+))?", text)
    if not match:
        raise EdgedepthError(f"midas teacher {text!r} is not of the form <model type>[@<repo dir>][:<weights path>]")
    model = MIDAS_MODELS.get(match.group("type"))
    if model is None:
        known = ", ".join(m.entry for m in _MODELS)
        raise EdgedepthError(f"unknown MiDaS model type {match.group('type')!r}; use one of: {known}")
    repo, weights = match.group("repo"), match.group("weights")
    return model, Path(repo).expanduser() if repo else None, Path(weights).expanduser() if weights else None


def _network_failure(exc: BaseException | None) -> bool:
    """Whether an error, or one it was raised from, is a failed connection (torch.hub wraps some)."""
    while exc is not None:
        if isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


#: The network edgedepth implements itself (:mod:`edgedepth.models.midas`, which says where MiDaS publishes its
#: weights).
OWN_IMPLEMENTATION = "MiDaS_small"


def _own_midas_small(repo_dir: Path | None, weights: Path | None) -> torch.nn.Module:
    """``midas_v21_small`` with MiDaS's weights: from ``weights``, or downloaded from MiDaS's release
    (:data:`edgedepth.models.midas.MIDAS_SMALL_URL`)."""
    from edgedepth.models.checkpoints import load_checkpoint, unwrap_state_dict
    from edgedepth.models.convert import convert_layout
    from edgedepth.models.layouts import MIDAS_SMALL_LAYOUT
    from edgedepth.models.midas import MIDAS_SMALL_URL

    if repo_dir is not None:
        logger.warning(f"midas:{OWN_IMPLEMENTATION} runs on edgedepth's own midas_v21_small; the checkout {repo_dir} is not used")
    if weights is not None:
        return convert_layout(unwrap_state_dict(load_checkpoint(weights), str(weights)), MIDAS_SMALL_LAYOUT,
                              str(weights))
    try:
        state = torch.hub.load_state_dict_from_url(MIDAS_SMALL_URL, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        if not _network_failure(exc):
            raise
        raise EdgedepthError(
            f"teacher midas:{OWN_IMPLEMENTATION} needs its weights from GitHub ({MIDAS_SMALL_URL}), which is "
            f"unreachable; download them where it is reachable and pass the file: "
            f"midas:{OWN_IMPLEMENTATION}:/path/to/midas_v21_small_256.pt"
        ) from exc
    return convert_layout(unwrap_state_dict(state, MIDAS_SMALL_URL), MIDAS_SMALL_LAYOUT, MIDAS_SMALL_URL)


def _load_network(model: MidasModel, repo_dir: Path | None, weights: Path | None) -> torch.nn.Module:
    """Build the network through MiDaS's ``hubconf.py``; load ``weights`` into it when given."""
    if repo_dir is not None and not (repo_dir / "hubconf.py").is_file():
        raise EdgedepthError(f"{repo_dir}: not a MiDaS checkout (no hubconf.py)")
    if weights is not None and not weights.is_file():
        raise EdgedepthError(f"{weights}: no such MiDaS weights file")
    pretrained = weights is None
    try:
        if repo_dir is not None:
            network = torch.hub.load(str(repo_dir), model.entry, source="local", pretrained=pretrained)
        else:
            network = torch.hub.load(MIDAS_HUB_REPO, model.entry, pretrained=pretrained, trust_repo=True)
    except (OSError, RuntimeError) as exc:
        if not _network_failure(exc):
            raise
        raise EdgedepthError(
            f"teacher midas:{model.entry} needs files from GitHub (torch.hub), which is unreachable; "
            f"pass a local MiDaS checkout and weights instead: "
            f"midas:{model.entry}@/path/to/MiDaS:/path/to/{model.checkpoint}.pt"
        ) from exc
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise EdgedepthError(
                f"{weights}: not a MiDaS state dict readable with weights_only=True ({first_line})"
            ) from exc
        if "optimizer" in state:  # a MiDaS training checkpoint, as midas/base_model.py reads it
            state = state["model"]
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise EdgedepthError(f"{weights}: does not fit MiDaS model {model.entry} ({first_line})") from exc
    return network


class MidasTeacher(Teacher):
    """A MiDaS network from torch.hub, with MiDaS's own pre-processing."""

    def __init__(self, spec: str, device: str = "cpu") -> None:
        """``spec`` is the part after ``midas:``, e.g. ``DPT_Large@/src/MiDaS:/weights/dpt_large_384.pt``."""
        self.model_info, repo_dir, weights = parse_midas_spec(spec)
        self.name = f"midas:{self.model_info.entry}"
        self.input_size = (self.model_info.size, self.model_info.size)
        self.device = torch.device(device)
        if self.model_info.entry == OWN_IMPLEMENTATION:
            self.model = _own_midas_small(repo_dir, weights).to(self.device).eval()
        else:
            self.model = _load_network(self.model_info, repo_dir, weights).to(self.device).eval()

    def _infer(self, images: Sequence[np.ndarray], depths: Sequence[np.ndarray] | None) -> torch.Tensor:
        height, width = images[0].shape[:2]
        size = midas_input_size((width, height), self.model_info)
        batch = preprocess(images, size, self.model_info.mean, self.model_info.std, "cubic")
        prediction = self.model(torch.from_numpy(batch).to(self.device))
        return prediction.reshape(len(images), 1, *prediction.shape[-2:])
