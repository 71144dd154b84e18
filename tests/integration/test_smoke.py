import pytest

from tests.integration.helpers import customer_with_method, pay, wait_status
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_payment_completes_via_webhook(stack: Stack, tenant: tuple[str, str]) -> None:
    async with stack.http(tenant[1]) as http:
        cid, pm = await customer_with_method(http, "pm_card_visa_settlesLater")  # processing until the webhook
        r = await pay(http, cid, pm, "12.34")
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "processing"
        done = await wait_status(http, r.json()["id"], {"completed"})
        assert done["amount"] == "12.34"
