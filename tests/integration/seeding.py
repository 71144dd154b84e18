"""Rows written straight through the stores, for tests that need a payment in a given state without the saga."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

from activities.stores import payments as payment_store
from contracts.payments import PaymentInput
from paysaga.db import tenant_tx


async def seed_payment(pool: asyncpg.Pool, tenant_id: str, provider: str = "sandbox") -> str:
    """A customer, a payment method and a payment in state `created`; returns the payment id."""
    cid, pm, pid = f"cus_{uuid.uuid4().hex[:8]}", f"pm_{uuid.uuid4().hex[:8]}", f"pay_{uuid.uuid4().hex[:8]}"
    async with tenant_tx(pool, tenant_id) as conn:
        await conn.execute("INSERT INTO paysaga.customers (customer_id, tenant_id) VALUES ($1, $2)", cid, tenant_id)
        await conn.execute(
            """INSERT INTO paysaga.payment_methods (payment_method_id, tenant_id, customer_id, provider,
                   provider_token) VALUES ($1, $2, $3, $4, 'pm_card_visa')""", pm, tenant_id, cid, provider)
        await payment_store.insert_created(conn, PaymentInput(
            tenant_id=tenant_id, payment_id=pid, customer_id=cid, payment_method_id=pm, amount_micros=5_000_000,
            currency="USD", idempotency_key=f"k-{pid}"), provider, "test")
    return pid


async def seed_due_subscriptions(pool: asyncpg.Pool, tenant_id: str, template_id: str, n: int, at: datetime, *,
                                 per_customer: int = 10, declined_token: str = "pm_card_chargeDeclined",
                                 declined_every: int = 0, prefix: str = "bulk") -> list[str]:
    """`n` copies of an active subscription (made through the API, so every column is as the service writes
    it), each with a period ending at `at` and due then, set-based (a few statements, not a request each).
    Customers and payment methods are copied too, one customer per `per_customer` subscriptions; every
    `declined_every`-th customer's card is declined. Needs the owner's pool (it writes across the stores).
    Answers the subscriptions' ids."""
    customers = (n + per_customer - 1) // per_customer
    start = at - timedelta(days=30)
    async with pool.acquire() as conn, conn.transaction():
        template = await conn.fetchrow("SELECT * FROM paysaga.subscriptions WHERE tenant_id = $1 "
                                       "AND subscription_id = $2", tenant_id, template_id)
        assert template is not None
        await conn.execute(
            """INSERT INTO paysaga.customers
               SELECT (jsonb_populate_record(NULL::paysaga.customers, to_jsonb(c) || jsonb_build_object(
                         'customer_id', $3 || '_cus_' || g, 'default_payment_method_id', $3 || '_pm_' || g,
                         'created_at', now(), 'updated_at', now()))).*
                 FROM paysaga.customers c, generate_series(1, $4) g
                WHERE c.tenant_id = $1 AND c.customer_id = $2""",
            tenant_id, template["customer_id"], prefix, customers)
        methods = await conn.execute(
            """INSERT INTO paysaga.payment_methods
               SELECT (jsonb_populate_record(NULL::paysaga.payment_methods, to_jsonb(m) || jsonb_build_object(
                         'payment_method_id', $4 || '_pm_' || g, 'customer_id', $4 || '_cus_' || g,
                         'provider_token', CASE WHEN $6 > 0 AND g % $6 = 0 THEN $5 ELSE m.provider_token END,
                         'created_at', now()))).*
                 FROM paysaga.payment_methods m, generate_series(1, $3) g
                WHERE m.tenant_id = $1 AND m.payment_method_id = $2""",
            tenant_id, template["default_payment_method_id"] or await conn.fetchval(
                "SELECT default_payment_method_id FROM paysaga.customers WHERE tenant_id = $1 AND customer_id = $2",
                tenant_id, template["customer_id"]), customers, prefix, declined_token, declined_every)
        assert methods == f"INSERT 0 {customers}", methods
        rows = await conn.fetch(
            """INSERT INTO paysaga.subscriptions
               SELECT (jsonb_populate_record(NULL::paysaga.subscriptions, to_jsonb(s) || jsonb_build_object(
                         'subscription_id', $3 || '_sub_' || g,
                         'customer_id', $3 || '_cus_' || ((g - 1) / $6 + 1),
                         'default_payment_method_id', $3 || '_pm_' || ((g - 1) / $6 + 1),
                         'cycle_anchor', $5::timestamptz, 'cycle_day_of_month', extract(day FROM $5::timestamptz),
                         'period_start', $4::timestamptz, 'period_basis_start', $4::timestamptz,
                         'period_end', $5::timestamptz, 'started_at', $4::timestamptz,
                         'next_action_at', $5::timestamptz,
                         'status', 'active', 'canceled_at', NULL, 'ended_at', NULL,
                         'latest_invoice_id', NULL, 'idempotency_key', NULL, 'created_at', $4::timestamptz,
                         'updated_at', $4::timestamptz))).*
                 FROM paysaga.subscriptions s, generate_series(1, $7) g
                WHERE s.tenant_id = $1 AND s.subscription_id = $2
               RETURNING subscription_id""",
            tenant_id, template_id, prefix, start, at, per_customer, n)
    return [r["subscription_id"] for r in rows]


async def retire_subscriptions(pool: asyncpg.Pool, tenant_id: str) -> None:
    """End a test's subscriptions. Renewal runs renew every tenant's due subscriptions, so bulk-seeded ones left
    active would be renewed for every missed period by any later run at a later instant, in another test."""
    await pool.execute(
        """UPDATE paysaga.subscriptions SET status = 'canceled', canceled_at = now(), next_action_at = NULL
            WHERE tenant_id = $1 AND (status <> 'canceled' OR next_action_at IS NOT NULL)""",
        uuid.UUID(tenant_id))
