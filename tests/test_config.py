"""Typed configs: values checked against their field types, ranges checked where fields are declared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from edgedepth.config import from_dict
from edgedepth.errors import EdgedepthError


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
