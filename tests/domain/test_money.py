"""Tests for domain.money: table-driven rules plus hypothesis properties.

Exact oracles (fractions.Fraction, decimal.Decimal with ample precision) are used
only here, to check the integer-only implementation independently.
"""

from __future__ import annotations

import dataclasses
import decimal
import operator
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import (
    CURRENCIES,
    MAX_MICROS,
    MICROS_PER_UNIT,
    Currency,
    CurrencyMismatch,
    InvalidAmount,
    Money,
    MoneyOverflow,
    RoundingMode,
    UnknownCurrency,
    get_currency,
)

HU, HE, DN, UP, FL, CE = (
    RoundingMode.HALF_UP,
    RoundingMode.HALF_EVEN,
    RoundingMode.DOWN,
    RoundingMode.UP,
    RoundingMode.FLOOR,
    RoundingMode.CEILING,
)

DECIMAL_ROUNDING = {
    HU: decimal.ROUND_HALF_UP,
    HE: decimal.ROUND_HALF_EVEN,
    DN: decimal.ROUND_DOWN,
    UP: decimal.ROUND_UP,
    FL: decimal.ROUND_FLOOR,
    CE: decimal.ROUND_CEILING,
}


def usd(micros: int) -> Money:
    return Money(micros, "USD")


def decimal_oracle(numerator: int, denominator: int, rounding: RoundingMode) -> int:
    """Reference rounding via the decimal module (exact at this precision)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        quotient = Decimal(numerator) / Decimal(denominator)
        return int(quotient.quantize(Decimal(1), rounding=DECIMAL_ROUNDING[rounding]))


# ---- strategies -------------------------------------------------------------

codes = st.sampled_from(sorted(CURRENCIES))
modes = st.sampled_from(list(RoundingMode))
any_micros = st.integers(min_value=-MAX_MICROS, max_value=MAX_MICROS)


@st.composite
def monies(draw: st.DrawFn, bound: int = MAX_MICROS) -> Money:
    return Money(draw(st.integers(min_value=-bound, max_value=bound)), draw(codes))


@st.composite
def minor_aligned(draw: st.DrawFn) -> Money:
    code = draw(codes)
    limit = MAX_MICROS // get_currency(code).micros_per_minor
    return Money.from_minor_units(draw(st.integers(min_value=-limit, max_value=limit)), code)


# ---- currencies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("USD", 2), ("EUR", 2), ("GBP", 2), ("AED", 2), ("INR", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3)],
)
def test_currency_table(code: str, exponent: int) -> None:
    assert CURRENCIES[code] == Currency(code, exponent)
    assert get_currency(code.lower()) is CURRENCIES[code]


def test_currency_table_keys_are_upper_case_codes() -> None:
    assert all(key == cur.code == cur.code.upper() for key, cur in CURRENCIES.items())


@pytest.mark.parametrize("code", ["XXX", "", "US", "USDD", " USD", "US D", None, 840])
def test_unknown_currency(code: object) -> None:
    with pytest.raises(UnknownCurrency):
        get_currency(code)  # type: ignore[arg-type]


def test_unknown_currency_is_value_error() -> None:
    assert issubclass(UnknownCurrency, ValueError)
    with pytest.raises(UnknownCurrency):
        Money(1, "XXX")


def test_currency_exponent_beyond_micros_rejected() -> None:
    with pytest.raises(ValueError, match="exponent"):
        Currency("ABC", 7)


def test_micros_per_minor() -> None:
    assert get_currency("USD").micros_per_minor == 10_000
    assert get_currency("JPY").micros_per_minor == 1_000_000
    assert get_currency("KWD").micros_per_minor == 1_000


# ---- construction -----------------------------------------------------------


def test_currency_normalised_to_upper_case() -> None:
    money = Money(5, "usd")
    assert money.currency == "USD"
    assert money == Money(5, "USD")
    assert hash(money) == hash(Money(5, "USD"))


@pytest.mark.parametrize("micros", [1.0, 0.5, Decimal("1"), Fraction(1, 2), "1", True, False, None])
def test_non_int_micros_rejected(micros: object) -> None:
    with pytest.raises(TypeError):
        Money(micros, "USD")  # type: ignore[arg-type]


def test_range_bounds() -> None:
    assert Money(MAX_MICROS, "USD").micros == MAX_MICROS
    assert Money(-MAX_MICROS, "USD").micros == -MAX_MICROS
    for micros in (MAX_MICROS + 1, -MAX_MICROS - 1, 10**40):
        with pytest.raises(MoneyOverflow):
            Money(micros, "USD")
    assert MAX_MICROS * 2 < 2**63  # sum of two extremes still fits a Postgres bigint


def test_immutable() -> None:
    money = usd(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        money.micros = 2  # type: ignore[misc]


def test_constructors() -> None:
    assert Money.zero("eur") == Money(0, "EUR")
    assert Money.zero("EUR").is_zero()
    assert Money.of_micros(42, "GBP") == Money(42, "GBP")
    with pytest.raises(TypeError):
        Money.of_micros(1.5, "GBP")  # type: ignore[arg-type]


# ---- parse ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "micros"),
    [
        ("12.34", "USD", 12_340_000),
        ("12.3", "USD", 12_300_000),
        ("0.5", "USD", 500_000),
        ("0.01", "USD", 10_000),
        ("-0.01", "USD", -10_000),
        ("-3", "USD", -3_000_000),
        ("1000", "USD", 1_000_000_000),
        ("0", "USD", 0),
        ("-0", "USD", 0),
        ("0.00", "USD", 0),
        ("007.50", "USD", 7_500_000),  # leading zeros are harmless and accepted
        ("12.34", "usd", 12_340_000),
        ("1200", "JPY", 1_200_000_000),
        ("-5", "JPY", -5_000_000),
        ("1.234", "KWD", 1_234_000),
        ("0.001", "KWD", 1_000),
        ("1000000000000", "USD", MAX_MICROS),
        ("-1000000000000.00", "USD", -MAX_MICROS),
    ],
)
def test_parse_accepts(text: str, code: str, micros: int) -> None:
    assert Money.parse(text, code) == Money(micros, code)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "USD"),
        (" ", "USD"),
        ("\t", "USD"),
        (" 12.34", "USD"),  # no implicit strip: callers normalise input first
        ("12.34 ", "USD"),
        ("12.34\n", "USD"),
        ("NaN", "USD"),
        ("nan", "USD"),
        ("inf", "USD"),
        ("-inf", "USD"),
        ("Infinity", "USD"),
        ("1e3", "USD"),
        ("1E3", "USD"),
        ("1.5e2", "USD"),
        ("1,000", "USD"),
        ("1_000", "USD"),
        ("1 000", "USD"),
        ("1'000", "USD"),
        ("12.", "USD"),  # strict: a decimal point must have digits on both sides
        (".5", "USD"),
        ("-.5", "USD"),
        ("+5", "USD"),  # strict: positive amounts carry no sign
        ("--5", "USD"),
        ("-", "USD"),
        ("12.34.5", "USD"),
        ("abc", "USD"),
        ("0x10", "USD"),
        ("\u0661\u0662", "USD"),  # Arabic-Indic digits: int() would accept them
        ("$12.34", "USD"),
        ("0.001", "USD"),  # more decimals than USD has
        ("1.234", "USD"),
        ("1.230", "USD"),  # decimals are counted literally, even trailing zeros
        ("1.5", "JPY"),
        ("1.0", "JPY"),
        ("1.2345", "KWD"),
    ],
)
def test_parse_rejects(text: str, code: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text, code)


def test_parse_error_message_names_the_limit() -> None:
    with pytest.raises(InvalidAmount, match="USD allows at most 2"):
        Money.parse("1.234", "USD")


@pytest.mark.parametrize("text", ["1000000000000.01", "-1000000000001", "9" * 30, "9" * 5000])
def test_parse_overflow(text: str) -> None:
    with pytest.raises(MoneyOverflow):
        Money.parse(text, "USD")


def test_parse_many_leading_zeros_is_fine() -> None:
    assert Money.parse("0" * 5000 + "1", "USD") == usd(1_000_000)


@pytest.mark.parametrize("value", [12.34, 12, Decimal("12.34"), None, b"12.34", float("nan")])
def test_parse_requires_str(value: object) -> None:
    with pytest.raises(TypeError):
        Money.parse(value, "USD")  # type: ignore[arg-type]


def test_parse_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        Money.parse("1", "XXX")


# ---- formatting -------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "code", "text"),
    [
        (12_300_000, "USD", "12.30"),
        (12_340_000, "USD", "12.34"),
        (0, "USD", "0.00"),
        (-10_000, "USD", "-0.01"),
        (1_200_000_000, "JPY", "1200"),
        (0, "JPY", "0"),
        (-7_000_000, "JPY", "-7"),
        (1_234_000, "KWD", "1.234"),
        (1_000_000, "KWD", "1.000"),
        # sub-minor amounts keep their digits instead of being rounded for display
        (12_345_000, "USD", "12.345"),
        (-5, "USD", "-0.000005"),
        (1_500_000, "JPY", "1.5"),
    ],
)
def test_to_decimal_string(micros: int, code: str, text: str) -> None:
    assert Money(micros, code).to_decimal_string() == text


def test_str_and_repr() -> None:
    money = usd(12_340_000)
    assert str(money) == "12.34 USD"
    assert str(Money(1_200_000_000, "jpy")) == "1200 JPY"
    assert "micros=12340000" in repr(money)
    assert "USD" in repr(money)


# ---- predicates and arithmetic ----------------------------------------------


def test_predicates() -> None:
    assert usd(0).is_zero() and not usd(0).is_positive() and not usd(0).is_negative()
    assert usd(1).is_positive() and not usd(1).is_zero() and not usd(1).is_negative()
    assert usd(-1).is_negative() and not usd(-1).is_zero() and not usd(-1).is_positive()


def test_arithmetic() -> None:
    assert usd(5) + usd(7) == usd(12)
    assert usd(5) - usd(7) == usd(-2)
    assert -usd(5) == usd(-5)
    assert abs(usd(-5)) == usd(5)
    assert usd(5) * 3 == usd(15)
    assert 3 * usd(5) == usd(15)
    assert usd(5) * -2 == usd(-10)
    assert sum([usd(1), usd(2), usd(3)], Money.zero("USD")) == usd(6)


def test_comparisons() -> None:
    assert usd(1) < usd(2) <= usd(2) < usd(3)
    assert usd(3) > usd(2) >= usd(2) > usd(-1)
    assert usd(2) == usd(2)
    assert usd(2) != usd(3)
    assert max(usd(1), usd(3), usd(2)) == usd(3)


def test_mixed_currency_refused() -> None:
    a, b = Money(1, "USD"), Money(1, "EUR")
    for op in (
        lambda: a + b,
        lambda: a - b,
        lambda: a < b,
        lambda: a <= b,
        lambda: a > b,
        lambda: a >= b,
    ):
        with pytest.raises(CurrencyMismatch):
            op()
    assert issubclass(CurrencyMismatch, ValueError)
    # equality across currencies is simply False, never an error
    assert a != b
    assert not (a == b)


@pytest.mark.parametrize("factor", [1.5, 2.0, Decimal("2"), Fraction(1, 2), True, "2"])
def test_multiply_by_non_int_rejected(factor: object) -> None:
    with pytest.raises(TypeError):
        usd(100) * factor  # type: ignore[operator]
    with pytest.raises(TypeError):
        factor * usd(100)  # type: ignore[operator]


def test_no_implicit_mixing_with_plain_numbers() -> None:
    with pytest.raises(TypeError):
        usd(1) + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        operator.lt(usd(1), 1)
    with pytest.raises(TypeError):
        usd(1) * usd(1)  # type: ignore[operator]
    assert usd(0) != 0


def test_arithmetic_overflow() -> None:
    with pytest.raises(MoneyOverflow):
        usd(MAX_MICROS) + usd(1)
    with pytest.raises(MoneyOverflow):
        usd(-MAX_MICROS) - usd(1)
    with pytest.raises(MoneyOverflow):
        usd(MAX_MICROS // 2 + 1) * 2


# ---- rounding and minor units -----------------------------------------------

#                 micros    HALF_UP HALF_EVEN DOWN UP FLOOR CEILING   (USD cents)
ROUNDING_TABLE = [
    (5_000, (1, 0, 0, 1, 0, 1)),  # +0.5 cent
    (15_000, (2, 2, 1, 2, 1, 2)),  # +1.5
    (25_000, (3, 2, 2, 3, 2, 3)),  # +2.5
    (-5_000, (-1, 0, 0, -1, -1, 0)),  # -0.5
    (-15_000, (-2, -2, -1, -2, -2, -1)),  # -1.5
    (-25_000, (-3, -2, -2, -3, -3, -2)),  # -2.5
    (4_000, (0, 0, 0, 1, 0, 1)),  # +0.4
    (-4_000, (0, 0, 0, -1, -1, 0)),  # -0.4
    (6_000, (1, 1, 0, 1, 0, 1)),  # +0.6
    (-6_000, (-1, -1, 0, -1, -1, 0)),  # -0.6
    (20_000, (2, 2, 2, 2, 2, 2)),  # exact
    (-20_000, (-2, -2, -2, -2, -2, -2)),
    (1, (0, 0, 0, 1, 0, 1)),  # one micro
    (-1, (0, 0, 0, -1, -1, 0)),
]


@pytest.mark.parametrize(("micros", "expected"), ROUNDING_TABLE)
def test_rounding_modes_usd(micros: int, expected: tuple[int, ...]) -> None:
    got = tuple(usd(micros).to_minor_units(mode) for mode in (HU, HE, DN, UP, FL, CE))
    assert got == expected


@pytest.mark.parametrize(
    ("micros", "code", "mode", "minor"),
    [
        (1_500_000, "JPY", HE, 2),  # 1.5 yen
        (2_500_000, "JPY", HE, 2),
        (2_500_000, "JPY", HU, 3),
        (-2_500_000, "JPY", HU, -3),
        (500, "KWD", HU, 1),  # 0.5 fils
        (500, "KWD", HE, 0),
        (1_500, "KWD", HE, 2),
        (-1_500, "KWD", DN, -1),
    ],
)
def test_rounding_other_exponents(micros: int, code: str, mode: RoundingMode, minor: int) -> None:
    assert Money(micros, code).to_minor_units(mode) == minor


@pytest.mark.parametrize(
    ("text", "code", "minor", "micros"),
    [
        ("12.34", "USD", 1234, 12_340_000),
        ("-0.01", "USD", -1, -10_000),
        ("1200", "JPY", 1200, 1_200_000_000),
        ("1.234", "KWD", 1234, 1_234_000),
        ("0.001", "KWD", 1, 1_000),
    ],
)
def test_minor_unit_conversions(text: str, code: str, minor: int, micros: int) -> None:
    money = Money.parse(text, code)
    assert money.micros == micros
    for mode in RoundingMode:
        assert money.to_minor_units(mode) == minor
    assert Money.from_minor_units(minor, code) == money


def test_rounding_is_required_and_typed() -> None:
    with pytest.raises(TypeError):
        usd(5_000).to_minor_units()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        usd(5_000).to_minor_units("HALF_UP")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        usd(5_000).round_to_minor()  # type: ignore[call-arg]


def test_from_minor_units_rejects_non_int_and_overflow() -> None:
    with pytest.raises(TypeError):
        Money.from_minor_units(12.34, "USD")  # type: ignore[arg-type]
    with pytest.raises(MoneyOverflow):
        Money.from_minor_units(MAX_MICROS // 10_000 + 1, "USD")


def test_round_to_minor() -> None:
    assert usd(12_345_000).round_to_minor(HE) == usd(12_340_000)
    assert usd(12_345_000).round_to_minor(HU) == usd(12_350_000)
    assert usd(-12_345_000).round_to_minor(FL) == usd(-12_350_000)
    assert Money(1_500_000, "JPY").round_to_minor(DN) == Money(1_000_000, "JPY")


# ---- allocate ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "ratios", "expected"),
    [
        (100, [1, 1, 1], [34, 33, 33]),  # remainder tie -> earliest index
        (-100, [1, 1, 1], [-34, -33, -33]),  # negative is the mirror image
        (7, [1, 5], [1, 6]),  # remainder goes to the largest fraction, not index 0
        (10, [1, 2, 3], [2, 3, 5]),
        (100, [0, 1, 0], [0, 100, 0]),
        (0, [1, 2, 3], [0, 0, 0]),
        (99, [1], [99]),
        (5, [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]),
    ],
)
def test_allocate(micros: int, ratios: list[int], expected: list[int]) -> None:
    assert usd(micros).allocate(ratios) == [usd(m) for m in expected]


def test_allocate_in_whole_cents() -> None:
    ten_dollars = Money.parse("10.00", "USD")
    parts = ten_dollars.allocate([1, 1, 1], unit=10_000)
    assert [p.to_decimal_string() for p in parts] == ["3.34", "3.33", "3.33"]
    five_cents = Money.parse("0.05", "USD")
    assert five_cents.allocate([3, 7], unit=10_000) == [usd(20_000), usd(30_000)]


@pytest.mark.parametrize(
    ("ratios", "unit"),
    [([], 1), ([0, 0], 1), ([-1, 2], 1), ([1, 1], 0), ([1, 1], -10_000), ([1, 1], 3)],
)
def test_allocate_invalid(ratios: list[int], unit: int) -> None:
    with pytest.raises(ValueError):
        usd(100).allocate(ratios, unit=unit)


@pytest.mark.parametrize("ratios", [[1.5, 1], [True, 1], ["1"]])
def test_allocate_non_int_ratios(ratios: list[object]) -> None:
    with pytest.raises(TypeError):
        usd(100).allocate(ratios)  # type: ignore[arg-type]


# ---- percentage -------------------------------------------------------------


def test_percentage() -> None:
    hundred = Money.parse("100", "USD")
    assert hundred.percentage(250, HE) == Money.parse("2.50", "USD")
    assert hundred.percentage(10_000, HE) == hundred
    assert hundred.percentage(0, HE) == Money.zero("USD")
    # 2.9% of 0.99 USD = 0.02871 USD: kept exactly in micros, no rounding needed
    assert Money.parse("0.99", "USD").percentage(290, HE) == usd(28_710)


@pytest.mark.parametrize(
    ("micros", "bp", "mode", "expected"),
    [
        (1, 5_000, HU, 1),  # 0.5 micro
        (1, 5_000, HE, 0),
        (3, 5_000, HE, 2),  # 1.5 micro
        (-1, 5_000, HU, -1),
        (-1, 5_000, HE, 0),
        (-1, 5_000, FL, -1),
        (1, 3_333, FL, 0),  # 0.3333 micro
        (1, 3_333, CE, 1),
        (1, 3_333, UP, 1),
        (-1, 3_333, DN, 0),
    ],
)
def test_percentage_rounding(micros: int, bp: int, mode: RoundingMode, expected: int) -> None:
    assert usd(micros).percentage(bp, mode) == usd(expected)


def test_percentage_validation() -> None:
    with pytest.raises(TypeError):
        usd(100).percentage(2.5, HE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        usd(100).percentage(250)  # type: ignore[call-arg]


def test_split_percentage() -> None:
    fee, rest = Money.parse("10.00", "USD").split_percentage(250)
    assert (fee, rest) == (Money.parse("0.25", "USD"), Money.parse("9.75", "USD"))
    part, rest = usd(1).split_percentage(5_000)  # half a micro rounds to even
    assert (part, rest) == (usd(0), usd(1))
    assert usd(100).split_percentage(0) == (usd(0), usd(100))
    assert usd(100).split_percentage(10_000) == (usd(100), usd(0))


@pytest.mark.parametrize("bp", [-1, 10_001])
def test_split_percentage_range(bp: int) -> None:
    with pytest.raises(ValueError, match="basis_points"):
        usd(100).split_percentage(bp)


# ---- properties -------------------------------------------------------------


@given(minor_aligned())
def test_prop_parse_round_trips(money: Money) -> None:
    assert Money.parse(money.to_decimal_string(), money.currency) == money


@given(monies())
def test_prop_decimal_string_is_exact(money: Money) -> None:
    # Even sub-minor amounts print their exact value (checked via an exact oracle).
    assert Decimal(money.to_decimal_string()) * MICROS_PER_UNIT == money.micros


@given(minor_aligned(), modes)
def test_prop_minor_units_round_trip(money: Money, mode: RoundingMode) -> None:
    assert Money.from_minor_units(money.to_minor_units(mode), money.currency) == money
    assert money.round_to_minor(mode) == money


@given(monies(), modes)
def test_prop_rounding_matches_decimal_oracle(money: Money, mode: RoundingMode) -> None:
    per_minor = get_currency(money.currency).micros_per_minor
    assert money.to_minor_units(mode) == decimal_oracle(money.micros, per_minor, mode)


@given(monies())
def test_prop_floor_exact_ceiling(money: Money) -> None:
    exact = Fraction(money.micros, get_currency(money.currency).micros_per_minor)
    assert money.to_minor_units(FL) <= exact <= money.to_minor_units(CE)
    assert money.to_minor_units(CE) - money.to_minor_units(FL) <= 1
    for mode in RoundingMode:
        assert abs(money.to_minor_units(mode) - exact) < 1


@given(monies(), modes)
def test_prop_round_to_minor_is_aligned(money: Money, mode: RoundingMode) -> None:
    rounded = money.round_to_minor(mode)
    assert rounded.micros % get_currency(money.currency).micros_per_minor == 0
    assert Money.parse(rounded.to_decimal_string(), money.currency) == rounded


@st.composite
def allocations(draw: st.DrawFn) -> tuple[Money, list[int], int]:
    code = draw(codes)
    unit = draw(st.sampled_from([1, get_currency(code).micros_per_minor]))
    units = draw(st.integers(min_value=-MAX_MICROS // unit, max_value=MAX_MICROS // unit))
    ratios = draw(st.lists(st.integers(min_value=0, max_value=1_000), min_size=1, max_size=8).filter(any))
    return Money(units * unit, code), ratios, unit


@given(allocations())
def test_prop_allocate_exact(case: tuple[Money, list[int], int]) -> None:
    money, ratios, unit = case
    parts = money.allocate(ratios, unit=unit)
    assert len(parts) == len(ratios)
    assert sum(parts, Money.zero(money.currency)) == money
    for part, ratio in zip(parts, ratios, strict=True):
        exact = Fraction(money.micros * ratio, sum(ratios))
        assert abs(part.micros - exact) < unit
        assert part.micros % unit == 0
        assert part.currency == money.currency
        assert part.micros * money.micros >= 0  # never flips sign
        if ratio == 0:
            assert part.is_zero()


@given(allocations())
def test_prop_allocate_is_symmetric(case: tuple[Money, list[int], int]) -> None:
    money, ratios, unit = case
    assert (-money).allocate(ratios, unit=unit) == [-p for p in money.allocate(ratios, unit=unit)]


@given(monies(), st.integers(min_value=0, max_value=10_000))
def test_prop_split_percentage_exact(money: Money, bp: int) -> None:
    part, rest = money.split_percentage(bp)
    assert part + rest == money
    assert part == money.percentage(bp, HE)
    assert abs(part) <= abs(money) and abs(rest) <= abs(money)


@given(monies(), st.integers(min_value=-10_000, max_value=10_000), modes)
def test_prop_percentage_matches_oracle(money: Money, bp: int, mode: RoundingMode) -> None:
    expected = decimal_oracle(money.micros * bp, 10_000, mode)
    assert money.percentage(bp, mode) == Money(expected, money.currency)


SAFE = MAX_MICROS // 3  # three of these can be summed without overflow


@given(codes, st.lists(st.integers(min_value=-SAFE, max_value=SAFE), min_size=3, max_size=3))
def test_prop_addition_laws(code: str, values: list[int]) -> None:
    a, b, c = (Money(v, code) for v in values)
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a + b) - b == a
    assert a - a == Money.zero(code)
    assert a + Money.zero(code) == a
    negated = -a
    assert -negated == a
    assert a - b == a + (-b)
    assert abs(a) >= Money.zero(code)


@given(codes, st.integers(min_value=-SAFE, max_value=SAFE), st.integers(min_value=-SAFE, max_value=SAFE))
def test_prop_ordering_matches_micros(code: str, x: int, y: int) -> None:
    a, b = Money(x, code), Money(y, code)
    assert (a < b) == (x < y)
    assert (a <= b) == (x <= y)
    assert (a > b) == (x > y)
    assert (a >= b) == (x >= y)
    assert (a == b) == (x == y)


@given(codes, st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=-100, max_value=100))
def test_prop_multiplication(code: str, micros: int, k: int) -> None:
    money = Money(micros, code)
    assert money * k == k * money == Money(micros * k, code)


# ---- scaling by a fraction (tax rates, shares of a credit) ---------------------------------


def test_scale_to_minor_rounds_once() -> None:
    # 49.995 % of one cent is 0.0049995 EUR: below half a cent, so 0.00. Rounding to micros first (half up)
    # would make it 0.005000 and then 0.01.
    cent = Money(10_000, "EUR")
    assert cent.scale_to_minor(499_950, 1_000_000, HU) == Money(0, "EUR")
    assert cent.scale(499_950, 1_000_000, HU).round_to_minor(HU) == Money(10_000, "EUR")
    assert Money(1_000_000, "EUR").scale_to_minor(5, 1000, HE) == Money(0, "EUR")  # 0.005 → 0.00 (even)
    assert Money(3_000_000, "EUR").scale_to_minor(5, 1000, HE) == Money(20_000, "EUR")  # 0.015 → 0.02
    assert Money(100_000_000, "EUR").scale_to_minor(190_000, 1_000_000, HE) == Money(19_000_000, "EUR")
    assert Money(1_234_567, "JPY").scale_to_minor(1, 3, HE) == Money(0, "JPY")  # 0.41 yen → 0


def test_scale_rounds_to_micros() -> None:
    assert Money(10, "USD").scale(1, 3, HE) == Money(3, "USD")
    assert Money(-10, "USD").scale(1, 4, HE) == Money(-2, "USD")  # -2.5 → -2 (even)
    with pytest.raises(ValueError, match="denominator"):
        Money(10, "USD").scale(1, 0, HE)
    with pytest.raises(TypeError):
        Money(10, "USD").scale_to_minor(1.5, 2, HE)  # type: ignore[arg-type]


@given(monies(bound=10**12), st.integers(min_value=-(10**6), max_value=10**6),
       st.integers(min_value=1, max_value=10**6), modes)
def test_prop_scale_matches_oracle(money: Money, numerator: int, denominator: int, mode: RoundingMode) -> None:
    per_minor = get_currency(money.currency).micros_per_minor
    expected_minor = decimal_oracle(money.micros * numerator, denominator * per_minor, mode)
    assert money.scale_to_minor(numerator, denominator, mode) == Money.from_minor_units(expected_minor,
                                                                                          money.currency)
    assert money.scale(numerator, denominator, mode).micros == decimal_oracle(money.micros * numerator,
                                                                              denominator, mode)
