"""The ledger's rules: entries balance per currency, accounts keep their currency, a balance is the sum of lines,
and every money movement's entry balances — whatever the amounts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ledger import (
    Account,
    AccountCode,
    JournalEntry,
    Line,
    UnbalancedEntry,
    balances,
    cash,
    dispute_funds_reinstated,
    dispute_funds_withdrawn,
    entry,
    entry_id,
    move,
    payment_completed,
    receivable,
    refund_succeeded,
    reversal,
    single,
    totals_by_currency,
)
from domain.money import Money

CURRENCIES = st.sampled_from(["EUR", "USD", "GBP", "JPY", "INR", "AED"])
MICROS = st.integers(min_value=1, max_value=10**15)


def test_account_ids_are_readable_and_subjects_are_where_they_belong() -> None:
    assert receivable("cus_1", "EUR").account_id == "receivable:cus_1:EUR"
    assert single(AccountCode.REVENUE, "EUR").account_id == "revenue:EUR"
    assert cash("stripe", "USD").type == "asset"
    with pytest.raises(ValueError):
        Account(AccountCode.RECEIVABLE, "EUR")  # whose receivable?
    with pytest.raises(ValueError):
        Account(AccountCode.REVENUE, "EUR", "cus_1")


def test_an_unbalanced_entry_cannot_exist() -> None:
    with pytest.raises(UnbalancedEntry):
        entry("payment", "pay_1", "x", [Line(cash("sandbox", "EUR"), 100), Line(single(AccountCode.REVENUE, "EUR"),
                                                                                 -99)])
    with pytest.raises(UnbalancedEntry):  # balanced in sum, not per currency
        entry("payment", "pay_1", "x", [Line(cash("sandbox", "EUR"), 100), Line(single(AccountCode.REVENUE, "USD"),
                                                                                 -100)])
    with pytest.raises(UnbalancedEntry):
        entry("payment", "pay_1", "x", [])


def test_a_move_stays_in_one_currency() -> None:
    with pytest.raises(ValueError):
        move(Money(1, "EUR"), cash("sandbox", "USD"), single(AccountCode.REVENUE, "EUR"))


def test_entry_ids_name_the_business_event() -> None:
    assert entry_id("payment", "pay_1", "payment.completed") == entry_id("payment", "pay_1", "payment.completed")
    assert entry_id("payment", "pay_1", "payment.completed") != entry_id("refund", "pay_1", "payment.completed")
    assert payment_completed("pay_1", "cus_1", "sandbox", Money(5, "EUR")).entry_id == \
        entry_id("payment", "pay_1", "payment.completed")


@given(MICROS, CURRENCIES, st.booleans())
def test_every_movement_balances_and_lands_where_it_should(micros: int, currency: str, for_invoice: bool) -> None:
    amount = Money(micros, currency)
    paid = payment_completed("pay_1", "cus_1", "sandbox", amount, "in_1" if for_invoice else None)
    entries = [paid, refund_succeeded("re_1", "sandbox", amount), dispute_funds_withdrawn("dsp_1", "sandbox", amount),
               dispute_funds_reinstated("dsp_1", "sandbox", amount)]
    for e in entries:
        assert totals_by_currency(e.lines) == {currency: 0}
        assert e.currencies == {currency}
    after = balances(line for e in entries for line in e.lines)
    # cash: +paid -refunded -withdrawn +reinstated; what the payment credited is -amount
    assert after[f"cash:sandbox:{currency}"] == 0
    credited = f"receivable:cus_1:{currency}" if for_invoice else f"revenue:{currency}"
    assert after[credited] == -micros and after[f"refunds:{currency}"] == micros
    assert after[f"chargebacks:{currency}"] == 0


@given(st.lists(st.tuples(MICROS, CURRENCIES, st.sampled_from(["pay", "refund", "withdrawn", "reinstated"])),
                max_size=40))
def test_the_trial_balance_of_any_history_is_zero_per_currency(flows: list[tuple[int, str, str]]) -> None:
    makers = {"pay": lambda m: payment_completed("p", "c", "stripe", m),
              "refund": lambda m: refund_succeeded("r", "stripe", m),
              "withdrawn": lambda m: dispute_funds_withdrawn("d", "stripe", m),
              "reinstated": lambda m: dispute_funds_reinstated("d", "stripe", m)}
    lines = [line for micros, currency, kind in flows for line in makers[kind](Money(micros, currency)).lines]
    assert all(total == 0 for total in totals_by_currency(lines).values())
    per_currency: dict[str, int] = {}
    for account_id, balance in balances(lines).items():
        per_currency[account_id.rsplit(":", 1)[1]] = per_currency.get(account_id.rsplit(":", 1)[1], 0) + balance
    assert all(total == 0 for total in per_currency.values())


@given(MICROS, CURRENCIES)
def test_a_reversal_undoes_its_entry_exactly(micros: int, currency: str) -> None:
    original = payment_completed("pay_1", "cus_1", "sandbox", Money(micros, currency))
    undone = reversal(original, "payment.reversed")
    assert undone.reverses == original.entry_id and undone.entry_id != original.entry_id
    assert all(b == 0 for b in balances([*original.lines, *undone.lines]).values())


def test_zero_lines_are_dropped_not_posted() -> None:
    e = JournalEntry("je_x", "t", "s", "e", (Line(cash("a", "EUR"), 5), Line(cash("b", "EUR"), 0),
                                              Line(single(AccountCode.FEES, "EUR"), -5)))
    assert len(e.lines) == 2
