from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.instruments import is_expired


@pytest.mark.parametrize(
    ("exp_month", "exp_year", "today", "expired"),
    [
        (12, 2030, date(2026, 11, 21), False),
        (11, 2026, date(2026, 11, 1), False),   # valid through the end of the expiry month
        (11, 2026, date(2026, 11, 30), False),
        (11, 2026, date(2026, 12, 1), True),    # expired from the first day of the next month
        (12, 2025, date(2026, 1, 1), True),     # across a year boundary
        (1, 2027, date(2026, 12, 31), False),
        (10, 2026, date(2026, 11, 21), True),
        (11, 26, date(2026, 11, 21), False),    # two-digit year
        (10, 26, date(2026, 11, 21), True),
        (None, 2020, date(2026, 11, 21), False),  # unknown expiry: not known to be expired
        (5, None, date(2026, 11, 21), False),
    ],
)
def test_is_expired(exp_month: int | None, exp_year: int | None, today: date, expired: bool) -> None:
    assert is_expired(exp_month, exp_year, today) is expired


@pytest.mark.parametrize("bad_month", [0, 13, -1])
def test_invalid_month_is_refused(bad_month: int) -> None:
    with pytest.raises(ValueError):
        is_expired(bad_month, 2030, date(2026, 1, 1))


@given(st.integers(1, 12), st.integers(2000, 2100), st.dates(date(2000, 1, 1), date(2100, 12, 31)))
def test_expired_iff_expiry_month_is_before_today(month: int, year: int, today: date) -> None:
    first_expired_day = date(year + month // 12, month % 12 + 1, 1)  # the 1st of the next month
    assert is_expired(month, year, today) is (today >= first_expired_day)
