"""The input guard (api/input_guard.py): hostile strings are refused at the edge, naming where, echoing nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import given, settings
from hypothesis import strategies as st

from api.input_guard import MAX_DEPTH, MAX_NUMBER_DIGITS, MAX_STRING, InputGuard, check_body, check_text


def _app() -> tuple[FastAPI, list[Any]]:
    app = FastAPI()
    seen: list[Any] = []

    @app.post("/echo/{item}")
    async def echo(item: str, request: Request) -> dict[str, Any]:
        seen.append(await request.body())
        return {"ok": True}

    @app.get("/find/{item}")
    async def find(item: str, q: str = "") -> dict[str, Any]:
        seen.append(q)
        return {"ok": True}

    @app.post("/v1/webhooks/stripe")
    async def hook(request: Request) -> dict[str, Any]:
        seen.append(await request.body())
        return {"ok": True}

    app.add_middleware(InputGuard)
    return app, seen


async def _send(method: str, url: str, content: bytes | None = None) -> tuple[httpx.Response, list[Any]]:
    app, seen = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.request(method, url, content=content,
                                        headers={"content-type": "application/json"} if content else None)
    return response, seen


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/" + slug)
    return body


@pytest.mark.parametrize(("raw", "where"), [
    (b'{"metadata": {"k": "a\\u0000b"}}', ["body", "metadata", "k"]),
    (b'{"metadata": {"a\\u0000": "v"}}', ["body", "metadata"]),
    (b'{"name": "\\udaa6"}', ["body", "name"]),
    (b'{"list": ["ok", "\\ud800x"]}', ["body", "list", 1]),
])
async def test_nul_and_lone_surrogates_in_json_are_refused_naming_the_field(raw: bytes, where: list[Any]) -> None:
    response, seen = await _send("POST", "/echo/x", raw)
    body = _problem(response, 422, "invalid-input")
    assert body["errors"][0]["loc"] == where
    assert "\\u" not in response.text and "\x00" not in response.text  # the value is never echoed
    assert seen == []  # the route never ran


@pytest.mark.parametrize("url", ["/find/a%00b", "/find/%ED%A0%80", "/find/ok?q=%00", "/find/ok?q=%FF%FE",
                                 "/find/ok?%00=1"])
async def test_hostile_path_and_query_are_refused(url: str) -> None:
    response, seen = await _send("GET", url)
    _problem(response, 422, "invalid-input")
    assert seen == []


@pytest.mark.parametrize(("raw", "status", "slug"), [
    (b'{"a": 1, "a": 2}', 422, "invalid-input"),
    (b"[" * 5000 + b"]" * 5000, 422, "invalid-input"),
    (b'{"n": 1' + b"0" * 5000 + b"}", 422, "invalid-input"),
    (b'{"n": 1e999}', 422, "invalid-input"),
    (b'{"n": NaN}', 422, "invalid-input"),
    (b'{"s": "' + b"x" * (MAX_STRING + 1) + b'"}', 422, "invalid-input"),
    (b'{"a": ', 400, "malformed-json"),
    (b'{"a": "\xff"}', 400, "malformed-json"),
    (b"x" * (1 << 21), 413, "body-too-large"),
])
async def test_structurally_hostile_bodies_are_refused(raw: bytes, status: int, slug: str) -> None:
    response, seen = await _send("POST", "/echo/x", raw)
    _problem(response, status, slug)
    assert seen == []


async def test_deep_but_allowed_nesting_and_ordinary_bodies_pass_untouched() -> None:
    raw = b'{"a": ' * (MAX_DEPTH - 1) + b"1" + b"}" * (MAX_DEPTH - 1)
    response, seen = await _send("POST", "/echo/x", raw)
    assert response.status_code == 200 and seen == [raw]
    ordinary = '{"amount": "12.34", "note": "Grüße 🙂", "n": 12345678901234567890}'.encode()
    response, seen = await _send("POST", "/echo/x", ordinary)
    assert response.status_code == 200 and seen == [ordinary]


async def test_webhook_bodies_reach_their_normaliser() -> None:
    raw = b'{"id": "evt_1", "data": {"object": {"note": "\\u0000"}}}'
    response, seen = await _send("POST", "/v1/webhooks/stripe", raw)
    assert response.status_code == 200 and seen == [raw]


@settings(max_examples=300)
@given(st.text())
def test_check_text_refuses_exactly_nul_surrogates_and_overlong(text: str) -> None:
    bad = "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text) or len(text) > MAX_STRING
    try:
        check_text(text, ["x"])
    except Exception:
        assert bad
    else:
        assert not bad


@settings(max_examples=200)
@given(st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=30))
def test_any_clean_json_passes(value: Any) -> None:
    import json

    raw = json.dumps(value).encode()
    clean = "\x00" not in raw.decode() and "\\u0000" not in raw.decode() and "\\ud" not in raw.decode()
    if clean:
        check_body(raw)
    assert MAX_NUMBER_DIGITS >= 21  # 10**20 has 21 digits and is allowed
