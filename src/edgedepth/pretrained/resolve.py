"""``--model NAME [--runtime R]`` to the file that runs it: the cached one, else built once (needs the training stack).

Every command that takes ``--weights FILE`` takes ``--model NAME`` through here, and so does ``edgedepth.load``.
"""

from __future__ import annotations

from pathlib import Path

from edgedepth.core.extras import require
from edgedepth.core.releases import find_release
from edgedepth.pretrained import store
from edgedepth.runtime.runtimes import get_runtime


def model_file(name: str, runtime: str | None = None, size: tuple[int, int] | None = None,
               calib: Path | None = None) -> Path:
    """The file that runs release ``name`` on ``runtime`` (``None``: our ``.safetensors`` weights, for PyTorch).

    ``size`` is the fixed input size of an export (default: the network's) and ``calib`` the images an INT8 export
    is calibrated on (default: scenes the package renders). A file not yet in the cache is downloaded, verified,
    converted and exported now, which needs ``edgedepth[train]``; later calls need neither it nor the network.
    """
    release = find_release(name)
    chosen = get_runtime(runtime) if runtime is not None else None
    found = store.cached(release, chosen, size, calib)
    if found is not None:
        return found
    require("torch", f"--model {name} (the first time: download, convert and export into {store.cache_root()})")
    from edgedepth.pretrained import build

    if chosen is None or chosen.fmt == "safetensors":
        return build.weights(release)
    return build.export(release, chosen, size, calib)
