"""Field types every aggregate's requests share, validated where requests enter."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
ProviderToken = Annotated[str, StringConstraints(pattern=r"^(pm|tok|card|src)_[A-Za-z0-9_]{1,200}$")]
Metadata = Annotated[dict[Annotated[str, StringConstraints(max_length=40)],
                          Annotated[str, StringConstraints(max_length=500)]], Field(max_length=50)]
# A decimal string in the currency's major unit ("12.34"): JSON numbers would lose precision on the way.
DecimalAmount = Annotated[str, StringConstraints(max_length=32)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]


def _iso_day(value: object) -> object:
    """A calendar day as "2026-12-01" and nothing else: lax parsing would take the number 0 for 1970-01-01."""
    if isinstance(value, date) or (isinstance(value, str) and len(value) == 10 and value[4] == value[7] == "-"):
        return value
    raise ValueError("a date is written YYYY-MM-DD")


Day = Annotated[date, BeforeValidator(_iso_day)]

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})")


def _instant(value: object) -> object:
    """An instant as RFC 3339 with an offset and whole seconds ("2026-12-01T00:00:00Z"), in UTC from then on:
    billing instants are whole seconds, as a card processor's timestamps are; a number or a naive time is refused."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("an instant is written like 2026-12-01T00:00:00Z (RFC 3339, whole seconds, an offset)")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not 1970 <= parsed.year <= 9000:
        raise ValueError("an instant between the years 1970 and 9000")
    return parsed.astimezone(UTC)


Instant = Annotated[datetime, BeforeValidator(_instant)]


class Body(BaseModel):
    """A request body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
