"""Structured logs: the saga's billing events carry what an SRE needs, and no card number is ever logged."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from paysaga.logs import contains_pan
from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_billing_log_events_and_no_pan_anywhere(stack: Stack, tenant: tuple[str, str]) -> None:
    with capture_logs() as logs:
        async with stack.http(tenant[1]) as http:
            cid, pm = await customer_with_method(http)
            body = (await pay(http, cid, pm, "19.99")).json()
            await wait_status(http, body["id"], {"completed"})
            refused = await pay(http, cid, pm, metadata={"pan": "5555-5555-5555-4444 exp 12/30 cvc 123"})
            assert refused.status_code == 422
            declined_pm = (await customer_with_method(http, "pm_card_chargeDeclinedFraudulent"))
            declined = (await pay(http, *declined_pm)).json()
    rail = [e for e in logs if e["event"] == "billing.rail.execution" and e.get("payment_id") == body["id"]]
    assert rail and rail[0]["provider"] == "sandbox" and rail[0]["status"] == "succeeded"
    assert rail[0]["correlation_id"] == body["workflow_id"] and rail[0]["tenant_id"] == tenant[0]
    assert isinstance(rail[0]["duration_ms"], float)
    results = {e["payment_id"]: e for e in logs if e["event"] == "billing.execution.result"}
    assert results[body["id"]]["status"] == "completed"
    assert results[declined["id"]]["failure_code"] == "fraudulent"
    assert any(e["event"] == "api.pan_refused" for e in logs)
    # The PCI scan: not one captured event, rendered in full, contains anything shaped like a card number.
    for event in logs:
        assert not contains_pan(json.dumps(event, default=str)), event["event"]
