"""Webhook verifiers (HMAC rails, the Stripe wrapper, the registry) and event normalisation, without I/O."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.providers.webhooks.events import (
    MalformedEvent,
    normalize,
    parse_generic,
    parse_stripe,
    peek_generic_tenant,
    peek_tenant,
)
from activities.providers.webhooks.stripe_signature import sign_stripe_payload, verify_stripe_signature
from activities.providers.webhooks.verifiers import (
    VERIFIERS,
    HmacVerifier,
    SignatureError,
    StripeVerifier,
    header_value,
    sign_hmac_payload,
)
from domain.intents import PAYMENT_FAILED_EVENT as PAYMENT_FAILED

NOW = 1_700_000_000
SECRET = "whsec_generic_current_0123"
OLD = "whsec_generic_previous_456"
BODY = b'{"id":"evt_1","type":"payment.succeeded"}'
TENANT = "6f1c1f8e-8c1a-4f57-9a55-2b3c7f0d9e11"
HMAC = HmacVerifier()


def _hex(body: bytes, secret: str, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def _headers(signature: str, t: int | str = NOW) -> dict[str, str]:
    return {"X-Paysaga-Signature": signature, "X-Paysaga-Timestamp": str(t)}


def _reason(verifier: object, body: bytes, headers: dict[str, str], secrets: list[str] | None = None,
            now: int = NOW) -> str:
    with pytest.raises(SignatureError) as exc:
        verifier.verify(body, headers, secrets if secrets is not None else [SECRET], now)  # type: ignore[attr-defined]
    return exc.value.reason


# --- HmacVerifier -------------------------------------------------------------------------------------------
def test_sign_matches_the_documented_scheme() -> None:
    assert sign_hmac_payload(BODY, SECRET, NOW) == _hex(BODY, SECRET, NOW)
    assert HMAC.sign(BODY, SECRET, NOW) == _headers("sha256=" + _hex(BODY, SECRET, NOW))


@pytest.mark.parametrize("signature", [
    "sha256={h}", "{h}", "SHA256={h}", "{H}", " sha256={h} ", "sha256=" + "0" * 64 + ",sha256={h}",
    "garbage,{h}", "{h},sha256=",
])
def test_accepted_signature_forms(signature: str) -> None:
    h = _hex(BODY, SECRET, NOW)
    HMAC.verify(BODY, _headers(signature.format(h=h, H=h.upper())), [SECRET], NOW)


def test_headers_are_case_insensitive() -> None:
    h = _hex(BODY, SECRET, NOW)
    HMAC.verify(BODY, {"x-paysaga-signature": h, "X-PAYSAGA-TIMESTAMP": str(NOW)}, [SECRET], NOW)
    assert header_value({"A": "1"}, "a") == "1" and header_value({}, "a") is None


def test_rotation_either_secret_verifies_and_a_retired_one_does_not() -> None:
    for secret in (SECRET, OLD):
        HMAC.verify(BODY, HMAC.sign(BODY, secret, NOW), [SECRET, OLD], NOW)
    assert _reason(HMAC, BODY, HMAC.sign(BODY, OLD, NOW), [SECRET]) == "signature_mismatch"
    # the sender rotating: one value per secret, only one of which we know
    both = f"sha256={_hex(BODY, 'whsec_unknown_to_us_000', NOW)},sha256={_hex(BODY, SECRET, NOW)}"
    HMAC.verify(BODY, _headers(both), [SECRET], NOW)


def test_tolerance_is_checked_after_the_signature() -> None:
    stale = NOW - 301
    assert _reason(HMAC, BODY, HMAC.sign(BODY, SECRET, stale)) == "timestamp_outside_tolerance"
    assert _reason(HMAC, BODY, HMAC.sign(BODY, SECRET, NOW + 301)) == "timestamp_outside_tolerance"
    HMAC.verify(BODY, HMAC.sign(BODY, SECRET, NOW - 300), [SECRET], NOW)
    # a forged stale request is a forgery first
    assert _reason(HMAC, BODY, HMAC.sign(BODY, "whsec_forger_0000000", stale)) == "signature_mismatch"
    # the verifier's own tolerance wins over the deployment default
    strict = HmacVerifier(tolerance_s=10)
    with pytest.raises(SignatureError):
        strict.verify(BODY, strict.sign(BODY, SECRET, NOW - 11), [SECRET], NOW, default_tolerance_s=600)
    HMAC.verify(BODY, HMAC.sign(BODY, SECRET, NOW - 500), [SECRET], NOW, default_tolerance_s=600)


def test_custom_header_names() -> None:
    acme = HmacVerifier(signature_header="X-Acme-Signature", timestamp_header="X-Acme-Timestamp")
    headers = acme.sign(BODY, SECRET, NOW)
    assert set(headers) == {"X-Acme-Signature", "X-Acme-Timestamp"}
    acme.verify(BODY, headers, [SECRET], NOW)
    assert _reason(HMAC, BODY, headers) == "missing_header"


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "missing_header"),
    ({"X-Paysaga-Signature": "sha256=" + "a" * 64}, "missing_header"),
    ({"X-Paysaga-Timestamp": str(NOW)}, "missing_header"),
    (_headers("   "), "missing_header"),
    (_headers("sha256=" + "a" * 64, "+1700000000"), "malformed_header"),
    (_headers("sha256=" + "a" * 64, "1e9"), "malformed_header"),
    (_headers("sha256=" + "a" * 64, "9" * 16), "malformed_header"),
    (_headers("sha256=" + "a" * 64, "\u0661\u0667" + "\u0660" * 8), "malformed_header"),
    (_headers("sha256=" + "a" * 63), "malformed_header"),
    (_headers("md5=abc,,,"), "malformed_header"),
    (_headers("sha256=" + "a" * 64), "signature_mismatch"),
])
def test_rejections(headers: dict[str, str], reason: str) -> None:
    assert _reason(HMAC, BODY, headers) == reason


def test_no_usable_secret_rejects_everything() -> None:
    for secrets in ([], [""], ["\ud800"]):
        assert _reason(HMAC, BODY, _headers(_hex(BODY, "", NOW)), secrets) == "signature_mismatch"


def test_the_body_is_bound() -> None:
    headers = HMAC.sign(BODY, SECRET, NOW)
    assert _reason(HMAC, BODY + b" ", headers) == "signature_mismatch"
    assert _reason(HMAC, BODY, {**headers, "X-Paysaga-Timestamp": str(NOW + 1)}) == "signature_mismatch"


_text = st.text(max_size=80) | st.sampled_from(["sha256=", "t=1,v1=", ",", "", " ", str(NOW)])
_headers_strategy = st.dictionaries(
    st.sampled_from(["X-Paysaga-Signature", "X-Paysaga-Timestamp", "x-paysaga-signature", "Stripe-Signature",
                     "Content-Type"]) | st.text(max_size=20),
    _text, max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=200), headers=_headers_strategy,
       secrets=st.lists(st.text(max_size=20), max_size=3), now=st.integers(-(2**63), 2**63))
def test_arbitrary_input_only_ever_raises_signature_error(body: bytes, headers: dict[str, str],
                                                         secrets: list[str], now: int) -> None:
    for verifier in VERIFIERS.values():
        try:
            verifier.verify(body, headers, secrets, now)
        except SignatureError:
            pass


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), t=st.integers(0, 10**12), extra=st.lists(st.text(max_size=70), max_size=3))
def test_a_correct_signature_among_junk_always_verifies(body: bytes, t: int, extra: list[str]) -> None:
    values = [*extra, "sha256=" + sign_hmac_payload(body, SECRET, t)]
    HMAC.verify(body, _headers(",".join(values), t), [OLD, SECRET], t)


# --- Stripe, and the registry -------------------------------------------------------------------------------
def test_stripe_verifier_is_verify_stripe_signature() -> None:
    stripe = VERIFIERS["stripe"]
    assert isinstance(stripe, StripeVerifier) and stripe.event_format == "stripe"
    header = sign_stripe_payload(BODY, SECRET, NOW)
    stripe.verify(BODY, {"stripe-signature": header}, [OLD, SECRET], NOW)
    verify_stripe_signature(BODY, header, [OLD, SECRET], 300, NOW)
    assert _reason(stripe, BODY, {"Stripe-Signature": header}, [OLD]) == "signature_mismatch"
    assert _reason(stripe, BODY, {}) == "missing_header"
    assert _reason(stripe, BODY, {"Stripe-Signature": sign_stripe_payload(BODY, SECRET, NOW - 301)}) \
        == "timestamp_outside_tolerance"
    stripe.verify(BODY, {"Stripe-Signature": sign_stripe_payload(BODY, SECRET, NOW - 500)}, [SECRET], NOW,
                  default_tolerance_s=600)
    # a generic-rail signature is no Stripe signature, and the other way round
    assert _reason(stripe, BODY, HMAC.sign(BODY, SECRET, NOW)) == "missing_header"
    assert _reason(HMAC, BODY, StripeVerifier.sign(BODY, SECRET, NOW)) == "missing_header"


def test_registry() -> None:
    assert set(VERIFIERS) >= {"stripe", "generic"}
    assert VERIFIERS["generic"] == HmacVerifier()
    assert (VERIFIERS["stripe"].secret_store, VERIFIERS["generic"].secret_store) == ("settings", "table")


# --- event normalisation ------------------------------------------------------------------------------------
def _generic(**fields: object) -> bytes:
    event = {"id": "evt_g1", "type": "payment.succeeded", "tenant_id": TENANT, "reference_id": "pay_1",
             "created": NOW, **fields}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


@pytest.mark.parametrize(("event_type", "status", "signal"), [
    ("payment.succeeded", "succeeded", "payment_intent.succeeded"),
    ("payment.failed", "declined", PAYMENT_FAILED),
    ("payment.declined", "declined", PAYMENT_FAILED),
    ("payment.pending", "processing", "payment_intent.processing"),
    ("payment.requires_action", "requires_action", "payment_intent.requires_action"),
    ("payment.canceled", "canceled", "payment_intent.canceled"),
])
def test_generic_payment_events(event_type: str, status: str, signal: str) -> None:
    event = parse_generic(_generic(type=event_type, failure_code="do_not_honor", failure_message="no"))
    assert (event.kind, event.tenant_id, event.reference_id, event.payment_id) == ("payment", TENANT, "pay_1",
                                                                                    "pay_1")
    assert event.intent_status == status and event.decline_code == "do_not_honor"
    pe = event.to_provider_event()
    assert (pe.event_id, pe.type, pe.intent_status, pe.decline_code, pe.intent_id) == (
        "evt_g1", signal, status, "do_not_honor", None)


def test_generic_kinds_and_unknown_types() -> None:
    assert parse_generic(_generic(type="payment.weird")).intent_status is None
    assert parse_generic(_generic(type="refund.succeeded")).kind == "refund"
    assert parse_generic(_generic(type="dispute.created")).kind == "dispute"
    other = parse_generic(_generic(type="ping", tenant_id=None, reference_id=None))
    assert (other.kind, other.tenant_id) == ("other", None)
    assert parse_generic(_generic(tenant_id=TENANT.upper())).tenant_id == TENANT
    assert parse_generic(_generic(), provider="acme").provider == "acme"


@pytest.mark.parametrize("body", [
    b"\xff\xfe", b"{nope", b"[1, 2]", b"null", b'"evt"', _generic(id=""), _generic(id=5), _generic(type=None),
    _generic(tenant_id="not-a-uuid"), _generic(tenant_id=None), _generic(reference_id=None),
    _generic(reference_id=7), _generic(failure_code=3), _generic(created="yesterday"), _generic(created=True),
    _generic(id="e" * 256), b"[" * 100_000, _generic(id="evt\u0000"), b'{"id": "\\ud800", "type": "ping"}',
    _generic(reference_id="pay\u0000"),
])
def test_malformed_generic_events(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        normalize("generic", body, "generic")


def test_free_text_is_made_storable() -> None:
    event = parse_generic(_generic(type="payment.failed", failure_message="no\u0000pe \ud800"))
    assert event.failure_message == "nope ?"
    event.failure_message.encode("utf-8")


def test_peek_tenant_never_raises() -> None:
    assert peek_generic_tenant(_generic()) == TENANT
    for body in (b"\xff", b"[]", b"{}", _generic(tenant_id=1), b"[" * 100_000):
        assert peek_generic_tenant(body) is None
        assert peek_tenant("stripe", body) is None
    assert peek_tenant("stripe", _stripe("x", {"metadata": {"tenant_id": TENANT}})) == TENANT
    for obj in ({"metadata": {"tenant_id": "no"}}, {"metadata": []}, {}):
        assert peek_tenant("stripe", _stripe("x", obj)) is None
    assert peek_tenant("stripe", b'{"data": []}') is None


def _stripe(event_type: str, obj: dict[str, object], **extra: object) -> bytes:
    return json.dumps({"id": "evt_s1", "type": event_type, "created": NOW, "data": {"object": obj},
                       **extra}).encode()


def test_stripe_payment_intent_events() -> None:
    meta = {"tenant_id": TENANT, "payment_id": "pay_9"}
    ok = parse_stripe(_stripe("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent",
                                                           "status": "succeeded", "metadata": meta}))
    assert (ok.kind, ok.tenant_id, ok.reference_id, ok.intent_id, ok.intent_status) == (
        "payment", TENANT, "pay_9", "pi_1", "succeeded")
    assert ok.to_provider_event().type == "payment_intent.succeeded"
    assert ok.raw["id"] == "pi_1"
    failed = parse_stripe(_stripe(PAYMENT_FAILED, {
        "id": "pi_1", "object": "payment_intent", "status": "requires_payment_method", "metadata": meta,
        "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "no"}}))
    assert (failed.intent_status, failed.decline_code, failed.failure_message) == ("declined",
                                                                                   "insufficient_funds", "no")
    assert failed.to_provider_event().type == PAYMENT_FAILED
    odd = parse_stripe(_stripe("payment_intent.created", {"object": "payment_intent", "status": 5,
                                                          "metadata": {"tenant_id": "x"}}))
    assert (odd.tenant_id, odd.intent_status, odd.intent_id) == (None, None, None)


def test_stripe_refund_and_dispute_events() -> None:
    meta = {"tenant_id": TENANT, "payment_id": "pay_9"}
    refund = parse_stripe(_stripe("charge.refunded", {"id": "ch_1", "object": "charge", "payment_intent": "pi_1",
                                                      "metadata": meta}))
    assert (refund.kind, refund.reference_id, refund.payment_id, refund.intent_id) == ("refund", "pay_9", "pay_9",
                                                                                      "pi_1")
    by_id = parse_stripe(_stripe("refund.updated", {"id": "re_1", "object": "refund",
                                                    "metadata": {**meta, "refund_id": "ref_3"}}))
    assert (by_id.kind, by_id.reference_id) == ("refund", "ref_3")
    assert parse_stripe(_stripe("charge.refund.updated", {"object": "refund"})).kind == "refund"
    dispute = parse_stripe(_stripe("charge.dispute.created", {"id": "dp_1", "object": "dispute",
                                                              "payment_intent": "pi_1", "metadata": {}}))
    assert (dispute.kind, dispute.tenant_id, dispute.intent_id) == ("dispute", None, "pi_1")
    assert parse_stripe(_stripe("customer.created", {"object": "customer"})).kind == "other"


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "type", "data", "object", "metadata", "tenant_id", "reference_id", "status",
                         "last_payment_error", "created", "failure_code"]), inner, max_size=6),
    max_leaves=20,
).map(lambda v: json.dumps(v).encode()))
def test_normalize_only_ever_raises_malformed_event(body: bytes) -> None:
    for fmt in ("stripe", "generic"):
        try:
            normalize(fmt, body, fmt)
        except MalformedEvent:
            pass
        peek_tenant(fmt, body)


def test_webhook_dispatch_is_an_explicit_table() -> None:
    """Handlers are not registered by importing their modules: the app is built with this table."""
    from api.app import WEBHOOK_HANDLERS
    from services import disputes, payments, payouts, refunds

    assert WEBHOOK_HANDLERS == {"payment": payments.on_webhook, "refund": refunds.on_webhook,
                                "dispute": disputes.on_webhook, "payout": payouts.on_webhook,
                                "account": payouts.on_account_webhook}
