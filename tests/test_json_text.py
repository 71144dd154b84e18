"""The JSON text written to the database reads back as the standard library would have written it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paysaga.json_text import dumps, loads


class Colour(StrEnum):
    RED = "red"


def test_dates_and_datetimes_are_iso_8601_as_isoformat_writes_them() -> None:
    at = datetime(2026, 12, 2, 11, 30, 5, 123, tzinfo=UTC)
    local = datetime(2026, 12, 2, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    assert json.loads(dumps({"at": at, "on": date(2026, 2, 28), "local": local, "naive": at.replace(tzinfo=None)})) \
        == {"at": at.isoformat(), "on": "2026-02-28", "local": local.isoformat(),
            "naive": at.replace(tzinfo=None).isoformat()}


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    big = 10**25  # beyond 64 bits: a client's metadata may hold one
    assert json.loads(dumps({"n": big, "neg": -big})) == {"n": big, "neg": -big}
    assert json.loads(dumps({1: "int key"})) == {"1": "int key"}


def test_str_enums_are_their_values_and_unknown_types_are_refused() -> None:
    assert dumps([Colour.RED]) == '["red"]'
    with pytest.raises(TypeError):
        dumps({"x": object()})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=20)


@given(json_values)
def test_any_json_value_reads_back_as_itself(value: object) -> None:
    assert json.loads(dumps(value)) == value


@given(json_values | st.integers(min_value=-10**30, max_value=10**30))
def test_reading_is_what_the_standard_library_reads(value: object) -> None:
    text = json.dumps(value)
    assert loads(text) == json.loads(text) and type(loads(text)) is type(json.loads(text))


def test_integers_beyond_64_bits_and_what_orjson_refuses_read_as_the_standard_library_reads_them() -> None:
    for text in ('{"n": 123456789012345678901234567890}', "-9223372036854775809", "18446744073709551616",
                 '"\\ud800"', "1e400", '{"a": NaN}'):
        assert repr(loads(text)) == repr(json.loads(text))
