"""edgedepth: real-time monocular depth estimation for embedded CPUs.

The public API (see :mod:`edgedepth.api`)::

    import edgedepth

    model = edgedepth.load("zipdepth_base", runtime="onnx")
    depth = model("photo.jpg")  # float32 H x W relative inverse depth at the photo's size
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Threads that wait for work sleep instead of spinning. OpenMP (PyTorch's intra-op pool) reads this once, when
# torch is first imported, so it is set here, before any module of ours imports torch. Spinning threads took a
# 2-core training step from 3 s to 23 s beside other busy processes (see edgedepth.core.cores). A value the user
# exported stands.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from edgedepth.core.version import __version__

__all__ = ["DepthModel", "EdgedepthError", "MetricDepth", "__version__", "load"]

if TYPE_CHECKING:
    from edgedepth.api import DepthModel, MetricDepth, load
    from edgedepth.core.errors import EdgedepthError


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use: ``import edgedepth`` stays instant for the command line."""
    if name in ("DepthModel", "MetricDepth", "load"):
        from edgedepth import api

        return getattr(api, name)
    if name == "EdgedepthError":
        from edgedepth.core.errors import EdgedepthError

        return EdgedepthError
    raise AttributeError(f"module 'edgedepth' has no attribute {name!r}")
