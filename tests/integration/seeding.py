"""Rows written straight through the stores, for tests that need a payment in a given state without the saga."""

from __future__ import annotations

import uuid

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
