"""The Stripe adapter's dispute calls, against a stub of Stripe's dispute API (localstripe has no disputes):
what the official SDK sends, and how answers and errors come back through the port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from activities.providers.base import ProviderUnavailable
from activities.providers.stripe_provider import StripeProvider


def dispute(status: str) -> dict[str, Any]:
    return {"id": "dp_1", "object": "dispute", "amount": 1234, "currency": "usd", "status": status,
            "reason": "fraudulent", "payment_intent": "pi_1", "evidence_details": {"due_by": 1_900_000_000}}


class StripeStub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], str | None]] = []
        self.status = "needs_response"
        self.app = FastAPI()

        @self.app.api_route("/v1/disputes/{dispute_id}", methods=["GET", "POST"])
        async def update(dispute_id: str, request: Request) -> JSONResponse:
            form = dict(parse_qsl((await request.body()).decode()))
            self.requests.append((request.method, request.url.path, form, request.headers.get("idempotency-key")))
            if dispute_id == "dp_gone":
                return JSONResponse({"error": {"type": "invalid_request_error", "message": "No such dispute"}}, 404)
            if dispute_id == "dp_busy":
                return JSONResponse({"error": {"type": "api_error", "message": "try later"}}, 500)
            if request.method == "POST" and form.get("submit") == "true":
                self.status = "under_review"
            return JSONResponse(dispute(self.status))

        @self.app.post("/v1/disputes/{dispute_id}/close")
        async def close(dispute_id: str, request: Request) -> JSONResponse:
            self.requests.append(("POST", request.url.path, {}, None))
            if self.status != "needs_response":
                return JSONResponse({"error": {"type": "invalid_request_error",
                                               "message": "This dispute is already closed"}}, 400)
            self.status = "lost"
            return JSONResponse(dispute("lost"))


@pytest.fixture
async def stub() -> AsyncIterator[tuple[StripeStub, StripeProvider]]:
    stub = StripeStub()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(stub.app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    provider = StripeProvider("sk_test_stub", api_base=f"http://127.0.0.1:{port}")
    try:
        yield stub, provider
    finally:
        await provider.aclose()
        server.should_exit = True
        await task


async def test_submit_evidence_sends_evidence_submit_and_the_idempotency_key(
        stub: tuple[StripeStub, StripeProvider]) -> None:
    s, provider = stub
    result = await provider.submit_dispute_evidence("dp_1", {"uncategorized_text": "winning_evidence",
                                                             "receipt": "file_1"}, True, idempotency_key="k1")
    assert result.status == "under_review" and result.amount_minor == 1234 and result.currency == "USD"
    assert result.payment_intent == "pi_1" and result.evidence_due_by == 1_900_000_000
    method, path, form, key = s.requests[-1]
    assert (method, path, key) == ("POST", "/v1/disputes/dp_1", "k1")
    assert form == {"evidence[uncategorized_text]": "winning_evidence", "evidence[receipt]": "file_1",
                    "submit": "true"}


async def test_accept_closes_and_is_idempotent(stub: tuple[StripeStub, StripeProvider]) -> None:
    s, provider = stub
    assert (await provider.accept_dispute("dp_1")).status == "lost"
    assert (await provider.accept_dispute("dp_1")).status == "lost"  # Stripe refuses; the dispute is lost: ok
    assert [r[1] for r in s.requests] == ["/v1/disputes/dp_1/close", "/v1/disputes/dp_1/close", "/v1/disputes/dp_1"]
    assert (await provider.retrieve_dispute("dp_1")).status == "lost"


async def test_errors_follow_the_port_taxonomy(stub: tuple[StripeStub, StripeProvider]) -> None:
    _, provider = stub
    with pytest.raises(ValueError):
        await provider.submit_dispute_evidence("dp_gone", {"uncategorized_text": "x"}, True)
    with pytest.raises(ProviderUnavailable):
        await provider.retrieve_dispute("dp_busy")
