"""The Subscription aggregate: Stripe's statuses, an explicit transition table, and one lifecycle event per change.

Statuses
--------
``incomplete`` (created, first invoice not yet paid), ``incomplete_expired`` (not paid within 23 hours),
``trialing``, ``active``, ``past_due`` (a renewal charge failed; dunning runs), ``unpaid`` (dunning gave up;
invoices are still issued but not charged), ``canceled``, ``paused`` (the trial ended without a payment method).
``incomplete_expired`` and ``canceled`` are terminal.

    incomplete ──first_invoice_paid──► active ◄─────────────recovered──────────── past_due, unpaid
        │                               ▲   │
        │ first_invoice_expired         │   └─renewal_failed─► past_due ─dunning_exhausted_unpaid───► unpaid
        ▼                               │                         └──────dunning_exhausted_canceled─► canceled
    incomplete_expired                  │
    trialing ─trial_converted───────────┘ (with a payment method)
       ├─trial_paused (without one; the default) ─► paused ─resumed (with one)─► active
       └─trial_canceled (without one, if the tenant says so) ─► canceled

    canceled also from any live status (cancel now), or by ended_at_period_end (a scheduled cancellation).

``TRANSITIONS`` is the whole machine: event -> {from status: to status}. An event from a status it does not list is
refused with ``subscription-event-not-allowed``; a rule of the event itself (too early, nothing scheduled, ...)
with its own code. Events that keep the status (a renewal, a scheduled cancel, a pause of collection, a change of
price or payment method) are listed too, so every (status, event) pair has one answer.

What each method returns
------------------------
The aggregate is immutable: every method returns a ``Step`` with the new ``subscription``, the lifecycle ``event``
to store (type, old and new status, instant, JSON-ready data; ``event_id`` is deterministic per subscription and
sequence number, so a retried write is recognisably the same event), and, when money is involved, the
``lines`` to bill (``domain.billing_line.BillingLine``) with ``invoice_now`` (invoice them now, or keep them
pending for the next invoice) and, for an invoice to be charged, how to ``collect`` it.

Time is always passed in (``at``, an aware UTC datetime with whole seconds); nothing here reads a clock.

Rules worth knowing
-------------------
- A first invoice not paid within 23 hours of creation expires the subscription (``incomplete_expires_at``).
- At the trial's end: with a default payment method the subscription becomes active and its first paid period
  begins (partial, and prorated, up to a later billing cycle anchor); without one it is paused (or canceled,
  per ``trial_end_behavior``) and ``resume`` needs a payment method. "Trial will end" is notified three days
  before the end (``trial_will_end_at``).
- ``renew`` advances one period at a time, at or after the current period's end, applying a change scheduled for
  the period's end; a scheduled cancellation ends the subscription instead. Renewals are idempotent by
  (subscription, period start): ``renewal_key`` and ``charge_key`` are the keys.
- A price or quantity change applies now or at the period's end per the tenant's ``ChangePolicy`` (see
  ``domain.proration``); during a trial it applies at once and nothing is prorated (the trial is free). A change
  to another price needs that price to be active; a quantity change on an archived version keeps it.
- Pausing collection keeps the status; invoices of renewals are then kept as drafts, marked uncollectible or
  voided until ``resumes_at`` (or ``resume_collection``).

Public API
----------
``SubscriptionStatus``, ``EventType``, ``TRANSITIONS``, ``TERMINAL``, ``allowed_events(status)``,
``PauseBehavior``, ``PauseCollection``, ``TrialEndBehavior``, ``Collection``, ``SubscriptionEvent``, ``Step``,
``renewal_key``, ``charge_key``, ``trial_will_end_at``, ``incomplete_expires_at``, ``SubscriptionRefused``, and
``Subscription``: ``create(subscription_id, tenant_id, customer_id, item, start, *, cycle, trial_end,
default_payment_method, trial_end_behavior, prorate_first_period)`` and, each ``(at, ...) -> Step``:
``first_invoice_paid``, ``first_invoice_failed``, ``expire_incomplete``, ``end_trial``, ``resume``, ``renew``,
``renewal_paid``, ``renewal_failed``, ``retry_failed``, ``exhaust_dunning``, ``recover``, ``cancel``,
``schedule_cancel``, ``unschedule_cancel``, ``pause_collection``, ``resume_collection``, ``change``,
``unschedule_change``, ``update_payment_method``; ``collection_resume_due(at)``, ``events``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain.billing_cycle import BillingCycle, Period, iso, require_instant
from domain.billing_line import BillingLine, Item, period_line
from domain.dunning import DunningEnd
from domain.money import Money
from domain.proration import (
    ChangePolicy,
    ProrationBehavior,
    ProrationPlan,
    Timing,
    classify_change,
    decide_change,
    plan_change,
    unused_time_credit,
)
from domain.refusal import Refused

INCOMPLETE_EXPIRES_AFTER = timedelta(hours=23)
TRIAL_WILL_END_NOTICE = timedelta(days=3)
MAX_TRIAL = timedelta(days=730)
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")


class SubscriptionRefused(Refused):
    """A subscription rule refused the event."""


class SubscriptionStatus(StrEnum):
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    PAUSED = "paused"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


class EventType(StrEnum):
    CREATED = "created"  # not a transition: the first event of every subscription
    FIRST_INVOICE_PAID = "first_invoice_paid"
    FIRST_INVOICE_FAILED = "first_invoice_failed"
    FIRST_INVOICE_EXPIRED = "first_invoice_expired"
    TRIAL_CONVERTED = "trial_converted"
    TRIAL_PAUSED = "trial_paused"
    TRIAL_CANCELED = "trial_canceled"
    RENEWED = "renewed"
    RENEWAL_PAID = "renewal_paid"
    RENEWAL_FAILED = "renewal_failed"
    RETRY_FAILED = "retry_failed"
    DUNNING_EXHAUSTED_UNPAID = "dunning_exhausted_unpaid"
    DUNNING_EXHAUSTED_CANCELED = "dunning_exhausted_canceled"
    RECOVERED = "recovered"
    CANCELED = "canceled"
    CANCEL_SCHEDULED = "cancel_scheduled"
    CANCEL_UNSCHEDULED = "cancel_unscheduled"
    ENDED_AT_PERIOD_END = "ended_at_period_end"
    COLLECTION_PAUSED = "collection_paused"
    COLLECTION_RESUMED = "collection_resumed"
    RESUMED = "resumed"
    ITEM_CHANGED = "item_changed"
    CHANGE_SCHEDULED = "change_scheduled"
    SCHEDULED_CHANGE_CANCELED = "scheduled_change_canceled"
    PAYMENT_METHOD_UPDATED = "payment_method_updated"


S = SubscriptionStatus
E = EventType
TERMINAL = frozenset({S.INCOMPLETE_EXPIRED, S.CANCELED})
LIVE = frozenset(S) - TERMINAL


def _same(*statuses: SubscriptionStatus) -> dict[SubscriptionStatus, SubscriptionStatus]:
    return {status: status for status in statuses}


# event -> {from status: to status}. The whole state machine; nothing else moves a subscription's status.
TRANSITIONS: dict[EventType, dict[SubscriptionStatus, SubscriptionStatus]] = {
    E.FIRST_INVOICE_PAID: {S.INCOMPLETE: S.ACTIVE},
    E.FIRST_INVOICE_FAILED: {S.INCOMPLETE: S.INCOMPLETE},  # the customer may still pay within the 23 hours
    E.FIRST_INVOICE_EXPIRED: {S.INCOMPLETE: S.INCOMPLETE_EXPIRED},
    E.TRIAL_CONVERTED: {S.TRIALING: S.ACTIVE},
    E.TRIAL_PAUSED: {S.TRIALING: S.PAUSED},
    E.TRIAL_CANCELED: {S.TRIALING: S.CANCELED},
    # An unpaid subscription still renews (its invoices stay open, uncharged): paying one brings it back.
    E.RENEWED: _same(S.ACTIVE, S.PAST_DUE, S.UNPAID),
    E.RENEWAL_PAID: {S.ACTIVE: S.ACTIVE},
    E.RENEWAL_FAILED: {S.ACTIVE: S.PAST_DUE, S.PAST_DUE: S.PAST_DUE},
    E.RETRY_FAILED: _same(S.PAST_DUE, S.UNPAID),
    E.DUNNING_EXHAUSTED_UNPAID: {S.PAST_DUE: S.UNPAID},
    E.DUNNING_EXHAUSTED_CANCELED: {S.PAST_DUE: S.CANCELED},
    E.RECOVERED: {S.PAST_DUE: S.ACTIVE, S.UNPAID: S.ACTIVE},
    E.CANCELED: dict.fromkeys(sorted(LIVE), S.CANCELED),
    E.CANCEL_SCHEDULED: _same(S.TRIALING, S.ACTIVE, S.PAST_DUE, S.UNPAID),
    E.CANCEL_UNSCHEDULED: _same(S.TRIALING, S.ACTIVE, S.PAST_DUE, S.UNPAID),
    E.ENDED_AT_PERIOD_END: dict.fromkeys((S.TRIALING, S.ACTIVE, S.PAST_DUE, S.UNPAID), S.CANCELED),
    E.COLLECTION_PAUSED: _same(S.TRIALING, S.ACTIVE, S.PAST_DUE),
    E.COLLECTION_RESUMED: _same(S.TRIALING, S.ACTIVE, S.PAST_DUE),
    E.RESUMED: {S.PAUSED: S.ACTIVE},
    E.ITEM_CHANGED: _same(S.TRIALING, S.ACTIVE, S.PAST_DUE),
    E.CHANGE_SCHEDULED: _same(S.ACTIVE, S.PAST_DUE),  # in a trial a change applies at once
    E.SCHEDULED_CHANGE_CANCELED: _same(S.ACTIVE, S.PAST_DUE),
    E.PAYMENT_METHOD_UPDATED: _same(*sorted(LIVE)),
}


def allowed_events(status: SubscriptionStatus) -> list[EventType]:
    """The events a subscription in ``status`` accepts (for answers that list what can be done next)."""
    return [event for event, moves in TRANSITIONS.items() if status in moves]


class PauseBehavior(StrEnum):
    KEEP_AS_DRAFT = "keep_as_draft"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"
    VOID = "void"


class TrialEndBehavior(StrEnum):
    """What a trial ending without a payment method does."""

    PAUSE = "pause"
    CANCEL = "cancel"


class Collection(StrEnum):
    """How the invoice of a period is collected."""

    CHARGE = "charge"  # finalize and charge the default payment method
    OPEN_WITHOUT_CHARGE = "open_without_charge"  # unpaid: finalize, leave open, do not charge
    KEEP_AS_DRAFT = "keep_as_draft"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"
    VOID = "void"


@dataclass(frozen=True)
class PauseCollection:
    behavior: PauseBehavior
    resumes_at: datetime | None = None


@dataclass(frozen=True)
class SubscriptionEvent:
    """A lifecycle event as the store writes it (append-only)."""

    subscription_id: str
    seq: int
    type: EventType
    old_status: SubscriptionStatus | None
    new_status: SubscriptionStatus
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"subscription.{self.type.value}"

    @property
    def event_id(self) -> str:
        """Deterministic: the same event recorded twice (a retried activity) has the same id."""
        return hashlib.sha256(f"subscription:{self.subscription_id}:{self.seq}".encode()).hexdigest()


@dataclass(frozen=True)
class Step:
    """The outcome of one event: the new state, the event to store, and what to bill."""

    subscription: Subscription
    event: SubscriptionEvent
    lines: tuple[BillingLine, ...] = ()
    invoice_now: bool = False  # invoice ``lines`` now; otherwise they are pending for the next invoice
    collect: Collection | None = None  # how to collect the invoice this step asks for
    proration: ProrationPlan | None = None


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise SubscriptionRefused("invalid-id", f"{what} is 1-100 of A-Z a-z 0-9 _ -")
    return value


def renewal_key(subscription_id: str, period_start: datetime) -> str:
    """The idempotency key of renewing into the period starting at ``period_start``: one renewal (and one
    invoice) per subscription and period, however often the renewal is attempted."""
    return f"subscription:{_check_id(subscription_id, 'subscription_id')}:renewal:{iso(period_start)}"


def charge_key(subscription_id: str, period_start: datetime, attempt: int) -> str:
    """The idempotency key of charge attempt ``attempt`` (1 = the first charge, then each dunning retry) of the
    invoice of the period starting at ``period_start``."""
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise SubscriptionRefused("invalid-attempt", "attempts are numbered from 1")
    return f"subscription:{_check_id(subscription_id, 'subscription_id')}:charge:{iso(period_start)}:{attempt}"


def trial_will_end_at(trial_start: datetime, trial_end: datetime) -> datetime:
    """When to tell the customer their trial is ending: three days before, or at the start of a shorter trial."""
    return max(require_instant(trial_end) - TRIAL_WILL_END_NOTICE, require_instant(trial_start))


def incomplete_expires_at(created_at: datetime) -> datetime:
    """When an unpaid first invoice expires the subscription."""
    return require_instant(created_at) + INCOMPLETE_EXPIRES_AFTER


def _money(amount: Money) -> dict[str, Any]:
    return {"amount_micros": amount.micros, "currency": amount.currency}


def _item(item: Item) -> dict[str, Any]:
    return {"price_id": item.price.price_id, "quantity": item.quantity}


def _period(period: Period) -> dict[str, str]:
    return {"period_start": iso(period.start), "period_end": iso(period.end)}


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    tenant_id: str
    customer_id: str
    item: Item
    status: SubscriptionStatus
    cycle: BillingCycle
    current_period: Period
    created_at: datetime
    trial_start: datetime | None = None
    trial_end: datetime | None = None
    default_payment_method: str | None = None
    trial_end_behavior: TrialEndBehavior = TrialEndBehavior.PAUSE
    prorate_first_period: bool = True
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    collection_pause: PauseCollection | None = None
    scheduled_change: Item | None = None
    event_seq: int = 0

    @property
    def currency(self) -> str:
        return self.item.currency

    @property
    def events(self) -> list[EventType]:
        return allowed_events(self.status)

    # --- creation -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, subscription_id: str, tenant_id: str, customer_id: str, item: Item, start: datetime, *,
               cycle: BillingCycle | None = None, trial_end: datetime | None = None,
               default_payment_method: str | None = None,
               trial_end_behavior: TrialEndBehavior | str = TrialEndBehavior.PAUSE,
               prorate_first_period: bool = True) -> Step:
        """A new subscription: ``trialing`` until ``trial_end``, else ``incomplete`` with its first invoice's lines
        (a partial first period up to a later ``cycle`` anchor is prorated, or billed 0.00 if
        ``prorate_first_period`` is false: an invoice of nothing is paid as it is finalized, then
        ``first_invoice_paid`` applies). A trial starts with nothing to invoice.
        The billing cycle defaults to the anniversary of the first paid instant (the trial's end, or the start).
        ``item.price`` must be offered: check it with ``Catalogue.require_offered``."""
        for value, what in ((subscription_id, "subscription_id"), (tenant_id, "tenant_id"),
                            (customer_id, "customer_id")):
            _check_id(value, what)
        start = require_instant(start, "start")
        if not item.price.active:
            raise SubscriptionRefused("price-inactive", f"{item.price.price_id} is no longer offered")
        if default_payment_method is not None:
            _check_id(default_payment_method, "default_payment_method")
        try:
            behavior = TrialEndBehavior(trial_end_behavior)
        except ValueError:
            raise SubscriptionRefused("invalid-trial-end-behavior", "trial_end_behavior is pause or cancel") from None
        if trial_end is not None:
            trial_end = require_instant(trial_end, "trial_end")
            if not start < trial_end <= start + MAX_TRIAL:
                raise SubscriptionRefused("invalid-trial-end", "a trial ends after it starts, within 730 days")
        paid_from = trial_end or start
        cycle = cycle or BillingCycle.anniversary(paid_from, item.price.interval, item.price.interval_count)
        if (cycle.interval, cycle.interval_count) != (item.price.interval, item.price.interval_count):
            raise SubscriptionRefused("cycle-mismatch", "the billing cycle has the price's interval")
        first = cycle.first_period(paid_from)  # refuses an anchor more than one interval away
        status = S.TRIALING if trial_end else S.INCOMPLETE
        period = Period(start, trial_end) if trial_end else first
        subscription = cls(subscription_id, tenant_id, customer_id, item, status, cycle, period, start,
                           trial_start=start if trial_end else None, trial_end=trial_end,
                           default_payment_method=default_payment_method, trial_end_behavior=behavior,
                           prorate_first_period=prorate_first_period, event_seq=1)
        data: dict[str, Any] = {**_item(item), **_period(period), "billing_cycle_anchor": iso(cycle.anchor)}
        lines: tuple[BillingLine, ...] = ()
        if trial_end:
            data |= {"trial_end": iso(trial_end), "trial_will_end_at": iso(trial_will_end_at(start, trial_end))}
        else:
            lines = subscription._first_lines(first)
            data |= {"expires_at": iso(incomplete_expires_at(start)), "renewal_key": renewal_key(
                subscription_id, first.start)}
        event = SubscriptionEvent(subscription_id, 1, E.CREATED, None, status, start, data)
        return Step(subscription, event, lines, invoice_now=not trial_end,
                    collect=None if trial_end else Collection.CHARGE)

    # --- the first invoice ----------------------------------------------------------------------------------
    def first_invoice_paid(self, at: datetime, invoice_id: str | None = None) -> Step:
        at = self._begin(E.FIRST_INVOICE_PAID, at)
        return self._step(E.FIRST_INVOICE_PAID, at, {}, {"invoice_id": invoice_id})

    def first_invoice_failed(self, at: datetime, decline_code: str | None = None) -> Step:
        at = self._begin(E.FIRST_INVOICE_FAILED, at)
        return self._step(E.FIRST_INVOICE_FAILED, at, {}, {
            "decline_code": decline_code, "expires_at": iso(incomplete_expires_at(self.created_at))})

    def expire_incomplete(self, at: datetime) -> Step:
        at = self._begin(E.FIRST_INVOICE_EXPIRED, at)
        if at < incomplete_expires_at(self.created_at):
            raise SubscriptionRefused("incomplete-not-expired", "a first invoice has 23 hours to be paid, until "
                                                                f"{iso(incomplete_expires_at(self.created_at))}")
        return self._step(E.FIRST_INVOICE_EXPIRED, at, {"ended_at": at}, {})

    # --- trials ---------------------------------------------------------------------------------------------
    def end_trial(self, at: datetime) -> Step:
        """At (or after) the trial's end: convert with a payment method, else pause or cancel; a cancellation
        scheduled for the trial's end ends the subscription."""
        if self.status is not S.TRIALING:
            self._require(E.TRIAL_CONVERTED)  # refused: only a trial ends
        if self.cancel_at_period_end:
            event = E.ENDED_AT_PERIOD_END
        elif self.default_payment_method:
            event = E.TRIAL_CONVERTED
        else:
            event = E.TRIAL_PAUSED if self.trial_end_behavior is TrialEndBehavior.PAUSE else E.TRIAL_CANCELED
        at = self._begin(event, at)
        assert self.trial_end is not None
        if at < self.trial_end:
            raise SubscriptionRefused("trial-not-ended", f"the trial ends at {iso(self.trial_end)}")
        if event is E.ENDED_AT_PERIOD_END:
            return self._ended_at_period_end(at)
        if event is E.TRIAL_CANCELED:
            return self._step(event, at, {"canceled_at": at, "ended_at": self.trial_end},
                              {"reason": "trial ended without a payment method"})
        if event is E.TRIAL_PAUSED:
            return self._step(event, at, {}, {"reason": "trial ended without a payment method"})
        first = self.cycle.first_period(self.trial_end)
        lines = self._first_lines(first)
        collect = self._collection(at, S.ACTIVE)
        return self._step(event, at, {"current_period": first},
                          {**_period(first), "renewal_key": renewal_key(self.subscription_id, first.start),
                           "collect": collect.value}, lines=lines, invoice_now=True, collect=collect)

    def resume(self, at: datetime) -> Step:
        """A paused subscription starts again now, on a new cycle anchored now, with a first invoice."""
        at = self._begin(E.RESUMED, at)
        if not self.default_payment_method:
            raise SubscriptionRefused("payment-method-required", "resuming needs a default payment method")
        cycle = BillingCycle.anniversary(at, self.item.price.interval, self.item.price.interval_count)
        period = cycle.first_period(at)
        collect = self._collection(at, S.ACTIVE)
        return self._step(E.RESUMED, at, {"cycle": cycle, "current_period": period},
                          {**_period(period), "renewal_key": renewal_key(self.subscription_id, period.start),
                           "collect": collect.value},
                          lines=(period_line(self.item, period),), invoice_now=True, collect=collect)

    # --- renewals -------------------------------------------------------------------------------------------
    def renew(self, at: datetime) -> Step:
        """Into the next period, at or after the current one's end (one period per call), with the change
        scheduled for the period's end; a scheduled cancellation ends the subscription instead."""
        event = E.ENDED_AT_PERIOD_END if self.cancel_at_period_end else E.RENEWED
        at = self._begin(event, at)
        if at < self.current_period.end:
            raise SubscriptionRefused("renewal-not-due", f"the period ends at {iso(self.current_period.end)}")
        if event is E.ENDED_AT_PERIOD_END:
            return self._ended_at_period_end(at)
        item, cycle = self.scheduled_change or self.item, self.cycle
        if item.price.months != self.item.price.months:
            cycle = BillingCycle.anniversary(self.current_period.end, item.price.interval, item.price.interval_count)
            period = cycle.first_period(self.current_period.end)
        else:
            period = cycle.period_after(self.current_period)
        collect = self._collection(at, self.status)
        line = period_line(item, period)
        data = {**_period(period), **_item(item), **_money(line.amount), "collect": collect.value,
                "renewal_key": renewal_key(self.subscription_id, period.start),
                "applied_scheduled_change": self.scheduled_change is not None}
        return self._step(E.RENEWED, at, {"item": item, "cycle": cycle, "current_period": period,
                                          "scheduled_change": None},
                          data, lines=(line,), invoice_now=True, collect=collect)

    def renewal_paid(self, at: datetime, period_start: datetime, invoice_id: str | None = None) -> Step:
        at = self._begin(E.RENEWAL_PAID, at)
        self._require_current(period_start)
        return self._step(E.RENEWAL_PAID, at, {}, {"period_start": iso(period_start), "invoice_id": invoice_id})

    def renewal_failed(self, at: datetime, period_start: datetime, decline_code: str | None = None) -> Step:
        """The renewal's first charge failed: dunning starts (``domain.dunning.plan_next``)."""
        at = self._begin(E.RENEWAL_FAILED, at)
        self._require_current(period_start)
        return self._step(E.RENEWAL_FAILED, at, {}, {"period_start": iso(period_start), "decline_code": decline_code})

    def retry_failed(self, at: datetime, attempt: int, decline_code: str | None = None) -> Step:
        at = self._begin(E.RETRY_FAILED, at)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 2:
            raise SubscriptionRefused("invalid-attempt", "a retry is attempt 2 or later")
        return self._step(E.RETRY_FAILED, at, {}, {"attempt": attempt, "decline_code": decline_code})

    def exhaust_dunning(self, at: datetime, end: DunningEnd | str) -> Step:
        """Dunning gave up: the policy's final action for the subscription."""
        end = DunningEnd(end)
        event = E.DUNNING_EXHAUSTED_UNPAID if end is DunningEnd.UNPAID else E.DUNNING_EXHAUSTED_CANCELED
        at = self._begin(event, at)
        changes: dict[str, Any] = {} if end is DunningEnd.UNPAID else {"canceled_at": at, "ended_at": at}
        return self._step(event, at, changes, {"final_action": end.value})

    def recover(self, at: datetime, invoice_id: str | None = None) -> Step:
        """The open invoice was paid after all (a retry, a new payment method, out of band)."""
        at = self._begin(E.RECOVERED, at)
        return self._step(E.RECOVERED, at, {}, {"invoice_id": invoice_id})

    # --- cancellation ---------------------------------------------------------------------------------------
    def cancel(self, at: datetime, *, prorate: bool = False, invoice_now: bool = False,
               reason: str | None = None) -> Step:
        """Now. With ``prorate``, the unused time of a paid period (active or past due) is credited."""
        at = self._begin(E.CANCELED, at)
        lines: tuple[BillingLine, ...] = ()
        if prorate and self.status in (S.ACTIVE, S.PAST_DUE) and self.current_period.contains(at):
            credit = unused_time_credit(self.item, self.current_period, at)
            lines = () if credit.amount.is_zero() else (credit,)
        return self._step(E.CANCELED, at, {"canceled_at": at, "ended_at": at, "cancel_at_period_end": False,
                                           "scheduled_change": None, "collection_pause": None},
                          {"reason": reason, "prorated": bool(lines)}, lines=lines, invoice_now=invoice_now)

    def schedule_cancel(self, at: datetime) -> Step:
        """Cancel at the end of the current period (the trial's end while trialing)."""
        at = self._begin(E.CANCEL_SCHEDULED, at)
        if self.cancel_at_period_end:
            raise SubscriptionRefused("cancel-already-scheduled", "the subscription already ends at the period's "
                                                                  "end")
        return self._step(E.CANCEL_SCHEDULED, at, {"cancel_at_period_end": True, "canceled_at": at},
                          {"cancel_at": iso(self.current_period.end)})

    def unschedule_cancel(self, at: datetime) -> Step:
        """Undo a scheduled cancellation, before it takes effect."""
        at = self._begin(E.CANCEL_UNSCHEDULED, at)
        if not self.cancel_at_period_end:
            raise SubscriptionRefused("cancel-not-scheduled", "no cancellation is scheduled")
        if at >= self.current_period.end:
            raise SubscriptionRefused("period-ended", "the period has ended: the cancellation has taken effect")
        return self._step(E.CANCEL_UNSCHEDULED, at, {"cancel_at_period_end": False, "canceled_at": None}, {})

    def _ended_at_period_end(self, at: datetime) -> Step:
        return self._step(E.ENDED_AT_PERIOD_END, at, {"ended_at": self.current_period.end, "scheduled_change": None},
                          {"ended_at": iso(self.current_period.end)})

    # --- collection -----------------------------------------------------------------------------------------
    def pause_collection(self, at: datetime, behavior: PauseBehavior | str,
                          resumes_at: datetime | None = None) -> Step:
        """Stop collecting (the status stays): renewal invoices are kept as drafts, marked uncollectible or voided
        until ``resumes_at`` if given. Pausing again replaces the pause."""
        at = self._begin(E.COLLECTION_PAUSED, at)
        try:
            behavior = PauseBehavior(behavior)
        except ValueError:
            raise SubscriptionRefused("invalid-pause-behavior", "behavior is keep_as_draft, mark_uncollectible or "
                                                                "void") from None
        if resumes_at is not None and require_instant(resumes_at, "resumes_at") <= at:
            raise SubscriptionRefused("invalid-resumes-at", "collection resumes after it is paused")
        pause = PauseCollection(behavior, resumes_at)
        return self._step(E.COLLECTION_PAUSED, at, {"collection_pause": pause},
                          {"behavior": behavior.value, "resumes_at": iso(resumes_at) if resumes_at else None,
                           "replaced": self.collection_pause is not None})

    def resume_collection(self, at: datetime) -> Step:
        at = self._begin(E.COLLECTION_RESUMED, at)
        if self.collection_pause is None:
            raise SubscriptionRefused("collection-not-paused", "collection is not paused")
        return self._step(E.COLLECTION_RESUMED, at, {"collection_pause": None}, {})

    def collection_resume_due(self, at: datetime) -> bool:
        """Whether a pause with a ``resumes_at`` has run out (the workflow then applies ``resume_collection``)."""
        pause = self.collection_pause
        return pause is not None and pause.resumes_at is not None and pause.resumes_at <= require_instant(at)

    def _collection(self, at: datetime, status: SubscriptionStatus) -> Collection:
        if status is S.UNPAID:
            return Collection.OPEN_WITHOUT_CHARGE
        pause = self.collection_pause
        if pause is not None and (pause.resumes_at is None or at < pause.resumes_at):
            return Collection(pause.behavior.value)
        return Collection.CHARGE

    # --- price and quantity ---------------------------------------------------------------------------------
    def change(self, at: datetime, item: Item, policy: ChangePolicy | None = None, *,
               proration_date: datetime | None = None, proration_behavior: ProrationBehavior | str | None = None,
               timing: Timing | str | None = None) -> Step:
        """Change the price and/or quantity, now (prorated per the behaviour) or at the period's end, as the
        tenant's ``policy`` (or the request's ``timing``/``proration_behavior``) says. A change now replaces any
        change scheduled for the period's end."""
        policy = policy or ChangePolicy()
        at = self._at(at)
        if self.status not in TRANSITIONS[E.ITEM_CHANGED] and self.status not in TRANSITIONS[E.CHANGE_SCHEDULED]:
            self._require(E.ITEM_CHANGED)
        if item.price.price_id != self.item.price.price_id and not item.price.active:
            raise SubscriptionRefused("price-inactive", f"{item.price.price_id} is no longer offered")
        if self.status is S.TRIALING:
            if timing is not None and timing not in tuple(Timing):
                raise SubscriptionRefused("invalid-timing", "timing is now or period_end")
            if timing == Timing.PERIOD_END:
                self._require(E.CHANGE_SCHEDULED)  # refused: a trial's changes apply at once
            kind = classify_change(self.item, item)
            cycle = self.cycle
            if item.price.months != self.item.price.months:
                cycle = BillingCycle(self.cycle.anchor, item.price.interval, item.price.interval_count,
                                     self.cycle.day_of_month)
            return self._step(E.ITEM_CHANGED, at, {"item": item, "cycle": cycle},
                              {"from": _item(self.item), "to": _item(item), "kind": kind.value,
                               "explanation": "during a trial a change applies at once, with nothing to prorate"})
        decision = decide_change(policy, self.item, item, proration_behavior=proration_behavior, timing=timing)
        data: dict[str, Any] = {"from": _item(self.item), "to": _item(item), "kind": decision.kind.value,
                                "explanation": decision.explanation}
        if decision.timing is Timing.PERIOD_END:
            self._require(E.CHANGE_SCHEDULED)
            return self._step(E.CHANGE_SCHEDULED, at, {"scheduled_change": item},
                              {**data, "effective_at": iso(self.current_period.end)})
        self._require(E.ITEM_CHANGED)
        plan = plan_change(self.current_period, self.item, item, proration_date or at, decision.behavior)
        changes: dict[str, Any] = {"item": item, "scheduled_change": None}
        if plan.resets_cycle:
            assert plan.new_cycle is not None and plan.new_period is not None
            changes |= {"cycle": plan.new_cycle, "current_period": plan.new_period}
            data |= {**_period(plan.new_period), "renewal_key": renewal_key(self.subscription_id,
                                                                            plan.new_period.start)}
        data |= {"proration_behavior": plan.behavior.value, "proration_date": iso(plan.proration_date),
                 "resets_cycle": plan.resets_cycle, **({"net": _money(plan.net)} if plan.net is not None else {})}
        collect = self._collection(at, self.status) if plan.invoice_now and plan.lines else None
        return self._step(E.ITEM_CHANGED, at, changes, data, lines=plan.lines, invoice_now=plan.invoice_now,
                          collect=collect, proration=plan)

    def unschedule_change(self, at: datetime) -> Step:
        at = self._begin(E.SCHEDULED_CHANGE_CANCELED, at)
        if self.scheduled_change is None:
            raise SubscriptionRefused("no-scheduled-change", "no change is scheduled")
        return self._step(E.SCHEDULED_CHANGE_CANCELED, at, {"scheduled_change": None},
                          {"was": _item(self.scheduled_change)})

    # --- payment method -------------------------------------------------------------------------------------
    def update_payment_method(self, at: datetime, payment_method_id: str) -> Step:
        """A new default payment method. Past due or unpaid, it is what dunning retries at once
        (``plan_next(..., payment_method_updated_at=at)``); paused, it allows ``resume``."""
        at = self._begin(E.PAYMENT_METHOD_UPDATED, at)
        _check_id(payment_method_id, "payment_method_id")
        return self._step(E.PAYMENT_METHOD_UPDATED, at, {"default_payment_method": payment_method_id},
                          {"payment_method_id": payment_method_id, "previous": self.default_payment_method,
                           "retry_open_invoice": self.status in (S.PAST_DUE, S.UNPAID)})

    # --- mechanics ------------------------------------------------------------------------------------------
    def _at(self, at: datetime) -> datetime:
        at = require_instant(at, "at")
        if at < self.created_at:
            raise SubscriptionRefused("before-creation", "an event cannot happen before the subscription exists")
        return at

    def _require(self, event: EventType) -> None:
        if self.status not in TRANSITIONS[event]:
            allowed = ", ".join(allowed_events(self.status)) or "nothing"
            raise SubscriptionRefused("subscription-event-not-allowed",
                                      f"a subscription that is {self.status} does not accept {event} "
                                      f"(it accepts: {allowed})")

    def _begin(self, event: EventType, at: datetime) -> datetime:
        self._require(event)
        return self._at(at)

    def _require_current(self, period_start: datetime) -> None:
        if require_instant(period_start, "period_start") != self.current_period.start:
            raise SubscriptionRefused("stale-period", f"the current period starts at "
                                                      f"{iso(self.current_period.start)}")

    def _first_lines(self, first: Period) -> tuple[BillingLine, ...]:
        line = period_line(self.item, first)
        if first.is_partial and not self.prorate_first_period:
            # The time up to the anchor is free, and still shown: an invoice needs a line, and one of nothing is
            # paid as soon as it is finalized.
            line = replace(line, amount=Money.zero(self.currency),
                           description=line.description.replace(", prorated)", ", free until the billing date)"))
        return (line,)

    def _step(self, event: EventType, at: datetime, changes: dict[str, Any], data: dict[str, Any], *,
              lines: tuple[BillingLine, ...] = (), invoice_now: bool = False, collect: Collection | None = None,
              proration: ProrationPlan | None = None) -> Step:
        self._require(event)
        new_status = TRANSITIONS[event][self.status]
        seq = self.event_seq + 1
        subscription = replace(self, status=new_status, event_seq=seq, **changes)
        record = SubscriptionEvent(self.subscription_id, seq, event, self.status, new_status, at,
                                   {k: v for k, v in data.items() if v is not None})
        return Step(subscription, record, lines, invoice_now, collect, proration)
