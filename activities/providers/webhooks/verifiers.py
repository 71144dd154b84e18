"""Webhook signature verifiers, one per payment rail, looked up by the `{provider}` of
`POST /api/v1/billing/webhook/{provider}` in the app's table of verifiers (by default `VERIFIERS`).

A verifier is pure: given the raw body, the request headers, the candidate secrets and the current unix time it
returns normally iff the body is signed by one of the secrets within the tolerance, and otherwise raises
`SignatureError` (the same class as the Stripe verifier's, so one `except` covers every rail). Whatever an
attacker sends (headers, body, encodings), nothing but `SignatureError` escapes.

Rails:

- `stripe`: `StripeVerifier`, Stripe's `Stripe-Signature: t=…,v1=…` scheme (`stripe_signature`). Secrets
  come from settings (`PAYSAGA_STRIPE_WEBHOOK_SECRETS`), events are Stripe events.
- `generic`: `HmacVerifier`, for rails that sign the way we tell them to:

      X-Paysaga-Timestamp: <unix seconds>
      X-Paysaga-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>

  The signature header may carry the bare hex or `sha256=<hex>`, and several comma-separated values (one per
  secret while the sender rotates): any value matching any secret is enough. Secrets come from
  `paysaga.webhook_secrets` (provider-wide rows, plus the rows of the tenant the payload names) and, for the
  rail `generic` only, from `PAYSAGA_WEBHOOK_HMAC_SECRETS`. Events are the generic JSON described in
  `activities.providers.webhooks.events`.

Adding another HMAC rail is one entry in the table the app is created with:

    create_app(settings, verifiers={**VERIFIERS, "acme": HmacVerifier(signature_header="X-Acme-Signature",
                                                                      timestamp_header="X-Acme-Timestamp")})

then `INSERT INTO paysaga.webhook_secrets (provider, tenant_id, secret) VALUES ('acme', NULL, '…')` as the
owner, and point the rail at `/api/v1/billing/webhook/acme`. The rail must send the generic event JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from activities.providers.webhooks.stripe_signature import (
    SignatureError,
    sign_stripe_payload,
    verify_stripe_signature,
)

__all__ = [
    "VERIFIERS",
    "HmacVerifier",
    "SignatureError",
    "StripeVerifier",
    "Verifier",
    "header_value",
    "sign_hmac_payload",
]

EventFormat = Literal["stripe", "generic"]
SecretStore = Literal["settings", "table"]

# ASCII digits only, bounded (int() accepts "+1", " 1", "1_0", non-ASCII digits, and is slow on huge inputs).
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class Verifier(Protocol):
    """What the webhook endpoint needs from a rail."""

    event_format: ClassVar[EventFormat]  # which normaliser reads the verified body
    secret_store: ClassVar[SecretStore]  # settings (Stripe) or paysaga.webhook_secrets_for (HMAC rails)

    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: int, *,
               default_tolerance_s: int = 300) -> None:
        """Return iff `raw_body` is signed by one of `secrets`, else raise `SignatureError`.

        `default_tolerance_s` (the deployment's `PAYSAGA_WEBHOOK_TOLERANCE_SECONDS`) applies unless the verifier
        was built with its own `tolerance_s`.
        """
        ...


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The first value of header `name`, case-insensitively, from a Starlette `Headers` or a plain dict."""
    wanted = name.lower()
    try:
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == wanted:
                return value if isinstance(value, str) else None
    except Exception:  # an exotic mapping: treat as no header at all
        return None
    return None


def _usable(secrets: Sequence[str]) -> list[bytes]:
    """Non-empty secrets as bytes. An empty HMAC key would be forgeable; an unencodable one can never match."""
    keys: list[bytes] = []
    for secret in secrets or ():
        if isinstance(secret, str) and secret:
            try:
                keys.append(secret.encode("utf-8"))
            except UnicodeEncodeError:
                continue
    return keys


@dataclass(frozen=True)
class StripeVerifier:
    """Stripe's scheme (and the sandbox provider's, which imitates it): `Stripe-Signature: t=…,v1=…`."""

    event_format: ClassVar[EventFormat] = "stripe"
    secret_store: ClassVar[SecretStore] = "settings"
    signature_header: str = "Stripe-Signature"
    tolerance_s: int | None = None

    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: int, *,
               default_tolerance_s: int = 300) -> None:
        usable = [key.decode("utf-8") for key in _usable(secrets)]
        tolerance = self.tolerance_s if self.tolerance_s is not None else default_tolerance_s
        verify_stripe_signature(bytes(raw_body), header_value(headers, self.signature_header), usable,
                                tolerance, int(now))

    @staticmethod
    def sign(raw_body: bytes, secret: str, timestamp: int) -> dict[str, str]:
        return {"Stripe-Signature": sign_stripe_payload(raw_body, secret, timestamp)}


def sign_hmac_payload(raw_body: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 a generic rail sends: over `f"{timestamp}."` followed by the raw body."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + bytes(raw_body),
                    hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HmacVerifier:
    """HMAC-SHA256 over `f"{timestamp}." + body`, timestamp and signature in two headers.

    The signature is checked before the timestamp (as Stripe does), so `timestamp_outside_tolerance` means
    "authentic but too old or too new": a replay or a skewed clock, not a forgery.
    """

    event_format: ClassVar[EventFormat] = "generic"
    secret_store: ClassVar[SecretStore] = "table"
    signature_header: str = "X-Paysaga-Signature"
    timestamp_header: str = "X-Paysaga-Timestamp"
    tolerance_s: int | None = None  # None: the deployment's PAYSAGA_WEBHOOK_TOLERANCE_SECONDS (300 s by default)

    def sign(self, raw_body: bytes, secret: str, timestamp: int) -> dict[str, str]:
        """Headers a sender would attach (tests, and a reference for the rail's implementers)."""
        return {self.timestamp_header: str(timestamp),
                self.signature_header: "sha256=" + sign_hmac_payload(raw_body, secret, timestamp)}

    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: int, *,
               default_tolerance_s: int = 300) -> None:
        signature = header_value(headers, self.signature_header)
        timestamp = header_value(headers, self.timestamp_header)
        if not signature or not signature.strip() or not timestamp or not timestamp.strip():
            raise SignatureError("missing_header")
        timestamp = timestamp.strip()
        if not _TIMESTAMP.fullmatch(timestamp):
            raise SignatureError("malformed_header", "timestamp is not unix seconds")
        candidates = self._candidates(signature)
        if not candidates:
            raise SignatureError("malformed_header", "no sha256 hex signature")

        signed = timestamp.encode("ascii") + b"." + self._body(raw_body)
        matched = False  # no short-circuit: constant work per (secret, candidate) pair
        for key in _usable(secrets):
            expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode("ascii")
            for candidate in candidates:
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise SignatureError("signature_mismatch")

        tolerance = self.tolerance_s if self.tolerance_s is not None else default_tolerance_s
        try:
            skew = abs(int(now) - int(timestamp))
        except (TypeError, ValueError, OverflowError) as exc:
            raise SignatureError("malformed_header", "bad clock") from exc
        if skew > tolerance:
            raise SignatureError("timestamp_outside_tolerance", f"t={timestamp} now={now}")

    @staticmethod
    def _candidates(header: str) -> list[bytes]:
        values: list[bytes] = []
        for item in header.split(","):
            value = item.strip()
            if value[:7].lower() == "sha256=":
                value = value[7:].strip()
            if _HEX64.fullmatch(value):
                values.append(value.lower().encode("ascii"))
        return values

    @staticmethod
    def _body(raw_body: Any) -> bytes:
        try:
            return bytes(raw_body)
        except (TypeError, ValueError) as exc:
            raise SignatureError("signature_mismatch", "body is not bytes") from exc


# provider (the `{provider}` path segment) → verifier. `/v1/webhooks/stripe` is an alias of "stripe".
VERIFIERS: dict[str, Verifier] = {
    "stripe": StripeVerifier(),
    "generic": HmacVerifier(),
}
