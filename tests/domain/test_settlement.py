"""Settlement reconciliation: a clean week reconciles to zero variance whatever happened in it; each kind of
discrepancy injected into a week is found exactly once, with the records and lines behind it; in-flight records
are explained, not counted; the variance ratio is exact and checked against 0.01 %."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fx import FxRate
from domain.money import Money
from domain.settlement import (
    VARIANCE_THRESHOLD,
    DiscrepancyKind,
    InternalRecord,
    Reconciliation,
    RecordKind,
    SettlementLine,
    SettlementWindow,
    reconcile,
)
from tests.settlement_week import ACTIVITIES, START, WINDOW, Activity, Week, build, fixed_week, with_line

K = DiscrepancyKind


def run(week: Week, **options: object) -> Reconciliation:
    return reconcile(week.records, week.lines, currency="USD", window=WINDOW, **options)  # type: ignore[arg-type]


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def test_the_fixed_week_is_clean() -> None:
    week = fixed_week()
    result = run(week)
    assert result.discrepancies == () and result.unexplained.is_zero()
    assert result.variance_ratio == 0 and result.variance_ppm == 0 and not result.exceeds()
    assert len(result.matched) == len({r.key for r in week.records}) == 16
    assert result.volume == sum((abs(line.gross) for line in week.lines), usd("0"))


@settings(max_examples=150)
@given(st.lists(ACTIVITIES, max_size=40))
def test_any_clean_week_reconciles_to_zero_variance(activities: list) -> None:
    week = build(activities)
    result = run(week)
    assert result.discrepancies == ()
    assert result.variance_ratio == 0 and not result.exceeds()
    assert sum(len(records) for records, _ in result.matched) == len(week.records)
    assert sum(len(lines) for _, lines in result.matched) == len(week.lines)


def test_a_conversion_that_rounds_to_nothing_still_reconciles_on_what_the_customer_saw() -> None:
    week = build([Activity("charge", "INR", 100_000, 0, False), Activity("refund", "INR", 1, 1, False)])
    refund = next(line for line in week.lines if line.reporting_category == "refund")
    assert refund.gross.is_zero() and refund.customer_facing_amount == Money.parse("-0.02", "INR")
    assert run(week).discrepancies == ()
    booked_more = [replace(r, amount=r.amount + Money.parse("0.01", "INR")) if r.kind is RecordKind.REFUND else r
                   for r in week.records]
    only(run(Week(booked_more, week.lines)), K.AMOUNT)


def only(result: Reconciliation, kind: DiscrepancyKind) -> None:
    assert [d.kind for d in result.discrepancies] == [kind], result.discrepancies


def test_a_line_we_have_no_record_of_is_missing_internal() -> None:
    week = fixed_week()
    dropped = next(r for r in week.records if r.provider_id.startswith("ch_") and r.amount.currency == "GBP")
    result = run(Week([r for r in week.records if r is not dropped], week.lines))
    only(result, K.MISSING_INTERNAL)
    (d,) = result.discrepancies
    assert d.records == () and [line.source_id for line in d.lines] == [dropped.provider_id]
    assert d.variance == abs(d.lines[0].gross) == result.unexplained and result.exceeds()


def test_a_record_the_provider_never_settled_is_missing_at_provider_valued_at_our_rate_or_theirs() -> None:
    week = fixed_week()
    refund = next(r for r in week.records if r.kind is RecordKind.REFUND and r.amount.currency == "AED")
    assert refund.settled is None  # nothing booked as settled: it takes a rate to value it
    lines = [line for line in week.lines if line.source_id != refund.provider_id]
    with pytest.raises(ValueError, match="AED/USD rate"):
        run(Week(week.records, lines))
    rate = FxRate.of("AED", "USD", "0.2723", START.date(), "ECB via the peg")
    result = run(Week(week.records, lines), rates={"AED": rate})
    only(result, K.MISSING_AT_PROVIDER)
    (d,) = result.discrepancies
    assert d.records == (refund,) and d.lines == ()
    assert d.expected == -usd("27.23") and d.variance == usd("27.23")  # 100.00 AED at 0.2723, going out
    assert result.volume == sum((abs(line.gross) for line in lines), usd("0")) + usd("27.23")


def test_a_gross_that_differs_by_a_cent_is_an_amount_discrepancy() -> None:
    week = fixed_week()
    charge = next(line for line in week.lines if line.reporting_category == "charge" and
                  line.presentment_currency == "EUR")
    off = with_line(week, charge.source_id, gross=charge.gross + usd("0.01"), net=charge.net + usd("0.01"))
    result = run(off)
    only(result, K.AMOUNT)
    (d,) = result.discrepancies
    assert d.expected == charge.gross and d.actual == charge.gross + usd("0.01") and d.variance == usd("0.01")
    assert [r.provider_id for r in d.records] == [charge.source_id]


def test_a_customer_facing_amount_that_differs_is_an_amount_discrepancy_even_when_settled_matches() -> None:
    week = fixed_week()
    charge = next(r for r in week.records if r.kind is RecordKind.PAYMENT and r.settled is not None and
                  r.amount.currency == "EUR")
    line = next(x for x in week.lines if x.source_id == charge.provider_id)
    assert line.customer_facing_amount is not None
    result = run(with_line(week, charge.provider_id,
                           customer_facing_amount=line.customer_facing_amount + Money.parse("1.00", "EUR")))
    only(result, K.AMOUNT)
    assert "customer-facing" in result.discrepancies[0].detail and result.unexplained.is_positive()


def test_a_record_in_another_currency_than_the_provider_charged_is_a_currency_discrepancy() -> None:
    week = fixed_week()
    record = next(r for r in week.records if r.kind is RecordKind.PAYMENT and r.amount.currency == "EUR")
    changed = replace(record, amount=Money(record.amount.micros, "GBP"))
    result = run(Week([changed if r is record else r for r in week.records], week.lines))
    only(result, K.CURRENCY)
    (d,) = result.discrepancies
    assert d.records == (changed,) and "GBP" in d.detail and "EUR" in d.detail
    assert d.variance == abs(d.lines[0].gross)


def test_a_fee_that_differs_is_a_fee_discrepancy_and_nothing_else() -> None:
    week = fixed_week()
    charge = next(line for line in week.lines if line.reporting_category == "charge")
    result = run(with_line(week, charge.source_id, fee=charge.fee + usd("0.02"), net=charge.net - usd("0.02")))
    only(result, K.FEE)
    (d,) = result.discrepancies
    assert (d.expected, d.actual, d.variance) == (charge.fee, charge.fee + usd("0.02"), usd("0.02"))


def test_a_record_created_near_the_windows_end_is_in_flight_explained_and_carried_to_the_next_run() -> None:
    week = fixed_week()
    late = InternalRecord(RecordKind.PAYMENT, "pay_late", "ch_late", usd("42.00"), WINDOW.end - timedelta(hours=3),
                          usd("1.52"))
    result = run(Week([*week.records, late], week.lines))
    only(result, K.TIMING)
    assert result.discrepancies[0].explained and result.unexplained.is_zero() and result.variance_ratio == 0
    assert result.in_flight == (late,)
    # next week: it arrived, and matches; or it never did, and is now missing at the provider
    nxt = SettlementWindow(WINDOW.end, WINDOW.end + timedelta(days=7))
    arrived = SettlementLine("txn_late", WINDOW.end + timedelta(hours=1), (WINDOW.end + timedelta(days=2)).date(),
                             usd("42.00"), usd("1.52"), usd("40.48"), "charge", "ch_late")
    assert reconcile(result.in_flight, [arrived], currency="USD", window=nxt).discrepancies == ()
    never = reconcile(result.in_flight, [], currency="USD", window=nxt)
    only(never, K.MISSING_AT_PROVIDER)
    # a narrower in-flight window makes the same record a variance now
    only(run(Week([*week.records, late], week.lines), in_flight=timedelta(hours=1)), K.MISSING_AT_PROVIDER)


def test_every_kind_injected_into_one_week_is_found_exactly_once() -> None:
    week = fixed_week()
    by_source = {line.source_id: line for line in week.lines}
    records = list(week.records)
    # missing_internal: our record of the USD charge is gone
    missing_internal = next(r for r in records if r.kind is RecordKind.PAYMENT and r.amount.currency == "USD")
    records.remove(missing_internal)
    # missing_at_provider: the provider never settled the transfer
    transfer = next(r for r in records if r.kind is RecordKind.TRANSFER)
    lines = [line for line in week.lines if line.source_id != transfer.provider_id]
    # amount: the INR charge landed 0.05 short
    inr = next(r for r in records if r.kind is RecordKind.PAYMENT and r.amount.currency == "INR")
    # fee: the provider charged 0.01 more on the JPY charge
    jpy = next(r for r in records if r.kind is RecordKind.PAYMENT and r.amount.currency == "JPY")
    # currency: the AED charge was booked as EUR
    aed = next(r for r in records if r.kind is RecordKind.PAYMENT and r.amount.currency == "AED")
    records[records.index(aed)] = replace(aed, amount=Money(aed.amount.micros, "EUR"))
    changed = []
    for line in lines:
        if line.source_id == inr.provider_id:
            line = replace(line, gross=line.gross - usd("0.05"), net=line.net - usd("0.05"))
        elif line.source_id == jpy.provider_id and line.reporting_category == "charge":
            line = replace(line, fee=line.fee + usd("0.01"), net=line.net - usd("0.01"))
        changed.append(line)
    # timing: a refund created an hour before the end
    late = InternalRecord(RecordKind.REFUND, "ref_late", "re_late", usd("3.00"), WINDOW.end - timedelta(hours=1))
    result = run(Week([*records, late], changed))
    kinds = sorted(d.kind.value for d in result.discrepancies)
    assert kinds == sorted(k.value for k in DiscrepancyKind)
    keys = {d.kind: d.key for d in result.discrepancies}
    assert keys == {K.MISSING_INTERNAL: f"charge {missing_internal.provider_id}",
                    K.MISSING_AT_PROVIDER: f"transfer {transfer.provider_id}", K.AMOUNT: f"charge {inr.provider_id}",
                    K.FEE: f"charge {jpy.provider_id}", K.CURRENCY: f"charge {aed.provider_id}",
                    K.TIMING: "refund re_late"}
    variances = {d.kind: d.variance for d in result.discrepancies}
    assert variances[K.AMOUNT] == usd("0.05") and variances[K.FEE] == usd("0.01")
    assert variances[K.MISSING_INTERNAL] == by_source[missing_internal.provider_id].gross
    assert variances[K.MISSING_AT_PROVIDER] == transfer.amount and variances[K.TIMING].is_zero()
    assert variances[K.CURRENCY] == by_source[aed.provider_id].gross
    assert result.unexplained == sum((v for k, v in variances.items() if k is not K.TIMING), usd("0"))
    assert result.variance_ratio == Fraction(result.unexplained.micros, result.volume.micros)


def test_duplicated_records_do_not_match_silently() -> None:
    week = fixed_week()
    twice = next(r for r in week.records if r.kind is RecordKind.PAYMENT and r.amount.currency == "USD")
    result = run(Week([*week.records, replace(twice, record_id="pay_dup")], week.lines))
    assert [d.kind for d in result.discrepancies] == [K.AMOUNT, K.FEE]  # the amount and its fee, both twice
    assert all(len(d.records) == 2 for d in result.discrepancies)


def test_a_payout_reconciles_against_the_lines_it_paid() -> None:
    week = fixed_week()
    paid = [replace(line, automatic_payout_id="po_week") for line in week.lines
            if line.reporting_category not in ("payout", "transfer")]
    total = sum((line.net for line in paid), usd("0"))
    payout = InternalRecord(RecordKind.PAYOUT, "payout_1", "po_week", total, START + timedelta(days=3))
    records = [r for r in week.records if r.kind not in (RecordKind.PAYOUT, RecordKind.TRANSFER)]
    assert run(Week([*records, payout], paid)).discrepancies == ()
    short = replace(payout, amount=total - usd("1.00"))
    result = run(Week([*records, short], paid))
    only(result, K.AMOUNT)
    assert result.discrepancies[0].variance == usd("1.00") and len(result.discrepancies[0].lines) == len(paid)


def test_the_variance_ratio_is_exact_and_the_threshold_is_0_01_percent() -> None:
    base = [SettlementLine("txn_big", START, START.date(), usd("999990.00"), usd("0"), usd("999990.00"), "charge",
                           "ch_big")]
    record = InternalRecord(RecordKind.PAYMENT, "pay_big", "ch_big", usd("999990.00"), START)
    stray = SettlementLine("txn_s", START, START.date(), usd("10.00"), usd("0"), usd("10.00"), "charge", "ch_s")
    result = reconcile([record], [*base, stray], currency="USD", window=WINDOW)
    assert result.volume == usd("1000000.00") and result.unexplained == usd("10.00")
    assert result.variance_ratio == Fraction(1, 100_000) and result.variance_ppm == 10 and not result.exceeds()
    at_threshold = replace(stray, gross=usd("100.00"), net=usd("100.00"))
    result = reconcile([replace(record, amount=usd("999900.00"))],
                       [replace(base[0], gross=usd("999900.00"), net=usd("999900.00")), at_threshold],
                       currency="USD", window=WINDOW)
    assert result.variance_ratio == VARIANCE_THRESHOLD == Fraction(1, 10_000) and result.exceeds()
    assert reconcile([], [], currency="USD", window=WINDOW).variance_ratio == 0


def test_lines_of_another_settlement_currency_are_refused() -> None:
    eur_line = SettlementLine("txn_e", START, START.date(), Money.parse("1.00", "EUR"), Money.parse("0", "EUR"),
                              Money.parse("1.00", "EUR"), "charge", "ch_e")
    with pytest.raises(ValueError, match="settles in EUR"):
        reconcile([], [eur_line], currency="USD", window=WINDOW)


def test_the_alert_rule_fires_at_the_objective() -> None:
    """deploy/prometheus/paysaga-alerts.yml alerts on the gauge at the same 0.01 % the reports flag."""
    rules = (Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "paysaga-alerts.yml").read_text()
    (threshold,) = re.findall(r"expr: paysaga_settlement_variance_ratio > ([0-9.]+)", rules)
    assert Fraction(threshold) == VARIANCE_THRESHOLD
