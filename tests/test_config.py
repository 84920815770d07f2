"""Typed configs: values checked against their field types, ranges checked where fields are declared."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from edgedepth.core.config import (
    NON_NEGATIVE,
    POSITIVE,
    RESUMABLE,
    check_values,
    from_dict,
    is_resumable,
    load_config,
    resumable_keys,
)
from edgedepth.core.errors import EdgedepthError
from edgedepth.train.config import TrainConfig


@dataclass
class Unions:
    count_or_name: int | str = 0
    scale: float | None = None
    rate_or_off: float | Literal["off"] | None = None
    size_or_auto: tuple[int, int] | Literal["auto"] = "auto"


def test_a_union_of_several_types_takes_the_first_that_fits() -> None:
    assert from_dict(Unions, {"count_or_name": 3}).count_or_name == 3
    assert from_dict(Unions, {"count_or_name": "three"}).count_or_name == "three"
    assert from_dict(Unions, {"scale": None}).scale is None and from_dict(Unions, {"scale": "1e-3"}).scale == 1e-3
    assert from_dict(Unions, {"rate_or_off": "off"}).rate_or_off == "off"
    assert from_dict(Unions, {"rate_or_off": 2}).rate_or_off == 2.0
    assert from_dict(Unions, {"rate_or_off": None}).rate_or_off is None
    assert from_dict(Unions, {"size_or_auto": "64x32"}).size_or_auto == (64, 32)
    assert from_dict(Unions, {"size_or_auto": "auto"}).size_or_auto == "auto"


@pytest.mark.parametrize(("data", "message"), [
    ({"count_or_name": 1.5}, "config key 'count_or_name': expected an integer or text, got 1.5"),
    ({"count_or_name": None}, "config key 'count_or_name': expected an integer or text, got None"),
    ({"rate_or_off": "on"}, "config key 'rate_or_off': expected a number or one of 'off' or null, got 'on'"),
    ({"size_or_auto": "big"}, "config key 'size_or_auto': expected a size WIDTHxHEIGHT or one of 'auto', got 'big'"),
])
def test_a_value_no_type_of_the_union_takes_is_one_line_naming_them_all(data: dict, message: str) -> None:
    with pytest.raises(EdgedepthError) as caught:
        from_dict(Unions, data)
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------------------------
# Ranges and resumable keys, declared beside the fields


def _fields(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every leaf field of a config, by dotted key, and every section's field by its key."""
    hints = typing.get_type_hints(cls)
    found: dict[str, dataclasses.Field] = {}
    for item in dataclasses.fields(cls):
        found[prefix + item.name] = item
        if dataclasses.is_dataclass(hints[item.name]):
            found |= _fields(hints[item.name], f"{prefix}{item.name}.")
    return found


def test_the_keys_a_resume_may_change_are_fields_marked_beside_them() -> None:
    keys = resumable_keys(TrainConfig)
    assert keys == {"data.path", "data.num_workers", "data.prefetch_factor", "schedule.max_steps", "run.resume",
                    "run.checkpoint_every_steps", "logging", "validation"}
    fields = _fields(TrainConfig)
    assert keys <= fields.keys()  # each one names a field, so a rename cannot leave a stale key behind
    assert keys == {key for key, item in fields.items() if item.metadata.get("resumable")}
    assert is_resumable(TrainConfig, "logging.every_steps") and is_resumable(TrainConfig, "validation.nyu_data_path")
    for key in ["optim.lr", "data.png", "data.pathological", "model.args", "run.seed", "loggingx"]:
        assert not is_resumable(TrainConfig, key), key


def test_a_renamed_field_takes_its_resumable_mark_along() -> None:
    @dataclass
    class Before:
        workers: int = field(default=1, metadata=RESUMABLE)
        seed: int = 0

    @dataclass
    class After:
        loader_workers: int = field(default=1, metadata=RESUMABLE)
        seed: int = 0

    assert resumable_keys(Before) == {"workers"} and resumable_keys(After) == {"loader_workers"}
    assert not is_resumable(After, "workers") and not is_resumable(After, "seed")


def _ranged() -> dict[str, str]:
    return {key: item.metadata["range"] for key, item in _fields(TrainConfig).items() if "range" in item.metadata}


def test_every_declared_range_is_checked_on_load_in_one_line() -> None:
    ranged = _ranged()
    assert {"optim.lr", "optim.batch_size", "schedule.epochs", "run.checkpoint_every_steps", "logging.every_steps",
            "data.prefetch_factor", "data.num_workers", "schedule.warmup_steps", "schedule.max_steps"} <= ranged.keys()
    for key, rule in ranged.items():
        bad, edge = (0, 1) if rule == "positive" else (-1, 0)
        requirement = "must be positive" if rule == "positive" else "must not be negative"
        with pytest.raises(EdgedepthError) as caught:
            load_config(TrainConfig, None, [f"{key}={bad}"])
        message = str(caught.value)
        assert message.startswith(f"config key {key!r} {requirement}") and message.endswith((f"got {bad}", f"got {float(bad)}")), message
        assert "\n" not in message
        load_config(TrainConfig, None, [f"{key}={edge}"])
    with pytest.raises(EdgedepthError, match=r"^config key 'schedule.max_steps' must be positive \(or null\), got 0$"):
        load_config(TrainConfig, None, ["schedule.max_steps=0"])
    assert load_config(TrainConfig, None, ["schedule.max_steps=null"]).schedule.max_steps is None


def test_a_config_built_in_python_is_checked_too() -> None:
    cfg = TrainConfig()
    check_values(cfg)
    cfg.optim.lr = 0.0
    with pytest.raises(EdgedepthError, match=r"^config key 'optim.lr' must be positive, got 0.0$"):
        check_values(cfg)


@dataclass
class _Ranges:
    size: int = field(default=1, metadata=POSITIVE)
    offset: float = field(default=0.0, metadata=NON_NEGATIVE)
    extra: Any = None


def test_ranges_apply_to_any_config_dataclass() -> None:
    assert from_dict(_Ranges, {"size": 2, "offset": 0}).offset == 0.0
    with pytest.raises(EdgedepthError, match="config key 'offset' must not be negative, got -0.5"):
        from_dict(_Ranges, {"offset": -0.5})
