"""The catalogue measured: every registered network's size, cost, default input and where its weights come from.

Sizes and costs are measured, not written down: each network is built on PyTorch's ``meta`` device (shapes only, no
memory, no arithmetic). Parameters are counted as the weights file holds them (ZipDepth's training layout), MACs as
the network runs: fused for inference (:func:`prepare_for_inference`), at its card's default input size.

``python -m edgedepth.models.catalog`` writes what it measures into the shipped
`catalog.json` of :mod:`edgedepth.core.catalog`, which ``edgedepth models`` prints without PyTorch; run it after registering a
network (a test fails until then).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from edgedepth.core import catalog as shipped
from edgedepth.core.catalog import CatalogEntry
from edgedepth.core.files import atomic_path
from edgedepth.models.complexity import count_macs, count_parameters
from edgedepth.models.registry import create_model, list_models, model_info, prepare_for_inference


def catalog_entry(name: str) -> CatalogEntry:
    """The entry of one registered name (or ``fastdepth_<encoder>`` student), measured."""
    with torch.device("meta"):
        model = create_model(name)
        params = count_parameters(model)
        running = prepare_for_inference(model)
    info = model_info(name)
    size = model.card.input_size
    return CatalogEntry(name, info.family, params, count_macs(running, size), size, info.licence, info.weights,
                        info.summary)


def measure_catalog() -> list[CatalogEntry]:
    """Every registered name, measured, by family then name (the order of the shipped file)."""
    entries = [catalog_entry(name) for name in list_models()]
    return sorted(entries, key=lambda entry: (entry.family, entry.name))


def write_catalog(path: Path | None = None) -> Path:
    """Write the measured catalogue as the shipped ``catalog.json`` (or to ``path``)."""
    target = path or Path(shipped.__file__).with_name(shipped.CATALOG_FILE)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps([asdict(entry) for entry in measure_catalog()], indent=1) + "\n")
    return target


if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
