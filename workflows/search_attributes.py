"""The one registry of custom search attributes: what an SRE types in the Temporal UI to find a run.

`paysaga dev` registers these when it starts the dev server; production registers them once with
`temporal operator search-attribute create` (see README).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
PAYMENT_ID = SearchAttributeKey.for_keyword("PaymentId")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
CURRENCY = SearchAttributeKey.for_keyword("Currency")
REFUND_ID = SearchAttributeKey.for_keyword("RefundId")

ALL = (TENANT_ID, CUSTOMER_ID, PAYMENT_ID, PAYMENT_STATUS, CURRENCY, REFUND_ID)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Keyword` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags
