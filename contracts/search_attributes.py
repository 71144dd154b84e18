"""The one registry of custom search attributes: what an SRE types in the Temporal UI to find a run.

`paysaga dev` registers these when it starts the dev server; production registers them once with
`temporal operator search-attribute create` (see README).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

# The SQL visibility store (the dev server's SQLite, a plain Postgres or MySQL Temporal) has fixed columns per
# type: ten Keyword, three KeywordList, three Text, three Int. The ten keywords are taken below; later string
# attributes are keyword lists of one value (`SubscriptionId = 'sub_1'` matches a list holding it), and a status
# whose values share no word can be Text (its `=` matches a whole word).

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
PAYMENT_ID = SearchAttributeKey.for_keyword("PaymentId")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
CURRENCY = SearchAttributeKey.for_keyword("Currency")
REFUND_ID = SearchAttributeKey.for_keyword("RefundId")
DISPUTE_ID = SearchAttributeKey.for_keyword("DisputeId")
INVOICE_ID = SearchAttributeKey.for_keyword("InvoiceId")
INVOICE_STATUS = SearchAttributeKey.for_keyword("InvoiceStatus")  # draft | open | paid | void | uncollectible
SUBSCRIPTION_ID = SearchAttributeKey.for_keyword_list("SubscriptionId")
DUNNING_STAGE = SearchAttributeKey.for_int("DunningStage")  # the retry stage a dunning run is at
FRAUD_SCORE = SearchAttributeKey.for_int("FraudScore")  # e.g. FraudScore >= 60 in the UI
FRAUD_ACTION = SearchAttributeKey.for_keyword("FraudAction")  # allow | require_3ds | review
PAYOUT_RUN_ID = SearchAttributeKey.for_keyword_list("PayoutRunId")
CONNECTED_ACCOUNT_ID = SearchAttributeKey.for_keyword_list("ConnectedAccountId")  # a run for one account
# computing | awaiting_approval | paying | settling | completed | rejected | expired: no two share a word, so
# Text (the last of the keyword lists went to ConnectedAccountId) and `PayoutStatus = "settling"` still works.
PAYOUT_STATUS = SearchAttributeKey.for_text("PayoutStatus")

ALL = (TENANT_ID, CUSTOMER_ID, PAYMENT_ID, PAYMENT_STATUS, CURRENCY, REFUND_ID, DISPUTE_ID, FRAUD_SCORE,
       FRAUD_ACTION, INVOICE_ID, INVOICE_STATUS, SUBSCRIPTION_ID, DUNNING_STAGE, PAYOUT_RUN_ID, CONNECTED_ACCOUNT_ID,
       PAYOUT_STATUS)


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
    return TypedSearchAttributes([pair(key, value) for key, value in pairs])


def pair(key: SearchAttributeKey, value: str | int) -> SearchAttributePair:
    """One attribute's value; a keyword list gets the one-element list its type wants."""
    if key.indexed_value_type is SearchAttributeIndexedValueType.KEYWORD_LIST:
        return SearchAttributePair(key, [value])
    return SearchAttributePair(key, value)
