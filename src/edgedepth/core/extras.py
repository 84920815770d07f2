"""The two installs: ``pip install edgedepth`` runs exported networks (NumPy, OpenCV, ONNX Runtime); extras add the
rest. A part that needs a missing extra says in one line which to install, before it starts.

``openvino``: OpenVINO's runtime. ``train``: PyTorch, torchvision, timm, transformers, NNCF and everything that
trains, labels, converts, exports, prunes or evaluates. ``make test`` and ``make demo`` install both.
"""

from __future__ import annotations

import importlib.util

from edgedepth.core.errors import EdgedepthError

#: The extra that installs each package an optional part needs.
EXTRA_OF = {"torch": "train", "torchvision": "train", "timm": "train", "transformers": "train", "nncf": "train",
            "onnx": "train", "h5py": "train", "scipy": "train", "safetensors": "train", "matplotlib": "train",
            "openvino": "openvino", "rosbags": "ros", "ncnn": "ncnn", "pnnx": "train",
            "ai_edge_litert": "litert", "litert_torch": "train"}


def missing(package: str) -> bool:
    """Whether ``package`` is not installed (it is not imported to find out)."""
    return importlib.util.find_spec(package) is None


def require(package: str, needed_by: str) -> None:
    """Nothing if ``package`` is installed; else an EdgedepthError naming the extra that installs it."""
    if missing(package):
        extra = EXTRA_OF.get(package, "train")
        raise EdgedepthError(f"{needed_by} needs {package}, which is not installed: pip install 'edgedepth[{extra}]'")
