"""The published contract: every answer an operation can give is in `/openapi.json`, errors included.

Routes declare what is particular to them (their success body, a 404 for the resource they name, a 409 for a
state they refuse); `finish` adds what holds for every operation by construction:
- 422 `invalid-input` / `validation-error` (the input guard and validation see every request);
- with a JSON body: 400 `malformed-json` and 413 `body-too-large`;
- with an API key: 401, and 429 `rate-limited` with `Retry-After`;
- 503 with `Retry-After` when the database or the workflow engine cannot take the request.
Every error is `application/problem+json` with the shared `Problem` schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.schemas import Problem
from services.errors import MEDIA_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
DESCRIPTIONS = {
    400: "Malformed request: not JSON, an unknown cursor, a missing or invalid Idempotency-Key, a bad signature",
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the role this operation needs",
    404: "No such resource in this tenant",
    409: "The resource's state refuses the request, or a request with this Idempotency-Key is still running",
    413: "The body is larger than 1 MiB",
    422: "Invalid input: a field failed validation, or a string holds NUL or an unpaired surrogate, or the JSON "
         "nests too deeply, repeats a key or carries a number too large",
    429: "This tenant's rate limit is spent; retry after Retry-After seconds",
    503: "Overloaded, or a dependency is down; retry after Retry-After seconds (with the same Idempotency-Key)",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
REPLAYED = {"Idempotent-Replayed": {"description": "`true` when this is the stored answer to an earlier request "
                                                   "with the same Idempotency-Key", "schema": {"type": "string"}}}


# Headers an operation cannot do without (it answers 400 when they are missing).
REQUIRED_HEADERS = {"/v1/payments": ("Idempotency-Key",), "/v1/payments/{payment_id}/refunds": ("Idempotency-Key",),
                    "/v1/invoices": ("Idempotency-Key",), "/v1/invoices/{invoice_id}/pay": ("Idempotency-Key",),
                    "/v1/invoices/{invoice_id}/credit_notes": ("Idempotency-Key",),
                    "/v1/products": ("Idempotency-Key",), "/v1/prices": ("Idempotency-Key",),
                    "/v1/prices/{price_id}/revise": ("Idempotency-Key",), "/v1/subscriptions": ("Idempotency-Key",),
                    "/v1/connected_accounts": ("Idempotency-Key",), "/v1/payouts/runs": ("Idempotency-Key",),
                    "/v1/webhooks/stripe": ("Stripe-Signature",)}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Error answers of an operation, as problem+json."""
    return {code: problem_response(code) for code in codes}


def problem_response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": DESCRIPTIONS[code], "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}}
    if code in (409, 429, 503):
        response["headers"] = RETRY_AFTER
    return response


def created(model: type[BaseModel], description: str, *, replayable: bool = True) -> dict[int | str, dict[str, Any]]:
    """A 201 with its body (and, for idempotent POSTs, the replay header)."""
    response: dict[str, Any] = {"model": model, "description": description}
    if replayable:
        response["headers"] = REPLAYED
    return {201: response}


def finish(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the Problem schema and the answers every operation can give (see the module docstring)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for path, item in schema["paths"].items():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] in REQUIRED_HEADERS.get(path, ()):
                    param["required"] = True  # answered 400 without it, rather than a 422 of the validator
            responses = op.setdefault("responses", {})
            universal = [422]
            if "requestBody" in op:
                universal += [400, 413]
            if op.get("security"):
                universal += [401, 429]
            if not path.startswith("/health/live"):
                universal.append(503)
            for code in universal:
                responses[str(code)] = problem_response(code)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
