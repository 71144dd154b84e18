"""Products, prices (versions of a price family) and the tenant's billing policy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import schemas
from api.deps import Caller, Ctx, Finance, IdempotencyKey, Payments
from api.docs import created, problems
from api.responses import answered
from contracts.catalogue import BillingPolicyUpdate, PriceCreate, PriceRevise, ProductCreate
from services import catalogue

router = APIRouter(prefix="/v1", tags=["catalogue"])
Cursor = Annotated[str | None, Query(max_length=120)]
Limit = Annotated[int, Query(ge=1, le=100)]
CatalogueFilter = Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_-]{1,100}$")]


@router.post("/products", status_code=201, response_model=None, responses={
    **created(schemas.Product, "The product"), **problems(403, 409)})
async def create_product(body: ProductCreate, ctx: Ctx, who: Payments,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return answered(await catalogue.create_product(ctx, who, body, idempotency_key))


@router.get("/products", response_model=schemas.ProductList)
async def list_products(ctx: Ctx, who: Caller, limit: Limit = 20, starting_after: Cursor = None,
                        active: bool | None = None) -> dict[str, Any]:
    """Newest first; pass `next_cursor` as `starting_after` for the next page."""
    return await catalogue.list_products(ctx, who, limit, starting_after, active)


@router.get("/products/{product_id}", response_model=schemas.Product, responses=problems(404))
async def get_product(product_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await catalogue.get_product(ctx, who, product_id)


@router.post("/products/{product_id}/archive", response_model=schemas.Product, responses=problems(403, 404))
async def archive_product(product_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    """No longer offered, nor any of its prices; subscriptions on them carry on."""
    return await catalogue.archive_product(ctx, who, product_id)


@router.post("/prices", status_code=201, response_model=None, responses={
    **created(schemas.Price, "Version 1 of the price family"), **problems(403, 409)})
async def create_price(body: PriceCreate, ctx: Ctx, who: Payments,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return answered(await catalogue.create_price(ctx, who, body, idempotency_key))


@router.post("/prices/{price_id}/revise", status_code=201, response_model=None, responses={
    **created(schemas.Price, "The next version"), **problems(403, 404, 409)})
async def revise_price(price_id: str, body: PriceRevise, ctx: Ctx, who: Payments,
                       idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A new version `<family>.v<n+1>`; the version revised is archived, and the subscriptions on it keep it until
    they are moved explicitly (POST /v1/subscriptions/{id}/change)."""
    return answered(await catalogue.revise_price(ctx, who, price_id, body, idempotency_key))


@router.post("/prices/{price_id}/archive", response_model=schemas.Price, responses=problems(403, 404))
async def archive_price(price_id: str, ctx: Ctx, who: Payments) -> dict[str, Any]:
    return await catalogue.archive_price(ctx, who, price_id)


@router.get("/prices", response_model=schemas.PriceList)
async def list_prices(ctx: Ctx, who: Caller, limit: Limit = 20, starting_after: Cursor = None,
                      product_id: CatalogueFilter = None, family: CatalogueFilter = None,
                      currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
                      active: bool | None = None) -> dict[str, Any]:
    """By family, then version."""
    return await catalogue.list_prices(ctx, who, limit, starting_after, product_id=product_id, family=family,
                                       currency=currency, active=active)


@router.get("/prices/{price_id}", response_model=schemas.Price, responses=problems(404))
async def get_price(price_id: str, ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await catalogue.get_price(ctx, who, price_id)


@router.get("/billing_policy", response_model=schemas.BillingPolicy)
async def get_billing_policy(ctx: Ctx, who: Caller) -> dict[str, Any]:
    return await catalogue.get_policy(ctx, who)


@router.put("/billing_policy", response_model=schemas.BillingPolicy, responses=problems(403))
async def put_billing_policy(body: BillingPolicyUpdate, ctx: Ctx, who: Finance) -> dict[str, Any]:
    """Finance: when changes apply (upgrades now, downgrades at the period's end by default) and how they are
    prorated, what a trial ending without a payment method does, and the dunning policy."""
    return await catalogue.update_policy(ctx, who, body)
