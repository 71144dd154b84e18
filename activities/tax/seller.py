"""The seller's side of a quote request, from the tenant's profile and registrations."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from activities.stores import tax as store
from contracts.tax import SellerProfile, TaxRegistration
from paysaga.db import tenant_tx


@dataclass(frozen=True)
class Seller:
    profile: SellerProfile | None  # None until the tenant has filled in its legal name and address
    registrations: list[TaxRegistration]


async def load_seller(pool: asyncpg.Pool, tenant_id: str) -> Seller:
    """What `TaxQuoteRequest.seller` and `.registrations` are filled from (and the invoice's seller block)."""
    async with tenant_tx(pool, tenant_id) as conn:
        return Seller(profile=await store.fetch_profile(conn), registrations=await store.list_registrations(conn))
