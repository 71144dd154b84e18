"""The one registry of custom search attributes: what an SRE types in the Temporal UI to find a run.

`paysaga dev` registers these when it starts the dev server; production registers them once with
`temporal operator search-attribute create` (see README).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
PAYMENT_ID = SearchAttributeKey.for_keyword("PaymentId")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
CURRENCY = SearchAttributeKey.for_keyword("Currency")
REFUND_ID = SearchAttributeKey.for_keyword("RefundId")
DISPUTE_ID = SearchAttributeKey.for_keyword("DisputeId")
INVOICE_ID = SearchAttributeKey.for_keyword("InvoiceId")
INVOICE_STATUS = SearchAttributeKey.for_keyword("InvoiceStatus")  # draft | open | paid | void | uncollectible
FRAUD_SCORE = SearchAttributeKey.for_int("FraudScore")  # e.g. FraudScore >= 60 in the UI
FRAUD_ACTION = SearchAttributeKey.for_keyword("FraudAction")  # allow | require_3ds | review
# Keyword lists of one value: the SQL visibility store of the dev server (and of a plain Postgres or MySQL
# Temporal) has ten Keyword columns, all taken above, and three KeywordList ones. `PayoutStatus = "settling"`
# queries a list as it would a keyword (equality is "contains").
PAYOUT_RUN_ID = SearchAttributeKey.for_keyword_list("PayoutRunId")
CONNECTED_ACCOUNT_ID = SearchAttributeKey.for_keyword_list("ConnectedAccountId")  # a run for one account
# computing | awaiting_approval | paying | settling | completed | rejected | expired
PAYOUT_STATUS = SearchAttributeKey.for_keyword_list("PayoutStatus")

ALL = (TENANT_ID, CUSTOMER_ID, PAYMENT_ID, PAYMENT_STATUS, CURRENCY, REFUND_ID, DISPUTE_ID, FRAUD_SCORE,
       FRAUD_ACTION, INVOICE_ID, INVOICE_STATUS, PAYOUT_RUN_ID, CONNECTED_ACCOUNT_ID, PAYOUT_STATUS)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Keyword` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={cli_type(key)}"]
    return flags


def cli_type(key: SearchAttributeKey) -> str:
    """The type name the Temporal CLI expects (Keyword, Int, …)."""
    return {"KEYWORD": "Keyword", "INT": "Int", "KEYWORD_LIST": "KeywordList", "TEXT": "Text",
            "BOOL": "Bool", "DOUBLE": "Double", "DATETIME": "Datetime"}[key.indexed_value_type.name.removeprefix(
                "INDEXED_VALUE_TYPE_")]


def at_start(*pairs: tuple[SearchAttributeKey, Any]) -> TypedSearchAttributes:
    """Attributes known when a workflow starts go with the start request: no upsert, one visibility write fewer."""
    return TypedSearchAttributes([SearchAttributePair(key, value) for key, value in pairs])
