"""The payment-provider port: what the saga needs from a card processor, and nothing more.

Adapters: `sandbox` (the embedded default, Stripe's test semantics, state in Postgres) and `stripe` (the official
SDK, async). Both are driven by the same activities; they must be idempotent on `idempotency_key` and findable
by `metadata["payment_id"]` so a retried activity never creates a second PaymentIntent.

Connect (accounts, transfers, payouts, balances) follows Stripe's "separate charges and transfers": a split
charge lands whole in the platform's balance (its `transfer_group` is the payment id), and the weekly payout
run moves each seller's share with a transfer to the connected account and a payout from it. What the provider
settled for each money movement is read back as its balance transactions (`balance_transactions_of`), and
`settlement_report` is the provider's settlement data of a window as a file in the shape of Stripe's itemized
payout reconciliation report (activities/providers/settlement_report.py reads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, Field


class IntentStatus(StrEnum):
    """Stripe's PaymentIntent statuses (the subset the saga distinguishes)."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # after a decline
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"  # 3-D Secure
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class CreateIntent(BaseModel):
    payment_id: str
    tenant_id: str
    attempt: int = 1
    amount_minor: int = Field(description="In the currency's minor units (cents), as providers count")
    currency: str = Field(description="ISO 4217, upper case; adapters lower-case it for Stripe")
    payment_method: str = Field(description="Provider token or test payment method id, never a PAN")
    customer_ref: str | None = None
    description: str | None = None
    return_url: str | None = None
    request_three_d_secure: bool = False  # challenge the customer even if the card would not require it
    off_session: bool = False  # the customer is not there (a renewal): an issuer asking for them is an answer
    key: str | None = Field(default=None, description="The idempotency key, when the caller derives its own "
                                                      "(a renewal's: subscription, period, attempt)")
    # A split charge: for this connected account (ours, acct_…), of which the platform keeps the fee. The charge
    # lands whole in the platform balance; the seller's share leaves with the weekly payout run's transfer.
    destination: str | None = None
    application_fee_minor: int | None = None
    # The currency the platform's balance settles in, when it is not the charge's. The provider knows it from the
    # account's configuration (Stripe's settlement currency); the sandbox, which has no dashboard, takes it here.
    settlement_currency: str | None = None

    @property
    def idempotency_key(self) -> str:
        # Business ids only: a retried activity or a replayed workflow sends the same key.
        return self.key or f"{self.payment_id}:{self.attempt}"

    @property
    def metadata(self) -> dict[str, str]:
        meta = {"tenant_id": self.tenant_id, "payment_id": self.payment_id, "attempt": str(self.attempt)}
        if self.destination is not None:
            meta["destination"] = self.destination
            meta["application_fee_minor"] = str(self.application_fee_minor or 0)
        return meta


class Intent(BaseModel):
    id: str
    status: IntentStatus
    amount_minor: int
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    decline_code: str | None = None
    failure_message: str | None = None
    next_action_url: str | None = None
    # The succeeded charge's balance transaction when the answer carried it (Stripe: `latest_charge.
    # balance_transaction` expanded on the confirm), so that what it settled is not asked for again.
    balance_transactions: list[BalanceTransaction] = Field(default_factory=list)


class RefundResult(BaseModel):
    id: str
    status: str  # Stripe's refund statuses: pending | requires_action | succeeded | failed | canceled
    amount_minor: int
    failure_reason: str | None = None


class CardDetails(BaseModel):
    """What a provider tells about a stored card: display data and a fingerprint, never the number."""

    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str | None = Field(
        default=None, description="The provider's card fingerprint: equal for two tokens of the same card number"
    )
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 of the issuing bank")


class ChargeResult(BaseModel):
    """One charge of a batch: the intent it made (succeeded, processing, or asking for the customer), a decline,
    or an error worth retrying (`throttled`: the provider said 429)."""

    payment_id: str
    attempt: int = 1
    intent: Intent | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    error: str | None = None
    throttled: bool = False

    @property
    def declined(self) -> bool:
        return self.decline_code is not None


class CardDeclined(Exception):
    """A business outcome, not a fault: never retried."""

    def __init__(self, intent_id: str | None, decline_code: str, message: str) -> None:
        super().__init__(message)
        self.intent_id = intent_id
        self.decline_code = decline_code
        self.message = message


class ProviderUnavailable(Exception):
    """Network error, 5xx, 429, lock conflict: retried with backoff."""


class PaymentProvider(Protocol):
    name: str

    async def create_and_confirm(self, req: CreateIntent) -> Intent:
        """Create and confirm a PaymentIntent. Raises CardDeclined (with the intent id when one exists)."""
        ...

    async def create_and_confirm_many(self, reqs: list[CreateIntent]) -> list[ChargeResult]:
        """Many charges at once (renewals), each idempotent on its own key as `create_and_confirm` is, one result
        per request in order; declines and retryable errors are results, never raised."""
        ...

    async def retrieve_many(self, intent_ids: list[str]) -> list[Intent]:
        """Many intents at once (the renewal run's poll of what is still processing)."""
        ...

    async def find_intent(self, payment_id: str, attempt: int) -> Intent | None:
        """The intent created for this payment attempt, if any (lookup by metadata)."""
        ...

    async def retrieve(self, intent_id: str) -> Intent: ...

    async def cancel(self, intent_id: str) -> Intent:
        """Cancel if still cancelable; returns the intent as it now is (idempotent)."""
        ...

    async def refund(
        self, intent_id: str, amount_minor: int | None, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> RefundResult:
        """Refund (part of) a succeeded intent. `metadata` comes back on the refund's webhooks."""
        ...

    async def retrieve_refund(self, refund_id: str) -> RefundResult: ...

    async def describe_payment_method(self, token: str) -> CardDetails:
        """Brand, last4, expiry, fingerprint and country of a payment-method token. Raises ValueError for an
        unknown token, ProviderUnavailable when the provider cannot answer."""
        ...

    # --- disputes (chargebacks): they arrive by webhook; these answer them ---------------------------------
    async def submit_dispute_evidence(
        self, dispute_id: str, evidence: dict[str, str], submit: bool, idempotency_key: str | None = None
    ) -> DisputeResult:
        """Attach evidence to a dispute; `submit=True` sends it to the issuer (no more changes after that).
        Raises ValueError when the dispute no longer takes evidence (closed, already submitted)."""
        ...

    async def accept_dispute(self, dispute_id: str) -> DisputeResult:
        """Concede the dispute (Stripe: close it): it becomes `lost`. Idempotent on a dispute already lost."""
        ...

    async def retrieve_dispute(self, dispute_id: str) -> DisputeResult: ...


class DisputeResult(BaseModel):
    """A provider's dispute, in Stripe's vocabulary (`status`: needs_response, under_review, won, lost, warning_…)."""

    id: str
    status: str
    amount_minor: int
    currency: str
    reason: str | None = None
    payment_intent: str | None = None
    evidence_due_by: int | None = Field(default=None, description="unix seconds")


# --- Connect: accounts, transfers, payouts, balances ---------------------------------------------------------------
class CreateAccount(BaseModel):
    tenant_id: str
    account_id: str = Field(description="Ours (acct_…): the provider's account carries it in its metadata")
    country: str
    default_currency: str
    email: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"account:{self.account_id}"

    @property
    def metadata(self) -> dict[str, str]:
        return {"tenant_id": self.tenant_id, "account_id": self.account_id}


class ProviderAccount(BaseModel):
    """A connected account as the provider has it (Stripe's `Account`)."""

    id: str
    country: str | None = None
    default_currency: str | None = None
    charges_enabled: bool = False
    payouts_enabled: bool = False
    details_submitted: bool = False
    disabled_reason: str | None = None
    external_account_last4: str | None = None


class BalanceTransaction(BaseModel):
    """One movement of a provider balance (Stripe's `BalanceTransaction`), amounts in minor units of `currency`,
    signed as they move the balance. `exchange_rate` is the decimal text of the rate applied (presentment →
    `currency`), None without a conversion; the customer-facing amount is what it was in the presentment
    currency."""

    id: str
    type: str
    reporting_category: str
    source_id: str
    currency: str
    amount_minor: int
    fee_minor: int = 0
    net_minor: int
    exchange_rate: str | None = None
    customer_facing_amount_minor: int | None = None
    customer_facing_currency: str | None = None
    created: int = Field(description="unix seconds")
    available_on: int = Field(description="unix seconds")
    charge_id: str | None = None
    payment_intent_id: str | None = None
    account: str | None = Field(default=None, description="A connected account's balance; None: the platform's")


class CreateTransfer(BaseModel):
    tenant_id: str
    payout_id: str
    destination: str = Field(description="The provider's connected account id")
    amount_minor: int
    currency: str
    idempotency_key: str
    transfer_group: str | None = None
    source_currency: str | None = Field(default=None, description="The platform balance's currency, when another "
                                                                  "(the sandbox converts; see CreateIntent)")

    @property
    def metadata(self) -> dict[str, str]:
        return {"tenant_id": self.tenant_id, "payout_id": self.payout_id}


class TransferResult(BaseModel):
    id: str
    amount_minor: int
    currency: str
    destination: str
    destination_amount_minor: int | None = None  # what reached the connected account, in its currency
    destination_currency: str | None = None
    reversed: bool = False
    balance_transaction: BalanceTransaction | None = None  # what left (or, reversed, came back to) the platform


class CreatePayout(BaseModel):
    tenant_id: str
    payout_id: str
    account: str = Field(description="The provider's connected account id")
    amount_minor: int
    currency: str
    idempotency_key: str

    @property
    def metadata(self) -> dict[str, str]:
        return {"tenant_id": self.tenant_id, "payout_id": self.payout_id}


class PayoutResult(BaseModel):
    """A payout from a connected account to its bank (Stripe's `Payout`)."""

    id: str
    account: str
    amount_minor: int
    currency: str
    status: str  # pending | in_transit | paid | failed | canceled
    failure_code: str | None = None
    failure_message: str | None = None
    arrival_date: int | None = Field(default=None, description="unix seconds")


class Balance(BaseModel):
    """Available and pending funds per currency (upper case), in minor units."""

    available: dict[str, int] = Field(default_factory=dict)
    pending: dict[str, int] = Field(default_factory=dict)


class ConnectProvider(Protocol):
    """The Connect half of the provider port (both adapters implement it beside `PaymentProvider`)."""

    name: str

    async def create_account(self, req: CreateAccount) -> ProviderAccount:
        """Idempotent on `req.idempotency_key`. Raises ValueError when the provider refuses the details."""
        ...

    async def update_account(self, account_id: str, *, external_account: str | None = None) -> ProviderAccount:
        """Attach the payout method (a bank-account or card token, never its number)."""
        ...

    async def retrieve_account(self, account_id: str) -> ProviderAccount: ...

    async def create_transfer(self, req: CreateTransfer) -> TransferResult:
        """Move funds from the platform's balance to a connected account; idempotent on its key."""
        ...

    async def reverse_transfer(self, transfer_id: str, idempotency_key: str) -> TransferResult:
        """Bring a transfer back to the platform's balance (a failed payout's funds); idempotent."""
        ...

    async def create_payout(self, req: CreatePayout) -> PayoutResult:
        """Pay a connected account's balance out to its bank; idempotent on its key."""
        ...

    async def retrieve_payout(self, account: str, payout_id: str) -> PayoutResult: ...

    async def retrieve_balance(self, account: str | None = None) -> Balance:
        """The platform's balance, or a connected account's."""
        ...

    async def balance_transactions_of(self, source_id: str) -> list[BalanceTransaction]:
        """The platform balance's transactions of one provider object: a PaymentIntent (its charge), a refund, a
        dispute or a transfer. Empty when the provider has none (yet)."""
        ...

    async def settlement_report(self, tenant_id: str, start: datetime, end: datetime,
                                connected_accounts: Sequence[str] = ()) -> str:
        """The tenant's settlement data of [start, end) as CSV in the shape of Stripe's itemized payout
        reconciliation report: the platform's balance, and the payouts of these connected accounts (the
        provider's ids)."""
        ...


Intent.model_rebuild()  # its balance transactions are declared further down
