"""New resource ids: a kind prefix and 96 random bits (`pay_…`, `cus_…`)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
