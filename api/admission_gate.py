"""The gate in front of the requests that start workflows: a request that finds no start slot free is answered 503
at once, before it costs anything (authentication, database, Temporal). A saturated process sheds in
milliseconds instead of letting work queue up behind the slots."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from services.admission import overloaded
from services.errors import MEDIA_TYPE, ServiceError

# POST routes whose answer waits for a workflow to start.
STARTS = re.compile(r"^/v1/payments(/[^/]+/refunds)?/?$")
# The route template a shed request is counted under: it is answered before routing, and the latency histogram
# labels by template, so that an operator sees sheds beside the admitted answers of the same route.
ROUTE_LABEL = "paysaga.route_label"


TEMPLATES = ("/v1/payments", "/v1/payments/{payment_id}/refunds")  # STARTS without and with its group


class AdmissionGate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = STARTS.match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if start is None:
            await self.app(scope, receive, send)
            return
        admission = scope["app"].state.ctx.admission
        try:
            async with admission.start_slot():
                await self.app(scope, receive, send)
        except ServiceError as refused:
            if refused.slug != overloaded("").slug:
                raise
            scope[ROUTE_LABEL] = TEMPLATES[start.group(1) is not None]
            await _answer(send, refused, scope["path"])


async def _answer(send: Send, refused: ServiceError, instance: str) -> None:
    body = json.dumps(refused.body(instance)).encode()
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
               *((k.lower().encode(), v.encode()) for k, v in refused.headers.items())]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
