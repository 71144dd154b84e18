"""JSON text for what paysaga writes to the database: orjson where it can, the standard library where it cannot.

orjson encodes the large payloads a batch writes (outbox messages with whole invoices, thousands of rows as one
`jsonb_to_recordset` argument) several times faster than `json`. It refuses what `json` accepts — integers
beyond 64 bits, keys that are not strings — and such a value is then encoded by `json`, so what can be written
never depends on which encoder ran. Dates and datetimes are ISO 8601 either way (`date.isoformat()`).

Decoding stays with `json`: orjson reads an integer beyond 64 bits as a float, which would silently change an
amount or an id a client stored in metadata.
"""

from __future__ import annotations

import json
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
