"""The provider's settlement file: Stripe's itemized payout reconciliation report (``payout_reconciliation.
itemized.5``; the itemized balance change report has the same columns) read into ``domain.settlement``'s
``SettlementLine`` and written back.

The CSV has a header row naming its columns, in any order and any subset of Stripe's; unknown columns are
ignored. Read here:

    balance_transaction_id, created_utc (or created), available_on_utc (or available_on), currency, gross, fee,
    net, reporting_category, source_id                                                    required
    customer_facing_amount, customer_facing_currency, description, automatic_payout_id,
    automatic_payout_effective_at_utc (or …_at), charge_id, payment_intent_id, connected_account_id   optional

Amounts are decimals in major units of ``currency`` ("12.34", "-0.30", JPY "1200"; trailing zeros past the
currency's decimals are accepted, other extra digits are not). Instants are "YYYY-MM-DD HH:MM:SS" (or ISO 8601);
the ``_utc`` columns are UTC, the plain ones are in the report's requested time zone (``tz``, UTC by default).
Currencies are lower-case in the file and upper-case here. A malformed row raises ``SettlementReportError``
naming its line; nothing is skipped silently.

``write_settlement_report(lines, out)`` writes ``COLUMNS`` (the ``_utc`` forms), so a file written here reads back
to the same lines.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, tzinfo
from typing import TextIO

from domain.money import Money, MoneyError, get_currency
from domain.settlement import SettlementLine

REQUIRED = ("balance_transaction_id", "currency", "gross", "fee", "net", "reporting_category", "source_id")
COLUMNS = ("automatic_payout_id", "automatic_payout_effective_at_utc", "balance_transaction_id", "created_utc",
           "available_on_utc", "currency", "gross", "fee", "net", "reporting_category", "source_id", "description",
           "customer_facing_amount", "customer_facing_currency", "charge_id", "payment_intent_id",
           "connected_account_id")
_TRAILING_ZEROS = re.compile(r"(-?[0-9]+)\.([0-9]*?)0+")


class SettlementReportError(ValueError):
    pass


def _amount(text: str, currency: str) -> Money:
    text = text.strip()
    exponent = get_currency(currency).exponent
    match = _TRAILING_ZEROS.fullmatch(text)
    if match and len(text.split(".")[1]) > exponent:  # "1200.00" for JPY: zeros carry no value
        whole, kept = match.groups()
        text = f"{whole}.{kept}" if kept else whole
    return Money.parse(text, currency)


def _instant(text: str, zone: tzinfo) -> datetime:
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _first(row: Mapping[str, str | None], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = row.get(name)
        if value is not None and value.strip():
            return name, value
    return None


def _when(row: Mapping[str, str | None], column: str, zone: tzinfo) -> datetime | None:
    found = _first(row, f"{column}_utc", column)
    if found is None:
        return None
    name, value = found
    return _instant(value, UTC if name.endswith("_utc") else zone)


def _optional(row: Mapping[str, str | None], name: str) -> str | None:
    value = (row.get(name) or "").strip()
    return value or None


def _line(row: Mapping[str, str | None], zone: tzinfo) -> SettlementLine:
    missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
    created, available = _when(row, "created", zone), _when(row, "available_on", zone)
    if created is None:
        missing.append("created_utc")
    if available is None:
        missing.append("available_on_utc")
    if missing or created is None or available is None:
        raise SettlementReportError(f"missing {', '.join(missing)}")
    currency = get_currency(str(row["currency"]).strip()).code
    facing_amount = _optional(row, "customer_facing_amount")
    facing_currency = _optional(row, "customer_facing_currency")
    if (facing_amount is None) != (facing_currency is None):
        raise SettlementReportError("customer_facing_amount and customer_facing_currency go together")
    return SettlementLine(
        balance_transaction_id=str(row["balance_transaction_id"]).strip(),
        created=created,
        available_on=available.date(),
        gross=_amount(str(row["gross"]), currency),
        fee=_amount(str(row["fee"]), currency),
        net=_amount(str(row["net"]), currency),
        reporting_category=str(row["reporting_category"]).strip(),
        source_id=str(row["source_id"]).strip(),
        customer_facing_amount=(_amount(facing_amount, get_currency(facing_currency).code)
                                if facing_amount and facing_currency else None),
        description=(row.get("description") or "").strip(),
        automatic_payout_id=_optional(row, "automatic_payout_id"),
        automatic_payout_effective_at=_when(row, "automatic_payout_effective_at", zone),
        charge_id=_optional(row, "charge_id"),
        payment_intent_id=_optional(row, "payment_intent_id"),
        connected_account_id=_optional(row, "connected_account_id"),
    )


def parse_settlement_report(source: TextIO | str, *, tz: tzinfo = UTC) -> list[SettlementLine]:
    """Every line of a settlement report (a stream opened with newline="", or the file's text)."""
    lines = source.splitlines(keepends=True) if isinstance(source, str) else source
    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        return []
    absent = [c for c in REQUIRED if c not in reader.fieldnames]
    if absent:
        raise SettlementReportError(f"the report has no {', '.join(absent)} column")
    parsed = []
    for row in reader:
        try:
            parsed.append(_line(row, tz))
        except (MoneyError, ValueError) as error:
            raise SettlementReportError(f"line {reader.line_num}: {error}") from error
    return parsed


def _text(value: Money | None) -> str:
    return value.to_decimal_string() if value is not None else ""


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _day(value: date) -> str:
    return f"{value.isoformat()} 00:00:00"


def write_settlement_report(lines: Iterable[SettlementLine], out: TextIO) -> None:
    """Write ``lines`` in the report's shape (``COLUMNS``) to ``out`` (open it with newline="")."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in lines:
        facing = line.customer_facing_amount
        writer.writerow({
            "automatic_payout_id": line.automatic_payout_id or "",
            "automatic_payout_effective_at_utc": _stamp(line.automatic_payout_effective_at),
            "balance_transaction_id": line.balance_transaction_id,
            "created_utc": _stamp(line.created),
            "available_on_utc": _day(line.available_on),
            "currency": line.currency.lower(),
            "gross": _text(line.gross), "fee": _text(line.fee), "net": _text(line.net),
            "reporting_category": line.reporting_category,
            "source_id": line.source_id,
            "description": line.description,
            "customer_facing_amount": _text(facing),
            "customer_facing_currency": facing.currency.lower() if facing else "",
            "charge_id": line.charge_id or "",
            "payment_intent_id": line.payment_intent_id or "",
            "connected_account_id": line.connected_account_id or "",
        })
