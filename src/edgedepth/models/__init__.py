"""Models: the registry, the FastDepth students, the networks users already have, our weights format and converters."""

from edgedepth.models import depth_anything as _depth_anything  # noqa: F401
from edgedepth.models import fastdepth as _fastdepth  # noqa: F401  (registers the builders)
from edgedepth.models import midas as _midas  # noqa: F401
from edgedepth.models import zipdepth as _zipdepth  # noqa: F401
from edgedepth.models.registry import (
    DepthNetwork,
    ModelInfo,
    create_model,
    is_model,
    list_models,
    model_info,
    prepare_for_inference,
    register_model,
)
from edgedepth.models.weights import load_model, read_card, save_weights

__all__ = [
    "DepthNetwork", "ModelInfo", "create_model", "is_model", "list_models", "load_model", "model_info",
    "prepare_for_inference", "read_card", "register_model", "save_weights",
]
