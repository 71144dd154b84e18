"""Exchange rates, conversions and what a conversion posts to the ledger.

Rates
    ``FxRate(base, quote, rate, as_of, source)``: one unit of ``base`` is worth ``rate`` units of ``quote``
    (EUR→USD 1.0811 means 1 EUR = 1.0811 USD). ``rate`` is an exact ``fractions.Fraction`` — an integer ratio,
    never a float. A published decimal ("1.0811") becomes 10811/10000 exactly, and inverses and cross rates stay
    exact although most have no finite decimal (USD→EUR is 10000/10811). ``as_of`` is the date the rate
    was published or applied (not the date it was asked for), ``source`` says who published it and how it was
    derived, in words a person auditing the books can follow. A decimal form (``decimal_string``) is for display
    and for APIs that want one; the arithmetic never uses it.

Conversions
    ``convert(amount, rate)`` → ``Conversion``: the source amount, the target amount, the rate (with its date
    and source) and the rounding used. Unless stated otherwise the target is rounded once, half-even, to the
    target currency's minor unit (what a provider can actually move); ``to_minor=False`` keeps micro precision
    for intermediate values. ``convert_parts`` converts a total once and splits the result in proportion to
    the parts, so converted parts always add up to the converted total — converting each part and rounding it
    separately can gain or lose a minor unit per part.

Settling a conversion (``conversion_entry``)
    When money arrives (or leaves) in another currency than it was charged in, the provider converts it at its
    own rate; we had quoted a rate when we invoiced or charged. One entry, per currency balanced, books both::

        presentment currency P:   Dr fx_clearing:P           presentment
                                  Cr <from account>:P        presentment     (e.g. cash:stripe:EUR)
        settlement currency S:    Dr <to account>:S          settled         (e.g. cash:stripe:USD)
                                  Cr fx_clearing:S           expected        (presentment at the quoted rate)
                                  Dr fx_gain_loss:S          expected - settled   (a debit is a loss)

    The fx_clearing pair is the currency position the conversion opened: +P in P and -expected in S, which are
    worth the same at the quoted rate (to within the rounding of ``expected``), so the pair nets to zero in value
    while each currency's lines sum to zero by construction. What the provider's rate gave more or less than the
    quoted rate is the FX gain or loss, measured and booked in the settlement currency. Money going out (a refund
    paid in P out of an S balance) is the same entry with both amounts negative: the quoted rate stays the rate
    of the original direction (P→S), so a refund at a worse rate than the charge books a loss.

Pure: stdlib only (``fractions``, no floats); rounding goes through ``domain.money``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from domain.ledger import Account, AccountCode, JournalEntry, Line, cash, entry
from domain.money import Money, RoundingMode, get_currency

# One rounding rule for money crossing currencies unless a caller says otherwise: half-even is unbiased over many
# conversions (half-up drifts upward), and it is what the money module uses for shares and taxes.
DEFAULT_ROUNDING = RoundingMode.HALF_EVEN

# Strict like Money.parse: a rate comes from a machine (a rate file, a provider's API), and anything loose is more
# likely a bug than a convenience. No sign: a rate is positive.
_RATE_RE = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


class FxError(ValueError):
    """A rate or conversion that cannot be right (wrong currencies, non-positive rate, float input)."""


def parse_rate(text: str) -> Fraction:
    """A published decimal rate ("1.0811", "163.45", "0.82805") as an exact ratio; rejects anything else."""
    if not isinstance(text, str):
        raise TypeError(f"a rate text must be a str, got {type(text).__name__}")
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise FxError(f"{text!r} is not a plain positive decimal rate like '1.0811'")
    whole, fraction = match.group(1), match.group(2) or ""
    value = Fraction(int(whole + fraction), 10 ** len(fraction))
    if value <= 0:
        raise FxError(f"a rate must be positive, got {text!r}")
    return value


def _exact(rate: object) -> Fraction:
    # bool is an int and float is inexact: both are bugs as a rate. Decimal is exact, so it is let through.
    if isinstance(rate, bool | float):
        raise TypeError(f"a rate must be exact (str, int, Fraction or Decimal), got {type(rate).__name__}")
    if isinstance(rate, str):
        return parse_rate(rate)
    if isinstance(rate, tuple):
        numerator, denominator = rate
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (numerator, denominator)):
            raise TypeError("a (numerator, denominator) rate takes two ints")
        return Fraction(numerator, denominator)
    if isinstance(rate, int | Fraction):
        return Fraction(rate)
    if isinstance(rate, Decimal):  # exact, and what a JSON body parsed with parse_float=Decimal gives
        if not rate.is_finite():
            raise FxError(f"a rate must be finite, got {rate}")
        return Fraction(rate)
    raise TypeError(f"a rate must be exact (str, int, Fraction or Decimal), got {type(rate).__name__}")


@dataclass(frozen=True, slots=True)
class FxRate:
    """One unit of ``base`` is worth ``rate`` units of ``quote``, as published or applied on ``as_of``."""

    base: str
    quote: str
    rate: Fraction
    as_of: date
    source: str

    def __post_init__(self) -> None:
        base, quote = get_currency(self.base).code, get_currency(self.quote).code
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "quote", quote)
        object.__setattr__(self, "rate", _exact(self.rate))
        if self.rate <= 0:
            raise FxError(f"a rate must be positive, got {self.rate}")
        if base == quote and self.rate != 1:
            raise FxError(f"{base}→{quote} can only be 1, got {self.rate}")
        if not isinstance(self.as_of, date):
            raise TypeError("as_of must be a date")
        if not self.source:
            raise FxError("a rate must say where it comes from")

    @classmethod
    def of(cls, base: str, quote: str, rate: str | int | Fraction | tuple[int, int], as_of: date,
           source: str) -> FxRate:
        """A rate from a decimal string ("1.0811"), an int, a Fraction or a (numerator, denominator) pair."""
        return cls(base, quote, _exact(rate), as_of, source)

    @classmethod
    def identity(cls, currency: str, as_of: date) -> FxRate:
        return cls(currency, currency, Fraction(1), as_of, "same currency")

    @property
    def pair(self) -> str:
        return f"{self.base}/{self.quote}"

    def inverse(self) -> FxRate:
        """``quote``→``base``, exactly 1/rate (no rounding: 1/1.0811 is kept as 10000/10811)."""
        return FxRate(self.quote, self.base, 1 / self.rate, self.as_of, f"inverse of {self.pair} ({self.source})")

    def then(self, other: FxRate) -> FxRate:
        """The cross rate ``self.base``→``other.quote`` through the pivot ``self.quote`` = ``other.base``.

        Dated by the older of the two legs (a cross rate is no fresher than its stalest input).
        """
        if self.quote != other.base:
            raise FxError(f"cannot chain {self.pair} with {other.pair}: the pivot must be {self.quote}")
        return FxRate(self.base, other.quote, self.rate * other.rate, min(self.as_of, other.as_of),
                      f"{self.pair} * {other.pair} via {self.quote} ({self.source}; {other.source})")

    def decimal_string(self, places: int = 10) -> str:
        """The rate as a decimal: exact when it terminates within ``places``, else rounded half-even to them.

        For display and for providers that take a decimal; the arithmetic always uses ``rate`` itself.
        """
        if places < 0:
            raise ValueError("places must be >= 0")
        scaled = self.rate * 10**places
        units = round(scaled)  # Fraction.__round__ rounds half to even, exactly
        whole, frac = divmod(units, 10**places)
        digits = f"{frac:0{places}d}".rstrip("0") if places else ""
        return f"{whole}.{digits}" if digits else str(whole)

    def describe(self) -> str:
        return f"{self.pair} {self.decimal_string()} on {self.as_of.isoformat()} ({self.source})"


def cross_rate(pivot_to_base: FxRate, pivot_to_quote: FxRate) -> FxRate:
    """base→quote from two rates published against the same pivot, as a central bank publishes them.

    ECB publishes EUR→X, so USD→GBP = cross_rate(EUR→USD, EUR→GBP) = (EUR→USD)⁻¹ * (EUR→GBP), exactly.
    """
    if pivot_to_base.base != pivot_to_quote.base:
        raise FxError(f"{pivot_to_base.pair} and {pivot_to_quote.pair} do not share a pivot")
    if pivot_to_base.quote == pivot_to_base.base:
        return pivot_to_quote
    if pivot_to_quote.quote == pivot_to_quote.base:
        return pivot_to_base.inverse()
    return pivot_to_base.inverse().then(pivot_to_quote)


@dataclass(frozen=True, slots=True)
class Conversion:
    """``source`` converted at ``rate`` into ``target``, rounded by ``rounding`` (to minor units unless not)."""

    source: Money
    target: Money
    rate: FxRate
    rounding: RoundingMode
    to_minor: bool

    @property
    def exact_micros(self) -> Fraction:
        """The unrounded target in micro-units: what the rate gives before any rounding."""
        return self.source.micros * self.rate.rate

    @property
    def rounding_micros(self) -> Fraction:
        """target - exact: how much the rounding added (negative: took away), in target micro-units."""
        return self.target.micros - self.exact_micros

    def describe(self) -> str:
        precision = "minor units" if self.to_minor else "micro-units"
        return (f"{self.source} → {self.target} at {self.rate.describe()}, "
                f"{self.rounding.value.lower()} to {precision}")


def convert(amount: Money, rate: FxRate, rounding: RoundingMode = DEFAULT_ROUNDING, *,
            to_minor: bool = True) -> Conversion:
    """``amount`` (in ``rate.base``) in ``rate.quote``: one rounding step, to minor units unless ``to_minor=False``.

    Negative amounts convert as the mirror image of positive ones under the symmetric modes (half-even, half-up,
    up, down), so a refund converts to exactly minus its charge at the same rate.
    """
    if amount.currency != rate.base:
        raise FxError(f"cannot convert {amount.currency} at a {rate.pair} rate")
    # The source's micro count carried in the target currency: micros are millionths of a major unit in every
    # currency, so target micros = source micros * rate; Money's scaling does the one rounding step.
    carried = Money(amount.micros, rate.quote)
    num, den = rate.rate.numerator, rate.rate.denominator
    target = carried.scale_to_minor(num, den, rounding) if to_minor else carried.scale(num, den, rounding)
    return Conversion(amount, target, rate, rounding, to_minor)


def convert_parts(parts: Sequence[Money], rate: FxRate, rounding: RoundingMode = DEFAULT_ROUNDING
                  ) -> list[Money]:
    """Convert the total of ``parts`` once (to minor units) and split it in proportion to the parts.

    The converted parts sum exactly to ``convert(sum(parts))`` — an invoice's lines converted this way still
    add up to its converted total. Parts of mixed sign are split by magnitude within each sign, so a discount
    line stays negative.
    """
    if not parts:
        return []
    total = sum(parts[1:], parts[0])
    if any(p.currency != rate.base for p in parts):
        raise FxError(f"every part must be in {rate.base}")
    converted_total = convert(total, rate, rounding).target
    positive = [p.micros if p.micros > 0 else 0 for p in parts]
    negative = [-p.micros if p.micros < 0 else 0 for p in parts]
    if not any(negative):
        return _split(converted_total, positive)
    if not any(positive):
        return _split(converted_total, negative)
    # Mixed signs: convert each side's total, then fix the positive side so the two add up to the total.
    neg_target = convert(Money(-sum(negative), rate.base), rate, rounding).target
    pos_target = converted_total - neg_target
    return [a + b for a, b in zip(_split(pos_target, positive), _split(neg_target, negative), strict=True)]


def _split(amount: Money, weights: list[int]) -> list[Money]:
    if not any(weights):
        return [Money.zero(amount.currency) for _ in weights]
    unit = get_currency(amount.currency).micros_per_minor
    return amount.allocate(weights, unit=unit if amount.micros % unit == 0 else 1)


# --- settling a conversion in the ledger -----------------------------------------------------------------------
def fx_clearing(currency: str) -> Account:
    return Account(AccountCode.FX_CLEARING, currency)


def fx_gain_loss(currency: str) -> Account:
    return Account(AccountCode.FX_GAIN_LOSS, currency)


@dataclass(frozen=True, slots=True)
class FxSettlement:
    """A conversion as settled: what the quoted rate expected, what arrived, and the difference."""

    presentment: Money
    settled: Money
    quoted: Conversion  # presentment at the quoted rate → expected
    settled_rate: FxRate | None  # the provider's applied rate, when it told us (for the record)

    @property
    def expected(self) -> Money:
        return self.quoted.target

    @property
    def gain(self) -> Money:
        """settled - expected: positive when the provider's rate gave more than quoted (a gain), negative a loss."""
        return self.settled - self.expected


def settle_conversion(presentment: Money, settled: Money, quoted: FxRate, settled_rate: FxRate | None = None,
                      rounding: RoundingMode = DEFAULT_ROUNDING) -> FxSettlement:
    """Compare what a conversion settled at (``settled``, as the provider reported it) with the quoted rate."""
    if quoted.base != presentment.currency or quoted.quote != settled.currency:
        raise FxError(f"a quoted {quoted.pair} rate cannot settle {presentment.currency}→{settled.currency}")
    if quoted.base == quoted.quote:
        raise FxError("a conversion needs two currencies")
    if settled_rate is not None and (settled_rate.base, settled_rate.quote) != (quoted.base, quoted.quote):
        raise FxError(f"the settled rate {settled_rate.pair} is not a {quoted.pair} rate")
    if presentment.is_zero() or settled.is_zero():
        raise FxError("nothing to convert: a conversion moves money in both currencies")
    if presentment.is_positive() != settled.is_positive():
        raise FxError(f"{presentment} cannot settle as {settled}: both legs move the same way")
    return FxSettlement(presentment, settled, convert(presentment, quoted, rounding), settled_rate)


def conversion_entry(source_type: str, source_id: str, event: str, settlement: FxSettlement,
                     from_account: Account, to_account: Account) -> JournalEntry:
    """The entry of a settled conversion (see the module docstring): ``presentment`` leaves ``from_account``
    (in the presentment currency), ``settled`` enters ``to_account`` (in the settlement currency), the clearing
    pair carries the position and fx_gain_loss the difference to the quoted rate."""
    p, s = settlement.presentment, settlement.settled
    if from_account.currency != p.currency or to_account.currency != s.currency:
        raise FxError("from_account must be in the presentment currency and to_account in the settlement currency")
    expected = settlement.expected
    lines = [
        Line(fx_clearing(p.currency), p.micros),
        Line(from_account, -p.micros),
        Line(to_account, s.micros),
        Line(fx_clearing(s.currency), -expected.micros),
        Line(fx_gain_loss(s.currency), expected.micros - s.micros),
    ]
    memo = f"quoted {settlement.quoted.describe()}"
    if settlement.settled_rate is not None:
        memo += f"; settled at {settlement.settled_rate.describe()}"
    return entry(source_type, source_id, event, lines, memo=memo)


def provider_conversion(source_type: str, source_id: str, event: str, provider: str, settlement: FxSettlement
                        ) -> JournalEntry:
    """The common case: the provider converted within its balance, cash:<provider>:P → cash:<provider>:S.

    A charge of 100.00 EUR that landed as 107.00 USD (quoted 1.0811) after ``payment_completed`` posted
    Dr cash:stripe:EUR 100.00 is ``provider_conversion("payment", id, "payment.fx_settled", "stripe",
    settle_conversion(EUR 100.00, USD 107.00, quoted))``: cash:stripe:EUR back to zero, cash:stripe:USD +107.00,
    fx_gain_loss:USD +1.11 (a loss). A refund of it: both amounts negative.
    """
    presentment, settled = settlement.presentment.currency, settlement.settled.currency
    return conversion_entry(source_type, source_id, event, settlement, cash(provider, presentment),
                            cash(provider, settled))
