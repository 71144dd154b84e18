"""Field types every aggregate's requests share, validated where requests enter."""

from __future__ import annotations

from datetime import date
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


class Body(BaseModel):
    """A request body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
