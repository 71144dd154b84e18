"""A stand-in for Stripe's Tax endpoints on 127.0.0.1, for the SDK to be pointed at with `api_base`.

It answers with fixture bodies (tests/fixtures/stripe_tax/, written after Stripe's API reference: the objects
`tax.calculation`, `tax.calculation_line_item`, `tax.transaction`, `tax.transaction_line_item` and Stripe's error
shape), records every request with its form-decoded parameters and headers, and replays a stored answer for a
repeated `Idempotency-Key`, as Stripe does. It computes nothing: each test says what Stripe answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures" / "stripe_tax"

CALCULATIONS = "POST /v1/tax/calculations"
CALCULATION_LINE_ITEMS = "GET /v1/tax/calculations/{id}/line_items"
COMMIT = "POST /v1/tax/transactions/create_from_calculation"
TRANSACTION_LINE_ITEMS = "GET /v1/tax/transactions/{id}/line_items"
REVERSAL = "POST /v1/tax/transactions/create_reversal"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@dataclass
class Seen:
    route: str
    path: str
    params: dict[str, str]  # Stripe's form encoding, flat: "line_items[0][amount]" → "9999"
    idempotency_key: str | None
    replayed: bool


@dataclass
class FakeStripeTax:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    _answers: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    _by_key: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def answer(self, route: str, *answers: str | tuple[int, str]) -> None:
        """Queue answers for a route: a fixture name (200) or (status, fixture name)."""
        queue = self._answers.setdefault(route, [])
        for a in answers:
            status, name = (200, a) if isinstance(a, str) else a
            queue.append((status, fixture(name)))

    def requests(self, route: str) -> list[Seen]:
        return [s for s in self.seen if s.route == route]

    async def _handle(self, request: web.Request, route: str) -> web.Response:
        body = await request.text()
        params = dict(parse_qsl(body, keep_blank_values=True)) if request.method == "POST" else dict(request.query)
        key = request.headers.get("Idempotency-Key")
        stored = self._by_key.get((route, key)) if key else None
        self.seen.append(Seen(route, request.path, params, key, replayed=stored is not None))
        if stored is None:
            queue = self._answers.get(route)
            if not queue:
                stored = (500, {"error": {"type": "api_error", "message": f"the fake has no answer for {route}"}})
            else:
                stored = queue.pop(0)
            if key and stored[0] < 500:  # Stripe keeps what it answered, except server errors, under the key
                self._by_key[(route, key)] = stored
        status, payload = stored
        return web.json_response(payload, status=status, headers={"Request-Id": f"req_fake_{len(self.seen)}"})

    def app(self) -> web.Application:
        app = web.Application()

        def route(method: str, path: str, name: str) -> None:
            async def handler(request: web.Request) -> web.Response:
                return await self._handle(request, name)

            app.router.add_route(method, path, handler)

        route("POST", "/v1/tax/calculations", CALCULATIONS)
        route("GET", "/v1/tax/calculations/{id}/line_items", CALCULATION_LINE_ITEMS)
        route("POST", "/v1/tax/transactions/create_from_calculation", COMMIT)
        route("GET", "/v1/tax/transactions/{id}/line_items", TRANSACTION_LINE_ITEMS)
        route("POST", "/v1/tax/transactions/create_reversal", REVERSAL)
        return app


@asynccontextmanager
async def running_fake_stripe_tax() -> AsyncIterator[FakeStripeTax]:
    fake = FakeStripeTax()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
