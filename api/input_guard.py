"""Every string that enters is checked once, here, before any route sees it: the path, the query, the headers,
and JSON bodies (keys and values at any depth).

Refused, with a 4xx problem that names where (never echoing the value):
- a NUL character or an unpaired surrogate (PostgreSQL stores neither; a surrogate cannot even be encoded),
  bytes that are not UTF-8, and strings over `MAX_STRING` characters → 422 `invalid-input`;
- a JSON object with the same key twice (which one would count?), nesting deeper than `MAX_DEPTH`, a number
  with more than `MAX_NUMBER_DIGITS` digits, NaN or Infinity → 422 `invalid-input`;
- a body that is not JSON at all → 400 `malformed-json`; over `MAX_BODY_BYTES` → 413 `body-too-large`.

Provider webhooks are signed raw bodies whose normaliser is built for anything a sender puts in them: only their
path, query and headers are checked here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import MEDIA_TYPE, problem_body

MAX_BODY_BYTES = 1 << 20
MAX_STRING = 100_000
MAX_DEPTH = 32
MAX_NUMBER_DIGITS = 30
WEBHOOK_PREFIXES = ("/v1/webhooks/", "/api/v1/billing/webhook/")
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

Loc = list[str | int]


class Refused(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str, loc: Loc | None = None) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail, self.loc = status, slug, title, detail, loc

    def body(self, instance: str | None) -> bytes:
        extra = {"errors": [{"loc": self.loc, "msg": self.detail, "type": self.slug}]} if self.loc else {}
        return json.dumps(problem_body(self.status, self.slug, self.title, self.detail, instance, **extra)).encode()


def invalid(loc: Loc, why: str) -> Refused:
    return Refused(422, "invalid-input", "Invalid input", f"{'.'.join(map(str, loc))}: {why}", loc)


def check_text(value: str, loc: Loc) -> None:
    if len(value) > MAX_STRING:
        raise invalid(loc, f"longer than {MAX_STRING} characters")
    if "\x00" in value:
        raise invalid(loc, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(loc, "contains an unpaired surrogate") from None


def utf8(raw: bytes, loc: Loc) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(loc, "is not UTF-8") from None
    check_text(text, loc)
    return text


def check_path(scope: Scope) -> None:
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    utf8(unquote_to_bytes(raw.split(b"?", 1)[0]), ["path"])


def check_query(scope: Scope) -> None:
    raw = scope.get("query_string", b"")
    if not raw:
        return
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise invalid(["query"], "is not UTF-8") from None
    for key, value in pairs:
        check_text(key, ["query"])
        check_text(value, ["query", key])


def check_headers(scope: Scope) -> None:
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            raise invalid(["header", name.decode("latin-1")], "contains a NUL character")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _number(text: str) -> Any:
    if sum(ch.isdigit() for ch in text) > MAX_NUMBER_DIGITS:
        raise _TooBig(text)
    if not any(ch in text for ch in ".eE"):
        return int(text)
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to infinity
        raise _TooBig(text)
    return value


class _TooBig(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotANumber(name)


class _NotANumber(ValueError):
    pass


def parse_body(raw: bytes) -> Any:
    """Parse strictly; the parsed value is only inspected, the route parses the same bytes again."""
    if len(raw) > MAX_BODY_BYTES:
        raise Refused(413, "body-too-large", "Body too large", f"The body may be at most {MAX_BODY_BYTES} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "malformed-json", "Malformed JSON body", "The request body is not UTF-8 JSON.") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_number, parse_float=_number,
                          parse_constant=_constant)
    except _Duplicate as dup:
        raise invalid(["body", dup.key[:64]], "appears twice in one object") from None
    except _TooBig:
        raise invalid(["body"], f"a number has more than {MAX_NUMBER_DIGITS} digits") from None
    except _NotANumber:
        raise invalid(["body"], "NaN and Infinity are not JSON numbers") from None
    except RecursionError:
        raise invalid(["body"], f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise Refused(400, "malformed-json", "Malformed JSON body", "The request body is not valid JSON.") from None


def walk(value: Any, loc: Loc) -> Iterator[tuple[str, Loc]]:
    """Every string in a parsed body (keys and values), with where it is; refuses depth beyond MAX_DEPTH."""
    if len(loc) > MAX_DEPTH:
        raise invalid(loc[:3], f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        yield value, loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key, loc
            yield from walk(item, [*loc, key[:64]])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, [*loc, i])


def check_body(raw: bytes) -> None:
    if not raw.strip():
        return
    for text, loc in walk(parse_body(raw), ["body"]):
        check_text(text, loc)


class InputGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_path(scope)
        except Refused as refused:
            await _refuse(send, refused, None)  # the path itself is not fit to echo back
            return
        try:
            check_query(scope)
            check_headers(scope)
        except Refused as refused:
            await _refuse(send, refused, scope["path"])
            return
        if scope["method"] not in BODY_METHODS or scope["path"].startswith(WEBHOOK_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read(receive)
            check_body(body)
        except Refused as refused:
            await _refuse(send, refused, scope["path"])
            return
        await self.app(scope, _replay(body, receive), send)


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, "body-too-large", "Body too large", f"The body may be at most {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, refused: Refused, instance: str | None) -> None:
    payload = refused.body(instance)
    await send({"type": "http.response.start", "status": refused.status,
                "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
