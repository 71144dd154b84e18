"""The tax rules (domain/tax): named cases a reviewer can check by hand, the rate tables, VAT numbers, and
hypothesis properties of the rounding and of reversals.

Exact oracles (fractions.Fraction) are used only here, to check the integer-only implementation independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import domain.tax
from domain.money import Money, get_currency
from domain.tax import (
    EU_MEMBER_STATES,
    PPM_PER_WHOLE,
    REVERSE_CHARGE_NOTE,
    Exemption,
    InvalidSale,
    Line,
    NoRateKnown,
    RateTable,
    Registration,
    Sale,
    Taxability,
    TaxError,
    UnsupportedTaxCode,
    VatIdStatus,
    percent_to_ppm,
    quote,
)
from domain.tax import reversal as rev
from domain.tax.rates import parse_rates_csv
from domain.tax.rules import NONTAXABLE, SAAS_BUSINESS_USE
from domain.tax.vat_ids import check_format, merge_online

DATA = Path(domain.tax.__file__).parent / "data"
RATES = RateTable.from_csv(*(path.read_text() for path in sorted(DATA.glob("*.csv"))))
LONG_AGO = date(2016, 1, 1)
DAY = date(2026, 3, 15)
EUR_100 = 100_000_000

# Numbers whose check digits are right (python-stdnum's test data and public registrations).
DE_VAT, FR_VAT, IE_VAT, GR_VAT = "DE136695976", "FR40303265045", "IE6388047V", "EL094014201"


def reg(country: str, type: str = "standard", state: str | None = None, since: date = LONG_AGO,
        until: date | None = None) -> Registration:
    return Registration(country=country, state=state, type=type, active_from=since, active_until=until)


def sale(customer: str, *, seller: str = "DE", registrations: Sequence[Registration] = (), vat: Sequence[str] = (),
         state: str | None = None, exemption: Exemption = Exemption.NONE, day: date = DAY, currency: str = "EUR",
         amounts: Sequence[int] = (EUR_100,), tax_code: str = "txcd_10000000") -> Sale:
    return Sale(currency=currency, tax_date=day, seller_country=seller, registrations=tuple(registrations),
                customer_country=customer, customer_state=state, vat_ids=tuple(check_format(v) for v in vat),
                exemption=exemption,
                lines=tuple(Line(f"line_{i}", amount, tax_code) for i, amount in enumerate(amounts, 1)))


OSS = reg("DE", "eu_oss_union")

# ---- the named cases ------------------------------------------------------------------------------------------


def test_de_b2c_is_charged_19_percent() -> None:
    q = quote(sale("DE", registrations=[reg("DE")]), RATES)
    (line,) = q.lines
    assert (line.jurisdiction, line.jurisdiction_name, line.rate_ppm) == ("DE", "Germany", 190_000)
    assert line.reason is Taxability.STANDARD_RATED and line.tax_type == "vat"
    assert line.tax_micros == 19_000_000 == q.tax_micros and q.notes == ()


def test_fr_b2b_with_a_valid_vat_number_is_reverse_charged_with_the_note() -> None:
    q = quote(sale("FR", registrations=[reg("DE"), OSS], vat=[FR_VAT]), RATES)
    (line,) = q.lines
    assert line.reason is Taxability.REVERSE_CHARGE and line.jurisdiction == "FR"
    assert line.rate_ppm == 0 and line.tax_micros == 0 and line.taxable_micros == EUR_100
    assert q.notes == (REVERSE_CHARGE_NOTE,)
    assert "Article 196 Council Directive 2006/112/EC" in REVERSE_CHARGE_NOTE


def test_ie_b2b_domestic_is_charged_23_percent() -> None:
    q = quote(sale("IE", seller="IE", registrations=[reg("IE")], vat=[IE_VAT]), RATES)
    (line,) = q.lines
    assert (line.jurisdiction, line.rate_ppm, line.reason) == ("IE", 230_000, Taxability.STANDARD_RATED)
    assert line.tax_micros == 23_000_000 and q.notes == ()


def test_us_state_with_nexus_is_charged_its_base_rate() -> None:
    q = quote(sale("US", state="CA", currency="USD", registrations=[reg("US", "us_state_sales_tax", "CA")]), RATES)
    (line,) = q.lines
    assert (line.jurisdiction, line.jurisdiction_name, line.level) == ("US-CA", "California", "state")
    assert (line.rate_ppm, line.tax_micros, line.reason) == (72_500, 7_250_000, Taxability.STANDARD_RATED)
    assert line.tax_type == "sales_tax"


def test_us_state_without_nexus_is_not_collecting() -> None:
    q = quote(sale("US", state="NY", currency="USD", registrations=[reg("US", state="CA")]), RATES)
    (line,) = q.lines
    assert (line.jurisdiction, line.reason, line.rate_ppm, line.tax_micros) == \
        ("US-NY", Taxability.NOT_COLLECTING, 0, 0)


@pytest.mark.parametrize(("customer", "state", "currency"), [("DE", None, "EUR"), ("FR", None, "EUR"),
                                                             ("US", "CA", "USD"), ("JP", None, "JPY")])
def test_an_exempt_customer_pays_no_tax_anywhere(customer: str, state: str | None, currency: str) -> None:
    registrations = [reg("DE"), OSS, reg("US", state="CA"), reg("JP")]
    q = quote(sale(customer, state=state, currency=currency, registrations=registrations, vat=[FR_VAT],
                   exemption=Exemption.EXEMPT), RATES)
    assert [(line.reason, line.tax_micros) for line in q.lines] == [(Taxability.CUSTOMER_EXEMPT, 0)]
    assert q.notes == ("Customer exempt from tax",)


def test_an_invalid_vat_number_is_charged_as_b2c_and_the_quote_says_so() -> None:
    q = quote(sale("DE", registrations=[reg("DE")], vat=["DE123"]), RATES)
    (line,) = q.lines
    assert (line.reason, line.rate_ppm, line.tax_micros) == (Taxability.STANDARD_RATED, 190_000, 19_000_000)
    assert q.notes == ("VAT number DE123 is not valid: VAT charged",)
    cross_border = quote(sale("FR", registrations=[OSS], vat=["FR12345678901"]), RATES)
    assert cross_border.lines[0].rate_ppm == 200_000
    assert cross_border.notes == ("VAT number FR12345678901 is not valid: VAT charged",)


@pytest.mark.parametrize(("country", "before", "after", "change"), [
    ("EE", 200_000, 220_000, date(2024, 1, 1)),
    ("EE", 220_000, 240_000, date(2025, 7, 1)),
    ("FI", 240_000, 255_000, date(2024, 9, 1)),
    ("SK", 200_000, 230_000, date(2025, 1, 1)),
    ("RO", 190_000, 210_000, date(2025, 8, 1)),
    ("DE", 190_000, 160_000, date(2020, 7, 1)),
    ("DE", 160_000, 190_000, date(2021, 1, 1)),
])
def test_the_tax_date_decides_the_rate_across_a_change(country: str, before: int, after: int, change: date) -> None:
    def rate(day: date) -> tuple[int, int]:
        (line,) = quote(sale(country, registrations=[OSS], day=day), RATES).lines
        return line.rate_ppm, line.tax_micros

    assert rate(change - timedelta(days=1)) == (before, EUR_100 * before // PPM_PER_WHOLE)
    assert rate(change) == (after, EUR_100 * after // PPM_PER_WHOLE)


def test_the_us_rate_change_in_louisiana() -> None:
    def rate(day: date) -> int:
        return quote(sale("US", state="LA", currency="USD", registrations=[reg("US", state="LA")], day=day),
                     RATES).lines[0].rate_ppm

    assert (rate(date(2024, 12, 31)), rate(date(2025, 1, 1))) == (44_500, 50_000)


# ---- the rest of the EU rules ---------------------------------------------------------------------------------


def test_b2c_abroad_needs_a_registration_there_or_the_oss() -> None:
    assert quote(sale("FR", registrations=[reg("DE")]), RATES).lines[0].reason is Taxability.NOT_COLLECTING
    assert quote(sale("FR", registrations=[reg("FR")]), RATES).lines[0].rate_ppm == 200_000
    assert quote(sale("FR", registrations=[OSS]), RATES).lines[0].rate_ppm == 200_000
    outside = quote(sale("FR", seller="US", registrations=[reg("DE", "eu_oss_non_union")]), RATES)
    assert outside.lines[0].rate_ppm == 200_000
    unregistered = quote(sale("FR", seller="US"), RATES).lines[0]
    assert (unregistered.reason, unregistered.tax_micros, unregistered.jurisdiction) == \
        (Taxability.NOT_COLLECTING, 0, "FR")


def test_a_small_seller_charges_its_own_countrys_vat_abroad() -> None:
    (line,) = quote(sale("FR", registrations=[reg("DE", "eu_small_seller")]), RATES).lines
    assert (line.jurisdiction, line.rate_ppm, line.reason) == ("DE", 190_000, Taxability.STANDARD_RATED)


def test_an_invalid_number_of_an_unregistered_seller_says_it_is_treated_as_b2c() -> None:
    q = quote(sale("FR", seller="US", vat=["FR123"]), RATES)
    assert q.lines[0].reason is Taxability.NOT_COLLECTING
    assert q.notes == ("VAT number FR123 is not valid: treated as a sale to a consumer",)


def test_a_valid_number_of_another_country_does_not_make_the_sale_b2b() -> None:
    q = quote(sale("FR", registrations=[OSS], vat=[DE_VAT]), RATES)
    assert q.lines[0].rate_ppm == 200_000
    assert q.notes == (f"VAT number {DE_VAT} is not from the customer's country (FR): VAT charged",)


def test_a_greek_vat_number_carries_the_prefix_el() -> None:
    q = quote(sale("GR", registrations=[OSS], vat=[GR_VAT]), RATES)
    assert q.lines[0].reason is Taxability.REVERSE_CHARGE and q.lines[0].jurisdiction_name == "Greece"


def test_a_non_eu_seller_selling_to_an_eu_business_reverse_charges() -> None:
    q = quote(sale("DE", seller="US", vat=[DE_VAT]), RATES)
    assert q.lines[0].reason is Taxability.REVERSE_CHARGE and q.notes == (REVERSE_CHARGE_NOTE,)


def test_domestic_b2b_without_a_registration_is_not_collecting() -> None:
    assert quote(sale("DE", vat=[DE_VAT]), RATES).lines[0].reason is Taxability.NOT_COLLECTING


def test_reverse_customers_are_reverse_charged_in_the_eu_but_not_in_the_us() -> None:
    eu = quote(sale("FR", registrations=[OSS], exemption=Exemption.REVERSE, vat=["FR123"]), RATES)
    assert eu.lines[0].reason is Taxability.REVERSE_CHARGE and eu.notes == (REVERSE_CHARGE_NOTE,)
    us = quote(sale("US", state="TX", currency="USD", registrations=[reg("US", state="TX")],
                    exemption=Exemption.REVERSE), RATES)
    assert (us.lines[0].reason, us.lines[0].rate_ppm) == (Taxability.STANDARD_RATED, 62_500)


def test_registrations_count_on_the_tax_date_only() -> None:
    ended = reg("FR", since=date(2020, 1, 1), until=DAY)  # the first day it no longer applies
    assert quote(sale("FR", registrations=[ended], day=DAY - timedelta(days=1)), RATES).lines[0].rate_ppm == 200_000
    assert quote(sale("FR", registrations=[ended]), RATES).lines[0].reason is Taxability.NOT_COLLECTING
    future = reg("FR", since=DAY + timedelta(days=1))
    assert quote(sale("FR", registrations=[future]), RATES).lines[0].reason is Taxability.NOT_COLLECTING


# ---- the rest of the US rules, other countries, and refusals ----------------------------------------------------


def test_states_without_a_sales_tax_are_not_subject_to_it() -> None:
    q = quote(sale("US", state="OR", currency="USD", registrations=[reg("US", state="OR")]), RATES)
    assert (q.lines[0].reason, q.lines[0].tax_micros) == (Taxability.NOT_SUBJECT_TO_TAX, 0)


def test_other_countries_are_not_subject_to_tax() -> None:
    (line,) = quote(sale("JP", currency="JPY", registrations=[reg("JP")]), RATES).lines
    assert (line.jurisdiction, line.reason, line.tax_micros) == ("JP", Taxability.NOT_SUBJECT_TO_TAX, 0)


def test_a_nontaxable_line_is_not_taxed_next_to_a_taxed_one() -> None:
    q = Sale(currency="EUR", tax_date=DAY, seller_country="DE", registrations=(reg("DE"),),
             customer_country="DE", customer_state=None, vat_ids=(), exemption=Exemption.NONE,
             lines=(Line("a", EUR_100, SAAS_BUSINESS_USE), Line("b", EUR_100, NONTAXABLE)))
    lines = quote(q, RATES).lines
    assert [(x.reason, x.tax_micros) for x in lines] == [(Taxability.STANDARD_RATED, 19_000_000),
                                                         (Taxability.NOT_SUBJECT_TO_TAX, 0)]


@pytest.mark.parametrize(("bad", "error", "match"), [
    (sale("DE", tax_code="txcd_99999999"), UnsupportedTaxCode, "txcd_99999999"),
    (sale("US", currency="USD"), InvalidSale, "state"),
    (sale("US", state="XX", currency="USD"), InvalidSale, "XX"),
    (sale("DE", amounts=()), InvalidSale, "at least one line"),
    (sale("DE", amounts=(-1,)), InvalidSale, "negative"),
    (sale("DE", day=date(2015, 12, 31), registrations=[reg("DE")]), NoRateKnown, "before 2016-01-01"),
    (sale("US", state="CA", currency="USD", day=date(2023, 12, 31)), NoRateKnown, "US-CA"),
    (sale("DE", currency="SEK"), ValueError, "SEK"),
])
def test_refusals(bad: Sale, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        quote(bad, RATES)
    assert issubclass(error, ValueError)


def test_duplicate_line_ids_are_refused() -> None:
    dup = Sale(currency="EUR", tax_date=DAY, seller_country="DE", registrations=(), customer_country="DE",
               customer_state=None, vat_ids=(), exemption=Exemption.NONE,
               lines=(Line("a", 1, "txcd_10000000"), Line("a", 2, "txcd_10000000")))
    with pytest.raises(InvalidSale, match="unique"):
        quote(dup, RATES)


def test_rounding_is_stated_and_half_even_to_the_minor_unit() -> None:
    # Estonia's 24 % of 0.0625 EUR is 1.5 cents exactly: half-even gives 2; of 0.020833 EUR, 0.499992 cents: 0.
    q = quote(sale("EE", registrations=[OSS], amounts=(62_500, 20_833)), RATES)
    assert [line.tax_micros for line in q.lines] == [20_000, 0]
    assert q.rounding == ("per line: taxable * rate, rounded half-even to the minor unit of EUR (0.01); "
                          "the total is the sum of the lines")
    jpy = quote(sale("FR", registrations=[OSS], currency="JPY", amounts=(12_500_000,)), RATES)
    assert jpy.lines[0].tax_micros == 2_000_000 and "JPY (1)" in jpy.rounding  # 2.5 yen → 2


# ---- the rate tables ------------------------------------------------------------------------------------------


def test_the_eu_table_covers_exactly_the_27_member_states_since_2016() -> None:
    eu = {j for j in RATES.jurisdictions() if not j.startswith("US-")}
    assert eu == EU_MEMBER_STATES and len(eu) == 27
    for country in eu:
        history = RATES.history(country)
        assert history[0].effective_from == date(2016, 1, 1) and history[0].tax_type == "vat"


def test_the_us_table_covers_the_50_states_and_dc() -> None:
    us = {j for j in RATES.jurisdictions() if j.startswith("US-")}
    assert len(us) == 51 and "US-DC" in us
    no_sales_tax = {j for j in us if RATES.rate_on(j, DAY).rate_ppm == 0}
    assert no_sales_tax == {"US-AK", "US-DE", "US-MT", "US-NH", "US-OR"}


def test_every_row_names_its_source_and_when_it_was_checked() -> None:
    for jurisdiction in RATES.jurisdictions():
        for rate in RATES.history(jurisdiction):
            assert rate.source.startswith("https://") and isinstance(rate.checked_on, date)
            assert 0 <= rate.rate_ppm <= PPM_PER_WHOLE


def test_the_eu_history_agrees_with_an_independent_compilation() -> None:
    """duty27-eu-vat (every standard-rate change since 2016, compiled from the Commission's TEDB and national
    sources) and eu-vat-rates-data (today's rates, checked daily against TEDB): pinned, so this is exact."""
    import duty27_eu_vat
    import eu_vat_rates_data

    for country in duty27_eu_vat.list_countries():
        iso = "GR" if country.code == "EL" else country.code
        ours = [(r.effective_from, r.rate_ppm) for r in RATES.history(iso)]
        theirs = [(w.effective_from, int(w.rate * 10_000)) for w in duty27_eu_vat.get_rate_history(country.code)
                  if w.effective_from <= duty27_eu_vat.DATA_AS_OF]
        assert [row for row in ours if row[0] <= duty27_eu_vat.DATA_AS_OF] == theirs, iso
    as_of = date.fromisoformat(eu_vat_rates_data.data_version)
    for code, rate in eu_vat_rates_data.get_all_rates().items():
        if rate["eu_member"]:
            assert RATES.rate_on(code, as_of).rate_ppm == int(Decimal(str(rate["standard"])) * 10_000), code


@pytest.mark.parametrize(("text", "ppm"), [("19", 190_000), ("25.5", 255_000), ("6.875", 68_750), ("0", 0),
                                           ("100", 1_000_000), ("4.225", 42_250), ("7.0001", 70_001)])
def test_percent_to_ppm(text: str, ppm: int) -> None:
    assert percent_to_ppm(text) == ppm


@pytest.mark.parametrize("text", ["19.00001", "-1", "100.5", "1e2", " 19", "19,5", "", "1000"])
def test_percent_to_ppm_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        percent_to_ppm(text)


HEADER = "jurisdiction,name,tax_type,rate_type,rate_percent,effective_from,source,checked_on\n"


@pytest.mark.parametrize(("text", "match"), [
    ("a,b\n", "columns"),
    (HEADER + "DE,Germany,vat,standard,19,2016-01-01,TEDB,2026-12-01\n", "source"),
    (HEADER + "DE,Germany,vat,standard,19.5.1,2016-01-01,https://x,2026-12-01\n", "line 2"),
])
def test_rate_table_parsing_refuses(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RateTable.from_csv(text)


def test_rate_table_refuses_two_rates_starting_the_same_day() -> None:
    row = "DE,Germany,vat,standard,19,2016-01-01,https://x,2026-12-01\n"
    with pytest.raises(ValueError, match="same day"):
        RateTable(parse_rates_csv(HEADER + row + row))


# ---- VAT numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "number", "country", "status"), [
    ("DE136695976", "DE136695976", "DE", VatIdStatus.VALID),
    ("de 136 695 976", "DE136695976", "DE", VatIdStatus.VALID),
    ("EL094014201", "EL094014201", "GR", VatIdStatus.VALID),
    ("DE136695977", "DE136695977", "DE", VatIdStatus.INVALID),  # check digit
    ("DE123", "DE123", "DE", VatIdStatus.INVALID),
    ("GR094014201", "GR094014201", None, VatIdStatus.INVALID),  # Greece's VAT prefix is EL
    ("XI123456782", "XI123456782", None, VatIdStatus.INVALID),  # Northern Ireland: goods only
    ("US123", "US123", None, VatIdStatus.INVALID),
])
def test_vat_number_format(value: str, number: str, country: str | None, status: VatIdStatus) -> None:
    check = check_format(value)
    assert (check.number, check.country, check.status) == (number, country, status)


def test_vies_answers_fold_into_the_offline_check() -> None:
    valid = check_format(DE_VAT)
    assert merge_online(valid, True) == valid and merge_online(valid, None) == valid
    assert merge_online(valid, False).status is VatIdStatus.NOT_REGISTERED
    invalid = check_format("DE123")
    assert merge_online(invalid, True) == invalid  # VIES cannot make a malformed number valid
    q = quote(Sale(currency="EUR", tax_date=DAY, seller_country="DE", registrations=(OSS,), customer_country="DE",
                   customer_state=None, vat_ids=(merge_online(valid, False),), exemption=Exemption.NONE,
                   lines=(Line("a", EUR_100, "txcd_10000000"),)), RATES)
    assert q.notes == (f"VAT number {DE_VAT} is not registered in VIES: VAT charged",)


# ---- properties -----------------------------------------------------------------------------------------------

CUSTOMERS = [*sorted(EU_MEMBER_STATES), "US", "JP", "CH"]
US_STATES = sorted(j.removeprefix("US-") for j in RATES.jurisdictions() if j.startswith("US-"))
CURRENCY_CODES = ["EUR", "USD", "JPY", "KWD"]
amounts = st.integers(min_value=0, max_value=10**14)


@st.composite
def sales(draw: st.DrawFn, lines: int | None = None) -> Sale:
    customer = draw(st.sampled_from(CUSTOMERS))
    state = draw(st.sampled_from(US_STATES)) if customer == "US" else None
    first = date(2024, 1, 1) if customer == "US" else date(2016, 1, 1)
    day = draw(st.dates(min_value=first, max_value=date(2028, 12, 31)))
    registrations = draw(st.lists(st.builds(
        reg, st.sampled_from([*sorted(EU_MEMBER_STATES), "US"]),
        st.sampled_from(["standard", "eu_oss_union", "eu_oss_non_union", "eu_small_seller"]),
        st.sampled_from([None, *US_STATES]),
    ), max_size=4))
    count = lines if lines is not None else draw(st.integers(min_value=1, max_value=6))
    return Sale(
        currency=draw(st.sampled_from(CURRENCY_CODES)), tax_date=day,
        seller_country=draw(st.sampled_from(["DE", "FR", "IE", "US"])), registrations=tuple(registrations),
        customer_country=customer, customer_state=state,
        vat_ids=tuple(check_format(v) for v in draw(st.lists(st.sampled_from([DE_VAT, FR_VAT, IE_VAT, GR_VAT,
                                                                              "DE123"]), max_size=2))),
        exemption=draw(st.sampled_from(list(Exemption))),
        lines=tuple(Line(f"l{i}", draw(amounts), "txcd_10000000") for i in range(count)),
    )


def exact_tax(taxable: int, rate_ppm: int, currency: str) -> int:
    """round_half_even(taxable * rate) to the minor unit, by Fraction: Python's round() is half-even."""
    per_minor = get_currency(currency).micros_per_minor
    return round(Fraction(taxable * rate_ppm, PPM_PER_WHOLE * per_minor)) * per_minor


@given(sales())
def test_prop_total_is_the_sum_of_lines_and_each_line_is_rounded_once(s: Sale) -> None:
    q = quote(s, RATES)
    assert q.tax_micros == sum(line.tax_micros for line in q.lines)
    for line, source in zip(q.lines, s.lines, strict=True):
        assert line.taxable_micros == line.amount_micros == source.amount_micros
        assert line.tax_micros == exact_tax(line.taxable_micros, line.rate_ppm, s.currency)
        assert 0 <= line.rate_ppm <= PPM_PER_WHOLE
        assert (line.tax_micros > 0) <= (line.reason in (Taxability.STANDARD_RATED, Taxability.REDUCED_RATED))


@given(st.sampled_from(sorted(RATES.jurisdictions())), st.dates(min_value=date(2024, 1, 1),
                                                               max_value=date(2030, 12, 31)))
def test_prop_every_rate_is_within_0_and_100_percent(jurisdiction: str, day: date) -> None:
    assert 0 <= RATES.rate_on(jurisdiction, day).rate_ppm <= PPM_PER_WHOLE


@given(sales(lines=2))
def test_prop_tax_is_monotonic_in_the_amount(s: Sale) -> None:
    """Two lines of one sale share jurisdiction and rate: the larger amount never bears less tax."""
    (_, low), (_, high) = sorted((line.amount_micros, line.tax_micros) for line in quote(s, RATES).lines)
    assert low <= high


# Reversals: a committed transaction, random credit notes, then a void.


@st.composite
def committed(draw: st.DrawFn) -> tuple[list[rev.CommittedEntry], str]:
    currency = draw(st.sampled_from(CURRENCY_CODES))
    per_minor = get_currency(currency).micros_per_minor
    entries = []
    for i in range(draw(st.integers(min_value=1, max_value=4))):
        amount = draw(st.integers(min_value=0, max_value=10**9)) * per_minor
        for _ in range(draw(st.integers(min_value=1, max_value=3))):  # a state, a county, a city …
            rate = draw(st.integers(min_value=0, max_value=PPM_PER_WHOLE))
            taxable = draw(st.sampled_from([amount, amount // 2, 0]))
            tax = Money(taxable, currency).scale_to_minor(rate, PPM_PER_WHOLE, rev.ROUNDING).micros
            entries.append(rev.CommittedEntry(f"l{i}", amount, taxable, tax))
    return entries, currency


def apply(entries: list[rev.CommittedEntry], prior: dict[str, int], credits: dict[str, int], currency: str,
          totals: dict[int, list[int]]) -> None:
    for part in rev.reverse(entries, prior, credits, currency):
        assert part.credited_micros == credits[entries[part.index].line_id]
        assert part.tax_micros >= 0 and part.taxable_micros >= 0
        totals.setdefault(part.index, [0, 0])
        totals[part.index][0] += part.taxable_micros
        totals[part.index][1] += part.tax_micros
    for line, credit in credits.items():
        prior[line] = prior.get(line, 0) + credit


@given(committed(), st.lists(st.integers(min_value=1, max_value=10**12), max_size=5), st.data())
def test_prop_credit_notes_then_a_void_reverse_exactly_what_was_committed(
        txn: tuple[list[rev.CommittedEntry], str], wanted: list[int], data: st.DataObject) -> None:
    entries, currency = txn
    assume(sum(rev.line_amounts(entries).values()) > 0)
    prior: dict[str, int] = {}
    totals: dict[int, list[int]] = {}
    for amount in wanted:
        left = sum(rev.remaining(entries, prior).values())
        if left == 0:
            break
        amount = min(amount, left)
        if data.draw(st.booleans()):
            credits = rev.spread(amount, entries, prior, currency)
            assert sum(credits.values()) == amount  # the parts sum to the whole
        else:
            lines = {line: left_ for line, left_ in rev.remaining(entries, prior).items() if left_ > 0}
            line = data.draw(st.sampled_from(sorted(lines)))
            credits = {line: data.draw(st.integers(min_value=1, max_value=lines[line]))}
        apply(entries, prior, credits, currency, totals)
    if sum(rev.remaining(entries, prior).values()) > 0:
        apply(entries, prior, rev.void_credits(entries, prior), currency, totals)
    for index, entry in enumerate(entries):
        got = totals.get(index, [0, 0])
        assert got == [entry.taxable_micros, entry.tax_micros], entry
    with pytest.raises(TaxError, match="fully reversed"):
        rev.void_credits(entries, prior)


@given(committed(), st.integers(min_value=1, max_value=10**15))
def test_prop_a_credit_never_exceeds_what_is_left(txn: tuple[list[rev.CommittedEntry], str], amount: int) -> None:
    entries, currency = txn
    left = sum(rev.remaining(entries, {}).values())
    if amount > left:
        with pytest.raises(TaxError, match="exceeds"):
            rev.spread(amount, entries, {}, currency)
    else:
        credits = rev.spread(amount, entries, {}, currency)
        assert sum(credits.values()) == amount
        assert all(0 < c <= rev.remaining(entries, {})[line] for line, c in credits.items())


def test_a_credit_of_a_line_takes_its_share_of_each_jurisdiction() -> None:
    # A 100.00 line taxed by a state (6 % = 6.00) and a county (1 % = 1.00), credited in three thirds.
    entries = [rev.CommittedEntry("a", EUR_100, EUR_100, 6_000_000), rev.CommittedEntry("a", EUR_100, EUR_100,
                                                                                         1_000_000)]
    third = EUR_100 // 3
    prior: dict[str, int] = {}
    seen = []
    for credit in (third, third, EUR_100 - 2 * third):
        parts = rev.reverse(entries, prior, {"a": credit}, "EUR")
        seen.append([p.tax_micros for p in parts])
        prior["a"] = prior.get("a", 0) + credit
    assert seen == [[2_000_000, 330_000], [2_000_000, 340_000], [2_000_000, 330_000]]
    assert [sum(col) for col in zip(*seen, strict=True)] == [6_000_000, 1_000_000]


def test_reversal_refusals() -> None:
    entries = [rev.CommittedEntry("a", EUR_100, EUR_100, 19_000_000)]
    with pytest.raises(TaxError, match="not in the transaction"):
        rev.reverse(entries, {}, {"b": 1}, "EUR")
    with pytest.raises(TaxError, match="exceeds"):
        rev.reverse(entries, {"a": EUR_100 - 1}, {"a": 2}, "EUR")
    with pytest.raises(TaxError, match="positive"):
        rev.spread(0, entries, {}, "EUR")
    with pytest.raises(TaxError, match="different amounts"):
        rev.line_amounts([*entries, rev.CommittedEntry("a", 1, 1, 0)])
