"""Connected accounts and split charges: fee + share = charge, refunds and disputes take back proportionally with
cumulative rounding, a full reversal returns fee and share to exactly zero, and every entry balances."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.connect import (
    Clawback,
    ConnectedAccount,
    ConnectError,
    OnboardingStatus,
    PayoutMethod,
    PayoutSchedule,
    ReservePolicy,
    Reversed,
    SplitCharge,
    Weekday,
    application_fee,
    clawback,
    split_charge_succeeded,
    split_dispute_funds_reinstated,
    split_dispute_funds_withdrawn,
    split_refund_succeeded,
)
from domain.ledger import balances, entry_id, payment_completed, totals_by_currency
from domain.money import Money, get_currency

CURRENCIES = st.sampled_from(["USD", "EUR", "GBP", "AED", "INR", "JPY", "KWD"])


def minor(units: int, currency: str) -> Money:
    return Money.from_minor_units(units, currency)


@st.composite
def splits(draw: st.DrawFn) -> SplitCharge:
    currency = draw(CURRENCIES)
    amount = draw(st.integers(min_value=1, max_value=10**9))
    fee = draw(st.integers(min_value=0, max_value=amount))
    return SplitCharge("pay_1", "acct_1", minor(amount, currency), minor(fee, currency))


def test_an_account_receives_payouts_only_once_enabled_with_a_method() -> None:
    method = PayoutMethod("ba_1NqAbCdEfGhIjKlM", last4="6789")
    assert not ConnectedAccount("acct_1", "eur", payout_method=method).payouts_enabled
    assert not ConnectedAccount("acct_1", "EUR", OnboardingStatus.ENABLED).payouts_enabled
    account = ConnectedAccount("acct_1", "eur", OnboardingStatus.ENABLED, payout_method=method)
    assert account.payouts_enabled and account.settlement_currency == "EUR"
    assert account.schedule == PayoutSchedule(weekday=Weekday.MONDAY, delay_days=7)  # weekly by default
    with pytest.raises(ConnectError):
        ConnectedAccount("acct:1", "EUR")  # would break the ledger's account ids


@pytest.mark.parametrize("token", ["DE89370400440532013000", "ba_DE89370400440532013000", "ba_000123456789",
                                   "123456789", "ba_", "BA_1NqAbCdEf", "ba_1Nq AbCdEf"])
def test_bank_details_are_refused_as_a_payout_method(token: str) -> None:
    with pytest.raises(ConnectError):
        PayoutMethod(token)


def test_a_payout_method_shows_little_of_its_token() -> None:
    assert "AbCdEfGhIj" not in repr(PayoutMethod("ba_1NqAbCdEfGhIjKlM"))
    with pytest.raises(ConnectError):
        PayoutMethod("ba_1NqAbCdEfGhIjKlM", last4="12345")


def test_schedule_and_reserve_are_validated() -> None:
    with pytest.raises(ConnectError):
        PayoutSchedule(delay_days=-1)
    with pytest.raises(ConnectError):
        ReservePolicy(basis_points=1000)  # held for how long?
    with pytest.raises(ConnectError):
        ReservePolicy(basis_points=10_001, hold_days=30)
    assert PayoutSchedule(delay_days=2).available_on(date(2026, 12, 4)) == date(2026, 12, 6)


def test_application_fees_round_once_and_never_exceed_the_charge() -> None:
    assert application_fee(Money.parse("10.00", "USD"), 290, Money.parse("0.30", "USD")) == Money.parse("0.59", "USD")
    assert application_fee(Money.parse("0.25", "USD"), 1000) == Money.parse("0.02", "USD")  # 0.025 -> even
    assert application_fee(Money.parse("0.10", "USD"), 0, Money.parse("0.30", "USD")) == Money.parse("0.10", "USD")
    assert application_fee(Money.parse("999", "JPY"), 250) == Money.parse("25", "JPY")


@given(splits())
def test_fee_plus_share_is_the_charge_and_the_entry_balances(split: SplitCharge) -> None:
    e = split_charge_succeeded(split, "stripe")
    assert split.fee + split.share == split.amount
    assert totals_by_currency(e.lines) == {split.currency: 0}
    after = balances(e.lines)
    c = split.currency
    assert after[f"cash:stripe:{c}"] == split.amount.micros
    assert after.get(f"platform_fees:{c}", 0) == -split.fee.micros
    assert after.get(f"seller_payable:acct_1:{c}", 0) == -split.share.micros
    # the same business event as a plain payment: one of the two can ever be posted
    assert e.entry_id == payment_completed("pay_1", "c", "stripe", split.amount).entry_id == \
        entry_id("payment", "pay_1", "payment.completed")


@given(splits())
def test_a_full_refund_returns_fee_and_share_to_exactly_zero(split: SplitCharge) -> None:
    refund, back = split_refund_succeeded("re_1", split, "stripe", split.amount, Reversed.nothing(split))
    assert back == Clawback(split.fee, split.share)
    after = balances([*split_charge_succeeded(split, "stripe").lines, *refund.lines])
    assert all(v == 0 for v in after.values())


@given(splits(), st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=15))
def test_partial_refunds_sum_exactly_to_one_refund_of_their_total_and_the_last_empties_both(
        split: SplitCharge, cuts: list[int]) -> None:
    per_minor = get_currency(split.currency).micros_per_minor
    total_units = split.amount.micros // per_minor
    # cut the charge into pieces; the last piece is whatever remains, so the refunds total the charge
    pieces, left = [], total_units
    for cut in cuts:
        if left <= 1:
            break
        piece = 1 + cut % (left - 1)
        pieces.append(piece)
        left -= piece
    pieces.append(left)
    before, lines = Reversed.nothing(split), list(split_charge_succeeded(split, "stripe").lines)
    for i, units in enumerate(pieces):
        amount = minor(units, split.currency)
        e, back = split_refund_succeeded(f"re_{i}", split, "stripe", amount, before)
        assert totals_by_currency(e.lines) == {split.currency: 0}
        assert back.amount == amount and not back.fee.is_negative() and not back.share.is_negative()
        before = before.plus(back)
        # cumulative: the fee given back so far is the proportional fee of the total refunded so far
        assert before.fee == split.fee_after_reversing(before.amount)
        lines += e.lines
    assert before == Reversed(split.amount, split.fee)
    assert all(v == 0 for v in balances(lines).values())


@given(splits(), st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**9))
def test_a_won_dispute_gives_back_exactly_what_it_took_and_a_later_full_refund_still_ends_at_zero(
        split: SplitCharge, refund_cut: int, dispute_cut: int) -> None:
    per_minor = get_currency(split.currency).micros_per_minor
    units = split.amount.micros // per_minor
    refund_units = refund_cut % units  # maybe nothing
    lines = list(split_charge_succeeded(split, "stripe").lines)
    before = Reversed.nothing(split)
    if refund_units:
        e, back = split_refund_succeeded("re_1", split, "stripe", minor(refund_units, split.currency), before)
        lines += e.lines
        before = before.plus(back)
    disputed = minor(1 + dispute_cut % (units - refund_units), split.currency)
    withdrawn, taken = split_dispute_funds_withdrawn("dp_1", split, "stripe", disputed, before)
    reinstated = split_dispute_funds_reinstated("dp_1", split, "stripe", taken)
    assert balances([*withdrawn.lines, *reinstated.lines]) == {k: 0 for k in balances(withdrawn.lines)}
    lines += [*withdrawn.lines, *reinstated.lines]
    # after the dispute is won, refunding everything left still returns both to exactly zero
    e, back = split_refund_succeeded("re_2", split, "stripe", split.amount - before.amount, before)
    lines += e.lines
    assert before.plus(back) == Reversed(split.amount, split.fee)
    assert all(v == 0 for v in balances(lines).values())


def test_reversals_cannot_take_back_more_than_the_charge_or_in_another_currency() -> None:
    split = SplitCharge("pay_1", "acct_1", Money.parse("10.00", "EUR"), Money.parse("1.00", "EUR"))
    with pytest.raises(ConnectError):
        clawback(split, Money.parse("10.01", "EUR"), Reversed.nothing(split))
    with pytest.raises(ConnectError):
        clawback(split, Money.parse("1.00", "USD"), Reversed.nothing(split))
    with pytest.raises(ConnectError):
        clawback(split, Money(5_000, "EUR"), Reversed.nothing(split))  # half a cent
    with pytest.raises(ConnectError):
        SplitCharge("pay_1", "acct_1", Money.parse("1.00", "EUR"), Money.parse("1.01", "EUR"))
    # a third of a 10.00 charge with a 1.00 fee, three times: 0.33 + 0.34 + 0.33 of fee, exactly 1.00 in all
    before, fees = Reversed.nothing(split), []
    for amount in ("3.33", "3.34", "3.33"):
        back = clawback(split, Money.parse(amount, "EUR"), before)
        fees.append(back.fee.to_decimal_string())
        before = before.plus(back)
    assert fees == ["0.33", "0.34", "0.33"] and before.fee == split.fee
