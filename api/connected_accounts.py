"""Connected accounts (the sellers a tenant pays out to) and the tenant's settings for settlement and payouts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import schemas
from api.deps import Caller, Ctx, DayQuery, Finance, IdempotencyKey, Payments, day
from api.docs import created, problems
from api.responses import answered
from contracts.connected_accounts import ConnectedAccountCreate, ConnectedAccountUpdate, TenantSettingsBody
from services import connected_accounts

router = APIRouter(prefix="/v1", tags=["connected accounts"])


@router.post("/connected_accounts", status_code=201, response_model=None, responses={
    **created(schemas.ConnectedAccount, "The account, ours and the provider's"), **problems(403, 409)})
async def create_account(body: ConnectedAccountCreate, ctx: Ctx, who: Payments,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A seller to pay out to: its country, settlement currency, payout schedule (weekly by default), reserve and
    payout method — a provider token for its bank account, never the account number (refused: 422)."""
    return answered(await connected_accounts.create(ctx, who, body, idempotency_key))


@router.get("/connected_accounts", response_model=schemas.ConnectedAccountList, responses=problems(400))
async def list_accounts(
    ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
    onboarding_status: Literal["pending", "restricted", "enabled", "rejected"] | None = None,
) -> dict[str, Any]:
    """Newest first; pass `next_cursor` as `starting_after` for the next page."""
    return await connected_accounts.list_page(ctx, who, limit, starting_after, onboarding_status)


@router.get("/connected_accounts/{account_id}", response_model=schemas.ConnectedAccount, responses=problems(404))
async def get_account(account_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await connected_accounts.get(ctx, who, account_id)


@router.post("/connected_accounts/{account_id}", response_model=schemas.ConnectedAccount,
             responses=problems(403, 404, 409))
async def update_account(account_id: str, body: ConnectedAccountUpdate, ctx: Ctx, who: Payments) -> dict[str, Any]:
    """Only the fields sent change: onboarding, settlement currency, schedule, reserve, payout method."""
    return await connected_accounts.update(ctx, who, account_id, body)


@router.get("/connected_accounts/{account_id}/balance", response_model=schemas.ConnectedAccountBalance,
            responses=problems(403, 404))
async def account_balance(account_id: str, ctx: Ctx, who: Finance, as_of: DayQuery = None) -> dict[str, Any]:
    """What a payout run on `as_of` (default today) would pay it, per currency, as the run's report shows it."""
    return await connected_accounts.balance(ctx, who, account_id, day(as_of, "as_of"))


@router.get("/tenant/settings", response_model=schemas.TenantSettings, tags=["tenant"])
async def get_settings(ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await connected_accounts.get_settings(ctx, who)


@router.put("/tenant/settings", response_model=schemas.TenantSettings, tags=["tenant"], responses=problems(403))
async def put_settings(body: TenantSettingsBody, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """Finance: the settlement currency, and whether payout runs wait for approval (how long, when reminded)."""
    return await connected_accounts.put_settings(ctx, who, body)
