"""The published contract holds: schemathesis generates requests from `/openapi.json` and checks every answer of
the real app (no server errors; status codes, content types, headers and bodies as documented; schema-invalid
input refused; authentication not ignored). A fixed seed and a bounded number of examples keep it repeatable."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.stack import Stack

ST = Path(sys.executable).parent / "st"
SEED = 20261201
MAX_EXAMPLES = 12


@pytest.mark.integration
async def test_the_api_answers_as_its_openapi_document_says(stack: Stack, tmp_path: Path) -> None:
    _, key = await stack.new_tenant(["payments", "finance", "admin"])
    # Every check but positive_data_acceptance: business rules the schema cannot state (a token the provider does
    # not know, a cursor naming no resource, an amount below the currency's minor unit) refuse schema-valid input
    # with a documented 400/422, which is right; all other answers must be exactly as documented.
    # One worker: with two threads, hypothesis parsing lambda sources (to describe schemathesis's filters) in both
    # at once trips CPython 3.11.7's AST recursion-depth bookkeeping ("SystemError: AST constructor recursion
    # depth mismatch", python/cpython#106905) and the run dies; one worker is no slower on two cores.
    # Paced at the tenant's rate limit, as a client that keeps to it: faster, the limiter answers 429 before a
    # request is validated, and a check expecting the request's own 4xx (a missing header) reads that as a miss.
    limit = int(stack.settings.tenant_rate_limit_per_second)
    pacing = ["--rate-limit", f"{limit}/s"] if limit > 0 else []
    command = [str(ST), "run", f"{stack.base_url}/openapi.json", "--checks", "all",
               "--exclude-checks", "positive_data_acceptance", "--seed", str(SEED), *pacing,
               "--max-examples", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing", "--workers", "1",
               "--header", f"Authorization: Bearer {key}", "--request-timeout", "30", "--no-color",
               "--report-dir", str(tmp_path)]
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    text = output.decode(errors="replace").replace(key, "psk_***")
    assert proc.returncode == 0, text[-60_000:]
