"""RFC 9457 problem details (api.problems) and the public request/response shapes (api.schemas)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from api import problems
from api.problems import MEDIA_TYPE, PROBLEM_BASE, Problem
from contracts.payments import CancelBody, PaymentCreate, PaymentView
from domain.payment import PaymentStatus
from services.payments import payment_json

SECRET = "sk_live_SUPERSECRETVALUE_9f8e7d"


def _app() -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: str) -> dict[str, str]:
        raise Problem(409, "payment-not-cancelable", "Payment cannot be canceled",
                      f"Payment {payment_id} is already completed.", payment_id=payment_id)

    @app.post("/v1/payments")
    async def create(body: PaymentCreate) -> dict[str, Any]:
        return body.model_dump()

    @app.post("/v1/payments/{payment_id}/cancel")
    async def cancel(payment_id: str, body: CancelBody) -> dict[str, Any]:
        return body.model_dump()

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError(f"database password is {SECRET}")

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _is_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].split(";")[0] == MEDIA_TYPE
    body = response.json()
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


async def test_problem_exception_renders_problem_details() -> None:
    async with _client(_app()) as client:
        response = await client.get("/v1/payments/pay_42")
    body = _is_problem(response, 409, "payment-not-cancelable")
    assert body["title"] == "Payment cannot be canceled"
    assert body["detail"] == "Payment pay_42 is already completed."
    assert body["instance"] == "/v1/payments/pay_42"
    assert body["payment_id"] == "pay_42"  # extension member


def test_problem_without_detail_uses_title() -> None:
    response = Problem(404, "not-found", "Payment not found").response()
    assert response.status_code == 404
    assert response.media_type == MEDIA_TYPE
    assert b'"detail":"Payment not found"' in response.body
    assert b"instance" not in response.body


async def test_malformed_json_is_400() -> None:
    async with _client(_app()) as client:
        response = await client.post(
            "/v1/payments", content=b'{"customer_id": "cus_1", "amount": ', headers={"content-type": "application/json"}
        )
    body = _is_problem(response, 400, "malformed-json")
    assert body["instance"] == "/v1/payments"
    assert "errors" not in body


async def test_validation_error_is_422_without_echoing_input() -> None:
    async with _client(_app()) as client:
        response = await client.post(
            "/v1/payments",
            json={"customer_id": SECRET + "!", "payment_method_id": "pm_1", "amount": "1.00", "currency": "usd",
                  "card_secret": SECRET},
        )
    body = _is_problem(response, 422, "validation-error")
    assert SECRET not in response.text
    errors = body["errors"]
    assert {tuple(e["loc"]) for e in errors} == {("body", "customer_id"), ("body", "card_secret")}
    for entry in errors:
        assert set(entry) == {"loc", "msg", "type"}
    assert {e["type"] for e in errors} == {"string_pattern_mismatch", "extra_forbidden"}


async def test_validation_error_in_pattern_constrained_field_does_not_echo() -> None:
    async with _client(_app()) as client:
        response = await client.post("/v1/payments/pay_1/cancel", json={"reason": SECRET})
    _is_problem(response, 422, "validation-error")
    assert SECRET not in response.text


async def test_unknown_route_is_404_problem() -> None:
    async with _client(_app()) as client:
        response = await client.get("/v1/nope")
    body = _is_problem(response, 404, "not-found")
    assert body["instance"] == "/v1/nope"


async def test_wrong_method_is_405_problem() -> None:
    async with _client(_app()) as client:
        response = await client.delete("/v1/payments")
    _is_problem(response, 405, "method-not-allowed")


async def test_unexpected_exception_is_500_without_leaking() -> None:
    async with _client(_app()) as client:
        response = await client.get("/v1/boom")
    body = _is_problem(response, 500, "internal-error")
    assert body["detail"] == "An unexpected error occurred."
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    assert "database password" not in response.text


# --- api.schemas --------------------------------------------------------------------------------------------------

VALID = {"customer_id": "cus_1", "payment_method_id": "pm_1", "amount": "12.34", "currency": "USD"}


def test_payment_create_accepts_a_valid_body() -> None:
    body = PaymentCreate.model_validate(VALID)
    assert body.amount == "12.34"
    assert body.metadata == {}


def test_payment_create_rejects_extra_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        PaymentCreate.model_validate({**VALID, "card_number": "4242"})
    assert exc.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("amount", [12.34, 12, 1200])
def test_payment_create_rejects_a_json_number_amount(amount: float) -> None:
    with pytest.raises(ValidationError) as exc:
        PaymentCreate.model_validate_json(
            f'{{"customer_id": "cus_1", "payment_method_id": "pm_1", "amount": {amount}, "currency": "USD"}}'
        )
    assert exc.value.errors()[0]["loc"] == ("amount",)
    with pytest.raises(ValidationError):
        PaymentCreate.model_validate({**VALID, "amount": amount})


@pytest.mark.parametrize("field,value", [("customer_id", "cus 1"), ("currency", "US"), ("payment_method_id", "")])
def test_payment_create_rejects_bad_ids(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        PaymentCreate.model_validate({**VALID, field: value})


def _view(amount_micros: int, currency: str) -> PaymentView:
    now = datetime(2024, 11, 20, 12, 0, tzinfo=UTC)
    return PaymentView(
        id="pay_1", tenant_id="ten_1", customer_id="cus_1", payment_method_id="pm_1",
        amount_micros=amount_micros, currency=currency, status=PaymentStatus.COMPLETED,
        provider="stripe", workflow_id="payment-pay_1", created_at=now, updated_at=now,
        risk_score=20, risk_reasons=["amount_near_limit"],
    )


@pytest.mark.parametrize(
    "micros,currency,expected",
    [(1_200_000_000, "JPY", "1200"), (1_234_000, "KWD", "1.234"), (12_300_000, "USD", "12.30"), (0, "EUR", "0.00")],
)
def test_payment_json_renders_amount_as_decimal_string(micros: int, currency: str, expected: str) -> None:
    out = payment_json(_view(micros, currency))
    assert out["amount"] == expected
    assert isinstance(out["amount"], str)
    assert out["amount_micros"] == micros
    assert out["currency"] == currency
    assert out["status"] == "completed"
    assert out["object"] == "payment"
    assert out["risk"] == {"score": 20, "reasons": ["amount_near_limit"]}
    assert out["created_at"] == "2024-11-20T12:00:00+00:00"
