"""What the provider settled for a money movement, booked in the movement's transaction: its balance transaction
recorded (paysaga.provider_balance_transactions), its fee posted, and — when it settled in another currency than
it was made in — the conversion at the provider's rate against the quoted one, with the difference on
fx_gain_loss (domain/fx.py), so every currency balances.

Entries, named by the movement's business event E (``payment.completed``, ``refund.succeeded``,
``dispute.funds_withdrawn``, ``dispute.funds_reinstated``, ``transfer.created``):

    E.fee    Dr fees:S              Cr cash:<provider>:S       the provider's fee (a refunded fee: negative)
    E.fx     provider_conversion(cash:<provider>:P → cash:<provider>:S) at the provider's amounts, quoted at the
             rate of the FX port on the movement's day (or, with none to be had, the provider's own: no gain or
             loss, and the memo says so)

A balance transaction is booked once (its id), so a retried step posts nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import asyncpg
import structlog

from activities.fx.base import FxRates, RateUnavailable
from activities.providers.base import BalanceTransaction
from activities.stores import ledger
from domain.fx import FxError, FxRate, parse_rate, provider_conversion, settle_conversion
from domain.ledger import AccountCode, cash, entry, move, single
from domain.money import Money

log = structlog.get_logger("paysaga.billing")


def applied(bt: BalanceTransaction, presentment: Money) -> FxRate | None:
    """The rate the provider converted at: its exchange_rate, else its amounts' ratio; None without a conversion."""
    if bt.currency.upper() == presentment.currency:
        return None
    day = datetime.fromtimestamp(bt.created, UTC).date()
    source = f"applied by the provider on {bt.id}"
    if bt.exchange_rate:
        return FxRate(presentment.currency, bt.currency.upper(), parse_rate(bt.exchange_rate), day, source)
    settled = Money.from_minor_units(bt.amount_minor, bt.currency.upper())
    if presentment.is_zero() or settled.is_zero():
        return None
    return FxRate(presentment.currency, settled.currency, Fraction(abs(settled.micros), abs(presentment.micros)), day,
                  source)


async def book(conn: asyncpg.Connection, tenant_id: str, provider: str, *, source_type: str, source_id: str,
               event: str, bt: BalanceTransaction, presentment: Money, rates: FxRates | None) -> bool:
    """Record ``bt`` as what settled ``presentment`` (signed as it moved the balance) and post its fee and its
    conversion; False when it was booked before."""
    currency = bt.currency.upper()
    fresh = await conn.fetchval(
        """INSERT INTO paysaga.provider_balance_transactions (tenant_id, balance_transaction_id, provider,
               source_type, source_id, event, reporting_category, provider_source_id, currency, amount_micros,
               fee_micros, net_micros, presentment_amount_micros, presentment_currency, exchange_rate, created_at,
               available_on)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
           ON CONFLICT DO NOTHING RETURNING true""",
        tenant_id, bt.id, provider, source_type, source_id, event, bt.reporting_category, bt.source_id, currency,
        Money.from_minor_units(bt.amount_minor, currency).micros,
        Money.from_minor_units(bt.fee_minor, currency).micros, Money.from_minor_units(bt.net_minor, currency).micros,
        presentment.micros, presentment.currency, bt.exchange_rate, datetime.fromtimestamp(bt.created, UTC),
        datetime.fromtimestamp(bt.available_on, UTC).date())
    if not fresh:
        return False
    fee = Money.from_minor_units(bt.fee_minor, currency)
    if not fee.is_zero():
        lines = move(fee, single(AccountCode.FEES, currency), cash(provider, currency))
        await ledger.post(conn, tenant_id, entry(source_type, source_id, f"{event}.fee", lines,
                                                 memo=f"provider fee on {bt.id}"))
    settled = Money.from_minor_units(bt.amount_minor, currency)
    rate = applied(bt, presentment)
    if rate is None or settled.is_zero() or presentment.is_zero():
        return True
    quoted = rate
    if rates is not None:
        try:
            quoted = rates.rate(presentment.currency, currency, rate.as_of)
        except RateUnavailable as exc:
            log.warning("billing.fx.no_quote", source_type=source_type, source_id=source_id, error=str(exc))
    try:
        settlement = settle_conversion(presentment, settled, quoted, rate)
    except FxError as exc:  # e.g. the legs moving different ways: the record is kept, the conversion is not guessed
        log.error("billing.fx.unbookable", source_type=source_type, source_id=source_id, error=str(exc))
        return True
    await ledger.post(conn, tenant_id, provider_conversion(source_type, source_id, f"{event}.fx", provider,
                                                           settlement))
    return True


async def of_source(conn: asyncpg.Connection, source_type: str, source_ids: list[str]) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        """SELECT * FROM paysaga.provider_balance_transactions
            WHERE source_type = $1 AND source_id = ANY($2::text[]) ORDER BY created_at""", source_type, source_ids))
