"""``edgedepth models``: the shipped catalogue is what the registry measures, and the README's table is its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgedepth.cli import main
from edgedepth.core.catalog import catalog, format_catalog, shipped_catalog
from edgedepth.models import create_model, list_models
from edgedepth.models.catalog import measure_catalog, write_catalog
from edgedepth.models.complexity import count_macs, count_parameters

README = Path(__file__).resolve().parents[1] / "README.md"
#: The README's table of networks lies between these lines, exactly as ``edgedepth models`` prints it.
BEGIN, END = "<!-- edgedepth models: begin -->\n", "<!-- edgedepth models: end -->"


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index(BEGIN) + len(BEGIN): text.index(END)].lstrip("\n")


def test_the_shipped_catalogue_is_what_the_registry_measures() -> None:
    """``edgedepth models`` reads a file (no PyTorch needed); it must hold what the networks measure now
    (``python -m edgedepth.models.catalog`` rewrites it after a network is registered or changed)."""
    assert shipped_catalog() == measure_catalog(), "run: python -m edgedepth.models.catalog"
    assert sorted(entry.name for entry in shipped_catalog()) == list_models()


def test_write_catalog_writes_what_is_shipped(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "catalog.json")
    assert json.loads(path.read_text()) == json.loads(
        (Path(__file__).resolve().parents[1] / "src/edgedepth/core/catalog.json").read_text())


def test_the_readme_lists_the_networks_as_the_catalogue_measures_them() -> None:
    """The README restates no model's size by hand: its table is the catalogue's output (regenerate it with
    ``edgedepth models`` and paste it between the markers)."""
    assert readme_table() == format_catalog(catalog()), (
        "README.md's table of networks differs from `edgedepth models`; paste its output between the markers")


def test_the_catalogue_measures_what_the_registry_builds(capsys: pytest.CaptureFixture[str]) -> None:
    """Parameters and MACs are counted on the networks themselves, at their default inputs, fused as they run."""
    assert main(["models", "fastdepth_v3", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    model = create_model("fastdepth_v3")
    assert entry["params"] == count_parameters(model)
    assert entry["macs"] == count_macs(model.eval(), tuple(model.card.input_size))
    assert entry["input_size"] == list(model.card.input_size) == [256, 192]
    assert [e.name for e in catalog("zipdepth_*")] == list_models("zipdepth_*")
