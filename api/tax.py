"""The tenant as a seller, for finance: its profile and its tax registrations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import schemas
from api.deps import Caller, Ctx, Finance
from api.docs import problems
from contracts.common import Body, Day
from contracts.tax import SellerProfile, TaxRegistration
from services import tax

router = APIRouter(prefix="/v1", tags=["tax"])


class ProfileBody(SellerProfile, Body):
    pass


class RegistrationBody(TaxRegistration, Body):
    active_from: Day
    active_until: Day | None = None


class EndRegistration(Body):
    active_until: Day


@router.get("/tenant/profile", response_model=schemas.TenantProfile)
async def get_profile(ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await tax.get_profile(ctx, who)


@router.put("/tenant/profile", response_model=schemas.TenantProfile, responses=problems(403))
async def put_profile(body: ProfileBody, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """The legal name, address and tax ids invoices print; its country is where the tax rules start from."""
    return await tax.put_profile(ctx, who, body)


@router.get("/tax/registrations", response_model=schemas.TaxRegistrationList)
async def list_registrations(ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await tax.registrations(ctx, who)


@router.post("/tax/registrations", status_code=201, response_model=schemas.TaxRegistration,
             responses=problems(403, 409))
async def add_registration(body: RegistrationBody, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """Where the tenant collects tax: a country, a US state (nexus), or the EU One-Stop Shop (`eu_oss_union`)."""
    return await tax.add_registration(ctx, who, body)


@router.post("/tax/registrations/{registration_id}/end", response_model=schemas.TaxRegistration,
             responses=problems(403, 404, 409))
async def end_registration(registration_id: str, body: EndRegistration, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """From `active_until` on (exclusive), no longer collected there."""
    return await tax.end_registration(ctx, who, registration_id, body.active_until)
