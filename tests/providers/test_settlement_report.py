"""The settlement file in the shape of Stripe's itemized payout reconciliation report: read exactly (any column
order, extra columns ignored, currencies' decimals respected), written back to the same lines, and a week that
went through the file still reconciles to zero."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.providers.settlement_report import (
    COLUMNS,
    SettlementReportError,
    parse_settlement_report,
    write_settlement_report,
)
from domain.money import Money
from domain.settlement import reconcile
from tests.settlement_week import ACTIVITIES, WINDOW, build, fixed_week

# Columns as Stripe orders them, with some this reader does not use.
SAMPLE = """\
automatic_payout_id,automatic_payout_effective_at,balance_transaction_id,created_utc,created,available_on_utc,\
available_on,currency,gross,fee,net,reporting_category,source_id,description,customer_facing_amount,\
customer_facing_currency,regulatory_tag,card_brand
po_1OaB,2026-12-04 00:00:00,txn_1OaC,2026-11-30 09:15:02,2026-11-30 10:15:02,2026-12-02 00:00:00,\
2026-12-02 01:00:00,usd,108.11,3.44,104.67,charge,ch_3OaD,Order 1042,100.00,eur,,visa
po_1OaB,2026-12-04 00:00:00,txn_1OaE,2026-12-01 12:00:00,2026-12-01 13:00:00,2026-12-03 00:00:00,\
2026-12-03 01:00:00,jpy,1200.00,0,1200,charge,ch_3OaF,,1200,jpy,,visa
,,txn_1OaG,2026-12-01 13:00:00,2026-12-01 14:00:00,2026-12-01 00:00:00,2026-12-01 01:00:00,usd,-25.00,0.00,\
-25.00,refund,re_3OaH,,-23.10,eur,,
"""


def test_a_report_in_stripes_shape_is_read_exactly() -> None:
    charge, yen, refund = parse_settlement_report(SAMPLE)
    assert (charge.balance_transaction_id, charge.source_id, charge.reporting_category) == (
        "txn_1OaC", "ch_3OaD", "charge")
    assert (charge.gross, charge.fee, charge.net) == (Money.parse("108.11", "USD"), Money.parse("3.44", "USD"),
                                                      Money.parse("104.67", "USD"))
    assert charge.customer_facing_amount == Money.parse("100.00", "EUR")
    assert charge.created == datetime(2026, 11, 30, 9, 15, 2, tzinfo=UTC) and charge.available_on == date(2026, 12, 2)
    assert charge.automatic_payout_id == "po_1OaB" and charge.description == "Order 1042"
    assert charge.automatic_payout_effective_at == datetime(2026, 12, 4, tzinfo=UTC)  # no _utc column: tz=UTC
    assert yen.gross == Money.parse("1200", "JPY")  # "1200.00": zeros past the yen's decimals carry nothing
    assert refund.gross == Money.parse("-25.00", "USD") and refund.customer_facing_amount == Money.parse(
        "-23.10", "EUR")
    assert refund.automatic_payout_id is None


def test_plain_time_columns_are_read_in_the_reports_time_zone() -> None:
    text = "balance_transaction_id,created,available_on,currency,gross,fee,net,reporting_category,source_id\n" \
           "txn_1,2026-12-01 01:30:00,2026-12-03 00:00:00,usd,1.00,0.00,1.00,charge,ch_1\n"
    (line,) = parse_settlement_report(text, tz=timezone(timedelta(hours=2)))
    assert line.created == datetime(2026, 11, 30, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(("change", "message"), [
    (("108.11", "108.111"), "line 2"),  # a tenth of a cent
    (("3.44", "3,44"), "line 2"),
    (("txn_1OaC", ""), "balance_transaction_id"),
    ((",usd,108.11", ",xyz,108.11"), "line 2"),
    (("100.00,eur", "100.00,"), "go together"),
])
def test_a_malformed_row_is_an_error_naming_its_line(change: tuple[str, str], message: str) -> None:
    with pytest.raises(SettlementReportError, match=message):
        parse_settlement_report(SAMPLE.replace(*change, 1))


def test_a_report_without_a_required_column_is_refused() -> None:
    with pytest.raises(SettlementReportError, match="no fee column"):
        parse_settlement_report("balance_transaction_id,currency,gross,net,reporting_category,source_id\n")
    assert parse_settlement_report("") == []


def _round_trip(lines: list) -> list:
    out = io.StringIO(newline="")
    write_settlement_report(lines, out)
    header = out.getvalue().splitlines()[0]
    assert header == ",".join(COLUMNS)
    return parse_settlement_report(io.StringIO(out.getvalue(), newline=""))


def test_a_written_report_reads_back_to_the_same_lines() -> None:
    lines = fixed_week().lines
    assert _round_trip(lines) == lines


@settings(max_examples=60)
@given(st.lists(ACTIVITIES, max_size=30))
def test_a_week_sent_through_the_file_still_reconciles_to_zero(activities: list) -> None:
    week = build(activities)
    lines = _round_trip(week.lines)
    assert lines == week.lines
    result = reconcile(week.records, lines, currency="USD", window=WINDOW)
    assert result.discrepancies == () and result.variance_ratio == 0
