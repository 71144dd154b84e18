"""JSON text for what paysaga writes to the database: orjson where it can, the standard library where it cannot.

orjson encodes the large payloads a batch writes (outbox messages with whole invoices, thousands of rows as one
`jsonb_to_recordset` argument) several times faster than `json`. It refuses what `json` accepts — integers
beyond 64 bits, keys that are not strings — and such a value is then encoded by `json`, so what can be written
never depends on which encoder ran. Dates and datetimes are ISO 8601 either way (`date.isoformat()`).

Decoding is orjson's too, except for a text that may hold an integer beyond 64 bits (a run of 19 or more
digits): orjson reads such an integer as a float, which would silently change an amount or an id a client stored
in metadata, so that text is read by `json`, as is anything orjson refuses.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

import orjson


def _iso(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_iso, separators=(",", ":"))


# 19 digits may already be beyond a signed 64-bit integer (-9223372036854775809); orjson would read it as a float.
_MAYBE_BEYOND_64_BITS = re.compile(r"\d{19}")


def loads(text: str | bytes) -> Any:
    """JSON text as Python values, exactly as `json.loads` reads it."""
    if _MAYBE_BEYOND_64_BITS.search(text if isinstance(text, str) else text.decode()) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
