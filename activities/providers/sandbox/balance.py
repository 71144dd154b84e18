"""The sandbox's balances: a balance transaction for every movement of money, like Stripe's, and the settlement
file made of them.

Each charge, refund, dispute (and its reversal), transfer (and its reversal) and payout writes one row of
`sandbox.balance_transactions` in the transaction of its change: the platform's balance (`account_id` NULL) or a
connected account's. Amounts are minor units of the balance's currency, signed as they move it, with the fee and
the net (gross - fee). A movement in another currency than the balance's is converted at the sandbox's rate —
the ECB reference rate of the day (activities/fx, within `sandbox_fx_max_age_days`) less
`sandbox_fx_spread_basis_points`, rounded half-even to the minor unit — and the row records that rate as
`exchange_rate` (its decimal text) and the customer-facing amount, as Stripe's balance transaction does. Fees
(`sandbox_fee_*`) are charged in the balance's currency.

`settlement_report` writes the rows of a window as Stripe's itemized payout reconciliation report
(activities/providers/settlement_report.py): the platform's balance, and its connected accounts' payouts.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from functools import lru_cache

import asyncpg

from activities.fx.base import FxRates
from activities.fx.ecb import EcbRates
from activities.providers.base import BalanceTransaction
from activities.providers.settlement_report import write_settlement_report
from domain.fx import FxRate, convert
from domain.money import Money, RoundingMode, get_currency
from domain.settlement import SettlementLine
from paysaga.settings import Settings

# Categories of the connected accounts' rows that belong in the platform's settlement file: their payouts.
CONNECTED_IN_REPORT = ("payout", "payout_reversal")


@lru_cache(maxsize=4)
def _ecb(rates_file: object, max_age_days: int) -> EcbRates:
    return EcbRates(rates_file if rates_file is None else str(rates_file), max_fallback_days=max_age_days)


def sandbox_rates(settings: Settings) -> FxRates:
    """The rates the sandbox converts at (the provider's own, standing in for Stripe's)."""
    return _ecb(settings.fx_rates_file, settings.sandbox_fx_max_age_days)


@dataclass(frozen=True)
class Converted:
    minor: int
    currency: str
    exchange_rate: str | None  # None when nothing was converted


def applied_rate(settings: Settings, base: str, quote: str, on: date, rates: FxRates | None = None) -> FxRate:
    """What the sandbox converts ``base`` → ``quote`` at on ``on``: the reference rate less its spread."""
    reference = (rates or sandbox_rates(settings)).rate(base, quote, on)
    spread = Fraction(10_000 - settings.sandbox_fx_spread_basis_points, 10_000)
    return FxRate(base, quote, reference.rate * spread, reference.as_of,
                  f"sandbox: {reference.source}, less {settings.sandbox_fx_spread_basis_points} bp")


def convert_minor(settings: Settings, minor: int, currency: str, into: str | None, on: date,
                  rates: FxRates | None = None) -> Converted:
    """``minor`` units of ``currency`` in ``into`` (the balance's currency; None or the same: no conversion)."""
    currency = currency.upper()
    if into is None or into.upper() == currency:
        return Converted(minor, currency, None)
    rate = applied_rate(settings, currency, into.upper(), on, rates)
    target = convert(Money.from_minor_units(minor, currency), rate, RoundingMode.HALF_EVEN).target
    return Converted(target.to_minor_units(RoundingMode.HALF_EVEN), target.currency, rate.decimal_string(8))


def charge_fee(settings: Settings, gross_minor: int) -> int:
    """The processing fee of a charge of ``gross_minor`` (in the balance's currency), rounded half-even."""
    if gross_minor <= 0:
        return 0
    share = Fraction(gross_minor * settings.sandbox_fee_basis_points, 10_000)
    return min(gross_minor, round(share) + settings.sandbox_fee_fixed_minor)


def charge_id_of(intent_id: str) -> str:
    """The sandbox's charge of an intent (one charge per intent): ch_sbx_<the intent's suffix>."""
    return "ch_sbx_" + intent_id.removeprefix("pi_sbx_")


@dataclass(frozen=True)
class Movement:
    """One balance transaction to write: amounts in minor units of ``currency``, signed as they move the balance."""

    tenant_id: object
    type: str
    category: str
    source_id: str
    currency: str
    amount_minor: int
    fee_minor: int = 0
    account_id: str | None = None
    exchange_rate: str | None = None
    facing_minor: int | None = None
    facing_currency: str | None = None
    charge_id: str | None = None
    intent_id: str | None = None
    description: str = ""


async def record(conn: asyncpg.Connection, settings: Settings, *, tenant_id: object, type: str, category: str,
                 source_id: str, currency: str, amount_minor: int, fee_minor: int = 0, account_id: str | None = None,
                 exchange_rate: str | None = None, facing_minor: int | None = None, facing_currency: str | None = None,
                 charge_id: str | None = None, intent_id: str | None = None, description: str = "") -> asyncpg.Record:
    """Write one balance transaction in ``conn``'s transaction (the change it accounts for commits with it)."""
    movement = Movement(tenant_id, type, category, source_id, currency, amount_minor, fee_minor, account_id,
                        exchange_rate, facing_minor, facing_currency, charge_id, intent_id, description)
    return (await record_many(conn, settings, [movement]))[0]


async def record_many(conn: asyncpg.Connection, settings: Settings, movements: list[Movement]
                      ) -> list[asyncpg.Record]:
    """Many balance transactions in one statement (a batch of charges settles in one round trip)."""
    if not movements:
        return []
    now = datetime.now(UTC)
    m = movements
    return await conn.fetch(
        """INSERT INTO sandbox.balance_transactions (balance_transaction_id, tenant_id, account_id, type,
               reporting_category, source_id, currency, amount_minor, fee_minor, net_minor, exchange_rate,
               customer_facing_amount_minor, customer_facing_currency, charge_id, payment_intent_id, description,
               created_at, available_on)
           SELECT r.id, r.tenant_id, r.account_id, r.type, r.category, r.source_id, r.currency, r.amount, r.fee,
                  r.amount - r.fee, r.rate, r.facing, r.facing_currency, r.charge_id, r.intent_id, r.description,
                  $17, $18
             FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bigint[], $9::bigint[], $10::text[], $11::bigint[], $12::text[], $13::text[],
                         $14::text[], $15::text[], $16::int[])
                  AS r(id, tenant_id, account_id, type, category, source_id, currency, amount, fee, rate, facing,
                       facing_currency, charge_id, intent_id, description, n)
            ORDER BY r.n
           RETURNING *""",
        [f"txn_sbx_{secrets.token_hex(12)}" for _ in m], [str(x.tenant_id) for x in m], [x.account_id for x in m],
        [x.type for x in m], [x.category for x in m], [x.source_id for x in m], [x.currency.upper() for x in m],
        [x.amount_minor for x in m], [x.fee_minor for x in m], [x.exchange_rate for x in m],
        [x.facing_minor for x in m], [x.facing_currency.upper() if x.facing_currency else None for x in m],
        [x.charge_id for x in m], [x.intent_id for x in m], [x.description for x in m], list(range(len(m))),
        now, (now + timedelta(days=settings.sandbox_available_days)).date())


def to_model(row: asyncpg.Record) -> BalanceTransaction:
    return BalanceTransaction(
        id=row["balance_transaction_id"], type=row["type"], reporting_category=row["reporting_category"],
        source_id=row["source_id"], currency=row["currency"], amount_minor=row["amount_minor"],
        fee_minor=row["fee_minor"], net_minor=row["net_minor"], exchange_rate=row["exchange_rate"],
        customer_facing_amount_minor=row["customer_facing_amount_minor"],
        customer_facing_currency=row["customer_facing_currency"], created=int(row["created_at"].timestamp()),
        available_on=int(datetime.combine(row["available_on"], datetime.min.time(), UTC).timestamp()),
        charge_id=row["charge_id"], payment_intent_id=row["payment_intent_id"], account=row["account_id"])


async def of_source(pool: asyncpg.Pool, source_id: str) -> list[BalanceTransaction]:
    """The platform balance's rows of one object: an intent's charge (by the intent or the charge id), a refund,
    a dispute, a transfer."""
    rows = await pool.fetch(
        """SELECT * FROM sandbox.balance_transactions
            WHERE account_id IS NULL AND (source_id = $1 OR (payment_intent_id = $1 AND reporting_category = 'charge'))
            ORDER BY seq""", source_id)
    return [to_model(r) for r in rows]


def _line(row: asyncpg.Record) -> SettlementLine:
    currency = get_currency(row["currency"]).code
    facing = (Money.from_minor_units(row["customer_facing_amount_minor"], row["customer_facing_currency"])
              if row["customer_facing_currency"] else None)
    return SettlementLine(
        balance_transaction_id=row["balance_transaction_id"], created=row["created_at"],
        available_on=row["available_on"], gross=Money.from_minor_units(row["amount_minor"], currency),
        fee=Money.from_minor_units(row["fee_minor"], currency), net=Money.from_minor_units(row["net_minor"], currency),
        reporting_category=row["reporting_category"], source_id=row["source_id"], customer_facing_amount=facing,
        description=row["description"], charge_id=row["charge_id"], payment_intent_id=row["payment_intent_id"],
        connected_account_id=row["account_id"])


async def settlement_report(pool: asyncpg.Pool, tenant_id: str, start: datetime, end: datetime) -> str:
    """The tenant's settlement data of [start, end) as the CSV Stripe's itemized report would be."""
    rows = await pool.fetch(
        """SELECT * FROM sandbox.balance_transactions
            WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3
              AND (account_id IS NULL OR reporting_category = ANY($4::text[]))
            ORDER BY created_at, seq""", tenant_id, start, end, list(CONNECTED_IN_REPORT))
    out = io.StringIO(newline="")
    write_settlement_report([_line(r) for r in rows], out)
    return out.getvalue()
