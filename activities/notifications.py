"""The notification port: how the sagas tell people something (finance, about a dispute and its deadline).

`Notifier.send(notification)` is all a saga needs. The embedded default, `OutboxNotifier`, writes the
notification as an outbox message `billing.<aggregate>.notification.v1` (`billing.dispute.notification.v1`,
`billing.invoice.notification.v1`: the kind's first part names the aggregate; in the tenant's transaction, so a relay
publishes it exactly like every other paysaga event) and logs it as `billing.notification`.

Plugging in a real channel (a webhook, e-mail, Slack, PagerDuty):

    class EmailNotifier:                                     # any class with this one method is a Notifier
        def __init__(self, smtp: SmtpClient, to: str) -> None: ...
        async def send(self, n: Notification) -> None:
            await self._smtp.send(to=self._to, subject=n.subject, body=render(n),
                                  headers={"Message-ID": f"<{n.notification_id}@paysaga>"})

    # paysaga/… : return it from build_notifier() below (e.g. chosen by a setting); worker.py already calls it.

Rules for an adapter: `send` runs in a regular activity with a retry policy (workflows.policies.NOTIFY_RETRY), so it
may be called more than once for the same notification; pass `notification_id` along as the channel's
de-duplication key (an `Idempotency-Key` header for a webhook, the `Message-ID` of an e-mail). Raise on a
transient failure (it is retried with backoff); raise `temporalio.exceptions.ApplicationError(...,
non_retryable=True)` for a permanent one. Never put card data or evidence text in a notification: it names the
dispute, the payment, the amount and the deadline, and finance opens the dispute in the API for the rest. To keep
the outbox record as well, wrap: `send` of the adapter after `OutboxNotifier.send`.
"""

from __future__ import annotations

from typing import Protocol

import asyncpg
import structlog
from temporalio import activity

from activities.stores import outbox
from contracts.notifications import Notification
from paysaga.db import tenant_tx
from paysaga.settings import Settings

log = structlog.get_logger("paysaga.billing")



def event_type(kind: str) -> str:
    """`dispute.created` → billing.dispute.notification.v1."""
    return f"billing.{kind.split('.', 1)[0]}.notification.v1"


class Notifier(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver it; idempotent by `notification.notification_id`."""
        ...


class OutboxNotifier:
    """The embedded default: an outbox message (exactly once per notification id) and a structured log line."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def send(self, n: Notification) -> None:
        async with tenant_tx(self._pool, n.tenant_id) as conn:
            fresh = await outbox.put(conn, n.tenant_id, n.notification_id, event_type(n.kind),
                                     f"billing.notification.{n.kind}", n.model_dump(mode="json"))
        log.info("billing.notification", notification_id=n.notification_id, kind=n.kind, subject=n.subject,
                 tenant_id=n.tenant_id, dispute_id=n.dispute_id, payment_id=n.payment_id, invoice_id=n.invoice_id,
                 duplicate=not fresh)


def build_notifier(settings: Settings, pool: asyncpg.Pool) -> Notifier:
    """The one place a deployment chooses its channel (see the module docstring)."""
    return OutboxNotifier(pool)


class NotificationActivities:
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    @activity.defn
    async def send_notification(self, notification: Notification) -> None:
        await self._notifier.send(notification)
