"""The quarterly fraud-score bias report: score distributions and outcomes per segment, fleet-wide.

`paysaga.risk_bias_report(from, to)` (migration 20261121000006, owner-run, aggregates only) does the counting;
this module picks the quarter, shapes a JSON-able report, compares every segment with the fleet baseline,
renders a plain-text table for the CLI, and stores the report in `paysaga.risk_reports` (one per quarter; a
re-run replaces it, so the quarterly Schedule and a manual run never pile up duplicates).

The report body is a pure function of the payments in the quarter: running it twice over the same data gives
the same body (the time it was generated lives in the row, not in the body).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.errors import INVALID_REQUEST

REPORT_VERSION = 1
SEGMENT_TYPES = ("country", "currency", "card_brand", "card_country")
# A segment smaller than this is reported but marked low_sample and never raised as a finding: a share over a
# handful of payments says nothing, and small cells are where aggregates come closest to individual payments.
MIN_SAMPLE = 30
# A segment whose flag rate is this many times the fleet's (or 1/this) is listed under "findings" (the
# four-fifths rule of disparate-impact testing, read in both directions).
DISPARITY_RATIO = 1.25

_QUARTER_RE = re.compile(r"([0-9]{4})Q([1-4])")


def quarter_bounds(quarter: str) -> tuple[datetime, datetime]:
    """``"2026Q4"`` → (2026-10-01T00:00Z, 2027-01-01T00:00Z): a half-open UTC interval. Bad input → ValueError."""
    match = _QUARTER_RE.fullmatch(quarter) if isinstance(quarter, str) else None
    if match is None:
        raise ValueError(f"quarter must look like 2026Q4, got {quarter!r}")
    year, q = int(match.group(1)), int(match.group(2))
    if not 1970 <= year <= 9998:
        raise ValueError(f"quarter year out of range: {quarter!r}")
    start = datetime(year, 3 * (q - 1) + 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=UTC)
    return start, end


def quarter_of(day: date) -> str:
    """The quarter a date (or a UTC datetime) falls in: 2026-11-21 → ``"2026Q4"``."""
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def previous_quarter(today: date) -> str:
    """The last complete quarter before ``today``: what the quarterly Schedule reports on (2027-01-01 → 2026Q4)."""
    q = (today.month - 1) // 3 + 1
    return f"{today.year - 1}Q4" if q == 1 else f"{today.year}Q{q - 1}"


def _num(value: Decimal | int | None) -> float | int | None:
    if value is None or isinstance(value, int):
        return value
    return float(value)


def _segment(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "segment": row["segment"],
        "n": row["n"],
        "scored": row["scored"],
        "mean_score": _num(row["mean_score"]),
        "p50_score": row["p50_score"],
        "p90_score": row["p90_score"],
        "share_flagged": _num(row["share_flagged"]),
        "share_review": _num(row["share_review"]),
        "share_completed": _num(row["share_completed"]),
        "share_failed": _num(row["share_failed"]),
    }


def _ratio(share: float | None, baseline: float | None) -> float | None:
    if share is None or not baseline:
        return None
    return round(share / baseline, 4)


def shape_report(quarter: str, rows: list[asyncpg.Record] | list[dict[str, Any]]) -> dict[str, Any]:
    """The report body from the rows of ``paysaga.risk_bias_report`` (pure; JSON-able)."""
    start, end = quarter_bounds(quarter)
    overall = {"segment": "all", "n": 0, "scored": 0, "mean_score": None, "p50_score": None, "p90_score": None,
               "share_flagged": None, "share_review": None, "share_completed": None, "share_failed": None}
    segments: dict[str, list[dict[str, Any]]] = {t: [] for t in SEGMENT_TYPES}
    for row in rows:
        if row["segment_type"] == "all":
            overall = _segment(row)
        elif row["segment_type"] in segments:
            segments[row["segment_type"]].append(_segment(row))
    findings = []
    for segment_type in SEGMENT_TYPES:
        for seg in segments[segment_type]:
            seg["flag_rate_ratio"] = _ratio(seg["share_flagged"], overall["share_flagged"])
            seg["low_sample"] = seg["scored"] < MIN_SAMPLE
            ratio = seg["flag_rate_ratio"]
            if ratio is not None and not seg["low_sample"] and (
                    ratio >= DISPARITY_RATIO or ratio <= 1 / DISPARITY_RATIO):
                findings.append({"segment_type": segment_type, "segment": seg["segment"], "scored": seg["scored"],
                                 "share_flagged": seg["share_flagged"], "flag_rate_ratio": ratio})
    findings.sort(key=lambda f: (-abs(f["flag_rate_ratio"] - 1), f["segment_type"], f["segment"]))
    return {
        "report": "fraud_score_bias",
        "version": REPORT_VERSION,
        "quarter": quarter,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "min_sample": MIN_SAMPLE,
        "disparity_ratio": DISPARITY_RATIO,
        "overall": overall,
        "segments": segments,
        "findings": findings,
    }


async def build_bias_report(pool: asyncpg.Pool, quarter: str) -> dict[str, Any]:
    """Run the aggregate for ``quarter`` (any role with EXECUTE on the function: no tenant is set or needed)."""
    start, end = quarter_bounds(quarter)
    rows = await pool.fetch("SELECT * FROM paysaga.risk_bias_report($1, $2)", start, end)
    return shape_report(quarter, rows)


async def store_report(pool: asyncpg.Pool, report: dict[str, Any]) -> tuple[str, datetime]:
    """Upsert the report for its quarter (idempotent); returns (report_id, generated_at)."""
    row = await pool.fetchrow(
        """INSERT INTO paysaga.risk_reports (quarter, body) VALUES ($1, $2)
           ON CONFLICT (quarter) DO UPDATE SET generated_at = now(), body = EXCLUDED.body
           RETURNING report_id::text, generated_at""",
        report["quarter"], report,
    )
    return row["report_id"], row["generated_at"]


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "share":
        return f"{value * 100:.1f}%"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "score":
        return f"{value:.1f}" if isinstance(value, float) else str(value)
    return str(value)


_COLUMNS = (("segment", "text", "segment"), ("n", "int", "n"), ("scored", "int", "scored"),
            ("mean", "score", "mean_score"), ("p50", "score", "p50_score"), ("p90", "score", "p90_score"),
            ("flagged", "share", "share_flagged"), ("review", "share", "share_review"),
            ("completed", "share", "share_completed"), ("failed", "share", "share_failed"),
            ("vs all", "ratio", "flag_rate_ratio"))


def render_table(report: dict[str, Any]) -> str:
    """A plain-text table for the CLI; ``*`` marks segments below the minimum sample."""
    lines = [f"Fraud-score bias report {report['quarter']}  [{report['from']} .. {report['to']})",
             "flagged = require_3ds or review, over scored payments; completed/failed over all payments", ""]
    header = ["type", *(name for name, _, _ in _COLUMNS)]
    table: list[list[str]] = [header]
    overall = {**report["overall"], "flag_rate_ratio": 1.0 if report["overall"]["share_flagged"] else None}
    table.append(["all", *(_fmt(overall.get(key), kind) for _, kind, key in _COLUMNS)])
    for segment_type in SEGMENT_TYPES:
        for seg in report["segments"].get(segment_type, []):
            cells = [_fmt(seg.get(key), kind) for _, kind, key in _COLUMNS]
            if seg.get("low_sample"):
                cells[0] += " *"
            table.append([segment_type, *cells])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    lines.append("")
    lines.append(f"* fewer than {report['min_sample']} scored payments: shown, never a finding")
    if report["findings"]:
        lines.append(f"Findings (flag rate at least {report['disparity_ratio']}x or at most "
                     f"1/{report['disparity_ratio']} of the fleet's):")
        for f in report["findings"]:
            lines.append(f"  {f['segment_type']}={f['segment']}: flagged {_fmt(f['share_flagged'], 'share')} "
                         f"({_fmt(f['flag_rate_ratio'], 'ratio')} the fleet rate, {f['scored']} scored)")
    else:
        lines.append("Findings: none")
    return "\n".join(lines) + "\n"


class RiskReportActivities:
    """The activity the quarterly Schedule's workflow runs (``previous_quarter(workflow.now().date())``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def generate_bias_report(self, quarter: str) -> dict[str, Any]:
        try:
            quarter_bounds(quarter)
        except ValueError as exc:
            raise ApplicationError(str(exc), type=INVALID_REQUEST, non_retryable=True) from exc
        report = await build_bias_report(self._pool, quarter)
        report_id, generated_at = await store_report(self._pool, report)
        activity.logger.info("risk bias report stored", extra={"quarter": quarter, "report_id": report_id,
                                                                "generated_at": generated_at.isoformat()})
        return report
