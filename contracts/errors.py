"""Error type names carried by Temporal failures between activities, workflows and their callers.

Activities raise `ApplicationError(type=...)` with these names; retry policies list the non-retryable ones;
workflow updates refuse with them; the service layer maps them to answers. One spelling, one place.
"""

from __future__ import annotations

# The request itself is wrong: retrying cannot help.
INVALID_REQUEST = "InvalidRequest"
INVALID_TRANSITION = "InvalidTransition"
NON_RETRYABLE = (INVALID_REQUEST, INVALID_TRANSITION)

SETTLEMENT_TIMEOUT = "SettlementTimeout"

# Updates of PaymentWorkflow.
NOT_CANCELABLE = "NotCancelable"
NOT_REPLAYABLE = "NotReplayable"

# Updates of DisputeWorkflow.
NOT_ACCEPTING_EVIDENCE = "NotAcceptingEvidence"
NOT_ACCEPTABLE = "NotAcceptable"
PROVIDER_REFUSED = "ProviderRefused"
PROVIDER_UNAVAILABLE = "ProviderUnavailable"
INVALID_EVIDENCE = "InvalidEvidence"

# Payments that collect an invoice.
INVOICE_ALREADY_COLLECTING = "InvoiceAlreadyCollecting"  # another payment of the invoice is live or completed

# Updates of InvoiceWorkflow: the refusal's code (e.g. invoice-action-not-allowed) is the error's type.
INVOICE_REFUSED = "InvoiceRefused"

# Updates of PayoutWorkflow.
PAYOUT_RUN_NOT_AWAITING_APPROVAL = "PayoutRunNotAwaitingApproval"  # computing, or already decided or expired
PAYOUT_RUN_DECIDED = "PayoutRunDecided"  # another request decided it first
