"""What ``--model NAME`` builds the first time, with the training stack: the converted weights, and exports of them.

The release's checkpoint is fetched and verified (:mod:`.store`), converted by the same strict converter as
``edgedepth convert`` and kept as ``.safetensors`` with its provenance (URL, hash, licence), which every export of it
carries. An export is built by ``edgedepth export``'s code at the network's input size, INT8 calibrated on a fixed
set of scenes the package renders (so every machine builds the same file) unless the user gives ``--calib``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgedepth.core.errors import EdgedepthError
from edgedepth.core.processing import preprocess
from edgedepth.core.releases import Release
from edgedepth.data.synthetic import render_scene, scene_seed
from edgedepth.export.graph import export_model
from edgedepth.export.quantize import calibration_batches
from edgedepth.models.convert import convert_checkpoint
from edgedepth.models.weights import load_model, read_metadata
from edgedepth.pretrained import store
from edgedepth.runtime.runtimes import ExportFormat, Runtime

#: The default calibration set: rendered indoor scenes, the same on every machine.
CALIBRATION_SEED = 7
CALIBRATION_SCENES = 32
CALIBRATION_SET = f"edgedepth synthetic scenes (seed {CALIBRATION_SEED}, {CALIBRATION_SCENES} at 640x480)"


def weights(release: Release) -> Path:
    """The release's converted ``.safetensors`` in the cache, downloaded and converted if it is not there yet."""
    out = store.weights_path(release)
    if out.exists():
        return out
    store.writable_folder(out.parent)
    checkpoint = store.fetch(release)
    provenance = {"release": release.name, "url": release.url, "verified": release.verification,
                  "licence": release.licence}
    try:
        convert_checkpoint(checkpoint, out, provenance=provenance)
    except EdgedepthError as exc:
        raise EdgedepthError(f"--model {release.name}: the downloaded checkpoint does not convert ({exc})") from exc
    checkpoint.unlink()
    print(f"{release.name}: converted into {out}", file=sys.stderr)
    return out


def export(release: Release, runtime: Runtime, size: tuple[int, int] | None, calib: Path | None) -> Path:
    """The release's export for ``runtime`` at ``size`` (default: its card's) in the cache, built if missing."""
    if runtime.fmt == "safetensors":
        raise ValueError(f"{runtime.name} runs our weights, not an export: use weights()")
    source = weights(release)
    card, provenance = read_metadata(source)
    size = card.fit_size(size)
    out = store.export_path(release, runtime, size, calib)
    if out.exists():
        return out
    store.writable_folder(out.parent)
    calibration: list[np.ndarray] | None = None
    calibration_set = ""
    if runtime.int8 and calib is not None:
        calibration, calibration_set = calibration_batches(calib, card, size), str(calib)
    elif runtime.int8:
        images = [render_scene(scene_seed(CALIBRATION_SEED, k)).image for k in range(CALIBRATION_SCENES)]
        calibration = [preprocess([image], size, card.mean, card.std) for image in images]
        calibration_set = CALIBRATION_SET
    print(f"{release.name}: building its {runtime.name} file at {size[0]}x{size[1]} (once)", file=sys.stderr)
    fmt: ExportFormat = runtime.fmt
    export_model(load_model(source), out, fmt, size, provenance, source.name, calibration,
                 quantizer=runtime.quantizer or "auto", calibration_set=calibration_set)
    return out
