"""Small helpers for HTTP integration tests."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx


async def customer_with_method(http: httpx.AsyncClient, token: str = "pm_card_visa") -> tuple[str, str]:
    r = await http.post("/v1/customers", json={"email": "c@example.com", "country": "US"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await http.post(f"/v1/customers/{cid}/payment_methods", json={"token": token})
    assert r.status_code == 201, r.text
    return cid, r.json()["id"]


async def pay(
    http: httpx.AsyncClient, cid: str, pm: str, amount: str = "10.00", currency: str = "USD",
    key: str | None = None, **extra: Any,
) -> httpx.Response:
    body = {"customer_id": cid, "payment_method_id": pm, "amount": amount, "currency": currency, **extra}
    return await http.post("/v1/payments", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


async def wait_status(http: httpx.AsyncClient, payment_id: str, statuses: set[str], timeout: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = (await http.get(f"/v1/payments/{payment_id}")).json()
        if body["status"] in statuses:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"payment stayed {body['status']}, wanted {statuses}")
        await asyncio.sleep(0.1)
