"""What both adapters record: committed transactions and their reversals, in PostgreSQL, per tenant.

The record is ours whichever engine computed the tax: it is what makes commit and reverse idempotent beyond a
provider's own idempotency window, what a reversal is computed from (the domain's cumulative rounding needs the
credits already given), and what the invoice and the ledger read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from activities.stores import tax as store
from activities.tax.port import TaxConflict
from contracts.tax import TaxLineQuote, TaxQuote, TaxReversal, TaxReversalRequest, TaxTransaction
from domain.tax import TaxError
from domain.tax import reversal as rules
from paysaga.db import tenant_tx


def stable_id(prefix: str, *parts: str) -> str:
    """An id derived from business keys, so a retried call names the same record."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"{prefix}_{digest}"


@dataclass(frozen=True)
class ReversalPlan:
    """What a reversal takes back, computed under the transaction's lock, before any provider is told."""

    request: TaxReversalRequest
    transaction: TaxTransaction
    provider_line_ids: dict[str, str]
    credits: dict[str, int]  # line_id → part of the line's amount credited now
    lines: list[TaxLineQuote]  # per committed entry: what this reversal takes back of it
    first: bool  # no reversal before this one

    @property
    def amount_micros(self) -> int:
        return sum(self.credits.values())

    @property
    def tax_micros(self) -> int:
        return sum(line.tax_micros for line in self.lines)

    @property
    def reverses_everything(self) -> bool:
        """The first reversal, and it takes every line whole (Stripe's `mode=full`)."""
        amounts = rules.line_amounts(_entries(self.transaction.lines))
        return self.first and self.credits == {k: v for k, v in amounts.items() if v > 0}


# Tells the provider about the planned reversal; answers the reversal's id.
RemoteReversal = Callable[[ReversalPlan], Awaitable[str]]


def _entries(lines: list[TaxLineQuote]) -> list[rules.CommittedEntry]:
    return [rules.CommittedEntry(line_id=line.line_id, amount_micros=line.amount_micros,
                                 taxable_micros=line.taxable_micros, tax_micros=line.tax_micros) for line in lines]


class TaxLedger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def committed(self, tenant_id: str, reference: str) -> TaxTransaction | None:
        async with tenant_tx(self._pool, tenant_id) as conn:
            row = await store.fetch_transaction(conn, reference)
        return store.to_transaction(row) if row else None

    async def commit(self, quote: TaxQuote, transaction_id: str,
                     provider_line_ids: dict[str, str] | None = None) -> TaxTransaction:
        if quote.tax_micros != sum(line.tax_micros for line in quote.lines):
            raise TaxError(f"quote {quote.quote_id}: its tax is not the sum of its lines")
        async with tenant_tx(self._pool, quote.tenant_id) as conn:
            row = await store.insert_transaction(conn, quote, transaction_id, provider_line_ids or {})
        if row["quote_id"] != quote.quote_id:
            raise TaxConflict(f"{quote.reference} was already committed with quote {row['quote_id']}")
        return store.to_transaction(row)

    async def reverse(self, req: TaxReversalRequest, provider: str, remote: RemoteReversal) -> TaxReversal:
        """Plan the reversal under the transaction's lock, tell the provider (`remote`), record it.

        The lock is held across the provider call so two credit notes of one invoice cannot both be computed
        from the same past; a retry after a failure recomputes the same plan (nothing was recorded), so the
        provider sees the same request under the same idempotency key.
        """
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            if (done := await self._done(conn, req)) is not None:
                return done
            await store.lock_reversals(conn, req.tenant_id, req.original_reference)
            if (done := await self._done(conn, req)) is not None:
                return done
            row = await store.fetch_transaction(conn, req.original_reference)
            if row is None:
                raise TaxError(f"no committed tax transaction {req.original_reference} to reverse")
            if row["provider"] != provider:
                raise TaxConflict(f"{req.original_reference} was committed with {row['provider']}, not {provider}")
            plan = _plan(req, store.to_transaction(row), dict(row["provider_line_ids"]),
                         await store.prior_credits(conn, req.original_reference))
            reversal_id = await remote(plan)
            reversal = TaxReversal(reversal_id=reversal_id, reference=req.reference,
                                   original_reference=req.original_reference, amount_micros=plan.amount_micros,
                                   tax_micros=plan.tax_micros, lines=plan.lines)
            written = await store.insert_reversal(conn, req.tenant_id, reversal, provider, plan.credits)
        return store.to_reversal(written)

    @staticmethod
    async def _done(conn: asyncpg.Connection, req: TaxReversalRequest) -> TaxReversal | None:
        row = await store.fetch_reversal(conn, req.reference)
        if row is None:
            return None
        if row["original_reference"] != req.original_reference:
            raise TaxConflict(f"reversal {req.reference} already reverses {row['original_reference']}")
        return store.to_reversal(row)


def _plan(req: TaxReversalRequest, transaction: TaxTransaction, provider_line_ids: dict[str, str],
          prior: dict[str, int]) -> ReversalPlan:
    entries = _entries(transaction.lines)
    if req.is_void:
        credits = rules.void_credits(entries, prior)
    elif req.amount_micros is not None:
        credits = rules.spread(req.amount_micros, entries, prior, transaction.currency)
    else:
        credits = {line.line_id: line.amount_micros for line in req.lines or []}
    parts = rules.reverse(entries, prior, credits, transaction.currency)
    lines = [transaction.lines[p.index].model_copy(update={
        "amount_micros": p.credited_micros, "taxable_micros": p.taxable_micros, "tax_micros": p.tax_micros,
    }) for p in parts]
    return ReversalPlan(request=req, transaction=transaction, provider_line_ids=provider_line_ids, credits=credits,
                        lines=lines, first=not prior)
