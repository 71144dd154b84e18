"""The Subscription aggregate: every (status, event) pair against a table written out by hand, then the stories —
first invoice, trials, renewals from the anchor, dunning, cancellation, paused collection, changes of price and
quantity, kept price versions — and random walks that never break the machine."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.billing_cycle import BillingCycle, Period
from domain.billing_line import Item, LineKind
from domain.catalogue import Catalogue, Product, make_price
from domain.dunning import ChargeFailure, DunningAction, DunningEnd, DunningPolicy, RetryTrigger, plan_next
from domain.invoice import Invoice, InvoiceStatus, make_line
from domain.money import Money
from domain.proration import ChangePolicy
from domain.refusal import Refused
from domain.subscription import (
    TERMINAL,
    TRANSITIONS,
    Collection,
    EventType,
    PauseBehavior,
    PauseCollection,
    Step,
    Subscription,
    SubscriptionRefused,
    SubscriptionStatus,
    TrialEndBehavior,
    allowed_events,
    charge_key,
    renewal_key,
    trial_will_end_at,
)

S = SubscriptionStatus
E = EventType
T0 = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, s, tzinfo=UTC)


BASIC = Item(make_price("basic", "pro", "EUR", unit_amount="20.00"))
PRO = Item(make_price("pro", "pro", "EUR", unit_amount="50.00"))
CHEAP = Item(make_price("cheap", "pro", "EUR", unit_amount="5.00"))
SEATS = make_price("seat", "pro", "EUR", unit_amount="12.00")


def create(item: Item = BASIC, **kwargs: Any) -> Step:
    kwargs.setdefault("default_payment_method", "pm_1")
    return Subscription.create("sub_1", "ten_1", "cus_1", item, T0, **kwargs)


def active(item: Item = BASIC) -> Subscription:
    return create(item).subscription.first_invoice_paid(T0 + timedelta(minutes=1)).subscription


# --- the table, by hand ---------------------------------------------------------------------------------------
# (status, event) -> resulting status. Every pair not listed must be refused with subscription-event-not-allowed.
ALLOWED: dict[tuple[SubscriptionStatus, EventType], SubscriptionStatus] = {
    (S.INCOMPLETE, E.FIRST_INVOICE_PAID): S.ACTIVE,
    (S.INCOMPLETE, E.FIRST_INVOICE_FAILED): S.INCOMPLETE,
    (S.INCOMPLETE, E.FIRST_INVOICE_EXPIRED): S.INCOMPLETE_EXPIRED,
    (S.INCOMPLETE, E.CANCELED): S.CANCELED,
    (S.INCOMPLETE, E.PAYMENT_METHOD_UPDATED): S.INCOMPLETE,
    (S.TRIALING, E.TRIAL_CONVERTED): S.ACTIVE,
    (S.TRIALING, E.TRIAL_PAUSED): S.PAUSED,
    (S.TRIALING, E.TRIAL_CANCELED): S.CANCELED,
    (S.TRIALING, E.CANCELED): S.CANCELED,
    (S.TRIALING, E.CANCEL_SCHEDULED): S.TRIALING,
    (S.TRIALING, E.CANCEL_UNSCHEDULED): S.TRIALING,
    (S.TRIALING, E.ENDED_AT_PERIOD_END): S.CANCELED,
    (S.TRIALING, E.COLLECTION_PAUSED): S.TRIALING,
    (S.TRIALING, E.COLLECTION_RESUMED): S.TRIALING,
    (S.TRIALING, E.ITEM_CHANGED): S.TRIALING,
    (S.TRIALING, E.PAYMENT_METHOD_UPDATED): S.TRIALING,
    (S.ACTIVE, E.RENEWED): S.ACTIVE,
    (S.ACTIVE, E.RENEWAL_PAID): S.ACTIVE,
    (S.ACTIVE, E.RENEWAL_FAILED): S.PAST_DUE,
    (S.ACTIVE, E.CANCELED): S.CANCELED,
    (S.ACTIVE, E.CANCEL_SCHEDULED): S.ACTIVE,
    (S.ACTIVE, E.CANCEL_UNSCHEDULED): S.ACTIVE,
    (S.ACTIVE, E.ENDED_AT_PERIOD_END): S.CANCELED,
    (S.ACTIVE, E.COLLECTION_PAUSED): S.ACTIVE,
    (S.ACTIVE, E.COLLECTION_RESUMED): S.ACTIVE,
    (S.ACTIVE, E.ITEM_CHANGED): S.ACTIVE,
    (S.ACTIVE, E.CHANGE_SCHEDULED): S.ACTIVE,
    (S.ACTIVE, E.SCHEDULED_CHANGE_CANCELED): S.ACTIVE,
    (S.ACTIVE, E.PAYMENT_METHOD_UPDATED): S.ACTIVE,
    (S.PAST_DUE, E.RENEWED): S.PAST_DUE,
    (S.PAST_DUE, E.RENEWAL_FAILED): S.PAST_DUE,
    (S.PAST_DUE, E.RETRY_FAILED): S.PAST_DUE,
    (S.PAST_DUE, E.DUNNING_EXHAUSTED_UNPAID): S.UNPAID,
    (S.PAST_DUE, E.DUNNING_EXHAUSTED_CANCELED): S.CANCELED,
    (S.PAST_DUE, E.RECOVERED): S.ACTIVE,
    (S.PAST_DUE, E.CANCELED): S.CANCELED,
    (S.PAST_DUE, E.CANCEL_SCHEDULED): S.PAST_DUE,
    (S.PAST_DUE, E.CANCEL_UNSCHEDULED): S.PAST_DUE,
    (S.PAST_DUE, E.ENDED_AT_PERIOD_END): S.CANCELED,
    (S.PAST_DUE, E.COLLECTION_PAUSED): S.PAST_DUE,
    (S.PAST_DUE, E.COLLECTION_RESUMED): S.PAST_DUE,
    (S.PAST_DUE, E.ITEM_CHANGED): S.PAST_DUE,
    (S.PAST_DUE, E.CHANGE_SCHEDULED): S.PAST_DUE,
    (S.PAST_DUE, E.SCHEDULED_CHANGE_CANCELED): S.PAST_DUE,
    (S.PAST_DUE, E.PAYMENT_METHOD_UPDATED): S.PAST_DUE,
    (S.UNPAID, E.RENEWED): S.UNPAID,
    (S.UNPAID, E.RETRY_FAILED): S.UNPAID,
    (S.UNPAID, E.RECOVERED): S.ACTIVE,
    (S.UNPAID, E.CANCELED): S.CANCELED,
    (S.UNPAID, E.CANCEL_SCHEDULED): S.UNPAID,
    (S.UNPAID, E.CANCEL_UNSCHEDULED): S.UNPAID,
    (S.UNPAID, E.ENDED_AT_PERIOD_END): S.CANCELED,
    (S.UNPAID, E.PAYMENT_METHOD_UPDATED): S.UNPAID,
    (S.PAUSED, E.RESUMED): S.ACTIVE,
    (S.PAUSED, E.CANCELED): S.CANCELED,
    (S.PAUSED, E.PAYMENT_METHOD_UPDATED): S.PAUSED,
}
TRIAL_END = at(2026, 2, 28, 10)  # a boundary of the base subscription's cycle


def in_state(status: SubscriptionStatus, event: EventType) -> Subscription:
    """The base subscription put in ``status`` with what ``event`` needs (a shortcut around the history)."""
    sub = replace(create().subscription, status=status)
    if status is S.TRIALING:
        sub = replace(sub, trial_start=T0, trial_end=TRIAL_END, current_period=Period(T0, TRIAL_END))
    needs: dict[EventType, dict[str, Any]] = {
        E.TRIAL_PAUSED: {"default_payment_method": None},
        E.TRIAL_CANCELED: {"default_payment_method": None, "trial_end_behavior": TrialEndBehavior.CANCEL},
        E.ENDED_AT_PERIOD_END: {"cancel_at_period_end": True},
        E.CANCEL_UNSCHEDULED: {"cancel_at_period_end": True},
        E.COLLECTION_RESUMED: {"collection_pause": PauseCollection(PauseBehavior.VOID)},
        E.SCHEDULED_CHANGE_CANCELED: {"scheduled_change": CHEAP},
    }
    return replace(sub, **needs.get(event, {}))


CALLS: dict[EventType, Callable[[Subscription], Step]] = {
    E.FIRST_INVOICE_PAID: lambda s: s.first_invoice_paid(T0 + DAY, "in_1"),
    E.FIRST_INVOICE_FAILED: lambda s: s.first_invoice_failed(T0 + DAY, "insufficient_funds"),
    E.FIRST_INVOICE_EXPIRED: lambda s: s.expire_incomplete(T0 + DAY),
    E.TRIAL_CONVERTED: lambda s: s.end_trial(TRIAL_END),
    E.TRIAL_PAUSED: lambda s: s.end_trial(TRIAL_END),
    E.TRIAL_CANCELED: lambda s: s.end_trial(TRIAL_END),
    E.RENEWED: lambda s: s.renew(s.current_period.end),
    E.RENEWAL_PAID: lambda s: s.renewal_paid(T0 + DAY, s.current_period.start),
    E.RENEWAL_FAILED: lambda s: s.renewal_failed(T0 + DAY, s.current_period.start, "insufficient_funds"),
    E.RETRY_FAILED: lambda s: s.retry_failed(T0 + DAY, 2, "insufficient_funds"),
    E.DUNNING_EXHAUSTED_UNPAID: lambda s: s.exhaust_dunning(T0 + DAY, DunningEnd.UNPAID),
    E.DUNNING_EXHAUSTED_CANCELED: lambda s: s.exhaust_dunning(T0 + DAY, "canceled"),
    E.RECOVERED: lambda s: s.recover(T0 + DAY),
    E.CANCELED: lambda s: s.cancel(T0 + DAY),
    E.CANCEL_SCHEDULED: lambda s: s.schedule_cancel(T0 + DAY),
    E.CANCEL_UNSCHEDULED: lambda s: s.unschedule_cancel(T0 + DAY),
    E.ENDED_AT_PERIOD_END: lambda s: s.renew(s.current_period.end),
    E.COLLECTION_PAUSED: lambda s: s.pause_collection(T0 + DAY, "keep_as_draft"),
    E.COLLECTION_RESUMED: lambda s: s.resume_collection(T0 + DAY),
    E.RESUMED: lambda s: s.resume(T0 + DAY),
    E.ITEM_CHANGED: lambda s: s.change(T0 + DAY, PRO),  # an upgrade: now, by the default policy
    E.CHANGE_SCHEDULED: lambda s: s.change(T0 + DAY, CHEAP, timing="period_end"),
    E.SCHEDULED_CHANGE_CANCELED: lambda s: s.unschedule_change(T0 + DAY),
    E.PAYMENT_METHOD_UPDATED: lambda s: s.update_payment_method(T0 + DAY, "pm_2"),
}


def test_the_table_names_every_event_but_creation() -> None:
    assert set(CALLS) == set(E) - {E.CREATED} == set(TRANSITIONS)
    assert {(status, event): to for event, moves in TRANSITIONS.items() for status, to in moves.items()} == ALLOWED


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("event", [e for e in E if e is not E.CREATED])
def test_every_status_and_event(status: SubscriptionStatus, event: EventType) -> None:
    sub = in_state(status, event)
    if (status, event) in ALLOWED:
        step = CALLS[event](sub)
        assert step.event.type is event
        assert (step.event.old_status, step.event.new_status) == (status, ALLOWED[status, event])
        assert step.subscription.status is ALLOWED[status, event]
        assert step.event.seq == sub.event_seq + 1 == step.subscription.event_seq
        assert step.event.name == f"subscription.{event.value}"
        json.dumps(step.event.data)  # what the store writes is plain JSON
    else:
        with pytest.raises(SubscriptionRefused) as refused:
            CALLS[event](sub)
        assert refused.value.code == "subscription-event-not-allowed"


def test_terminal_statuses_accept_nothing_and_the_allowed_events_are_listed() -> None:
    assert TERMINAL == {S.CANCELED, S.INCOMPLETE_EXPIRED}
    for status in TERMINAL:
        assert allowed_events(status) == []
    assert allowed_events(S.PAUSED) == [E.CANCELED, E.RESUMED, E.PAYMENT_METHOD_UPDATED]
    assert create().subscription.events == [E.FIRST_INVOICE_PAID, E.FIRST_INVOICE_FAILED, E.FIRST_INVOICE_EXPIRED,
                                            E.CANCELED, E.PAYMENT_METHOD_UPDATED]


# --- creation and the first invoice ------------------------------------------------------------------------
def test_a_new_subscription_is_incomplete_with_its_first_invoice() -> None:
    step = create()
    sub, event = step.subscription, step.event
    assert sub.status is S.INCOMPLETE and sub.current_period == Period(T0, at(2026, 2, 28, 10))
    assert [(line.kind, line.amount) for line in step.lines] == [(LineKind.PERIOD, Money.parse("20.00", "EUR"))]
    assert step.invoice_now and step.collect is Collection.CHARGE
    assert (event.type, event.old_status, event.new_status, event.seq) == (E.CREATED, None, S.INCOMPLETE, 1)
    assert event.data == {"price_id": "basic.v1", "quantity": 1, "period_start": "2026-01-31T10:00:00Z",
                          "period_end": "2026-02-28T10:00:00Z", "billing_cycle_anchor": "2026-01-31T10:00:00Z",
                          "expires_at": "2026-02-01T09:00:00Z",
                          "renewal_key": "subscription:sub_1:renewal:2026-01-31T10:00:00Z"}
    assert event.event_id == create().event.event_id != sub.first_invoice_paid(T0).event.event_id


def test_an_unpaid_first_invoice_expires_after_23_hours() -> None:
    sub = create().subscription.first_invoice_failed(T0 + timedelta(hours=1), "card_declined").subscription
    assert sub.status is S.INCOMPLETE
    with pytest.raises(SubscriptionRefused) as refused:
        sub.expire_incomplete(T0 + timedelta(hours=22, minutes=59, seconds=59))
    assert refused.value.code == "incomplete-not-expired"
    expired = sub.expire_incomplete(T0 + timedelta(hours=23)).subscription
    assert expired.status is S.INCOMPLETE_EXPIRED and expired.ended_at == T0 + timedelta(hours=23)


def test_a_calendar_anchor_makes_the_first_invoice_a_prorated_partial_period() -> None:
    cycle = BillingCycle.calendar(T0, "month", day_of_month=1)  # 1 February
    step = create(cycle=cycle)
    assert step.subscription.current_period == Period(T0, at(2026, 2, 1), basis_start=at(2026, 1, 1))
    (line,) = step.lines
    # 14 hours of January's 31 days: 20 x 50,400 / 2,678,400 = 0.376... -> 0.38
    assert line.kind is LineKind.PARTIAL_PERIOD and line.amount == Money.parse("0.38", "EUR") and line.proration
    free = create(cycle=cycle, prorate_first_period=False)
    (zero,) = free.lines  # an invoice of nothing, paid as it is finalized
    assert zero.amount == Money.parse("0", "EUR") and zero.kind is LineKind.PARTIAL_PERIOD and free.invoice_now
    assert zero.description == "1 x basic (2026-01-31 to 2026-02-01, free until the billing date)"
    renewed = free.subscription.first_invoice_paid(T0).subscription.renew(at(2026, 2, 1))
    assert renewed.subscription.current_period == Period(at(2026, 2, 1), at(2026, 3, 1))
    assert renewed.lines[0].amount == Money.parse("20.00", "EUR")


def test_billing_lines_become_invoice_lines() -> None:
    # A charge line is an invoice line of quantity 1 at its amount, over the dates of its period.
    def invoice_of(step: Step) -> Invoice:
        invoice = Invoice("in_1", "ten_1", "cus_1", "EUR")
        for n, line in enumerate(step.lines):
            invoice = invoice.add_line(make_line(f"li_{n}", line.description, "1", line.amount.to_decimal_string(),
                                                 "EUR", period_start=line.period_start.date(),
                                                 period_end=line.period_end.date()))
        return invoice.finalize("INV-1", {}, T0.date())

    first = invoice_of(create(cycle=BillingCycle.calendar(T0, "month")))
    assert first.status is InvoiceStatus.OPEN and first.total == Money.parse("0.38", "EUR")
    free = invoice_of(create(cycle=BillingCycle.calendar(T0, "month"), prorate_first_period=False))
    assert free.status is InvoiceStatus.PAID and free.total.is_zero()


@pytest.mark.parametrize("kwargs, code", [
    ({"trial_end": T0}, "invalid-trial-end"),
    ({"trial_end": T0 + timedelta(days=731)}, "invalid-trial-end"),
    ({"cycle": BillingCycle(T0, "year")}, "cycle-mismatch"),
    ({"cycle": BillingCycle(T0 + timedelta(days=40), "month")}, "anchor-too-far"),
    ({"trial_end_behavior": "explode"}, "invalid-trial-end-behavior"),
    ({"default_payment_method": "pm 1"}, "invalid-id"),
])
def test_creation_refusals(kwargs: dict, code: str) -> None:
    with pytest.raises(Refused) as refused:
        create(**kwargs)
    assert refused.value.code == code


def test_only_an_offered_price_starts_a_subscription() -> None:
    cat = Catalogue().add_product(Product("pro", "Pro")).add_price(make_price("basic", "pro", "EUR",
                                                                              unit_amount="20.00"))
    cat, _ = cat.revise_price("basic.v1", unit_amount="25.00")
    with pytest.raises(SubscriptionRefused) as refused:
        create(Item(cat.price("basic.v1")))
    assert refused.value.code == "price-inactive"


# --- trials -------------------------------------------------------------------------------------------------
def test_a_trial_with_a_payment_method_converts_and_its_first_paid_period_begins() -> None:
    step = create(trial_end=T0 + 14 * DAY)
    sub = step.subscription
    assert sub.status is S.TRIALING and step.lines == () and not step.invoice_now
    assert sub.current_period == Period(T0, T0 + 14 * DAY) and sub.cycle.anchor == T0 + 14 * DAY
    assert step.event.data["trial_will_end_at"] == "2026-02-11T10:00:00Z"
    with pytest.raises(SubscriptionRefused) as refused:
        sub.end_trial(T0 + 14 * DAY - timedelta(seconds=1))
    assert refused.value.code == "trial-not-ended"
    converted = sub.end_trial(T0 + 14 * DAY)
    assert converted.subscription.status is S.ACTIVE
    assert converted.subscription.current_period == Period(at(2026, 2, 14, 10), at(2026, 3, 14, 10))
    assert [line.amount for line in converted.lines] == [Money.parse("20.00", "EUR")]
    assert converted.invoice_now and converted.collect is Collection.CHARGE
    assert converted.event.data["renewal_key"] == "subscription:sub_1:renewal:2026-02-14T10:00:00Z"


def test_a_trial_ending_on_a_later_anchor_bills_a_prorated_first_period() -> None:
    cycle = BillingCycle.calendar(T0 + 14 * DAY, "month", day_of_month=1)  # 1 March
    converted = create(trial_end=T0 + 14 * DAY, cycle=cycle).subscription.end_trial(T0 + 14 * DAY)
    (line,) = converted.lines
    # 14 Feb 10:00 to 1 March is 14 days 14 hours of February's 28 days: 20 x 350/672 = 10.416... -> 10.42
    assert line.kind is LineKind.PARTIAL_PERIOD and line.amount == Money.parse("10.42", "EUR")


def test_a_trial_without_a_payment_method_pauses_until_one_is_added_and_it_resumes() -> None:
    sub = create(trial_end=T0 + 7 * DAY, default_payment_method=None).subscription
    paused = sub.end_trial(T0 + 7 * DAY).subscription
    assert paused.status is S.PAUSED
    with pytest.raises(SubscriptionRefused) as refused:
        paused.resume(T0 + 9 * DAY)
    assert refused.value.code == "payment-method-required"
    with_card = paused.update_payment_method(T0 + 9 * DAY, "pm_9").subscription
    resumed = with_card.resume(T0 + 9 * DAY + timedelta(hours=3))
    assert resumed.subscription.status is S.ACTIVE
    assert resumed.subscription.cycle.anchor == at(2026, 2, 9, 13)
    assert resumed.subscription.current_period == Period(at(2026, 2, 9, 13), at(2026, 3, 9, 13))
    assert [line.amount for line in resumed.lines] == [Money.parse("20.00", "EUR")] and resumed.invoice_now
    canceled = create(trial_end=T0 + 7 * DAY, default_payment_method=None, trial_end_behavior="cancel")
    ended = canceled.subscription.end_trial(T0 + 8 * DAY).subscription
    assert ended.status is S.CANCELED and ended.ended_at == T0 + 7 * DAY


def test_trial_will_end_three_days_before() -> None:
    assert trial_will_end_at(T0, T0 + 14 * DAY) == T0 + 11 * DAY
    assert trial_will_end_at(T0, T0 + 2 * DAY) == T0  # a trial shorter than three days: at once


def test_a_change_during_a_trial_applies_at_once_without_prorations() -> None:
    sub = create(trial_end=T0 + 14 * DAY).subscription
    step = sub.change(T0 + DAY, CHEAP)  # a downgrade, which the default policy would defer
    assert step.event.type is E.ITEM_CHANGED and step.lines == () and step.subscription.item == CHEAP
    yearly = Item(make_price("yearly", "pro", "EUR", unit_amount="200.00", interval="year"))
    moved = sub.change(T0 + DAY, yearly).subscription
    assert moved.cycle == BillingCycle(T0 + 14 * DAY, "year")
    assert moved.end_trial(T0 + 14 * DAY).subscription.current_period.end == at(2027, 2, 14, 10)


# --- renewals -----------------------------------------------------------------------------------------------
def test_renewals_follow_the_anchor_and_each_has_its_key() -> None:
    sub = active()
    ends = []
    for _ in range(6):
        step = sub.renew(sub.current_period.end)
        assert step.event.type is E.RENEWED and step.invoice_now and step.collect is Collection.CHARGE
        assert step.lines[0].amount == Money.parse("20.00", "EUR") and step.lines[0].kind is LineKind.PERIOD
        assert step.event.data["renewal_key"] == renewal_key("sub_1", step.subscription.current_period.start)
        assert step.subscription.current_period.start == sub.current_period.end
        sub = step.subscription
        ends.append(sub.current_period.end.date().isoformat())
    assert ends == ["2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30", "2026-07-31", "2026-08-31"]
    with pytest.raises(SubscriptionRefused) as refused:
        sub.renew(sub.current_period.end - timedelta(seconds=1))
    assert refused.value.code == "renewal-not-due"


def test_keys_are_deterministic_strings() -> None:
    assert renewal_key("sub_1", at(2026, 2, 28, 10)) == "subscription:sub_1:renewal:2026-02-28T10:00:00Z"
    assert charge_key("sub_1", at(2026, 2, 28, 10), 3) == "subscription:sub_1:charge:2026-02-28T10:00:00Z:3"
    for bad in (0, -1, True):
        with pytest.raises(SubscriptionRefused):
            charge_key("sub_1", T0, bad)  # type: ignore[arg-type]
    with pytest.raises(SubscriptionRefused):
        renewal_key("sub:1", T0)


def test_a_failed_renewal_is_dunned_and_recovered() -> None:
    sub = active().renew(at(2026, 2, 28, 10)).subscription
    start = sub.current_period.start
    with pytest.raises(SubscriptionRefused) as refused:
        sub.renewal_failed(start + DAY, T0)
    assert refused.value.code == "stale-period"
    past_due = sub.renewal_failed(start, start, "insufficient_funds").subscription
    assert past_due.status is S.PAST_DUE
    policy = DunningPolicy()
    failures = [ChargeFailure(start, "insufficient_funds", RetryTrigger.INITIAL)]
    step = plan_next(policy, failures, start)
    assert step.action is DunningAction.RETRY and charge_key("sub_1", start, step.attempt or 0).endswith(":2")
    past_due = past_due.retry_failed(step.at, 2, "insufficient_funds").subscription
    recovered = past_due.recover(step.at + 2 * DAY, "in_2")
    assert recovered.subscription.status is S.ACTIVE and recovered.event.old_status is S.PAST_DUE


def test_exhausted_dunning_leaves_an_unpaid_subscription_that_renews_without_charging() -> None:
    sub = active().renewal_failed(T0 + DAY, T0).subscription.exhaust_dunning(T0 + 8 * DAY, "unpaid").subscription
    assert sub.status is S.UNPAID
    renewal = sub.renew(sub.current_period.end)
    assert renewal.subscription.status is S.UNPAID and renewal.collect is Collection.OPEN_WITHOUT_CHARGE
    updated = renewal.subscription.update_payment_method(at(2026, 3, 1), "pm_2")
    assert updated.event.data["retry_open_invoice"] is True
    assert updated.subscription.recover(at(2026, 3, 1)).subscription.status is S.ACTIVE
    canceled = active().renewal_failed(T0 + DAY, T0).subscription.exhaust_dunning(T0 + 8 * DAY, DunningEnd.CANCELED)
    assert canceled.subscription.status is S.CANCELED and canceled.event.data == {"final_action": "canceled"}


# --- cancellation -------------------------------------------------------------------------------------------
def test_cancel_at_period_end_can_be_undone_until_the_period_ends() -> None:
    sub = active().schedule_cancel(T0 + DAY).subscription
    assert sub.cancel_at_period_end and sub.status is S.ACTIVE
    with pytest.raises(SubscriptionRefused) as refused:
        sub.schedule_cancel(T0 + DAY)
    assert refused.value.code == "cancel-already-scheduled"
    undone = sub.unschedule_cancel(T0 + 2 * DAY).subscription
    assert not undone.cancel_at_period_end
    with pytest.raises(SubscriptionRefused) as refused:
        undone.unschedule_cancel(T0 + 2 * DAY)
    assert refused.value.code == "cancel-not-scheduled"
    with pytest.raises(SubscriptionRefused) as refused:
        sub.unschedule_cancel(sub.current_period.end)
    assert refused.value.code == "period-ended"
    ended = sub.renew(sub.current_period.end)
    assert ended.event.type is E.ENDED_AT_PERIOD_END and ended.lines == ()
    assert ended.subscription.status is S.CANCELED and ended.subscription.ended_at == at(2026, 2, 28, 10)


def test_cancel_now_with_a_credit_for_the_unused_time() -> None:
    sub = replace(active(), current_period=Period(at(2026, 4, 1), at(2026, 5, 1)), created_at=at(2026, 4, 1))
    step = sub.cancel(at(2026, 4, 16), prorate=True, invoice_now=True, reason="requested_by_customer")
    assert [(line.kind, line.amount.to_decimal_string()) for line in step.lines] == [(LineKind.UNUSED_TIME, "-10.00")]
    assert step.invoice_now and step.event.data == {"reason": "requested_by_customer", "prorated": True}
    assert sub.cancel(at(2026, 4, 16)).lines == ()


def test_a_trial_canceled_at_its_end() -> None:
    sub = create(trial_end=T0 + 14 * DAY).subscription.schedule_cancel(T0 + DAY).subscription
    ended = sub.end_trial(T0 + 14 * DAY)
    assert ended.event.type is E.ENDED_AT_PERIOD_END and ended.subscription.status is S.CANCELED and not ended.lines


# --- paused collection --------------------------------------------------------------------------------------
def test_paused_collection_keeps_the_status_and_says_how_renewal_invoices_are_handled() -> None:
    sub = active()
    with pytest.raises(SubscriptionRefused) as refused:
        sub.pause_collection(T0 + DAY, "sometimes")
    assert refused.value.code == "invalid-pause-behavior"
    with pytest.raises(SubscriptionRefused) as refused:
        sub.pause_collection(T0 + DAY, "void", resumes_at=T0 + DAY)
    assert refused.value.code == "invalid-resumes-at"
    resumes = at(2026, 3, 15)
    paused = sub.pause_collection(T0 + DAY, PauseBehavior.MARK_UNCOLLECTIBLE, resumes_at=resumes)
    assert paused.subscription.status is S.ACTIVE
    assert paused.event.data == {"behavior": "mark_uncollectible", "resumes_at": "2026-03-15T00:00:00Z",
                                 "replaced": False}
    renewal = paused.subscription.renew(at(2026, 2, 28, 10))
    assert renewal.collect is Collection.MARK_UNCOLLECTIBLE and renewal.event.data["collect"] == "mark_uncollectible"
    later = renewal.subscription
    assert not later.collection_resume_due(resumes - timedelta(seconds=1)) and later.collection_resume_due(resumes)
    assert later.renew(at(2026, 3, 31, 10)).collect is Collection.CHARGE  # the pause ran out before this renewal
    resumed = later.resume_collection(resumes).subscription
    assert resumed.collection_pause is None
    with pytest.raises(SubscriptionRefused) as refused:
        resumed.resume_collection(resumes)
    assert refused.value.code == "collection-not-paused"
    assert sub.pause_collection(T0 + DAY, "keep_as_draft").subscription.renew(
        at(2026, 2, 28, 10)).collect is Collection.KEEP_AS_DRAFT


# --- price and quantity -------------------------------------------------------------------------------------
APRIL = Period(at(2026, 4, 1), at(2026, 5, 1))


def in_april(item: Item = BASIC) -> Subscription:
    return replace(active(item), current_period=APRIL, cycle=BillingCycle(at(2026, 4, 1), "month"),
                   created_at=at(2026, 4, 1))


def test_an_upgrade_applies_now_with_prorations() -> None:
    step = in_april().change(at(2026, 4, 16), PRO)
    assert step.event.type is E.ITEM_CHANGED and step.subscription.item == PRO
    assert [line.amount.to_decimal_string() for line in step.lines] == ["-10.00", "25.00"]
    assert not step.invoice_now and step.collect is None  # pending, for the next invoice
    assert step.event.data["kind"] == "upgrade" and step.event.data["net"] == {"amount_micros": 15_000_000,
                                                                             "currency": "EUR"}
    invoiced = in_april().change(at(2026, 4, 16), PRO, proration_behavior="always_invoice")
    assert invoiced.invoice_now and invoiced.collect is Collection.CHARGE
    # The proration date may differ from when the change is recorded (a preview honoured later).
    previewed = in_april().change(at(2026, 4, 17), PRO, proration_date=at(2026, 4, 16))
    assert previewed.lines == step.lines


def test_a_downgrade_waits_for_the_period_end_and_renews_on_the_new_price() -> None:
    step = in_april().change(at(2026, 4, 10), CHEAP)
    assert step.event.type is E.CHANGE_SCHEDULED and step.lines == ()
    assert step.subscription.item == BASIC and step.subscription.scheduled_change == CHEAP
    assert step.event.data["effective_at"] == "2026-05-01T00:00:00Z"
    renewal = step.subscription.renew(at(2026, 5, 1))
    assert renewal.subscription.item == CHEAP and renewal.subscription.scheduled_change is None
    assert renewal.lines[0].amount == Money.parse("5.00", "EUR") and renewal.event.data["applied_scheduled_change"]
    unscheduled = step.subscription.unschedule_change(at(2026, 4, 11)).subscription
    assert unscheduled.renew(at(2026, 5, 1)).lines[0].amount == Money.parse("20.00", "EUR")
    with pytest.raises(SubscriptionRefused) as refused:
        unscheduled.unschedule_change(at(2026, 4, 12))
    assert refused.value.code == "no-scheduled-change"
    # A tenant whose policy applies downgrades at once credits the difference now.
    now = in_april().change(at(2026, 4, 16), CHEAP, ChangePolicy(downgrades="now"))  # type: ignore[arg-type]
    assert [line.amount.to_decimal_string() for line in now.lines] == ["-10.00", "2.50"]


def test_seats_change_the_quantity_and_keep_an_archived_version() -> None:
    cat = Catalogue().add_product(Product("pro", "Pro")).add_price(SEATS)
    sub = in_april(Item(SEATS, 5))
    cat, _ = cat.revise_price("seat.v1", unit_amount="15.00")
    archived = cat.price("seat.v1")
    step = sub.change(at(2026, 4, 21), Item(archived, 8))  # 10 of 30 days left
    assert [line.amount.to_decimal_string() for line in step.lines] == ["-20.00", "32.00"]
    assert step.subscription.item.price.price_id == "seat.v1"
    # The subscription keeps its version at renewal; moving it to the new one is explicit, and is a change.
    renewal = step.subscription.renew(at(2026, 5, 1))
    assert renewal.lines[0].amount == Money.parse("96.00", "EUR")
    moved = renewal.subscription.change(at(2026, 5, 1), Item(cat.latest("seat"), 8))
    assert moved.event.type is E.ITEM_CHANGED and moved.subscription.item.price.price_id == "seat.v2"
    with pytest.raises(SubscriptionRefused) as refused:
        in_april().change(at(2026, 4, 21), Item(archived, 2))  # another subscription cannot move onto it
    assert refused.value.code == "price-inactive"


def test_an_interval_change_restarts_the_cycle() -> None:
    yearly = Item(make_price("yearly", "pro", "EUR", unit_amount="200.00", interval="year"))
    step = in_april().change(at(2026, 4, 16), yearly, timing="now")
    sub = step.subscription
    assert sub.cycle == BillingCycle(at(2026, 4, 16), "year")
    assert sub.current_period == Period(at(2026, 4, 16), at(2027, 4, 16))
    assert [line.amount.to_decimal_string() for line in step.lines] == ["-10.00", "200.00"] and step.invoice_now
    assert step.event.data["renewal_key"] == "subscription:sub_1:renewal:2026-04-16T00:00:00Z"
    assert sub.renew(at(2027, 4, 16)).subscription.current_period.end == at(2028, 4, 16)
    # Scheduled for the period's end instead, the new cycle starts at the renewal.
    later = in_april().change(at(2026, 4, 16), yearly, timing="period_end").subscription.renew(at(2026, 5, 1))
    assert later.subscription.current_period == Period(at(2026, 5, 1), at(2027, 5, 1))


def test_change_refusals() -> None:
    sub = in_april()
    cases: list[tuple[Callable[[], Step], str]] = [
        (lambda: sub.change(at(2026, 4, 2), Item(make_price("usd", "pro", "USD", unit_amount="1")), timing="now"),
         "currency-change"),
        (lambda: sub.change(at(2026, 4, 2), Item(BASIC.price)), "no-change"),
        (lambda: sub.change(at(2026, 5, 2), PRO), "proration-date-outside-period"),
        (lambda: sub.change(at(2026, 4, 2), PRO, timing="whenever"), "invalid-timing"),
        (lambda: create(trial_end=T0 + 9 * DAY).subscription.change(T0, PRO, timing="later"), "invalid-timing"),
        (lambda: create(trial_end=T0 + 9 * DAY).subscription.change(T0, PRO, timing="period_end"),
         "subscription-event-not-allowed"),
        (lambda: sub.change(at(2026, 3, 1), PRO), "before-creation"),
    ]
    for attempt, code in cases:
        with pytest.raises(Refused) as refused:  # whichever module's rule it is
            attempt()
        assert refused.value.code == code


# --- random walks -------------------------------------------------------------------------------------------
ACTIONS: list[tuple[str, Callable[[Subscription, datetime], Step]]] = [
    ("first_invoice_paid", lambda s, t: s.first_invoice_paid(t)),
    ("first_invoice_failed", lambda s, t: s.first_invoice_failed(t, "card_declined")),
    ("expire_incomplete", lambda s, t: s.expire_incomplete(t)),
    ("end_trial", lambda s, t: s.end_trial(t)),
    ("renew", lambda s, t: s.renew(max(t, s.current_period.end))),
    ("renewal_paid", lambda s, t: s.renewal_paid(t, s.current_period.start)),
    ("renewal_failed", lambda s, t: s.renewal_failed(t, s.current_period.start, "insufficient_funds")),
    ("retry_failed", lambda s, t: s.retry_failed(t, 2)),
    ("exhaust_unpaid", lambda s, t: s.exhaust_dunning(t, "unpaid")),
    ("exhaust_canceled", lambda s, t: s.exhaust_dunning(t, "canceled")),
    ("recover", lambda s, t: s.recover(t)),
    ("cancel", lambda s, t: s.cancel(t, prorate=True)),
    ("schedule_cancel", lambda s, t: s.schedule_cancel(t)),
    ("unschedule_cancel", lambda s, t: s.unschedule_cancel(t)),
    ("pause_collection", lambda s, t: s.pause_collection(t, "void", resumes_at=t + 10 * DAY)),
    ("resume_collection", lambda s, t: s.resume_collection(t)),
    ("resume", lambda s, t: s.resume(t)),
    ("upgrade", lambda s, t: s.change(t, PRO if s.item != PRO else BASIC)),
    ("downgrade", lambda s, t: s.change(t, CHEAP if s.item != CHEAP else BASIC)),
    ("seats", lambda s, t: s.change(t, Item(SEATS, 3 if s.item != Item(SEATS, 3) else 4))),
    ("unschedule_change", lambda s, t: s.unschedule_change(t)),
    ("update_payment_method", lambda s, t: s.update_payment_method(t, "pm_walk")),
    ("remove_payment_method", lambda s, t: Step(replace(s, default_payment_method=None),
                                                s.update_payment_method(t, "pm_x").event)),
]


# The action that asks for each event (for walks that mostly follow what the status accepts).
BY_EVENT = {
    E.FIRST_INVOICE_PAID: "first_invoice_paid", E.FIRST_INVOICE_FAILED: "first_invoice_failed",
    E.FIRST_INVOICE_EXPIRED: "expire_incomplete", E.TRIAL_CONVERTED: "end_trial", E.TRIAL_PAUSED: "end_trial",
    E.TRIAL_CANCELED: "end_trial", E.RENEWED: "renew", E.ENDED_AT_PERIOD_END: "renew",
    E.RENEWAL_PAID: "renewal_paid", E.RENEWAL_FAILED: "renewal_failed", E.RETRY_FAILED: "retry_failed",
    E.DUNNING_EXHAUSTED_UNPAID: "exhaust_unpaid", E.DUNNING_EXHAUSTED_CANCELED: "exhaust_canceled",
    E.RECOVERED: "recover", E.CANCELED: "cancel", E.CANCEL_SCHEDULED: "schedule_cancel",
    E.CANCEL_UNSCHEDULED: "unschedule_cancel", E.COLLECTION_PAUSED: "pause_collection",
    E.COLLECTION_RESUMED: "resume_collection", E.RESUMED: "resume", E.ITEM_CHANGED: "upgrade",
    E.CHANGE_SCHEDULED: "downgrade", E.SCHEDULED_CHANGE_CANCELED: "unschedule_change",
    E.PAYMENT_METHOD_UPDATED: "update_payment_method",
}
NAMED = dict(ACTIONS)


@given(st.booleans(), st.sampled_from([None, "pm_1"]), st.data())
@settings(max_examples=300)
def test_random_walks_keep_to_the_table(trial: bool, card: str | None, data: st.DataObject) -> None:
    step = create(trial_end=T0 + 10 * DAY, default_payment_method=card) if trial else create()
    sub, now, seq = step.subscription, T0, 1
    for _ in range(data.draw(st.integers(0, 50))):
        # Mostly an event the status accepts (whose own rules may still refuse it); sometimes anything at all.
        if sub.status not in TERMINAL and data.draw(st.integers(0, 9)) < 7:
            name = BY_EVENT[data.draw(st.sampled_from(allowed_events(sub.status)))]
        else:
            name = data.draw(st.sampled_from([n for n, _ in ACTIONS]))
        action = NAMED[name]
        now = now + timedelta(seconds=data.draw(st.integers(0, 20 * 86_400)))
        try:
            step = action(sub, now)
        except Refused as refused:  # a refusal of this or another domain module, never a crash
            assert refused.code
            assert name != "update_payment_method" or sub.status in TERMINAL
            continue
        if name == "remove_payment_method":
            sub = step.subscription
            continue
        event = step.event
        assert sub.status not in TERMINAL
        assert TRANSITIONS[event.type][sub.status] is event.new_status and event.old_status is sub.status
        assert event.seq == seq + 1
        seq = event.seq
        json.dumps(event.data)
        assert all(line.amount.currency == "EUR" for line in step.lines)
        if event.type is E.RENEWED:
            assert step.subscription.current_period.start == sub.current_period.end
        now = max(now, event.at)
        sub = step.subscription
        assert sub.status is event.new_status
