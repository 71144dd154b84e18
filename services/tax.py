"""The tenant as a seller: its profile (what invoices print about it, where its tax rules start) and the places
it is registered to collect tax (its nexus)."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from activities.stores import tax as store
from contracts.auth import Principal
from contracts.tax import SellerProfile, TaxRegistration
from paysaga.db import tenant_tx
from services import audit
from services.context import AppContext
from services.errors import Conflict, not_found
from services.ids import new_id


def profile_json(profile: SellerProfile | None) -> dict[str, Any]:
    if profile is None:
        return {"object": "tenant_profile", "legal_name": None, "address": None, "tax_ids": []}
    return {"object": "tenant_profile", **profile.model_dump(mode="json")}


def registration_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["registration_id"], "object": "tax_registration", "country": row["country"],
            "state": row["state"], "type": row["type"], "active_from": row["active_from"].isoformat(),
            "active_until": row["active_until"].isoformat() if row["active_until"] else None}


async def get_profile(ctx: AppContext, who: Principal) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        return profile_json(await store.fetch_profile(conn))


async def put_profile(ctx: AppContext, who: Principal, profile: SellerProfile) -> dict[str, Any]:
    """Invoices finalized from now on print it; those already issued keep the seller they were issued by."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        await store.upsert_profile(conn, who.tenant_id, profile)
        await audit.record(conn, who, "tenant.profile.update", "tenant", who.tenant_id)
        return profile_json(await store.fetch_profile(conn))


async def registrations(ctx: AppContext, who: Principal) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        rows = await store.registration_rows(conn)
    return {"object": "list", "data": [registration_json(r) for r in rows], "has_more": False}


async def add_registration(ctx: AppContext, who: Principal, registration: TaxRegistration) -> dict[str, Any]:
    registration_id = new_id("taxreg")
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        await store.add_registration(conn, registration_id, who.tenant_id, registration)
        await audit.record(conn, who, "tax.registration.add", "tax_registration", registration_id,
                           country=registration.country, state=registration.state)
        rows = await store.registration_rows(conn)
    return registration_json(next(r for r in rows if r["registration_id"] == registration_id))


async def end_registration(ctx: AppContext, who: Principal, registration_id: str, active_until: date
                           ) -> dict[str, Any]:
    """A registration ends (it is never deleted: past quotes must stay explainable)."""
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        rows = {r["registration_id"]: r for r in await store.registration_rows(conn)}
        row = rows.get(registration_id)
        if row is None:
            raise not_found("tax_registration", registration_id)
        if row["active_until"] is not None or active_until <= row["active_from"]:
            raise Conflict("registration-not-endable", "Registration cannot end then",
                           "It has already ended, or would end before it started.")
        await store.end_registration(conn, registration_id, active_until)
        await audit.record(conn, who, "tax.registration.end", "tax_registration", registration_id,
                           active_until=active_until.isoformat())
        rows = {r["registration_id"]: r for r in await store.registration_rows(conn)}
    return registration_json(rows[registration_id])
