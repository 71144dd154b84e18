"""Provider webhooks normalised into one `contracts.webhooks.NormalizedEvent`: the only reader of provider objects.

Two input formats are understood (`Verifier.event_format` says which one a rail sends):

**Stripe events** (`stripe`, and the sandbox provider): `{"id": "evt_…", "type": "…", "data": {"object": {…}}}`.

| event type                                   | kind      | reference_id                                   |
|----------------------------------------------|-----------|------------------------------------------------|
| any event whose object is a `payment_intent` | `payment` | `metadata.payment_id`                          |
| `charge.refunded`, `charge.refund.*`, `refund.*` | `refund` | `metadata.refund_id`, else `metadata.payment_id` |
| `charge.dispute.*`                           | `dispute` | `metadata.payment_id` (often absent: see below) |
| any event whose object is a `payout`         | `payout`  | `metadata.payout_id` (a connected account's)   |
| `account.updated`                            | `account` | `metadata.account_id`                          |
| anything else                                | `other`   | `metadata.payment_id` if any                   |

`tenant_id` is `metadata.tenant_id` (paysaga puts it on every PaymentIntent; Stripe copies it to the charge).
Disputes carry no metadata of ours: their `tenant_id` is usually None and `intent_id` (`object.payment_intent`)
is what a dispute handler has to resolve.

**Generic events** (`generic` and any other `HmacVerifier` rail), the JSON body a rail signs:

    {
      "id": "evt_…",                  # required, unique per rail: replays are de-duplicated by it
      "type": "payment.succeeded",    # required, see below
      "tenant_id": "<uuid>",          # required unless kind is "other"
      "reference_id": "pay_…",        # required unless kind is "other": the paysaga payment (or refund) id
      "intent_id": "…",               # optional: the rail's id for the attempt (ignored if it names another)
      "failure_code": "do_not_honor", # optional, for payment.failed
      "failure_message": "…",         # optional
      "created": 1700000000,          # optional, unix seconds (informational: the signed timestamp header
                                      #   is what replay protection checks)
      "data": {…}                     # optional, anything: kept in NormalizedEvent.raw for handlers
    }

| generic type                                   | kind      | intent_status (what the PaymentWorkflow sees)        |
|------------------------------------------------|-----------|------------------------------------------------------|
| `payment.succeeded`                            | `payment` | `succeeded`                                          |
| `payment.failed`, `payment.declined`           | `payment` | `declined` (sent as `payment_intent.payment_failed`) |
| `payment.pending`, `payment.processing`        | `payment` | `processing` (authorised, awaiting settlement)       |
| `payment.requires_action`                      | `payment` | `requires_action`                                    |
| `payment.canceled`                             | `payment` | `canceled`                                           |
| other `payment.*`                              | `payment` | None: recorded in the inbox, not signalled           |
| `refund.*`, `dispute.*`                        | `refund`, `dispute` | None                                       |
| `payout.paid`, `payout.failed`, `payout.canceled` | `payout` | None (`reference_id` is the paysaga payout id)  |
| anything else                                  | `other`   | None                                                 |

Refund, dispute, payout and account events carry what their handlers need as typed news
(`NormalizedEvent.refunds`, `.dispute`, `.payout`, `.account`): nothing outside this module reads a provider's
objects. A payout event with no metadata of ours names only the provider's payout: its handler resolves it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from contracts.webhooks import AccountNotice, DisputeNews, Kind, NormalizedEvent, PayoutNotice, RefundNews
from domain.intents import DECLINED, PAYMENT_FAILED_EVENT

GENERIC_PAYMENT_STATUS: dict[str, str] = {
    "payment.succeeded": "succeeded",
    "payment.failed": DECLINED,
    "payment.declined": DECLINED,
    "payment.pending": "processing",
    "payment.processing": "processing",
    "payment.requires_action": "requires_action",
    "payment.canceled": "canceled",
}

_STRIPE_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MAX_ID = 255


class MalformedEvent(ValueError):
    """The (authentic) body is not an event of the expected format. Answered 400 `malformed-payload`."""


# --- parsing ------------------------------------------------------------------------------------------------
def _load(payload: bytes) -> Any:
    try:
        return json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError) as exc:
        raise MalformedEvent("The body is not UTF-8 JSON.") from exc


def _str(value: Any, limit: int = _MAX_ID) -> str | None:
    """An identifier: a non-empty bounded string PostgreSQL can store (no NUL, no lone surrogate)."""
    if not isinstance(value, str) or not 0 < len(value) <= limit or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _text(value: Any, limit: int = 1000) -> str | None:
    """Free text (a failure message): bounded, made storable (NULs dropped, lone surrogates replaced)."""
    if not isinstance(value, str):
        return None
    clean = value[:limit].replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return clean or None


def _uuid(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**15 else None


def _stripe_kind(event_type: str, obj: dict[str, Any]) -> Kind:
    if obj.get("object") == "payment_intent":
        return "payment"
    if event_type == "charge.refunded" or event_type.startswith(("charge.refund.", "refund.")):
        return "refund"
    if event_type.startswith("charge.dispute."):
        return "dispute"
    if obj.get("object") == "payout":
        return "payout"
    if event_type == "account.updated" and obj.get("object") == "account":
        return "account"
    return "other"


def parse_stripe(payload: bytes, provider: str = "stripe") -> NormalizedEvent:
    event = _load(payload)
    if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
            and isinstance(event.get("data"), dict) and isinstance(event["data"].get("object"), dict)):
        raise MalformedEvent("Expected a Stripe event with id, type and data.object.")
    event_id, event_type, obj = _str(event["id"]), _str(event["type"]), event["data"]["object"]
    if event_id is None or event_type is None:
        raise MalformedEvent("The event id or type is empty, too long or not text.")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    tenant = meta.get("tenant_id")
    tenant_id = tenant if isinstance(tenant, str) and _STRIPE_UUID.match(tenant) else None
    payment_id = _str(meta.get("payment_id"))
    kind = _stripe_kind(event_type, obj)

    intent_id = intent_status = decline_code = failure_message = None
    reference_id = payment_id
    if kind == "payment":
        intent_id = _str(obj.get("id"))
        intent_status = "declined" if event_type == PAYMENT_FAILED_EVENT else _str(obj.get("status"), 64)
        error = obj.get("last_payment_error") if isinstance(obj.get("last_payment_error"), dict) else {}
        decline_code = _str(error.get("decline_code")) or _str(error.get("code"))
        failure_message = _text(error.get("message"))
    elif kind == "payout":
        reference_id = _str(meta.get("payout_id"))
    elif kind == "account":
        reference_id = _str(meta.get("account_id"))
    else:
        intent_id = _str(obj.get("payment_intent"))
        if kind == "refund":
            reference_id = _str(meta.get("refund_id")) or payment_id
            decline_code = _str(obj.get("failure_reason"))
    return NormalizedEvent(
        provider=provider, event_id=event_id, event_type=event_type, kind=kind, tenant_id=tenant_id,
        reference_id=reference_id, payment_id=payment_id, intent_id=intent_id, intent_status=intent_status,
        decline_code=decline_code, failure_message=failure_message, created=_int(event.get("created")),
        refunds=_stripe_refunds(obj) if kind == "refund" else (),
        dispute=_stripe_dispute(obj) if kind == "dispute" else None,
        payout=_stripe_payout(obj, event, meta) if kind == "payout" else None,
        account=_stripe_account(obj, meta) if kind == "account" else None, raw=obj,
    )


def _stripe_payout(obj: dict[str, Any], event: dict[str, Any], meta: dict[str, Any]) -> PayoutNotice:
    return PayoutNotice(provider_payout_id=_str(obj.get("id")), payout_id=_str(meta.get("payout_id")),
                        status=_str(obj.get("status"), 64), failure_code=_str(obj.get("failure_code")),
                        failure_message=_text(obj.get("failure_message")), account=_str(event.get("account")))


def _stripe_account(obj: dict[str, Any], meta: dict[str, Any]) -> AccountNotice | None:
    account_id = _str(obj.get("id"))
    if account_id is None:
        return None
    requirements = obj.get("requirements") if isinstance(obj.get("requirements"), dict) else {}
    return AccountNotice(provider_account_id=account_id, account_id=_str(meta.get("account_id")),
                         payouts_enabled=obj.get("payouts_enabled") is True,
                         details_submitted=obj.get("details_submitted") is True,
                         disabled_reason=_str(requirements.get("disabled_reason"), 200))


def _stripe_refunds(obj: dict[str, Any]) -> tuple[RefundNews, ...]:
    """The paysaga refunds a refund event reports: one refund object, or a charge listing its refunds."""
    if obj.get("object") == "refund":
        candidates: list[Any] = [obj]
    elif obj.get("object") == "charge" and isinstance(obj.get("refunds"), dict):
        candidates = obj["refunds"].get("data") or []
    else:
        candidates = []
    news = []
    for refund in candidates:
        meta = refund.get("metadata") if isinstance(refund, dict) else None
        refund_id = _str(meta.get("refund_id")) if isinstance(meta, dict) else None
        if refund_id is None or not refund_id.startswith("re_"):
            continue  # not one of ours
        news.append(RefundNews(refund_id=refund_id, provider_refund_id=_str(refund.get("id")),
                               status=_str(refund.get("status"), 64) or "",
                               failure_reason=_str(refund.get("failure_reason"))))
    return tuple(news)


def _stripe_dispute(obj: dict[str, Any]) -> DisputeNews | None:
    dispute_id = _str(obj.get("id"))
    if obj.get("object") != "dispute" or dispute_id is None:
        return None
    details = obj.get("evidence_details") if isinstance(obj.get("evidence_details"), dict) else {}
    currency = _str(obj.get("currency"), 3)
    return DisputeNews(provider_dispute_id=dispute_id, amount_minor=_int(obj.get("amount")),
                       currency=currency.upper() if currency else None, reason=_text(obj.get("reason"), 200),
                       status=_str(obj.get("status"), 64), evidence_due_by=_int(details.get("due_by")))


def peek_tenant(event_format: str, payload: bytes) -> str | None:
    """The tenant a not yet verified body names (to pick that tenant's secrets), or None. Never raises.

    Only a hint for choosing secrets: the tenant of the event is read again from the verified body, and a tenant's
    secret verifies only bodies naming that tenant.
    """
    try:
        event = _load(payload)
        if not isinstance(event, dict):
            return None
        if event_format == "stripe":
            obj = event.get("data", {}).get("object", {})
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            tenant = meta.get("tenant_id") if isinstance(meta, dict) else None
            return tenant if isinstance(tenant, str) and _STRIPE_UUID.match(tenant) else None
        return _uuid(event.get("tenant_id"))
    except (MalformedEvent, AttributeError):
        return None


def peek_generic_tenant(payload: bytes) -> str | None:
    return peek_tenant("generic", payload)


_GENERIC_KINDS: dict[str, Kind] = {"payment": "payment", "refund": "refund", "dispute": "dispute",
                                    "payout": "payout"}
GENERIC_PAYOUT_STATUS = {"payout.paid": "paid", "payout.failed": "failed", "payout.canceled": "canceled"}


def _generic_kind(event_type: str) -> Kind:
    return _GENERIC_KINDS.get(event_type.split(".", 1)[0], "other")


def parse_generic(payload: bytes, provider: str = "generic") -> NormalizedEvent:
    event = _load(payload)
    if not isinstance(event, dict):
        raise MalformedEvent("Expected a JSON object.")
    event_id, event_type = _str(event.get("id")), _str(event.get("type"))
    if event_id is None or event_type is None:
        raise MalformedEvent("Expected string id and type (1 to 255 characters).")
    kind = _generic_kind(event_type)
    tenant_id = _uuid(event.get("tenant_id"))
    reference_id = _str(event.get("reference_id"))
    if kind != "other":
        if tenant_id is None:
            raise MalformedEvent("tenant_id must be a UUID.")
        if reference_id is None:
            raise MalformedEvent("reference_id must be a string (1 to 255 characters).")
    for optional in ("intent_id", "failure_code", "failure_message"):
        if event.get(optional) is not None and not isinstance(event.get(optional), str):
            raise MalformedEvent(f"{optional} must be a string.")
    if event.get("created") is not None and _int(event.get("created")) is None:
        raise MalformedEvent("created must be unix seconds.")
    return NormalizedEvent(
        provider=provider, event_id=event_id, event_type=event_type, kind=kind, tenant_id=tenant_id,
        reference_id=reference_id, payment_id=reference_id if kind == "payment" else None,
        intent_id=_str(event.get("intent_id")),
        intent_status=GENERIC_PAYMENT_STATUS.get(event_type) if kind == "payment" else None,
        decline_code=_str(event.get("failure_code")), failure_message=_text(event.get("failure_message")),
        created=_int(event.get("created")), raw=event,
        payout=PayoutNotice(payout_id=reference_id, status=GENERIC_PAYOUT_STATUS.get(event_type),
                            failure_code=_str(event.get("failure_code")),
                            failure_message=_text(event.get("failure_message"))) if kind == "payout" else None,
    )


PARSERS: dict[str, Callable[[bytes, str], NormalizedEvent]] = {"stripe": parse_stripe, "generic": parse_generic}


def normalize(event_format: str, payload: bytes, provider: str) -> NormalizedEvent:
    """Parse a verified body; raises MalformedEvent (and nothing else) if it is not an event of `event_format`."""
    parser = PARSERS.get(event_format)
    if parser is None:
        raise MalformedEvent(f"No parser for event format {event_format!r}.")
    try:
        return parser(payload, provider)
    except MalformedEvent:
        raise
    except (ValueError, TypeError, RecursionError) as exc:  # pydantic ValidationError is a ValueError
        raise MalformedEvent("The event could not be read.") from exc
