"""Customers and payments: validate, authenticate, start or signal the workflow (methods: api/payment_methods.py)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import outbox, payment_store
from api import audit, idempotency
from api.auth import Principal, authenticate
from api.problems import Problem
from api.schemas import CancelBody, CustomerCreate, PaymentCreate, payment_json
from domain.money import Money, MoneyError
from paysaga.db import tenant_tx
from workflows.contracts import CancelRequest, PaymentInput, PaymentView, payment_workflow_id
from workflows.payment import PaymentWorkflow, start_search_attributes

router = APIRouter(prefix="/v1")
Auth = Annotated[Principal, Depends(authenticate)]


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# --- customers ----------------------------------------------------------------------------------------------
@router.post("/customers", status_code=201, tags=["customers"])
async def create_customer(body: CustomerCreate, request: Request, who: Auth) -> dict[str, Any]:
    who.require("payments")
    customer_id = _new_id("cus")
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        row = await conn.fetchrow(
            """INSERT INTO paysaga.customers (customer_id, tenant_id, email, name, country, metadata)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
            customer_id, who.tenant_id, body.email, body.name, body.country, body.metadata,
        )
        await outbox.enqueue(conn, who.tenant_id, f"evt_{customer_id}_created", "customer.created",
                             {"customer": {"id": customer_id, "country": body.country}})
    return _customer_json(row)


@router.get("/customers/{customer_id}", tags=["customers"])
async def get_customer(customer_id: str, request: Request, who: Auth) -> dict[str, Any]:
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        row = await conn.fetchrow("SELECT * FROM paysaga.customers WHERE customer_id = $1", customer_id)
    if row is None:
        raise Problem(404, "customer-not-found", "Customer not found", f"No customer {customer_id}.")
    return _customer_json(row)


def _customer_json(row: Any) -> dict[str, Any]:
    return {"id": row["customer_id"], "object": "customer", "email": row["email"], "name": row["name"],
            "country": row["country"], "metadata": row["metadata"], "created_at": row["created_at"].isoformat()}


# --- payments -----------------------------------------------------------------------------------------------
@router.post("/payments", status_code=201, tags=["payments"])
async def create_payment(
    body: PaymentCreate, request: Request, who: Auth,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    who.require("payments")
    key = idempotency.require_key(idempotency_key)
    money = _parse_amount(body.amount, body.currency)
    pool, settings = request.app.state.pool, request.app.state.settings
    async with tenant_tx(pool, who.tenant_id) as conn:
        method = await conn.fetchrow(
            "SELECT customer_id, detached_at FROM paysaga.payment_methods WHERE payment_method_id = $1",
            body.payment_method_id,
        )
    if method is None:
        raise Problem(422, "unknown-payment-method", "Unknown payment method",
                      f"No payment method {body.payment_method_id}.")
    if method["customer_id"] != body.customer_id:
        raise Problem(422, "payment-method-not-owned", "Payment method belongs to another customer",
                      f"{body.payment_method_id} is not attached to {body.customer_id}.")
    if method["detached_at"] is not None:
        raise Problem(422, "payment-method-detached", "Payment method detached",
                      f"{body.payment_method_id} was detached and cannot be charged.")

    fingerprint = idempotency.request_fingerprint("POST", "/v1/payments", body.model_dump(mode="json"))
    claim = await idempotency.claim(pool, who.tenant_id, key, "POST", "/v1/payments", fingerprint,
                                    _new_id("pay"), settings.idempotency_ttl_hours,
                                    settings.idempotency_lease_seconds)
    if claim.replay is not None:
        status, payload = claim.replay
        return JSONResponse(payload, status_code=status, headers={"Idempotent-Replayed": "true"})
    inp = PaymentInput(
        tenant_id=who.tenant_id, payment_id=claim.resource_id, customer_id=body.customer_id,
        payment_method_id=body.payment_method_id, amount_micros=money.micros, currency=money.currency,
        description=body.description, metadata=body.metadata, idempotency_key=key, actor=f"api:{who.key_id}",
        webhook_wait_seconds=settings.webhook_wait_seconds,
        three_ds_timeout_seconds=settings.three_ds_timeout_seconds,
        settlement_timeout_seconds=settings.settlement_timeout_seconds,
        provider_call_timeout_seconds=settings.provider_call_timeout_seconds,
        provider_max_attempts=settings.provider_max_attempts,
        provider_retry_initial_seconds=settings.provider_retry_initial_seconds,
        provider_retry_max_interval_seconds=settings.provider_retry_max_interval_seconds,
        dead_letter_hold_seconds=settings.dead_letter_hold_seconds,
    )
    try:
        view = await start_payment(request.app.state.temporal, settings.task_queue, inp)
    except Exception:
        await idempotency.release(pool, who.tenant_id, key)
        raise
    payload = payment_json(view)
    await audit.record_tx(request, who, "payment.create", "payment", view.id, view.workflow_id,
                          amount_micros=view.amount_micros, currency=view.currency, idempotency_key=key)
    await idempotency.complete(pool, who.tenant_id, key, 201, payload)
    request.app.state.metrics.payments_created.labels(view.currency).inc()
    return JSONResponse(payload, status_code=201)


async def start_payment(client: Client, task_queue: str, inp: PaymentInput) -> PaymentView:
    """Update-with-start: returns once the provider's PaymentIntent exists. A second call joins the same run."""
    wf_id = payment_workflow_id(inp.tenant_id, inp.payment_id)
    start = WithStartWorkflowOperation(
        PaymentWorkflow.run, inp, id=wf_id, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A closed payment workflow is never started again for the same payment.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=start_search_attributes(inp),
        execution_timeout=timedelta(days=7),
    )
    try:
        return await client.execute_update_with_start_workflow(
            PaymentWorkflow.submitted, start_workflow_operation=start, result_type=PaymentView
        )
    except (RPCError, WorkflowAlreadyStartedError, WorkflowUpdateFailedError) as exc:
        # The run already closed (a retry after the payment settled, or a failed run): ask the run itself, which
        # a query can do after it closed, for the payment as it last saw it.
        handle = client.get_workflow_handle(wf_id)
        try:
            view = await handle.query(PaymentWorkflow.status, result_type=PaymentView)
        except Exception:
            raise exc from None
        if view is None:
            raise
        return view


def _parse_amount(amount: str, currency: str) -> Money:
    try:
        money = Money.parse(amount, currency)
    except MoneyError as exc:
        raise Problem(422, "invalid-amount", "Invalid amount", str(exc)) from exc
    if not money.is_positive():
        raise Problem(422, "invalid-amount", "Invalid amount", "The amount must be greater than zero.")
    return money


@router.get("/payments/{payment_id}", tags=["payments"])
async def get_payment(payment_id: str, request: Request, who: Auth) -> dict[str, Any]:
    return payment_json(await _load(request, who, payment_id))


async def _load(request: Request, who: Principal, payment_id: str) -> PaymentView:
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        view = await payment_store.fetch_view(conn, payment_id)
    if view is None:
        raise Problem(404, "payment-not-found", "Payment not found", f"No payment {payment_id}.")
    return view


@router.get("/payments", tags=["payments"])
async def list_payments(
    request: Request, who: Auth,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Newest first; pass the last id of a page as `starting_after` for the next one."""
    async with tenant_tx(request.app.state.pool, who.tenant_id) as conn:
        cursor = None
        if starting_after:
            cursor = await conn.fetchrow(
                "SELECT created_at, payment_id FROM paysaga.payments WHERE payment_id = $1", starting_after
            )
            if cursor is None:
                raise Problem(400, "invalid-cursor", "Invalid cursor", f"No payment {starting_after}.")
        rows = await conn.fetch(
            f"""SELECT {payment_store.PAYMENT_COLUMNS} FROM paysaga.payments
                WHERE $1::timestamptz IS NULL OR (created_at, payment_id) < ($1, $2)
                ORDER BY created_at DESC, payment_id DESC LIMIT $3""",
            cursor["created_at"] if cursor else None, cursor["payment_id"] if cursor else None, limit + 1,
        )
    page = [payment_json(payment_store.view_from_row(r)) for r in rows[:limit]]
    has_more = len(rows) > limit
    return {"object": "list", "data": page, "has_more": has_more,
            "next_cursor": page[-1]["id"] if has_more else None}


@router.post("/payments/{payment_id}/cancel", tags=["payments"])
async def cancel_payment(
    payment_id: str, request: Request, who: Auth, body: CancelBody | None = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    who.require("payments")
    view = await _load(request, who, payment_id)
    if view.status.is_terminal:
        if view.status.value == "canceled":
            return payment_json(view)
        raise Problem(409, "payment-not-cancelable", "Payment cannot be canceled",
                      f"The payment is {view.status.value}.")
    request_id = idempotency_key or _new_id("cancel")
    handle = request.app.state.temporal.get_workflow_handle(view.workflow_id)
    try:
        result = await handle.execute_update(
            PaymentWorkflow.cancel, CancelRequest(request_id=request_id, reason=(body or CancelBody()).reason),
            id=f"cancel-{request_id}", result_type=PaymentView,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "NotCancelable":
            raise Problem(409, "payment-not-cancelable", "Payment cannot be canceled", cause.message) from exc
        raise
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise Problem(409, "payment-not-cancelable", "Payment cannot be canceled",
                      "The payment has already settled.") from exc
    await audit.record_tx(request, who, "payment.cancel", "payment", payment_id, view.workflow_id,
                          cancel_request_id=request_id, status=result.status.value)
    return payment_json(result)
