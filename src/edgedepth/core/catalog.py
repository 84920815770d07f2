"""The catalogue of networks as shipped: what ``edgedepth models`` prints, read without a training framework.

Each registered network's size and cost (measured on the network itself by :mod:`edgedepth.models.catalog`, which
writes ``catalog.json`` beside this module), its default input, and where its weights come from and under which
licence. A test measures the registry again and compares, so the file cannot drift from the code.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass
from importlib import resources

from edgedepth.core.sizes import format_size

#: The shipped file, in this package.
CATALOG_FILE = "catalog.json"
#: The open family of students on any timm or torchvision encoder, whose documented members are listed.
ENCODER_FAMILY = "fastdepth_<encoder>"


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

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CatalogEntry:
        size = data["input_size"]
        assert isinstance(size, list)
        return cls(str(data["name"]), str(data["family"]), int(str(data["params"])), int(str(data["macs"])),
                   (int(size[0]), int(size[1])), str(data["licence"]), str(data["weights"]), str(data["summary"]))


def shipped_catalog() -> list[CatalogEntry]:
    """Every entry of the shipped ``catalog.json``, by family then name."""
    text = resources.files("edgedepth.core").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    return [CatalogEntry.from_dict(entry) for entry in json.loads(text)]


def catalog(pattern: str = "*") -> list[CatalogEntry]:
    """The shipped entries whose name matches a shell-style ``pattern``, by family then name."""
    return [entry for entry in shipped_catalog() if fnmatch.fnmatch(entry.name, pattern)]


def format_catalog(entries: list[CatalogEntry]) -> str:
    """A markdown table, then where the open ``fastdepth_<encoder>`` family stands."""
    lines = [
        "| name | network | params (M) | GMACs | default input | licence of the weights | weights |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(f"| `{e.name}` | {e.summary} | {e.params / 1e6:.2f} | {e.macs / 1e9:.2f} | "
                     f"{format_size(e.input_size)} | {e.licence or '—'} | {e.weights} |")
    lines += ["", (f"Also {ENCODER_FAMILY}: the FastDepth decoder on any timm or torchvision encoder "
                   "(e.g. fastdepth_mobilenetv4_conv_small), trained with edgedepth train. Params as the weights hold them; "
                   "GMACs of the network as it runs (fused), batch 1, at the default input. Released weights run by "
                   "name (--model NAME, or edgedepth.load(NAME)); other checkpoints: edgedepth convert FILE "
                   "OUT.safetensors")]
    return "\n".join(lines) + "\n"


def catalog_json(entries: list[CatalogEntry]) -> str:
    return json.dumps([asdict(entry) for entry in entries], indent=2)
