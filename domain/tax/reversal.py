"""Reversing committed tax: a void takes back everything left, a credit note a part of it.

A committed transaction is a list of entries, one per line and jurisdiction (a US line can carry a state and a
county entry). Credits are amounts of a line's price, tax excluded. Each entry gives back its share of the
credit, and the share is rounded *cumulatively*: after credits totalling P of a line of amount A, an entry with
tax X has given back round(X*P/A) in total, so this credit's part is

    round(X*(P + c)/A) - round(X*P/A)        (half-even, to the minor unit)

Whatever the number and size of the credit notes, the parts telescope: once the whole line is credited, exactly
X has been reversed, never a minor unit more or less. A credit note for an amount of the whole invoice is first
spread over the lines in proportion to what is left of each, in whole minor units when it can be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domain.money import Money, RoundingMode, get_currency
from domain.tax.model import TaxError

ROUNDING = RoundingMode.HALF_EVEN


@dataclass(frozen=True, slots=True)
class CommittedEntry:
    line_id: str
    amount_micros: int  # the line's amount, tax excluded (the same on every entry of the line)
    taxable_micros: int
    tax_micros: int


@dataclass(frozen=True, slots=True)
class ReversedEntry:
    index: int  # position of the entry in the committed transaction
    credited_micros: int  # the part of the line's amount this reversal credits
    taxable_micros: int
    tax_micros: int


def line_amounts(entries: Sequence[CommittedEntry]) -> dict[str, int]:
    """Each line's amount, in the order lines first appear."""
    amounts: dict[str, int] = {}
    for entry in entries:
        if amounts.setdefault(entry.line_id, entry.amount_micros) != entry.amount_micros:
            raise TaxError(f"line {entry.line_id} has entries with different amounts")
    return amounts


def remaining(entries: Sequence[CommittedEntry], prior_credits: Mapping[str, int]) -> dict[str, int]:
    """What is left to credit of each line after earlier reversals."""
    return {line: amount - prior_credits.get(line, 0) for line, amount in line_amounts(entries).items()}


def void_credits(entries: Sequence[CommittedEntry], prior_credits: Mapping[str, int]) -> dict[str, int]:
    left = {line: amount for line, amount in remaining(entries, prior_credits).items() if amount > 0}
    if not left:
        raise TaxError("the transaction is already fully reversed")
    return left


def spread(amount_micros: int, entries: Sequence[CommittedEntry], prior_credits: Mapping[str, int],
           currency: str) -> dict[str, int]:
    """A credit of `amount_micros` over the lines, in proportion to what is left of each; the parts sum to it."""
    left = remaining(entries, prior_credits)
    total = sum(left.values())
    if amount_micros <= 0:
        raise TaxError("a credit must be a positive amount")
    if amount_micros > total:
        raise TaxError(f"a credit of {amount_micros} micros exceeds the {total} micros left to credit")
    minor = get_currency(currency).micros_per_minor
    whole_minor = amount_micros % minor == 0 and all(v % minor == 0 for v in left.values())
    parts = Money(amount_micros, currency).allocate(list(left.values()), unit=minor if whole_minor else 1)
    return {line: part.micros for line, part in zip(left, parts, strict=True) if part.micros > 0}


def reverse(entries: Sequence[CommittedEntry], prior_credits: Mapping[str, int], credits: Mapping[str, int],
            currency: str) -> list[ReversedEntry]:
    """The entries' parts of crediting `credits` (line → amount), after `prior_credits` were already credited."""
    left = remaining(entries, prior_credits)
    for line, credit in credits.items():
        if line not in left:
            raise TaxError(f"line {line} is not in the transaction")
        if credit <= 0:
            raise TaxError(f"line {line}: a credit must be a positive amount")
        if credit > left[line]:
            raise TaxError(f"line {line}: a credit of {credit} micros exceeds the {left[line]} micros left")
    out = []
    for index, entry in enumerate(entries):
        credit = credits.get(entry.line_id, 0)
        if credit == 0:
            continue
        before = prior_credits.get(entry.line_id, 0)
        out.append(ReversedEntry(
            index=index, credited_micros=credit,
            taxable_micros=_share(entry.taxable_micros, before, credit, entry.amount_micros, currency, False),
            tax_micros=_share(entry.tax_micros, before, credit, entry.amount_micros, currency, True),
        ))
    return out


def _share(whole: int, before: int, credit: int, amount: int, currency: str, to_minor: bool) -> int:
    money = Money(whole, currency)

    def upto(credited: int) -> int:
        if to_minor:
            return money.scale_to_minor(credited, amount, ROUNDING).micros
        return money.scale(credited, amount, ROUNDING).micros

    return upto(before + credit) - upto(before)
