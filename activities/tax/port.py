"""The tax port: what billing needs from a tax engine, and the VAT-number check it may call.

Adapters: `builtin` (the rules of `domain/tax`, commits and reversals recorded in PostgreSQL) and `stripe`
(Stripe Tax's calculations and transactions, recorded in the same tables). Both are async, and both are
idempotent where it matters: a commit by the quote's reference, a reversal by its own reference, so an activity
that is retried, or replayed after a crash, never records tax twice.
"""

from __future__ import annotations

from typing import Protocol

from contracts.tax import TaxQuote, TaxQuoteRequest, TaxReversal, TaxReversalRequest, TaxTransaction
from domain.tax import TaxError


class TaxConflict(TaxError):
    """The reference is already taken by something else (another quote, another original): a caller's bug."""


class TaxProvider(Protocol):
    name: str

    async def quote(self, req: TaxQuoteRequest) -> TaxQuote:
        """The tax of each line, and why. Nothing is recorded: quote as often as the invoice changes."""
        ...

    async def commit(self, quote: TaxQuote) -> TaxTransaction:
        """Record the quote as owed tax. Idempotent by `quote.reference`: the same quote again answers the same
        transaction; another quote for the same reference is a `TaxConflict`."""
        ...

    async def reverse(self, req: TaxReversalRequest) -> TaxReversal:
        """Take back all (a void) or part (a credit note) of a committed transaction. Idempotent by
        `req.reference`; never reverses more than was committed, and the parts sum to the whole exactly."""
        ...

    async def aclose(self) -> None: ...


class VatNumberChecker(Protocol):
    """An online registration check (VIES). `country` is the ISO code (GR, not EL) and `number` has no prefix.
    True: registered; False: not registered; None: the check could not be made (the registry is down), in which
    case the number's format and check digits decide alone."""

    async def check(self, country: str, number: str) -> bool | None: ...
