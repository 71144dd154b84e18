"""A synthetic week of activity settled in USD — charges in five currencies converted at the provider's rates,
refunds, disputes (lost and won), provider fees, a transfer and a payout — as our records and as the provider's
settlement lines, consistent by construction. Tests inject one difference at a time into it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import strategies as st

from domain.fx import FxRate, convert
from domain.money import Money, RoundingMode, get_currency
from domain.settlement import InternalRecord, RecordKind, SettlementLine, SettlementWindow

START = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday
WINDOW = SettlementWindow(START, START + timedelta(days=7))
SETTLEMENT = "USD"
# What the provider converted at: units of USD per unit of the presentment currency (charges, then refunds).
CHARGE_RATES = {"EUR": Fraction(10811, 10000), "GBP": Fraction(12641, 10000), "INR": Fraction(11981, 1_000_000),
                "AED": Fraction(272294, 1_000_000), "JPY": Fraction(6631, 1_000_000)}
REFUND_RATES = {"EUR": Fraction(10790, 10000), "GBP": Fraction(12655, 10000), "INR": Fraction(11990, 1_000_000),
                "AED": Fraction(272290, 1_000_000), "JPY": Fraction(6640, 1_000_000)}
DISPUTE_FEE = Money.parse("15.00", "USD")


@dataclass(frozen=True)
class Activity:
    kind: str  # charge | refund | dispute | dispute_won | fee | transfer | payout
    currency: str
    minor: int
    hour: int  # after START; kept before the window's last two days, so nothing is in flight
    book_settled: bool  # whether our FX entry recorded the settled amount (else the provider's rate is inferred)


ACTIVITIES = st.builds(
    Activity,
    st.sampled_from(["charge", "charge", "charge", "refund", "dispute", "dispute_won", "fee", "transfer", "payout"]),
    st.sampled_from(["USD", "EUR", "GBP", "INR", "AED", "JPY"]),
    st.integers(min_value=50, max_value=5_000_000),
    st.integers(min_value=0, max_value=119),
    st.booleans(),
)


@dataclass
class Week:
    records: list[InternalRecord]
    lines: list[SettlementLine]


def _usd(amount: Money, rates: dict[str, Fraction]) -> Money:
    if amount.currency == SETTLEMENT:
        return amount
    rate = FxRate(amount.currency, SETTLEMENT, rates[amount.currency], START.date(), "provider")
    return convert(amount, rate).target


def build(activities: list[Activity]) -> Week:
    week = Week([], [])
    charges: list[tuple[str, Money, int]] = []  # provider id, presentment amount, minor left
    for n, a in enumerate(activities):
        at = START + timedelta(hours=a.hour, seconds=n)
        available = (at + timedelta(days=2)).date()
        kind = a.kind if charges or a.kind in ("fee", "transfer", "payout") else "charge"
        if kind == "charge":
            presentment = Money.from_minor_units(a.minor, a.currency)
            gross = _usd(presentment, CHARGE_RATES)
            fee = gross.scale_to_minor(290, 10_000, RoundingMode.HALF_EVEN) + Money.parse("0.30", "USD")
            if gross <= fee:
                continue
            ch = f"ch_{n:04d}"
            charges.append((ch, presentment, a.minor))
            week.lines.append(SettlementLine(f"txn_{n:04d}", at, available, gross, fee, gross - fee, "charge", ch,
                                             presentment, charge_id=ch, payment_intent_id=f"pi_{n:04d}"))
            settled = gross if a.book_settled and a.currency != SETTLEMENT else None
            week.records.append(InternalRecord(RecordKind.PAYMENT, f"pay_{n:04d}", ch, presentment, at, fee,
                                               settled))
        elif kind == "refund":
            ch, presentment, left = charges[-1]
            if left <= 1:
                continue
            part = Money.from_minor_units(1 + a.minor % (left - 1), presentment.currency)
            charges[-1] = (ch, presentment, left - part.micros // _per_minor(part))
            gross = _usd(part, REFUND_RATES)
            re = f"re_{n:04d}"
            week.lines.append(SettlementLine(f"txn_{n:04d}", at, available, -gross, Money.zero("USD"), -gross,
                                             "refund", re, -part, charge_id=ch))
            settled = gross if a.book_settled and part.currency != SETTLEMENT else None
            week.records.append(InternalRecord(RecordKind.REFUND, f"ref_{n:04d}", re, part, at, None, settled))
        elif kind in ("dispute", "dispute_won"):
            ch, presentment, left = charges.pop()
            disputed = Money.from_minor_units(left, presentment.currency)
            gross = _usd(disputed, CHARGE_RATES)
            du = f"du_{n:04d}"
            week.lines.append(SettlementLine(f"txn_{n:04d}", at, available, -gross, DISPUTE_FEE,
                                             -gross - DISPUTE_FEE, "dispute", du, -disputed, charge_id=ch))
            settled = gross if a.book_settled and disputed.currency != SETTLEMENT else None
            week.records.append(InternalRecord(RecordKind.DISPUTE, f"dsp_{n:04d}", du, disputed, at, DISPUTE_FEE,
                                               settled))
            if kind == "dispute_won":
                later = at + timedelta(hours=1)
                week.lines.append(SettlementLine(f"txn_{n:04d}r", later, available, gross, -DISPUTE_FEE,
                                                 gross + DISPUTE_FEE, "dispute_reversal", du, disputed,
                                                 charge_id=ch))
                week.records.append(InternalRecord(RecordKind.DISPUTE_REVERSAL, f"dsp_{n:04d}r", du, disputed,
                                                   later, -DISPUTE_FEE, settled))
        else:
            amount = Money.from_minor_units(a.minor, SETTLEMENT)
            category = {"fee": "fee", "transfer": "transfer", "payout": "payout"}[kind]
            record_kind = {"fee": RecordKind.FEE, "transfer": RecordKind.TRANSFER, "payout": RecordKind.PAYOUT}[kind]
            ref = {"fee": "fee", "transfer": "tr", "payout": "po"}[kind] + f"_{n:04d}"
            week.lines.append(SettlementLine(f"txn_{n:04d}", at, available, -amount, Money.zero("USD"), -amount,
                                             category, ref))
            week.records.append(InternalRecord(record_kind, f"{kind}_{n:04d}", ref, amount, at))
    return week


def _per_minor(amount: Money) -> int:
    return get_currency(amount.currency).micros_per_minor


# A fixed week for the injection tests: a bit of everything.
FIXED = [
    Activity("charge", "USD", 12_000, 1, False), Activity("charge", "EUR", 8_990, 5, True),
    Activity("refund", "EUR", 2_500, 9, True), Activity("charge", "GBP", 45_000, 20, False),
    Activity("dispute", "GBP", 0, 30, False), Activity("charge", "INR", 1_250_000, 33, True),
    Activity("charge", "AED", 36_725, 40, False), Activity("refund", "AED", 10_000, 41, False),
    Activity("charge", "JPY", 5_400, 50, True), Activity("dispute_won", "JPY", 0, 60, True),
    Activity("charge", "EUR", 100_000, 70, False), Activity("fee", "USD", 500, 80, False),
    Activity("transfer", "USD", 50_000, 90, False), Activity("payout", "USD", 80_000, 100, False),
    Activity("charge", "USD", 7_777, 110, False),
]


def fixed_week() -> Week:
    return build(FIXED)


def with_line(week: Week, source_id: str, **changes: object) -> Week:
    """The week with the first line of ``source_id`` changed."""
    i = next(i for i, line in enumerate(week.lines) if line.source_id == source_id)
    lines = list(week.lines)
    lines[i] = replace(lines[i], **changes)  # type: ignore[arg-type]
    return Week(list(week.records), lines)
