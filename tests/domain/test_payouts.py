"""Payouts: the balance of a connected account from its ledger lines, the reserve, the minimum, negative balances
carried forward, the weekly period, deterministic keys, transfer → in transit → paid (or failed, back to the
balance), and the run report as CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.connect import (
    ConnectedAccount,
    ConnectError,
    OnboardingStatus,
    PayoutInterval,
    PayoutMethod,
    PayoutSchedule,
    ReservePolicy,
    Reversed,
    SplitCharge,
    Weekday,
    split_charge_succeeded,
    split_dispute_funds_reinstated,
    split_dispute_funds_withdrawn,
    split_refund_succeeded,
)
from domain.fx import FxRate
from domain.ledger import JournalEntry, balances, totals_by_currency
from domain.money import Money
from domain.payouts import (
    REPORT_COLUMNS,
    BalanceItem,
    ItemKind,
    PayoutDecision,
    PayoutPeriod,
    balance_items,
    payout_failed,
    payout_key,
    payout_line,
    payout_lines,
    payout_paid,
    payout_period,
    transfer_created,
    transfer_key,
    write_report_csv,
)

MONDAY = date(2026, 12, 7)
METHOD = PayoutMethod("ba_1NqAbCdEfGhIjKlM", last4="6789")
ACCOUNT = ConnectedAccount("acct_1", "EUR", OnboardingStatus.ENABLED, PayoutSchedule(weekday=Weekday.MONDAY,
                                                                                     delay_days=7), METHOD)
PERIOD = payout_period(ACCOUNT.schedule, MONDAY)


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


class Book:
    """A seller's ledger history, as the payout run would read it back."""

    def __init__(self, account: ConnectedAccount = ACCOUNT) -> None:
        self.account = account
        self.entries: list[tuple[JournalEntry, date]] = []
        self.splits: dict[str, tuple[SplitCharge, Reversed]] = {}

    def post(self, e: JournalEntry, available_on: date) -> JournalEntry:
        self.entries.append((e, available_on))
        return e

    def charge(self, charge_id: str, amount: str, fee: str, charged_on: date, currency: str = "EUR") -> SplitCharge:
        split = SplitCharge(charge_id, self.account.account_id, Money.parse(amount, currency),
                            Money.parse(fee, currency))
        self.post(split_charge_succeeded(split, "stripe"), self.account.schedule.available_on(charged_on))
        self.splits[charge_id] = (split, Reversed.nothing(split))
        return split

    def refund(self, refund_id: str, charge_id: str, amount: str, on: date) -> None:
        split, before = self.splits[charge_id]
        e, back = split_refund_succeeded(refund_id, split, "stripe", Money.parse(amount, split.currency), before)
        self.post(e, on)
        self.splits[charge_id] = (split, before.plus(back))

    def dispute(self, dispute_id: str, charge_id: str, amount: str, on: date, won_on: date | None = None) -> None:
        split, before = self.splits[charge_id]
        e, back = split_dispute_funds_withdrawn(dispute_id, split, "stripe", Money.parse(amount, split.currency),
                                                before)
        self.post(e, on)
        self.splits[charge_id] = (split, before.plus(back))
        if won_on is not None:
            self.post(split_dispute_funds_reinstated(dispute_id, split, "stripe", back), won_on)
            self.splits[charge_id] = (split, before)

    def items(self) -> list[BalanceItem]:
        return [i for e, on in self.entries for i in balance_items(e, self.account.account_id, on)]

    def balances(self) -> dict[str, int]:
        return balances(line for e, _ in self.entries for line in e.lines)


def test_a_weekly_period_ends_on_the_schedules_weekday_and_a_late_run_pays_the_period_it_missed() -> None:
    assert PERIOD == PayoutPeriod(date(2026, 12, 1), MONDAY, 7)
    assert payout_period(ACCOUNT.schedule, MONDAY + timedelta(days=2)) == PERIOD  # the Wednesday after
    assert payout_period(ACCOUNT.schedule, MONDAY + timedelta(days=7)).start == MONDAY + timedelta(days=1)
    friday = PayoutSchedule(weekday=Weekday.FRIDAY, delay_days=2)
    p = payout_period(friday, MONDAY)
    assert (p.start, p.end, p.charged_from, p.charged_through) == (
        date(2026, 11, 28), date(2026, 12, 4), date(2026, 11, 26), date(2026, 12, 2))
    assert payout_period(PayoutSchedule(PayoutInterval.DAILY), MONDAY) == PayoutPeriod(MONDAY, MONDAY, 7)
    with pytest.raises(ConnectError):
        payout_period(PayoutSchedule(PayoutInterval.MANUAL), MONDAY)


def test_keys_are_deterministic_and_name_account_period_and_currency() -> None:
    assert transfer_key("acct_1", PERIOD, "eur") == "transfer:acct_1:2026-12-07:EUR"
    assert payout_key("acct_1", PERIOD, "EUR") == "payout:acct_1:2026-12-07:EUR"
    assert len({transfer_key("acct_1", PERIOD, "EUR"), transfer_key("acct_1", PERIOD, "USD"),
                transfer_key("acct_2", PERIOD, "EUR"),
                transfer_key("acct_1", payout_period(ACCOUNT.schedule, MONDAY + timedelta(7)), "EUR")}) == 4


def test_a_week_of_activity_pays_what_is_available_and_the_report_adds_up() -> None:
    book = Book()
    book.charge("pay_old", "50.00", "5.00", date(2026, 11, 20))  # available 11-27: before the period
    book.charge("pay_1", "100.00", "10.00", date(2026, 11, 25))  # available 12-02
    book.charge("pay_2", "200.00", "20.00", date(2026, 11, 27))  # available 12-04
    book.charge("pay_late", "80.00", "8.00", date(2026, 12, 3))  # available 12-10: pending
    book.refund("re_1", "pay_1", "40.00", date(2026, 12, 3))
    book.dispute("dp_1", "pay_2", "200.00", date(2026, 12, 5))
    book.dispute("dp_2", "pay_old", "10.00", date(2026, 12, 5), won_on=date(2026, 12, 6))
    line = payout_line(ACCOUNT, book.items(), PERIOD, "EUR")
    assert line.brought_forward == eur("45.00")
    # fees: 10 + 20 charged, 4 given back with the refund, 20 with the dispute (the won one nets to nothing)
    assert (line.gross, line.fees, line.refunds, line.disputes) == (eur("300.00"), eur("6.00"), eur("40.00"),
                                                                    eur("200.00"))
    assert line.balance == line.brought_forward + line.gross - line.fees - line.refunds - line.disputes + line.other
    assert line.balance == eur("99.00") and line.pending == eur("72.00")
    assert (line.decision, line.net, line.carried_forward) == (PayoutDecision.PAY, eur("99.00"), eur("0.00"))


def test_transfer_in_transit_paid_and_a_recomputed_period_gives_the_same_line() -> None:
    book = Book()
    book.charge("pay_1", "100.00", "10.00", date(2026, 11, 25))
    line = payout_line(ACCOUNT, book.items(), PERIOD, "EUR")
    transfer = book.post(transfer_created("acct_1", PERIOD, line.net), MONDAY)
    assert transfer.source_id == payout_key("acct_1", PERIOD, "EUR") and transfer.memo == transfer_key(
        "acct_1", PERIOD, "EUR")
    assert payout_line(ACCOUNT, book.items(), PERIOD, "EUR") == line  # a retried run pays nothing twice
    assert book.balances()["seller_payable:acct_1:EUR"] == 0
    assert book.balances()["payouts_in_transit:acct_1:EUR"] == -eur("90.00").micros
    book.post(payout_paid("acct_1", PERIOD, line.net, "stripe"), MONDAY + timedelta(1))
    after = book.balances()
    assert after["payouts_in_transit:acct_1:EUR"] == 0 and after["cash:stripe:EUR"] == eur("10.00").micros
    nxt = payout_period(ACCOUNT.schedule, MONDAY + timedelta(7))
    assert payout_line(ACCOUNT, book.items(), nxt, "EUR").decision is PayoutDecision.NOTHING


@pytest.mark.parametrize("after_paid", [False, True])
def test_a_failed_payout_puts_the_funds_back_in_the_balance_and_the_next_period_pays_them(after_paid: bool) -> None:
    book = Book()
    book.charge("pay_1", "100.00", "10.00", date(2026, 11, 25))
    net = payout_line(ACCOUNT, book.items(), PERIOD, "EUR").net
    transfer = book.post(transfer_created("acct_1", PERIOD, net), MONDAY)
    if after_paid:
        book.post(payout_paid("acct_1", PERIOD, net, "stripe"), MONDAY)
    failed = book.post(payout_failed("acct_1", PERIOD, net, "stripe", after_paid=after_paid), MONDAY + timedelta(2))
    assert failed.reverses == (None if after_paid else transfer.entry_id)
    after = book.balances()
    assert after["seller_payable:acct_1:EUR"] == -net.micros and after["payouts_in_transit:acct_1:EUR"] == 0
    assert after["cash:stripe:EUR"] == eur("100.00").micros
    nxt = payout_line(ACCOUNT, book.items(), payout_period(ACCOUNT.schedule, MONDAY + timedelta(7)), "EUR")
    assert (nxt.decision, nxt.net, nxt.other) == (PayoutDecision.PAY, net, eur("90.00"))


def test_a_negative_balance_is_carried_forward_never_paid_and_recovered_from_later_charges() -> None:
    book = Book()
    book.charge("pay_1", "100.00", "10.00", date(2026, 11, 16))
    book.post(transfer_created("acct_1", payout_period(ACCOUNT.schedule, date(2026, 11, 30)), eur("90.00")),
              date(2026, 11, 30))
    book.dispute("dp_1", "pay_1", "100.00", date(2026, 12, 2))  # after the payout: the seller owes 90.00
    line = payout_line(ACCOUNT, book.items(), PERIOD, "EUR")
    assert (line.decision, line.net, line.carried_forward) == (PayoutDecision.NEGATIVE, eur("0"), eur("-90.00"))
    book.charge("pay_2", "150.00", "15.00", date(2026, 12, 2))  # available 12-09
    nxt = payout_line(ACCOUNT, book.items(), payout_period(ACCOUNT.schedule, MONDAY + timedelta(7)), "EUR")
    assert (nxt.brought_forward, nxt.net) == (eur("-90.00"), eur("45.00"))


def test_the_minimum_and_onboarding_hold_a_payout_back_without_losing_it() -> None:
    book = Book()
    book.charge("pay_1", "10.00", "1.00", date(2026, 11, 25))
    small = ConnectedAccount("acct_1", "EUR", OnboardingStatus.ENABLED,
                             PayoutSchedule(delay_days=7, minimum=eur("25.00")), METHOD)
    line = payout_line(small, book.items(), PERIOD, "EUR")
    assert (line.decision, line.net, line.carried_forward) == (PayoutDecision.BELOW_MINIMUM, eur("0"), eur("9.00"))
    restricted = ConnectedAccount("acct_1", "EUR", OnboardingStatus.RESTRICTED, payout_method=METHOD)
    assert payout_line(restricted, book.items(), PERIOD, "EUR").decision is PayoutDecision.NOT_ENABLED
    in_usd = ConnectedAccount("acct_1", "USD", OnboardingStatus.ENABLED,
                              PayoutSchedule(delay_days=7, minimum=Money.parse("10.00", "USD")), METHOD)
    with pytest.raises(ConnectError):
        payout_line(in_usd, book.items(), PERIOD, "EUR")  # a minimum in USD needs a EUR/USD rate
    rate = FxRate.of("EUR", "USD", "1.1", MONDAY, "test")
    assert payout_line(in_usd, book.items(), PERIOD, "EUR", rate).decision is PayoutDecision.BELOW_MINIMUM
    assert payout_line(in_usd, book.items(), PERIOD, "EUR", FxRate.of("EUR", "USD", "1.2", MONDAY, "test")
                       ).decision is PayoutDecision.PAY  # 9.00 EUR = 10.80 USD


def test_a_rolling_and_a_fixed_reserve_are_held_back_and_released_by_time() -> None:
    reserved = ConnectedAccount("acct_1", "EUR", OnboardingStatus.ENABLED, PayoutSchedule(delay_days=7), METHOD,
                                ReservePolicy(basis_points=1000, hold_days=14, fixed=eur("5.00")))
    book = Book(reserved)
    book.charge("pay_old", "100.00", "0.00", date(2026, 11, 1))  # available 11-08: out of the 14 days
    book.charge("pay_1", "100.00", "10.00", date(2026, 11, 25))  # available 12-02: 10 % of 90.00 held
    line = payout_line(reserved, book.items(), PERIOD, "EUR")
    assert (line.balance, line.reserve, line.net, line.carried_forward) == (
        eur("190.00"), eur("14.00"), eur("176.00"), eur("14.00"))
    book.post(transfer_created("acct_1", PERIOD, line.net), MONDAY)
    three_weeks = payout_period(reserved.schedule, MONDAY + timedelta(21))
    assert payout_line(reserved, book.items(), three_weeks, "EUR").net == eur("9.00")  # only the fixed part stays


def test_each_currency_pays_on_its_own_and_the_fx_column_names_its_rate() -> None:
    usd_seller = ConnectedAccount("acct_1", "USD", OnboardingStatus.ENABLED, PayoutSchedule(delay_days=7), METHOD)
    book = Book(usd_seller)
    book.charge("pay_1", "100.00", "10.00", date(2026, 11, 25))
    book.charge("pay_2", "50.00", "5.00", date(2026, 11, 25), currency="USD")
    rate = FxRate.of("EUR", "USD", "1.0811", date(2026, 12, 4), "ECB euro reference rate of 2026-12-04")
    eur_line, usd_line = payout_lines(usd_seller, book.items(), PERIOD, {"EUR": rate})
    assert (eur_line.currency, eur_line.net, usd_line.currency, usd_line.net) == (
        "EUR", eur("90.00"), "USD", Money.parse("45.00", "USD"))
    assert eur_line.fx is not None and eur_line.fx.target == Money.parse("97.30", "USD") and usd_line.fx is None
    out = io.StringIO(newline="")
    write_report_csv([eur_line, usd_line], out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert {k: rows[0][k] for k in ("account_id", "currency", "payout_date", "gross", "fees", "net", "decision",
                                    "settlement_currency", "settlement_net", "fx_rate", "fx_as_of")} == {
        "account_id": "acct_1", "currency": "EUR", "payout_date": "2026-12-07", "gross": "100.00", "fees": "10.00",
        "net": "90.00", "decision": "pay", "settlement_currency": "USD", "settlement_net": "97.30",
        "fx_rate": "1.0811", "fx_as_of": "2026-12-04"}
    assert rows[1]["settlement_net"] == "" and rows[1]["net"] == "45.00"


def test_items_come_from_the_sellers_lines_only_and_keep_gross_and_fee() -> None:
    split = SplitCharge("pay_1", "acct_1", eur("100.00"), eur("12.50"))
    e = split_charge_succeeded(split, "stripe")
    (item,) = balance_items(e, "acct_1", MONDAY)
    assert (item.kind, item.amount, item.gross, item.fee) == (ItemKind.CHARGE, eur("87.50"), eur("100.00"),
                                                              eur("12.50"))
    assert balance_items(e, "acct_2", MONDAY) == []


OPS = st.lists(st.tuples(st.sampled_from(["charge", "refund", "dispute", "won"]), st.integers(1, 10**6),
                         st.integers(0, 13)), min_size=1, max_size=25)


@given(OPS, st.integers(0, 2000), st.integers(0, 20))
def test_any_history_pays_at_most_its_balance_and_the_ledger_agrees_with_the_report(
        ops: list[tuple[str, int, int]], reserve_bp: int, hold: int) -> None:
    account = ConnectedAccount("acct_1", "EUR", OnboardingStatus.ENABLED, PayoutSchedule(delay_days=3), METHOD,
                               ReservePolicy(basis_points=reserve_bp if hold else 0, hold_days=hold))
    book = Book(account)
    start = PERIOD.start - timedelta(days=7)
    for n, (op, cents, day) in enumerate(ops):
        on = start + timedelta(days=day)
        open_splits = [k for k, (s, r) in book.splits.items() if r.amount < s.amount]
        if op == "charge" or not open_splits:
            book.charge(f"pay_{n}", Money.from_minor_units(cents, "EUR").to_decimal_string(),
                        Money.from_minor_units(cents * reserve_bp // 10_000, "EUR").to_decimal_string(), on)
            continue
        split, before = book.splits[open_splits[cents % len(open_splits)]]
        left = (split.amount - before.amount).micros // 10_000
        amount = Money.from_minor_units(1 + cents % left, "EUR").to_decimal_string()
        if op == "refund":
            book.refund(f"re_{n}", split.charge_id, amount, on)
        else:
            book.dispute(f"dp_{n}", split.charge_id, amount, on, won_on=on + timedelta(1) if op == "won" else None)
    line = payout_line(account, book.items(), PERIOD, "EUR")
    zero = Money.zero("EUR")
    assert line.balance == line.brought_forward + line.gross - line.fees - line.refunds - line.disputes + line.other
    assert zero <= line.net and line.net + line.carried_forward == line.balance
    assert zero <= line.reserve <= max(line.balance, zero)
    assert line.net.micros % 10_000 == 0
    if line.net.is_positive():
        book.post(transfer_created("acct_1", PERIOD, line.net), PERIOD.end)
    for e, _ in book.entries:
        assert all(t == 0 for t in totals_by_currency(e.lines).values())
    owed = -book.balances().get("seller_payable:acct_1:EUR", 0)
    assert owed == line.carried_forward.micros + line.pending.micros
