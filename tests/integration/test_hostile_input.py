"""Every route of the published API, fuzzed with hostile input: NUL bytes, unpaired surrogates, over-long strings,
deep nesting, huge numbers and duplicate JSON keys, in the path, the query, headers and JSON bodies at any
depth. Nothing may answer 5xx or drop the connection, and no request may write a row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from tests.integration.helpers import customer_with_method, pay
from tests.stack import Stack

# Written into URLs percent-encoded, into JSON as escapes: the bytes a hostile client sends.
HOSTILE_URL = {"nul": "a%00b", "surrogate": "%ED%A0%80", "long": "x" * 5_000, "not-utf8": "%FF%FE"}
HOSTILE_JSON = {"nul": '"a\\u0000b"', "surrogate": '"\\udaa6"', "long": json.dumps("x" * 120_000),
                "huge-number": "1" + "0" * 400, "nested": "[" * 3000 + "]" * 3000}
STRUCTURAL = {
    "duplicate-keys": b'{"name": "a", "name": "b"}',
    "deep": b'{"a": ' * 200 + b"1" + b"}" * 200,
    "huge-number": b'{"amount": 1' + b"0" * 5000 + b"}",
    "not-json": b"{not json",
    "not-utf8": b'{"name": "\xff\xfe"}',
    "nan": b'{"amount": NaN}',
}


@dataclass
class Case:
    method: str
    path: str
    query: str = ""
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    what: str = ""


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    if "anyOf" in schema and "properties" not in schema:  # Optional[Body]: the object branch
        schema = next((resolve(s, spec) for s in schema["anyOf"] if s.get("type") != "null"), schema)
    return schema


def cases(spec: dict[str, Any], ids: dict[str, str]) -> Iterator[Case]:
    for template, item in spec["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            path_names = [p["name"] for p in params if p["in"] == "path"]
            base_path = template
            for name in path_names:
                base_path = base_path.replace("{" + name + "}", ids.get(name, "x_1"))
            body_schema = resolve(op.get("requestBody", {}).get("content", {}).get("application/json", {})
                                  .get("schema", {}), spec)
            props = sorted(body_schema.get("properties", {})) or ["name"]
            base_body = "{}" if op.get("requestBody") else None
            headers = {"Idempotency-Key": "fuzz-key"} if any(p["name"] == "Idempotency-Key" for p in params) else {}
            label = f"{method.upper()} {template}"
            for name in path_names:
                for kind, value in HOSTILE_URL.items():
                    yield Case(method, template.replace("{" + name + "}", value).replace("{", "").replace("}", ""),
                               body=base_body.encode() if base_body else None, headers=headers,
                               what=f"{label} path {name}={kind}")
            for param in (p for p in params if p["in"] == "query"):
                for kind, value in HOSTILE_URL.items():
                    yield Case(method, base_path, query=f"{quote(param['name'])}={value}", headers=headers,
                               what=f"{label} query {param['name']}={kind}")
            if any(p["name"] == "Idempotency-Key" for p in params):
                yield Case(method, base_path, body=b"{}" if base_body else None,
                           headers={"Idempotency-Key": "k" * 5000}, what=f"{label} header Idempotency-Key=long")
            if base_body is None:
                continue
            for prop in props:
                for kind, value in HOSTILE_JSON.items():
                    yield Case(method, base_path, body=f'{{"{prop}": {value}}}'.encode(), headers=headers,
                               what=f"{label} body {prop}={kind}")
                yield Case(method, base_path, body=f'{{"{prop}": {{"k": "a\\u0000b", "\\udaa6": "v"}}}}'.encode(),
                           headers=headers, what=f"{label} body {prop} nested hostile")
            for kind, raw in STRUCTURAL.items():
                yield Case(method, base_path, body=raw, headers=headers, what=f"{label} body {kind}")


async def tenant_rows(admin: asyncpg.Pool, tenant_id: str) -> dict[str, int]:
    tables = await admin.fetch(
        """SELECT table_schema || '.' || table_name AS t FROM information_schema.columns
            WHERE column_name = 'tenant_id' AND table_schema IN ('paysaga', 'sandbox')
              AND table_name NOT IN (SELECT viewname FROM pg_views)""")
    counts = {}
    for row in tables:
        counts[row["t"]] = await admin.fetchval(f"SELECT count(*) FROM {row['t']} WHERE tenant_id = $1", tenant_id)
    return counts


@pytest.mark.integration
async def test_no_route_answers_5xx_or_writes_a_row_for_hostile_input(stack: Stack, tenant: tuple[str, str]) -> None:
    tenant_id, key = tenant
    async with stack.http(key) as http:
        cid, pm = await customer_with_method(http)
        payment = (await pay(http, cid, pm)).json()
        spec = (await http.get("/openapi.json")).json()
    ids = {"customer_id": cid, "payment_method_id": pm, "payment_id": payment["id"], "refund_id": "re_none",
           "dispute_id": "dsp_none", "dlq_id": "dlq_none", "intent_id": payment["provider_intent_id"] or "pi_none",
           "provider": "stripe"}
    admin = stack.admin_pool
    await _settled(stack, key, payment["id"])
    before = await tenant_rows(admin, tenant_id)  # type: ignore[arg-type]
    failures: list[str] = []
    statuses: list[int] = []
    sent = 0
    async with httpx.AsyncClient(base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as raw_http:
        for case in cases(spec, ids):
            sent += 1
            url = case.path + (f"?{case.query}" if case.query else "")
            headers = {"content-type": "application/json", **case.headers} if case.body is not None else case.headers
            try:
                response = await raw_http.request(case.method.upper(), url, content=case.body, headers=headers)
            except httpx.HTTPError as exc:
                failures.append(f"{case.what}: connection {type(exc).__name__}")
                continue
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.what}: {response.status_code} {response.text[:120]}")
            elif response.status_code >= 400 and not response.headers.get("content-type", "").startswith(
                    "application/problem+json"):
                failures.append(f"{case.what}: {response.status_code} without problem+json")
    after = await tenant_rows(admin, tenant_id)  # type: ignore[arg-type]
    assert sent > 300, f"only {sent} hostile requests: did the spec lose its routes?"
    assert failures == []
    assert all(400 <= status < 500 for status in statuses)
    assert after == before, {t: (before[t], after[t]) for t in before if before[t] != after[t]}


async def _settled(stack: Stack, key: str, payment_id: str) -> None:
    """Wait until the seed payment and its webhooks are done, so nothing but the fuzz could write a row."""
    import asyncio

    async with stack.http(key) as http:
        for _ in range(200):
            if (await http.get(f"/v1/payments/{payment_id}")).json()["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # the sandbox's duplicate deliveries, if any
