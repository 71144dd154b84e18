"""The search-attribute registry fits the SQL visibility store, which has a fixed number of columns per type."""

from __future__ import annotations

from collections import Counter

from temporalio.common import SearchAttributeIndexedValueType as T

from contracts import search_attributes as sa

# Pre-allocated columns of Temporal's SQL visibility schema (SQLite in the dev server, PostgreSQL, MySQL).
COLUMNS = {T.KEYWORD: 10, T.KEYWORD_LIST: 3, T.TEXT: 3, T.INT: 3, T.DOUBLE: 3, T.BOOL: 3, T.DATETIME: 3}


def test_every_type_fits_its_columns() -> None:
    used = Counter(key.indexed_value_type for key in sa.ALL)
    assert {t: n for t, n in used.items() if n > COLUMNS[t]} == {}


def test_names_are_unique() -> None:
    names = [key.name for key in sa.ALL]
    assert len(names) == len(set(names))


def test_a_keyword_list_is_given_a_list_of_one() -> None:
    assert sa.pair(sa.SUBSCRIPTION_ID, "sub_1").value == ["sub_1"]
    assert sa.pair(sa.TENANT_ID, "t").value == "t"
