"""Request bodies and response shapes of the public API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from domain.money import Money
from workflows.contracts import PaymentView

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
ProviderToken = Annotated[str, StringConstraints(pattern=r"^(pm|tok|card|src)_[A-Za-z0-9_]{1,200}$")]
Metadata = Annotated[dict[Annotated[str, StringConstraints(max_length=40)],
                          Annotated[str, StringConstraints(max_length=500)]], Field(max_length=50)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerCreate(Body):
    email: Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    metadata: Metadata = Field(default_factory=dict)


class PaymentMethodCreate(Body):
    token: ProviderToken = Field(description="A provider payment-method id or token, e.g. pm_card_visa")


class PaymentCreate(Body):
    customer_id: Id
    payment_method_id: Id
    amount: Annotated[str, StringConstraints(max_length=32)] = Field(
        description="Decimal string in the major unit, e.g. \"12.34\"; never a JSON number"
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    metadata: Metadata = Field(default_factory=dict)


class CancelBody(Body):
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")] = "requested_by_customer"


class AuthenticateBody(Body):
    outcome: Annotated[str, StringConstraints(pattern=r"^(succeed|fail)$")] = "succeed"


def payment_json(view: PaymentView) -> dict[str, Any]:
    money = Money(view.amount_micros, view.currency)
    return {
        "id": view.id, "object": "payment", "status": view.status.value,
        "amount": money.to_decimal_string(), "amount_micros": view.amount_micros, "currency": view.currency,
        "customer_id": view.customer_id, "payment_method_id": view.payment_method_id,
        "description": view.description, "metadata": view.metadata, "provider": view.provider,
        "provider_intent_id": view.provider_intent_id, "failure_code": view.failure_code,
        "failure_message": view.failure_message, "next_action": view.next_action,
        "risk": {"score": view.risk_score, "reasons": view.risk_reasons or []},
        "fraud": {"score": view.fraud_score, "action": view.fraud_action,
                  "reasons": (view.fraud_reasons or [])[:3]} if view.fraud_score is not None else None,
        "workflow_id": view.workflow_id,
        "created_at": view.created_at.isoformat(), "updated_at": view.updated_at.isoformat(),
    }


RefundReason = Annotated[str, StringConstraints(pattern=r"^(duplicate|fraudulent|requested_by_customer|other)$")]


class RefundCreate(Body):
    amount: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="Decimal string; omit to refund everything still refundable")
    reason: RefundReason | None = None


def refund_json(view: Any) -> dict[str, Any]:
    return {
        "id": view.id, "object": "refund", "payment_id": view.payment_id, "status": view.status,
        "amount": Money(view.amount_micros, view.currency).to_decimal_string(), "amount_micros": view.amount_micros,
        "currency": view.currency, "reason": view.reason, "provider_refund_id": view.provider_refund_id,
        "failure_code": view.failure_code, "workflow_id": view.workflow_id,
        "created_at": view.created_at.isoformat(), "updated_at": view.updated_at.isoformat(),
    }
