"""Stripe webhook signatures: a pure verifier (and the matching signer for the sandbox provider and tests).

Stripe signs `f"{t}." + raw_body` with HMAC-SHA256 under the endpoint secret and sends
`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`. During an endpoint-secret roll Stripe sends one
v1 per active secret, and during *our* rotation we hold several secrets: any (secret, v1) pair matching is
enough.

No stripe SDK: this runs on every webhook request, must never raise anything but `SignatureError` whatever an
attacker sends, and must be testable with an injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Literal

Reason = Literal[
    "missing_header",
    "malformed_header",
    "no_v1_signature",
    "timestamp_outside_tolerance",
    "signature_mismatch",
]

# ASCII digits only, bounded: int() accepts "+1", " 1", "1_0", non-ASCII digits; raises on >4300 digits.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# A v1 is a lower-case hex SHA-256. Anything else can never match, so it is dropped before compare_digest
# (which raises TypeError on non-ASCII str).
_V1 = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(ValueError):
    """The webhook is not provably from Stripe. `reason` is a short machine code for logs and metrics."""

    def __init__(self, reason: Reason, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


def _expected(secret: str, timestamp: str, payload: bytes) -> str:
    signed = timestamp.encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign_stripe_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """A `Stripe-Signature` header value for `payload`, exactly as Stripe would compute it."""
    return f"t={timestamp},v1={_expected(secret, str(timestamp), bytes(payload))}"


def _parse(header: str) -> tuple[str, list[str], bool]:
    """(timestamp, well-formed v1 values, whether any v1 key was present)."""
    timestamp: str | None = None
    v1s: list[str] = []
    saw_v1 = False
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("malformed_header", "item without '='")
        if key == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                raise SignatureError("malformed_header", "bad or repeated t")
            timestamp = value
        elif key == "v1":
            saw_v1 = True
            if _V1.fullmatch(value):
                v1s.append(value.lower())
        # v0 (test-mode legacy scheme) and unknown keys are ignored, as Stripe's own libraries do.
    if timestamp is None:
        raise SignatureError("malformed_header", "no t")
    return timestamp, v1s, saw_v1


def verify_stripe_signature(
    payload: bytes, header: str | None, secrets: Sequence[str], tolerance_s: int, now: int
) -> None:
    """Return normally iff `header` signs `payload` under any of `secrets`; otherwise raise SignatureError.

    The signature is checked before the timestamp (as Stripe's SDKs do), so `timestamp_outside_tolerance`
    means "authentic but too old/new": a replay or a badly skewed clock, worth alerting on differently from
    forgeries. Empty secrets are skipped (an empty HMAC key would be forgeable), so no usable secret means
    every request is rejected with `signature_mismatch`.
    """
    if not isinstance(header, str) or not header.strip():
        raise SignatureError("missing_header")
    timestamp, v1s, saw_v1 = _parse(header)
    if not saw_v1:
        raise SignatureError("no_v1_signature")

    body = bytes(payload)
    # No short-circuit on the first match: constant work per (secret, candidate) pair, whichever one matches.
    matched = False
    for secret in secrets:
        if not isinstance(secret, str) or not secret:
            continue
        expected = _expected(secret, timestamp, body).encode("ascii")
        for candidate in v1s:
            matched |= hmac.compare_digest(expected, candidate.encode("ascii"))
    if not matched:
        raise SignatureError("signature_mismatch")

    if abs(now - int(timestamp)) > tolerance_s:
        raise SignatureError("timestamp_outside_tolerance", f"t={timestamp} now={now}")
