"""Provider webhooks in: verify the rail's signature on the raw body, normalise the event, de-duplicate it in the
inbox, and hand it to the handler of its kind — an explicit table the app is built with.

- Unknown rail → 404 `unknown-webhook-provider`; bad, missing or stale signature → 400 `invalid-signature`; an
  authentic body that is no event of the rail's format → 400 `malformed-payload`.
- The tenant is the one the event names or, for events that name only a PaymentIntent (Stripe's disputes), the
  tenant whose payment holds that intent (for a payout named only by the provider's id, the tenant whose payout
  it is). Events of a known tenant are recorded in that tenant's inbox and the
  handler runs in the same transaction (it gets the connection): if the handler raises, the inbox row is rolled
  back and the provider's retry is processed again, so handlers are idempotent. An event id already in the inbox
  is answered `{"received": true, "duplicate": true}` without effect.
- Replay protection is twofold: the signed timestamp must be within the tolerance (300 s), and the inbox.

Secrets: Stripe's come from settings. An HMAC rail's tenant is known only from the payload, so its body is
verified against the rail's provider-wide secrets and, when the payload names a tenant, that tenant's secrets
too; a tenant's secret only ever verifies events naming that tenant, because the tenant id is inside the
signed body.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import structlog

from activities.providers.webhooks.events import MalformedEvent, normalize, peek_tenant
from activities.providers.webhooks.verifiers import VERIFIERS, SignatureError, Verifier
from activities.stores import inbox, webhook_secrets
from activities.stores import payments as payment_store
from activities.stores import payouts as payout_store
from contracts.webhooks import Kind, NormalizedEvent
from paysaga.db import tenant_tx
from services.context import AppContext
from services.errors import BadRequest, NotFound

__all__ = ["VERIFIERS", "KindHandler", "Verifier", "WebhookIntake"]

log = structlog.get_logger("paysaga.webhooks")

# (outcome for metrics, response body). `conn` is the tenant transaction holding the inbox row, or None when no
# tenant could be told from the event.
KindHandler = Callable[[AppContext, asyncpg.Connection | None, NormalizedEvent],
                       Awaitable[tuple[str, dict[str, Any]]]]


class WebhookIntake:
    def __init__(self, ctx: AppContext, handlers: Mapping[Kind, KindHandler],
                 verifiers: Mapping[str, Verifier] = VERIFIERS) -> None:
        self._ctx, self.handlers, self._verifiers = ctx, dict(handlers), verifiers

    async def receive(self, provider: str, headers: Mapping[str, str], payload: bytes) -> tuple[str, dict[str, Any]]:
        verifier = self._verifiers.get(provider)
        if verifier is None:
            raise NotFound("unknown-webhook-provider", "Unknown webhook provider",
                           "No webhook verifier is registered for this provider.")
        secrets = await self._secrets(provider, verifier, payload)
        try:
            verifier.verify(payload, headers, secrets, int(time.time()),
                            default_tolerance_s=self._ctx.settings.webhook_tolerance_seconds)
        except SignatureError as exc:
            raise BadRequest("invalid-signature", "Invalid webhook signature", exc.reason) from exc
        try:
            event = normalize(verifier.event_format, payload, provider)
        except MalformedEvent as exc:
            raise BadRequest("malformed-payload", "Malformed webhook payload", str(exc)) from exc
        return await self.dispatch(event)

    async def dispatch(self, event: NormalizedEvent) -> tuple[str, dict[str, Any]]:
        handler = self.handlers.get(event.kind)
        event = await self._with_tenant(event)
        if event.tenant_id is None:
            if handler is None:
                return "ignored", {"received": True, "ignored": f"{event.kind} events not handled"}
            return await handler(self._ctx, None, event)
        async with tenant_tx(self._ctx.pool, event.tenant_id) as conn:
            if not await inbox.record(conn, event.provider, event.event_id, event.event_type):
                return "duplicate", {"received": True, "duplicate": True}
            if handler is None:
                return "ignored", {"received": True, "ignored": f"{event.kind} events not handled"}
            return await handler(self._ctx, conn, event)

    async def _with_tenant(self, event: NormalizedEvent) -> NormalizedEvent:
        """An event that names only a PaymentIntent belongs to the tenant whose payment holds it; one that names
        only a provider's payout, to the tenant whose payout it is."""
        if event.tenant_id is None and event.payout is not None and event.payout.provider_payout_id:
            found = await payout_store.owners_of_provider_payout(self._ctx.pool, event.payout.provider_payout_id)
            if len(found) == 1:
                return event.model_copy(update={"tenant_id": found[0]["tenant_id"],
                                                "reference_id": event.reference_id or found[0]["payout_id"]})
            return event
        if event.tenant_id is not None or event.intent_id is None:
            return event
        owners = await payment_store.owners_of_intent(self._ctx.pool, event.intent_id)
        if len(owners) != 1:
            log.warning("webhook.unmatched", event_id=event.event_id, intent_id=event.intent_id, matches=len(owners))
            return event
        return event.model_copy(update={"tenant_id": owners[0]["tenant_id"],
                                        "payment_id": event.payment_id or owners[0]["payment_id"]})

    async def _secrets(self, provider: str, verifier: Verifier, payload: bytes) -> list[str]:
        settings = self._ctx.settings
        if verifier.secret_store == "settings":
            return settings.webhook_secret_list
        secrets = await webhook_secrets.for_rail(self._ctx.pool, provider, peek_tenant(verifier.event_format, payload))
        if provider == "generic":
            secrets += settings.webhook_hmac_secret_list
        return secrets
