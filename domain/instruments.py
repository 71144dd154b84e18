"""Payment instruments (cards held as provider tokens): pure rules, no I/O."""

from __future__ import annotations

from datetime import date


def is_expired(exp_month: int | None, exp_year: int | None, today: date) -> bool:
    """A card is valid through the last day of its expiry month, so it is expired from the first day of the
    following month on. An unknown expiry (either part missing) is not known to be expired: False."""
    if exp_month is None or exp_year is None:
        return False
    if not 1 <= exp_month <= 12:
        raise ValueError(f"exp_month must be 1..12, got {exp_month}")
    if exp_year < 100:  # two-digit years, as printed on cards
        exp_year += 2000
    return (exp_year, exp_month) < (today.year, today.month)
