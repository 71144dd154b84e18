"""A customer's credit balance: what post-payment credit notes credited to `customer_credit:<customer>` (a
liability: credits are negative lines) and invoices have not used yet. An invoice being finalized takes what it
can; the customer's row is locked first, so two invoices of one customer never spend the same credit."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from domain.ledger import Account, AccountCode
from domain.money import Money


def account_id(customer_id: str, currency: str) -> str:
    return Account(AccountCode.CUSTOMER_CREDIT, currency, customer_id).account_id


async def available(conn: asyncpg.Connection, customer_id: str, currency: str) -> Money:
    """The credit the customer holds in `currency`, its row locked until the transaction ends when there is any."""
    return (await available_many(conn, [(customer_id, currency)])).get((customer_id, currency),
                                                                      Money.zero(currency))


async def available_many(conn: asyncpg.Connection, pairs: Iterable[tuple[str, str]], *, lock: bool = True
                         ) -> dict[tuple[str, str], Money]:
    """(customer, currency) -> credit available, for those that hold some. Customers that ever held credit are
    locked (in one order everywhere: no deadlock between two batches); the others have nothing to spend."""
    wanted = sorted(set(pairs))
    ids = [account_id(c, cur) for c, cur in wanted]
    known = {r["account_id"] for r in await conn.fetch(
        "SELECT account_id FROM paysaga.ledger_accounts WHERE account_id = ANY($1::text[])", ids)}
    holders = sorted({c for (c, cur), a in zip(wanted, ids, strict=True) if a in known})
    if not holders:
        return {}
    if lock:  # a preview reads without spending
        await conn.execute("SELECT 1 FROM paysaga.customers WHERE customer_id = ANY($1::text[]) "
                           "ORDER BY customer_id FOR NO KEY UPDATE", holders)
    # Read after the lock: a credit note or an invoice that committed meanwhile is seen.
    balances = {r["account_id"]: int(r["balance"]) for r in await conn.fetch(
        """SELECT account_id, sum(amount_micros) AS balance FROM paysaga.journal_lines
            WHERE account_id = ANY($1::text[]) GROUP BY account_id""", [a for a in ids if a in known])}
    out: dict[tuple[str, str], Money] = {}
    for (customer, currency), account in zip(wanted, ids, strict=True):
        credit = -balances.get(account, 0)
        if credit > 0:
            out[(customer, currency)] = Money(credit, currency)
    return out
