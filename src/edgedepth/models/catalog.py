"""``edgedepth models``: every registered network with its size, cost, default input and where its weights come from.

Sizes and costs are measured, not written down: each network is built on PyTorch's ``meta`` device (shapes only, no
memory, no arithmetic). Parameters are counted as the weights file holds them (ZipDepth's training layout), MACs as
the network runs: fused for inference (:func:`prepare_for_inference`), at its card's default input size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

from edgedepth.core.sizes import format_size
from edgedepth.models.complexity import count_macs, count_parameters
from edgedepth.models.registry import (
    ENCODER_FAMILY_PREFIX,
    create_model,
    list_models,
    model_info,
    prepare_for_inference,
)


@dataclass(frozen=True)
class CatalogEntry:
    """One registered network, as ``edgedepth models`` lists it."""

    name: str
    family: str
    params: int
    macs: int
    input_size: tuple[int, int]
    licence: str
    weights: str
    summary: str


def catalog_entry(name: str) -> CatalogEntry:
    """The entry of one registered name (or ``fastdepth_<encoder>`` student)."""
    with torch.device("meta"):
        model = create_model(name)
        params = count_parameters(model)
        running = prepare_for_inference(model)
    info = model_info(name)
    size = tuple(model.card.input_size)
    return CatalogEntry(name, info.family, params, count_macs(running, size), size,  # type: ignore[arg-type]
                        info.licence, info.weights, info.summary)


def catalog(pattern: str = "*") -> list[CatalogEntry]:
    """Every registered name matching ``pattern``, by family then name."""
    entries = [catalog_entry(name) for name in list_models(pattern)]
    return sorted(entries, key=lambda entry: (entry.family, entry.name))


def format_catalog(entries: list[CatalogEntry]) -> str:
    """A markdown table, then where the open ``fastdepth_<encoder>`` family stands."""
    lines = [
        "| name | network | params (M) | GMACs | default input | licence of the weights | weights |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(f"| `{e.name}` | {e.summary} | {e.params / 1e6:.2f} | {e.macs / 1e9:.2f} | "
                     f"{format_size(e.input_size)} | {e.licence or '—'} | {e.weights} |")
    lines += ["", (f"Also {ENCODER_FAMILY_PREFIX}<encoder>: the FastDepth decoder on any timm or torchvision encoder "
                   "(e.g. fastdepth_mobilenetv4_conv_small), trained with edgedepth train. Params as the weights hold them; "
                   "GMACs of the network as it runs (fused), batch 1, at the default input. Convert downloaded "
                   "weights with: edgedepth convert FILE OUT.safetensors")]
    return "\n".join(lines) + "\n"


def catalog_json(entries: list[CatalogEntry]) -> str:
    return json.dumps([asdict(entry) for entry in entries], indent=2)
