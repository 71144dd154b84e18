"""Money as an exact integer count of micro-units plus an ISO 4217 currency code.

Why micro-units (1e-6 of the major unit) instead of minor units (cents):

* Every amount is a plain ``int``; floats never appear, so there is no binary
  rounding error and equality is exact.
* Six decimals is finer than any ISO 4217 minor unit (max 3 in this table,
  4 in the whole standard), so one representation serves JPY (0), USD (2)
  and KWD (3) alike.
* The spare digits hold exact sub-minor intermediate values (fees in basis
  points, per-unit usage prices, FX legs). Turning those back into something
  chargeable is always an explicit, named rounding step
  (``to_minor_units(rounding)`` / ``round_to_minor(rounding)``), never an
  implicit one.
* ``MAX_MICROS`` = 1e18 (1e12 major units) keeps every value, and the sum or
  difference of any two values, inside a Postgres ``bigint`` (9.2e18).

This module is pure: no I/O, no floats, no ``decimal``; rounding is integer
``divmod`` only, so behaviour is identical on every platform.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

MICROS_PER_UNIT = 1_000_000
MICRO_DIGITS = 6
# Comfortably inside bigint (9.2e18) even after adding two extreme values, and a
# multiple of every minor-unit size so rounding to minor units cannot overflow.
MAX_MICROS = 10**18
BASIS_POINTS_PER_WHOLE = 10_000


class MoneyError(ValueError):
    """Base class for every money validation error (all are ValueErrors)."""


class UnknownCurrency(MoneyError):
    """The currency code is not in ``CURRENCIES``."""


class MoneyOverflow(MoneyError):
    """The amount is outside ``[-MAX_MICROS, MAX_MICROS]``."""


class InvalidAmount(MoneyError):
    """A decimal string could not be parsed as an amount of the currency."""


class CurrencyMismatch(MoneyError):
    """Two amounts in different currencies were combined or ordered."""


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency; ``exponent`` is the number of minor-unit digits."""

    code: str
    exponent: int

    def __post_init__(self) -> None:
        # A currency finer than a micro could not be represented exactly.
        if not 0 <= self.exponent <= MICRO_DIGITS:
            raise ValueError(f"exponent must be in 0..{MICRO_DIGITS}, got {self.exponent}")

    @property
    def micros_per_minor(self) -> int:
        """Micro-units in one minor unit (10_000 for USD cents, 1_000_000 for JPY)."""
        return 10 ** (MICRO_DIGITS - self.exponent)


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("USD", 2),
        Currency("EUR", 2),
        Currency("GBP", 2),
        Currency("AED", 2),
        Currency("INR", 2),
        Currency("CHF", 2),
        Currency("CAD", 2),
        Currency("AUD", 2),
        Currency("JPY", 0),
        Currency("KWD", 3),
        Currency("BHD", 3),
    )
}


def get_currency(code: str) -> Currency:
    """Look up a currency case-insensitively; raise ``UnknownCurrency`` otherwise."""
    currency = CURRENCIES.get(code.upper()) if isinstance(code, str) else None
    if currency is None:
        raise UnknownCurrency(f"unknown currency: {code!r}")
    return currency


class RoundingMode(Enum):
    """How to round an exact quotient to an integer. Always chosen explicitly."""

    HALF_UP = "HALF_UP"  # nearest; .5 goes away from zero
    HALF_EVEN = "HALF_EVEN"  # nearest; .5 goes to the even neighbour (banker's)
    DOWN = "DOWN"  # toward zero (truncate)
    UP = "UP"  # away from zero
    FLOOR = "FLOOR"  # toward -infinity
    CEILING = "CEILING"  # toward +infinity


def _require_int(value: object, what: str) -> int:
    # bool is an int subclass, but True as an amount or factor is always a bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value


def _divide(numerator: int, denominator: int, rounding: RoundingMode) -> int:
    """``numerator / denominator`` rounded per ``rounding``; denominator > 0."""
    if not isinstance(rounding, RoundingMode):
        raise TypeError(f"rounding must be a RoundingMode, got {type(rounding).__name__}")
    floor, remainder = divmod(numerator, denominator)  # floor division: remainder >= 0
    if remainder == 0:
        return floor
    ceiling = floor + 1
    # floor and ceiling are the two candidates; pick by direction...
    if rounding is RoundingMode.FLOOR:
        return floor
    if rounding is RoundingMode.CEILING:
        return ceiling
    away_from_zero = ceiling if numerator > 0 else floor
    toward_zero = floor if numerator > 0 else ceiling
    if rounding is RoundingMode.UP:
        return away_from_zero
    if rounding is RoundingMode.DOWN:
        return toward_zero
    # ...or by distance, comparing 2*remainder with the denominator to stay integral.
    twice = 2 * remainder
    if twice != denominator:
        return floor if twice < denominator else ceiling
    if rounding is RoundingMode.HALF_UP:
        return away_from_zero
    return floor if floor % 2 == 0 else ceiling  # HALF_EVEN


# Strict on purpose: optional "-", digits, optional "." followed by digits. No "+",
# whitespace, separators, exponents, ".5" or "12." -- inputs are machine-produced
# and anything loose is more likely a bug than a convenience. [0-9], not \d,
# because \d also matches non-ASCII digits that int() would happily accept.
_AMOUNT_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_MAX_WHOLE_DIGITS = len(str(MAX_MICROS // MICROS_PER_UNIT))


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``micros`` millionths of one major unit of ``currency``."""

    micros: int
    currency: str

    def __post_init__(self) -> None:
        _require_int(self.micros, "micros")
        # Normalise so "usd" and "USD" compare (and hash) equal.
        object.__setattr__(self, "currency", get_currency(self.currency).code)
        if abs(self.micros) > MAX_MICROS:
            raise MoneyOverflow(f"{self.micros} micros is outside +/-{MAX_MICROS}")

    # ---- constructors -------------------------------------------------------

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def of_micros(cls, micros: int, currency: str) -> Money:
        return cls(micros, currency)

    @classmethod
    def from_minor_units(cls, minor: int, currency: str) -> Money:
        """Exact inverse of ``to_minor_units``: 1234 USD cents -> 12.34 USD."""
        minor = _require_int(minor, "minor")
        return cls(minor * get_currency(currency).micros_per_minor, currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse a plain decimal string ("12.34", "-3", "0.5") exactly.

        At most ``exponent`` decimals are allowed, counted literally ("1.230" is
        rejected for USD): an amount with more precision than the currency has
        cannot have come from a well-formed source.
        """
        if not isinstance(text, str):
            raise TypeError(f"amount must be a str, got {type(text).__name__}")
        cur = get_currency(currency)
        match = _AMOUNT_RE.fullmatch(text)
        if match is None:
            raise InvalidAmount(f"{text!r} is not a plain decimal amount like '12.34'")
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        if len(fraction) > cur.exponent:
            raise InvalidAmount(
                f"{text!r} has {len(fraction)} decimal places; {cur.code} allows at most {cur.exponent}"
            )
        whole = whole.lstrip("0") or "0"
        # Checked before int() so a huge digit string fails fast and as an overflow.
        if len(whole) > _MAX_WHOLE_DIGITS:
            raise MoneyOverflow(f"{text!r} is outside +/-{MAX_MICROS} micros")
        micros = int(whole) * MICROS_PER_UNIT + int(fraction.ljust(MICRO_DIGITS, "0"))
        return cls(-micros if sign else micros, cur.code)

    # ---- formatting ---------------------------------------------------------

    def to_decimal_string(self) -> str:
        """Canonical decimal: exactly ``exponent`` decimals ("12.30", JPY "1200").

        A sub-minor amount (e.g. an unrounded fee) keeps its extra digits
        ("0.025") rather than being silently rounded for display.
        """
        exponent = get_currency(self.currency).exponent
        whole, fraction = divmod(abs(self.micros), MICROS_PER_UNIT)
        digits = f"{fraction:0{MICRO_DIGITS}d}".rstrip("0").ljust(exponent, "0")
        sign = "-" if self.micros < 0 else ""
        return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"

    def __str__(self) -> str:
        return f"{self.to_decimal_string()} {self.currency}"

    # ---- predicates ---------------------------------------------------------

    def is_zero(self) -> bool:
        return self.micros == 0

    def is_positive(self) -> bool:
        return self.micros > 0

    def is_negative(self) -> bool:
        return self.micros < 0

    # ---- arithmetic ---------------------------------------------------------

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.micros + other.micros, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.micros - other.micros, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.micros, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.micros), self.currency)

    def __mul__(self, factor: int) -> Money:
        # Raise rather than return NotImplemented so `money * 1.1` names the rule.
        factor = _require_int(factor, "Money can only be multiplied by an int; factor")
        return Money(self.micros * factor, self.currency)

    __rmul__ = __mul__

    # ---- ordering (== / != come from the dataclass: other currency -> unequal) --

    def _ordered_micros(self, other: object) -> int | None:
        if not isinstance(other, Money):
            return None
        self._same_currency(other)
        return other.micros

    def __lt__(self, other: object) -> bool:
        micros = self._ordered_micros(other)
        return NotImplemented if micros is None else self.micros < micros

    def __le__(self, other: object) -> bool:
        micros = self._ordered_micros(other)
        return NotImplemented if micros is None else self.micros <= micros

    def __gt__(self, other: object) -> bool:
        micros = self._ordered_micros(other)
        return NotImplemented if micros is None else self.micros > micros

    def __ge__(self, other: object) -> bool:
        micros = self._ordered_micros(other)
        return NotImplemented if micros is None else self.micros >= micros

    # ---- rounding to the currency's minor unit ------------------------------

    def to_minor_units(self, rounding: RoundingMode) -> int:
        """Whole minor units (USD cents, JPY yen, KWD fils), rounded explicitly."""
        return _divide(self.micros, get_currency(self.currency).micros_per_minor, rounding)

    def round_to_minor(self, rounding: RoundingMode) -> Money:
        """This amount rounded to a whole number of minor units."""
        return Money.from_minor_units(self.to_minor_units(rounding), self.currency)

    # ---- splitting ----------------------------------------------------------

    def allocate(self, ratios: Sequence[int], *, unit: int = 1) -> list[Money]:
        """Split by integer weights so the parts sum exactly to ``self``.

        Each part gets the floor of its exact share (in whole ``unit``s of
        micros); the leftover units go one each to the parts with the largest
        fractional remainder, earlier index first on ties. Negative amounts are
        allocated as the mirror image of the positive amount.
        """
        weights = [_require_int(r, "ratio") for r in ratios]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"ratios must be non-negative with at least one positive: {weights}")
        unit = _require_int(unit, "unit")
        if unit <= 0 or self.micros % unit:
            raise ValueError(f"{self.micros} micros is not a whole number of {unit}-micro units")
        total, sign = abs(self.micros) // unit, (-1 if self.micros < 0 else 1)
        shares = [divmod(total * w, sum(weights)) for w in weights]
        leftover = total - sum(base for base, _ in shares)
        # leftover < number of parts with a nonzero remainder, so zero weights get nothing.
        by_remainder = sorted(range(len(shares)), key=lambda i: (-shares[i][1], i))
        bonus = set(by_remainder[:leftover])
        return [
            Money(sign * (base + (i in bonus)) * unit, self.currency) for i, (base, _) in enumerate(shares)
        ]

    def percentage(self, basis_points: int, rounding: RoundingMode) -> Money:
        """``basis_points``/10_000 of this amount (250 = 2.5%), rounded to micros."""
        basis_points = _require_int(basis_points, "basis_points")
        micros = _divide(self.micros * basis_points, BASIS_POINTS_PER_WHOLE, rounding)
        return Money(micros, self.currency)

    def scale(self, numerator: int, denominator: int, rounding: RoundingMode) -> Money:
        """This amount times ``numerator / denominator``, rounded to micros (a share of a share, exactly)."""
        numerator = _require_int(numerator, "numerator")
        denominator = _require_int(denominator, "denominator")
        if denominator <= 0:
            raise ValueError(f"denominator must be positive, got {denominator}")
        return Money(_divide(self.micros * numerator, denominator, rounding), self.currency)

    def scale_to_minor(self, numerator: int, denominator: int, rounding: RoundingMode) -> Money:
        """This amount times ``numerator / denominator``, rounded once, straight to whole minor units.

        One rounding step, not two: rounding to micros first and then to minor units can land on the other
        side of a half (0.0049996 -> 0.005 -> 0.01), which is how tax lines stop reconciling. A tax of
        19 % is ``scale_to_minor(190_000, 1_000_000, HALF_EVEN)``.
        """
        numerator = _require_int(numerator, "numerator")
        denominator = _require_int(denominator, "denominator")
        if denominator <= 0:
            raise ValueError(f"denominator must be positive, got {denominator}")
        per_minor = get_currency(self.currency).micros_per_minor
        minor = _divide(self.micros * numerator, denominator * per_minor, rounding)
        return Money.from_minor_units(minor, self.currency)

    def split_percentage(self, basis_points: int) -> tuple[Money, Money]:
        """``(part, rest)`` with part = percentage(HALF_EVEN) and part + rest == self.

        ``basis_points`` must be within 0..10_000: outside it "rest" would not be
        a remainder of this amount, which is a bug in any split (use
        ``percentage`` for surcharges or discounts).
        """
        basis_points = _require_int(basis_points, "basis_points")
        if not 0 <= basis_points <= BASIS_POINTS_PER_WHOLE:
            raise ValueError(f"basis_points must be in 0..{BASIS_POINTS_PER_WHOLE}, got {basis_points}")
        part = self.percentage(basis_points, RoundingMode.HALF_EVEN)
        return part, self - part
