"""The ledger, for finance: accounts and balances, an account's statement, the trial balance."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import schemas
from api.deps import At, Ctx, Finance, instant
from api.docs import problems
from services import ledger

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


@router.get("/accounts", response_model=schemas.LedgerAccountList, responses=problems(403))
async def list_accounts(ctx: Ctx, who: Finance, at: At = None) -> dict[str, Any]:
    """Every account of the tenant, per currency, with its balance (debits minus credits)."""
    return await ledger.list_accounts(ctx, who, instant(at))


@router.get("/accounts/{account_id}/entries", response_model=schemas.LedgerStatement,
            responses=problems(400, 403, 404))
async def account_entries(
    account_id: str, ctx: Ctx, who: Finance, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """The account's lines, newest first; pass the last `entry_id` of a page as `starting_after` for the next."""
    return await ledger.statement(ctx, who, account_id, limit, starting_after)


@router.get("/trial_balance", response_model=schemas.TrialBalance, responses=problems(403))
async def trial_balance(ctx: Ctx, who: Finance, at: At = None) -> dict[str, Any]:
    """Per currency, debits equal credits: the balance is zero."""
    return await ledger.trial_balance(ctx, who, instant(at))
