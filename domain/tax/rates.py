"""Rate tables with effective dates: which rate a jurisdiction charged on a given day.

A table is parsed from CSV text (the data files next to this module; reading them is the adapter's job, the
rules never do I/O). Each row is a rate that applies from `effective_from` until the next row of the same
jurisdiction and rate type starts, so a rate change mid-period is a new row, never an edit of an old one:

    jurisdiction,name,tax_type,rate_type,rate_percent,effective_from,source,checked_on
    EE,Estonia,vat,standard,22,2024-01-01,https://…,2026-12-01
    EE,Estonia,vat,standard,24,2025-07-01,https://…,2026-12-01

Percentages are decimal strings with at most four decimals ("25.5", "6.875") and become integer parts per
million exactly; no float is involved.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from domain.tax.model import PPM_PER_WHOLE, NoRateKnown

COLUMNS = ("jurisdiction", "name", "tax_type", "rate_type", "rate_percent", "effective_from", "source", "checked_on")
STANDARD = "standard"

_PERCENT = re.compile(r"([0-9]{1,3})(?:\.([0-9]{1,4}))?")
_PPM_PER_PERCENT = PPM_PER_WHOLE // 100


def percent_to_ppm(text: str) -> int:
    """ "25.5" → 255_000, "6.875" → 68_750; refuses what a ppm cannot hold exactly, and anything outside 0..100."""
    match = _PERCENT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a percentage like '19' or '25.5' (at most four decimals)")
    whole, fraction = match.group(1), match.group(2) or ""
    ppm = int(whole) * _PPM_PER_PERCENT + int(fraction.ljust(4, "0"))
    if ppm > PPM_PER_WHOLE:
        raise ValueError(f"{text!r} is above 100 %")
    return ppm


@dataclass(frozen=True, slots=True)
class Rate:
    jurisdiction: str
    name: str
    tax_type: str
    rate_type: str
    rate_ppm: int
    effective_from: date
    source: str
    checked_on: date


def parse_rates_csv(text: str) -> list[Rate]:
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"rate table columns must be {', '.join(COLUMNS)}; got {reader.fieldnames}")
    rates = []
    for number, row in enumerate(reader, start=2):
        try:
            if not row["source"].startswith("https://"):
                raise ValueError("every row names its source (an https:// address)")
            rates.append(Rate(
                jurisdiction=row["jurisdiction"], name=row["name"], tax_type=row["tax_type"],
                rate_type=row["rate_type"], rate_ppm=percent_to_ppm(row["rate_percent"]),
                effective_from=date.fromisoformat(row["effective_from"]), source=row["source"],
                checked_on=date.fromisoformat(row["checked_on"]),
            ))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"rate table line {number}: {exc}") from exc
    return rates


class RateTable:
    """Rates by (jurisdiction, rate type), each history in date order."""

    def __init__(self, rates: Iterable[Rate]) -> None:
        histories: dict[tuple[str, str], list[Rate]] = {}
        for rate in rates:
            histories.setdefault((rate.jurisdiction, rate.rate_type), []).append(rate)
        self._histories: dict[tuple[str, str], tuple[Rate, ...]] = {}
        self._starts: dict[tuple[str, str], list[date]] = {}
        # A jurisdiction's display name, from its first history: looked up on every tax decision of a batch.
        self._names: dict[str, str] = {}
        for key, history in histories.items():
            history.sort(key=lambda r: r.effective_from)
            starts = [r.effective_from for r in history]
            if len(set(starts)) != len(starts):
                raise ValueError(f"{key[0]} has two {key[1]} rates starting on the same day")
            if len({(r.name, r.tax_type) for r in history}) != 1:
                raise ValueError(f"{key[0]} changes name or tax type between rows")
            self._histories[key] = tuple(history)
            self._starts[key] = starts
            self._names.setdefault(key[0], history[0].name)

    @classmethod
    def from_csv(cls, *texts: str) -> RateTable:
        return cls(rate for text in texts for rate in parse_rates_csv(text))

    def __contains__(self, jurisdiction: object) -> bool:
        return isinstance(jurisdiction, str) and jurisdiction in self._names

    def jurisdictions(self) -> frozenset[str]:
        return frozenset(self._names)

    def history(self, jurisdiction: str, rate_type: str = STANDARD) -> tuple[Rate, ...]:
        return self._histories.get((jurisdiction, rate_type), ())

    def name_of(self, jurisdiction: str) -> str:
        return self._names.get(jurisdiction, jurisdiction)

    def rate_on(self, jurisdiction: str, day: date, rate_type: str = STANDARD) -> Rate:
        """The rate in force on `day`: the last row that started on or before it."""
        key = (jurisdiction, rate_type)
        starts = self._starts.get(key)
        if not starts:
            raise NoRateKnown(f"no {rate_type} rate is known for {jurisdiction}")
        index = bisect.bisect_right(starts, day) - 1
        if index < 0:
            raise NoRateKnown(f"no {rate_type} rate is known for {jurisdiction} before {starts[0].isoformat()}")
        return self._histories[key][index]
