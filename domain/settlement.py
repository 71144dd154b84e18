"""Settlement reconciliation: our records of a window against the provider's settlement lines, in one settlement
currency, with every difference named, explained or counted, and the variance as an exact ratio.

Inputs
    ``InternalRecord``: what we booked — a payment, refund, dispute, dispute reversal, fee, payout, transfer or
    adjustment — by the provider object it concerns (``provider_id``: ``ch_``/``py_``/``pi_``, ``re_``, ``du_``,
    ``po_``, ``tr_`` …), its amount in the currency it was made in (a magnitude; the kind gives the direction),
    when we created it, the provider fee we booked (settlement currency) and, for a conversion, the amount we
    booked as settled (``settled``, from the FX entry).
    ``SettlementLine``: one line of the provider's settlement file — a balance transaction (Stripe's itemized
    payout reconciliation / balance change reports): ``balance_transaction_id``, ``created``, ``available_on``,
    ``currency`` (the settlement currency), ``gross``, ``fee``, ``net`` (= gross - fee, signed as they move the
    balance), ``reporting_category``, ``source_id``, the customer-facing amount and currency (what the customer
    paid, before conversion), ``automatic_payout_id`` and a few ids.

Matching is by provider id and category: a record of kind K matches the lines whose ``source_id`` (or, for a
charge, ``payment_intent_id`` or ``charge_id``) is its ``provider_id`` and whose ``reporting_category`` is K's
(``CATEGORIES``). Several records or lines under one key are compared as their sums (a record booked twice is an
amount discrepancy, not a match). A payout record with no payout line of its own (the itemized payout report has
none) is compared with the sum of ``net`` over the lines carrying its id as ``automatic_payout_id``.

Comparing, in the settlement currency at the provider's rate:
    currency             the record's currency is not the line's customer-facing currency (or, without one,
                         the settlement currency); variance: the line's |gross|
    amount               the gross we expect — ``settled`` when we booked one, the amount itself in the same
                         currency, else the amount at the rate the provider applied (gross / customer-facing
                         amount) — is not the line's; or the customer-facing amounts differ; variance: |difference|
    fee                  the fee we booked is not the line's; variance: |difference|
    missing_at_provider  no line for a record created before ``window.end - in_flight``; variance: its |expected
                         gross| (converted with ``rates`` when we booked no settled amount)
    timing               no line for a record created within ``in_flight`` of the window's end, or after it: the
                         provider has not settled it yet. Explained, not a variance; ``Reconciliation.in_flight``
                         lists them, and the next window's run takes them as records again, so a record that never
                         settles becomes missing_at_provider there
    missing_internal     a line no record matches; variance: its |gross|

``variance_ratio`` = unexplained variance ÷ volume, an exact ``Fraction`` of integer micros, where volume is the
|gross| of every line plus the |expected gross| of every record missing at the provider. ``variance_ppm`` rounds
it up to parts per million (an alert never rounds a variance away); ``exceeds(VARIANCE_THRESHOLD)`` compares the
exact ratio with 0.01 %.

Pure: the caller reads the file (activities/providers/settlement_report.py) and the records; nothing here does I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from domain.fx import FxRate, convert
from domain.money import Money, RoundingMode, get_currency

# The reconciliation variance objective: below 0.01 % of the volume.
VARIANCE_THRESHOLD = Fraction(1, 10_000)
# How long after its creation a record may still be missing from the provider's file without it being a variance:
# a balance transaction exists within seconds of a charge, and a report is generated some hours after its window
# closes; two days also covers a webhook or a posting that was retried for a day.
DEFAULT_IN_FLIGHT = timedelta(days=2)


class RecordKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    DISPUTE = "dispute"
    DISPUTE_REVERSAL = "dispute_reversal"
    FEE = "fee"
    PAYOUT = "payout"
    TRANSFER = "transfer"
    ADJUSTMENT = "adjustment"


# The provider's reporting category of each kind (Stripe's reporting_category values).
CATEGORIES: dict[RecordKind, str] = {
    RecordKind.PAYMENT: "charge",
    RecordKind.REFUND: "refund",
    RecordKind.DISPUTE: "dispute",
    RecordKind.DISPUTE_REVERSAL: "dispute_reversal",
    RecordKind.FEE: "fee",
    RecordKind.PAYOUT: "payout",
    RecordKind.TRANSFER: "transfer",
    RecordKind.ADJUSTMENT: "other_adjustment",
}
# How each kind moves the provider balance: money in (+1) or out (-1). An adjustment carries its own sign.
SIGNS: dict[RecordKind, int] = {
    RecordKind.PAYMENT: 1, RecordKind.REFUND: -1, RecordKind.DISPUTE: -1, RecordKind.DISPUTE_REVERSAL: 1,
    RecordKind.FEE: -1, RecordKind.PAYOUT: -1, RecordKind.TRANSFER: -1, RecordKind.ADJUSTMENT: 1,
}


def _aware(instant: datetime, what: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


@dataclass(frozen=True)
class InternalRecord:
    kind: RecordKind
    record_id: str
    provider_id: str
    amount: Money  # a magnitude in the currency it was made in; an adjustment is signed
    created: datetime
    fee: Money | None = None  # the provider fee we booked, in the settlement currency
    settled: Money | None = None  # the gross we booked as settled in the settlement currency (a magnitude)
    category: str | None = None  # the provider's category when not the kind's own

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RecordKind(self.kind))
        _aware(self.created, "created")
        if self.kind is not RecordKind.ADJUSTMENT and self.amount.is_negative():
            raise ValueError(f"{self.record_id}: the amount is a magnitude; the kind gives the direction")
        if self.settled is not None and self.settled.is_negative():
            raise ValueError(f"{self.record_id}: settled is a magnitude")

    @property
    def key(self) -> tuple[str, str]:
        return self.provider_id, self.category or CATEGORIES[self.kind]

    @property
    def sign(self) -> int:
        return SIGNS[self.kind]


@dataclass(frozen=True)
class SettlementLine:
    balance_transaction_id: str
    created: datetime
    available_on: date
    gross: Money
    fee: Money
    net: Money
    reporting_category: str
    source_id: str
    customer_facing_amount: Money | None = None
    description: str = ""
    automatic_payout_id: str | None = None
    automatic_payout_effective_at: datetime | None = None
    charge_id: str | None = None
    payment_intent_id: str | None = None
    connected_account_id: str | None = None

    def __post_init__(self) -> None:
        _aware(self.created, "created")
        if not (self.gross.currency == self.fee.currency == self.net.currency):
            raise ValueError(f"{self.balance_transaction_id}: gross, fee and net are in one currency")
        if self.gross - self.fee != self.net:
            raise ValueError(f"{self.balance_transaction_id}: net must be gross - fee")

    @property
    def currency(self) -> str:
        return self.gross.currency

    @property
    def presentment_currency(self) -> str:
        return self.customer_facing_amount.currency if self.customer_facing_amount else self.currency


@dataclass(frozen=True)
class SettlementWindow:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _aware(self.start, "start")
        _aware(self.end, "end")
        if self.start >= self.end:
            raise ValueError("a window starts before it ends")


class DiscrepancyKind(StrEnum):
    MISSING_INTERNAL = "missing_internal"
    MISSING_AT_PROVIDER = "missing_at_provider"
    AMOUNT = "amount"
    CURRENCY = "currency"
    FEE = "fee"
    TIMING = "timing"


@dataclass(frozen=True)
class Discrepancy:
    """A difference and what it stands on: the records and lines behind it, what we expected and what the
    provider has (settlement currency unless ``detail`` says otherwise), and what it counts in the variance."""

    kind: DiscrepancyKind
    key: str
    records: tuple[InternalRecord, ...]
    lines: tuple[SettlementLine, ...]
    expected: Money | None
    actual: Money | None
    variance: Money
    detail: str

    @property
    def explained(self) -> bool:
        return self.kind is DiscrepancyKind.TIMING


@dataclass(frozen=True)
class Reconciliation:
    window: SettlementWindow
    currency: str
    matched: tuple[tuple[tuple[InternalRecord, ...], tuple[SettlementLine, ...]], ...]
    discrepancies: tuple[Discrepancy, ...]
    volume: Money
    unexplained: Money
    in_flight: tuple[InternalRecord, ...] = field(default=())

    @property
    def variance_ratio(self) -> Fraction:
        """Unexplained variance ÷ volume, exact. With no volume: 0 when nothing is unexplained, else 1 (100 %)."""
        if self.volume.is_zero():
            return Fraction(0 if self.unexplained.is_zero() else 1)
        return Fraction(self.unexplained.micros, self.volume.micros)

    @property
    def variance_ppm(self) -> int:
        """The ratio in parts per million, rounded up."""
        ratio = self.variance_ratio * 1_000_000
        return -(-ratio.numerator // ratio.denominator)

    def exceeds(self, threshold: Fraction = VARIANCE_THRESHOLD) -> bool:
        """True when the variance is at or above ``threshold`` (the objective is to stay below it)."""
        return self.variance_ratio >= threshold

    def of_kind(self, kind: DiscrepancyKind) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.kind is kind]


def _sum(amounts: Iterable[Money], currency: str) -> Money:
    return sum(amounts, Money.zero(currency))


def _implied_rate(lines: Sequence[SettlementLine], presentment: str) -> FxRate | None:
    """The rate the provider applied: settlement gross ÷ customer-facing amount, over the lines of one object."""
    facing = [line.customer_facing_amount for line in lines if line.customer_facing_amount is not None]
    if len(facing) != len(lines) or not facing:
        return None
    gross = abs(sum(line.gross.micros for line in lines))
    shown = abs(sum(f.micros for f in facing))
    if not gross or not shown:
        return None
    return FxRate(presentment, lines[0].currency, Fraction(gross, shown), lines[0].created.date(),
                  f"applied by the provider on {lines[0].balance_transaction_id}")


def _expected_gross(records: Sequence[InternalRecord], currency: str, rate: FxRate | None) -> Money | None:
    """What the records say the lines' gross should be (signed), or None when it cannot be said without a rate."""
    total = Money.zero(currency)
    for r in records:
        if r.settled is not None:
            magnitude = r.settled
        elif r.amount.currency == currency:
            magnitude = r.amount
        elif rate is not None and rate.base == r.amount.currency:
            magnitude = convert(r.amount, rate, RoundingMode.HALF_EVEN).target
        else:
            return None
        if magnitude.currency != currency:
            raise ValueError(f"{r.record_id}: settled must be in the settlement currency {currency}")
        total = total + magnitude * r.sign
    return total


def reconcile(records: Iterable[InternalRecord], lines: Iterable[SettlementLine], *, currency: str,
              window: SettlementWindow, in_flight: timedelta = DEFAULT_IN_FLIGHT,
              rates: Mapping[str, FxRate] | None = None) -> Reconciliation:
    """Reconcile ``records`` against ``lines`` settled in ``currency`` (see the module docstring). ``rates``:
    currency → settlement currency, to value a record that is missing at the provider and was made in another
    currency (the provider's own rate is used wherever it has a line)."""
    currency = get_currency(currency).code
    zero = Money.zero(currency)
    rates = rates or {}
    lines = list(lines)
    for line in lines:
        if line.currency != currency:
            raise ValueError(f"{line.balance_transaction_id} settles in {line.currency}, not {currency}: "
                             "reconcile each settlement currency on its own")
    by_key: dict[tuple[str, str], list[SettlementLine]] = defaultdict(list)
    by_payout: dict[str, list[SettlementLine]] = defaultdict(list)
    aliases: dict[tuple[str, str], tuple[str, str]] = {}
    for line in lines:
        key = (line.source_id, line.reporting_category)
        by_key[key].append(line)
        if line.automatic_payout_id:
            by_payout[line.automatic_payout_id].append(line)
        for other in (line.payment_intent_id, line.charge_id):
            if other and other != line.source_id:
                aliases.setdefault((other, line.reporting_category), key)
    grouped: dict[tuple[str, str], list[InternalRecord]] = defaultdict(list)
    for record in records:
        grouped[record.key].append(record)

    found: list[Discrepancy] = []
    matched: list[tuple[tuple[InternalRecord, ...], tuple[SettlementLine, ...]]] = []
    used: set[tuple[str, str]] = set()
    in_flight_records: list[InternalRecord] = []
    extra_volume = zero
    cutoff = window.end - in_flight

    for key, group in grouped.items():
        line_key = key if key in by_key else aliases.get(key)
        label = f"{key[1]} {key[0]}"
        if line_key is None or line_key in used:
            batch = by_payout.get(key[0], []) if key[1] == CATEGORIES[RecordKind.PAYOUT] else []
            if batch:
                expected = _sum((r.settled or r.amount for r in group), currency)
                actual = _sum((line.net for line in batch), currency)
                if expected != actual:
                    found.append(Discrepancy(DiscrepancyKind.AMOUNT, label, tuple(group), tuple(batch), expected,
                                             actual, abs(expected - actual),
                                             "payout amount differs from the net of the lines it paid"))
                else:
                    matched.append((tuple(group), tuple(batch)))
                continue
            expected = _expected_gross(group, currency, None)
            if expected is None:
                presentment = group[0].amount.currency
                rate = rates.get(presentment)
                if rate is None:
                    raise ValueError(f"{label} is missing at the provider and was made in {presentment}: pass a "
                                     f"{presentment}/{currency} rate to value it")
                expected = _expected_gross(group, currency, rate)
                if expected is None:
                    raise ValueError(f"{label}: every record of one provider object is in one currency")
            if max(r.created for r in group) >= cutoff:
                in_flight_records.extend(group)
                found.append(Discrepancy(DiscrepancyKind.TIMING, label, tuple(group), (), expected, None, zero,
                                         f"created within {in_flight} of the window's end: not settled yet"))
            else:
                extra_volume = extra_volume + abs(expected)
                found.append(Discrepancy(DiscrepancyKind.MISSING_AT_PROVIDER, label, tuple(group), (), expected,
                                         None, abs(expected), "no settlement line for this record"))
            continue
        used.add(line_key)
        its_lines = by_key[line_key]
        actual_gross = _sum((line.gross for line in its_lines), currency)
        presentments = {r.amount.currency for r in group}
        facing = its_lines[0].presentment_currency
        if presentments != {facing} or any(line.presentment_currency != facing for line in its_lines):
            found.append(Discrepancy(DiscrepancyKind.CURRENCY, label, tuple(group), tuple(its_lines), None,
                                     actual_gross, abs(actual_gross),
                                     f"booked in {', '.join(sorted(presentments))}, the provider has {facing}"))
            continue
        rate = _implied_rate(its_lines, facing) if facing != currency else None
        expected = _expected_gross(group, currency, rate)
        before = len(found)
        if expected is not None and expected != actual_gross:
            found.append(Discrepancy(DiscrepancyKind.AMOUNT, label, tuple(group), tuple(its_lines), expected,
                                     actual_gross, abs(expected - actual_gross), "gross differs"))
        elif facing != currency:
            # Also what is left to compare when the provider's rate cannot be inferred (a conversion that rounded
            # to nothing, with nothing booked as settled): the amounts the customer saw.
            booked = _sum((r.amount for r in group), facing)
            shown = _sum((abs(line.customer_facing_amount) for line in its_lines if line.customer_facing_amount),
                         facing)
            if booked != shown:
                difference = convert(abs(booked - shown), rate).target if rate is not None else abs(actual_gross)
                found.append(Discrepancy(DiscrepancyKind.AMOUNT, label, tuple(group), tuple(its_lines), booked,
                                         shown, difference,
                                         f"customer-facing amount differs ({booked} booked, {shown} at the provider)"))
        booked_fees = [r.fee for r in group if r.fee is not None]
        if booked_fees:
            expected_fee = _sum(booked_fees, currency)
            actual_fee = _sum((line.fee for line in its_lines), currency)
            if expected_fee != actual_fee:
                found.append(Discrepancy(DiscrepancyKind.FEE, label, tuple(group), tuple(its_lines), expected_fee,
                                         actual_fee, abs(expected_fee - actual_fee), "fee differs"))
        if len(found) == before:
            matched.append((tuple(group), tuple(its_lines)))

    for key, its_lines in by_key.items():
        if key not in used:
            gross = _sum((line.gross for line in its_lines), currency)
            found.append(Discrepancy(DiscrepancyKind.MISSING_INTERNAL, f"{key[1]} {key[0]}", (), tuple(its_lines),
                                     None, gross, abs(gross), "no record of ours for this settlement line"))

    volume = _sum((abs(line.gross) for line in lines), currency) + extra_volume
    unexplained = _sum((d.variance for d in found if not d.explained), currency)
    return Reconciliation(window, currency, tuple(matched), tuple(found), volume, unexplained,
                          tuple(in_flight_records))


def line_keys(line: SettlementLine) -> set[tuple[str, str]]:
    """The keys a record may match a line by: its source, and for a charge's lines its PaymentIntent and charge."""
    ids = {line.source_id, line.payment_intent_id, line.charge_id} - {None}
    return {(i, line.reporting_category) for i in ids if i}


def select_window(records: Iterable[InternalRecord], lines: Iterable[SettlementLine], window: SettlementWindow,
                  carried: Iterable[InternalRecord] = ()) -> tuple[list[InternalRecord], list[SettlementLine]]:
    """What a window reconciles, from records and lines read with a margin around it.

    A record belongs to the window it was created in; a line belongs to its record's window, wherever the window's
    edge fell between the two (a charge settled a second before midnight and booked a second after is one pair of
    the next day); a line no record claims belongs to the window it was created in. ``carried``: the previous
    window's records that were still in flight, taken again whatever their creation time.
    """
    def inside(at: datetime) -> bool:
        return window.start <= at < window.end

    records, lines, carried = list(records), list(lines), list(carried)
    taken = [r for r in records if inside(r.created)]
    seen = {r.record_id for r in taken}
    taken += [r for r in carried if r.record_id not in seen]
    ours = {r.key for r in taken}
    elsewhere = {r.key for r in records if not inside(r.created)} - ours
    kept = [line for line in lines
            if line_keys(line) & ours or (not line_keys(line) & elsewhere and inside(line.created))]
    return taken, kept
