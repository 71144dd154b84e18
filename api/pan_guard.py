"""Card numbers never enter the service: a request body that carries anything shaped like a PAN is refused.

A pure ASGI middleware, so the body is inspected before any route parses (or logs) it. Webhooks are exempt:
they are signed provider payloads that only ever carry last4.
"""

from __future__ import annotations

import json

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paysaga.logs import contains_pan
from services.errors import MEDIA_TYPE, problem_body

log = structlog.get_logger("paysaga.api")

EXEMPT_PREFIXES = ("/v1/webhooks/", "/api/v1/billing/webhook/")


class PanGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH") or scope["path"].startswith(
            EXEMPT_PREFIXES
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if contains_pan(body.decode("utf-8", errors="replace")):
            log.warning("api.pan_refused", path=scope["path"])  # the body itself is never logged
            payload = json.dumps(problem_body(
                422, "card-number-refused", "Card number refused", "Card numbers must never be sent to paysaga. "
                "Tokenize the card with the payment provider and send the payment method id instead.")).encode()
            await send({"type": "http.response.start", "status": 422,
                        "headers": [(b"content-type", MEDIA_TYPE.encode()),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
