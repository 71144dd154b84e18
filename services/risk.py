"""The fraud score's bias report, on demand (a Schedule also stores it quarterly)."""

from __future__ import annotations

from typing import Any

import asyncpg

from activities.risk_report import build_bias_report, previous_quarter, render_table, store_report

__all__ = ["bias_report", "previous_quarter", "render_table"]


async def bias_report(pool: asyncpg.Pool, quarter: str, *, store: bool) -> dict[str, Any]:
    """Raises ValueError for a quarter that is not like 2026Q4."""
    report = await build_bias_report(pool, quarter)
    if store:
        await store_report(pool, report)
    return report
