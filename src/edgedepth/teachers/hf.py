"""Hugging Face transformers teachers: ``hf:<repo id or local dir>`` through ``AutoModelForDepthEstimation``.

Pre-processing is the model's own image processor (``preprocessor_config.json``: resize rule, resampling,
rescale, normalisation). Its transformers-5 implementation is a torch backend that stacks the images of a
batch by size and resizes them in one call on the teacher's device, so resizing ourselves would buy no
speed and could drift from what the model was trained with. The processor is overridden only where the
network cannot take what it would produce:

- plain DPT (ViT; ``Intel/dpt-large`` is MiDaS v3 DPT-Large) reshapes its tokens to a square grid
  (side = sqrt of the token count), so a non-square input such as 512x384 fails; DPT-Hybrid
  (``Intel/dpt-hybrid-midas``) accepts only exactly ``config.image_size``. Both are fed the square
  ``config.image_size`` (384x384), aspect not kept. ``midas:DPT_Large`` runs the same network at the
  image's aspect through MiDaS's own code.
- Depth Anything (DINOv2 backbone, patch 14) takes any aspect whose sides are multiples of the patch size:
  the processor keeps the aspect (``keep_aspect_ratio``) and its ``ensure_multiple_of`` is made a multiple
  of the patch size if it is not one already (518 -> 518x392 for a 512x384 crop). Its DINOv2 position
  embeddings are interpolated to the patch grid as the authors' code does
  (:func:`edgedepth.models.depth_anything.use_original_position_embeddings`), as in the registry's
  ``depth_anything_v2_*``: one implementation of the network.
- ZoeDepth pads its input (reflect), and its processor's ``post_process_depth_estimation`` removes the
  padding; any other processor that pads is refused, since its output would not align with the image.

Relative models (DPT, Depth Anything relative, Depth Pro's raw canonical inverse depth) output inverse
depth. Metric ones (ZoeDepth, GLPN, TIPSv2-DPT, Depth Anything metric) output depth in metres; they are
converted with ``1 / max(depth, METRIC_DEPTH_FLOOR)`` and say so in ``name`` and ``output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgedepth.core.card import RELATIVE_INVERSE_DEPTH
from edgedepth.core.errors import EdgedepthError
from edgedepth.models.depth_anything import use_original_position_embeddings
from edgedepth.models.hub import from_pretrained
from edgedepth.teachers.base import INVERSE_OF_METRIC_DEPTH, Teacher, invert_metric_depth

#: Short names for the common teachers.
HF_ALIASES = {
    "midas-dpt-large": "Intel/dpt-large",
    "midas-dpt-hybrid": "Intel/dpt-hybrid-midas",
    "depth-anything-v2-small": "depth-anything/Depth-Anything-V2-Small-hf",
    "depth-anything-v2-base": "depth-anything/Depth-Anything-V2-Base-hf",
    "depth-anything-v2-large": "depth-anything/Depth-Anything-V2-Large-hf",
}

#: Model types whose raw ``predicted_depth`` is inverse depth.
_INVERSE_DEPTH_TYPES = frozenset({"dpt", "depth_pro"})
#: Model types whose raw ``predicted_depth`` is metric depth.
_METRIC_DEPTH_TYPES = frozenset({"zoedepth", "glpn", "tipsv2_dpt"})
#: Depth Anything families: ``config.depth_estimation_type`` ("relative" or "metric") says which.
_DEPTH_ANYTHING_TYPES = frozenset({"depth_anything", "prompt_depth_anything"})


def output_kind(config: Any) -> str:
    """:data:`RELATIVE_INVERSE_DEPTH` or :data:`INVERSE_OF_METRIC_DEPTH` (after conversion) for a model config."""
    model_type = config.model_type
    if model_type in _DEPTH_ANYTHING_TYPES:
        metric = config.depth_estimation_type == "metric"
    elif model_type in _INVERSE_DEPTH_TYPES or model_type in _METRIC_DEPTH_TYPES:
        metric = model_type in _METRIC_DEPTH_TYPES
    else:
        known = ", ".join(sorted(_INVERSE_DEPTH_TYPES | _METRIC_DEPTH_TYPES | _DEPTH_ANYTHING_TYPES))
        raise EdgedepthError(
            f"model type {model_type!r} is not known to predict depth or inverse depth; supported: {known}"
        )
    return INVERSE_OF_METRIC_DEPTH if metric else RELATIVE_INVERSE_DEPTH


def processor_overrides(config: Any, processor: Any) -> dict[str, Any]:
    """Arguments that make the processor produce a size the network accepts (see the module docstring)."""
    if config.model_type == "dpt" and (config.is_hybrid or config.backbone_config is None):
        side = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        return {"do_resize": True, "size": {"height": side, "width": side}, "keep_aspect_ratio": False}
    if config.model_type in _DEPTH_ANYTHING_TYPES:
        patch = config.backbone_config.patch_size
        if processor.ensure_multiple_of % patch:
            return {"ensure_multiple_of": patch}
    return {}


def _processor_size(processor: Any, overrides: dict[str, Any]) -> tuple[int, int] | None:
    """The ``(width, height)`` the processor resizes towards, if it has one."""
    size = overrides.get("size", getattr(processor, "size", None))
    if isinstance(size, dict):
        height, width = size.get("height"), size.get("width")
    else:
        height, width = getattr(size, "height", None), getattr(size, "width", None)
    return (int(width), int(height)) if height and width else None


def resolve_reference(reference: str) -> str:
    """A local directory (made absolute), else an alias's repo id, else the repo id as given."""
    local = Path(reference).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if reference.startswith(("/", "./", "../", "~")):
        raise EdgedepthError(f"{reference}: no such directory (expected a model saved with save_pretrained)")
    return HF_ALIASES.get(reference, reference)


class HFTeacher(Teacher):
    """A transformers depth model with its own image processor."""

    def __init__(self, reference: str, device: str = "cpu") -> None:
        """``reference`` is a hub repo id, an alias of :data:`HF_ALIASES`, or a ``save_pretrained`` directory."""
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation

        reference = resolve_reference(reference)
        config = from_pretrained(AutoConfig, reference, "config")
        self.output = output_kind(config)
        self.processor = from_pretrained(AutoImageProcessor, reference, "image processor")
        self._remove_padding = config.model_type == "zoedepth"
        if getattr(self.processor, "do_pad", False) and not self._remove_padding:
            raise EdgedepthError(
                f"hf:{reference}: its image processor pads the image, so the prediction would not align with it; "
                "save the processor with do_pad=False"
            )
        self._overrides = processor_overrides(config, self.processor)
        self.input_size = _processor_size(self.processor, self._overrides)
        self.name = f"hf:{reference}" + (" (1/metric depth)" if self.output == INVERSE_OF_METRIC_DEPTH else "")
        self.device = torch.device(device)
        model = from_pretrained(AutoModelForDepthEstimation, reference, "weights", config=config)
        if config.model_type == "depth_anything":  # the authors' position embeddings, as the registry's network
            use_original_position_embeddings(model)
        self.model = model.float().to(self.device).eval()

    def _infer(self, images: Sequence[np.ndarray], depths: Sequence[np.ndarray] | None) -> torch.Tensor:
        inputs = self.processor(images=list(images), return_tensors="pt", device=self.device, **self._overrides)
        outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, torch.float32))
        if self._remove_padding:
            height, width = images[0].shape[:2]
            sizes = [(height, width)] * len(images)
            results = self.processor.post_process_depth_estimation(outputs, source_sizes=sizes)
            depth = torch.stack([result["predicted_depth"] for result in results])
        else:
            depth = outputs.predicted_depth
        depth = depth.reshape(len(images), 1, *depth.shape[-2:])
        return invert_metric_depth(depth) if self.output == INVERSE_OF_METRIC_DEPTH else depth
