"""The shapes the API answers with, as published in `/openapi.json`: a client generated from it can type every
body, errors included. Unknown fields are refused when a response is checked against its model, so the models
and the services' read models cannot drift apart unnoticed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------------------------
class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. [\"body\", \"metadata\", \"k\"] or [\"query\", \"limit\"]")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details. `type` is stable per kind of problem; extension members may follow."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "https://paysaga.dev/problems/payment-not-cancelable", "title": "Payment cannot be canceled",
        "status": 409, "detail": "The payment is completed.", "instance": "/v1/payments/pay_3f2a…/cancel"}]})

    type: str = Field(description="https://paysaga.dev/problems/<slug>")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="Which fields were refused, and why")


# --- customers and payment methods -----------------------------------------------------------------------------
class Customer(Out):
    id: str
    object: Literal["customer"]
    email: str | None
    name: str | None
    country: str | None
    address: dict[str, Any] | None
    tax_ids: list[dict[str, Any]]
    tax_exempt: str
    preferred_locale: str | None
    default_payment_method_id: str | None
    metadata: dict[str, Any]
    created_at: str


class PaymentMethod(Out):
    id: str
    object: Literal["payment_method"]
    customer_id: str
    provider: str
    provider_token: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    expired: bool
    fingerprint: str | None
    country: str | None
    detached_at: str | None
    created_at: str
    duplicate: bool | None = Field(default=None, description="On attach: whether the customer already had the card")


class PaymentMethodList(Out):
    object: Literal["list"]
    data: list[PaymentMethod]
    has_more: bool


# --- payments -------------------------------------------------------------------------------------------------
class Risk(Out):
    score: int | None
    reasons: list[str]


class FraudReason(Out):
    code: str
    contribution: int
    explanation: str


class Fraud(Out):
    score: int | None
    action: str | None
    reasons: list[FraudReason]


class Payment(Out):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "pay_3f2a9c0e1b7d4e55a6c8d901", "object": "payment", "status": "processing", "amount": "12.34",
        "amount_micros": 12_340_000, "currency": "USD", "customer_id": "cus_…", "payment_method_id": "pm_…",
        "description": None, "metadata": {}, "provider": "sandbox", "provider_intent_id": "pi_sbx_…",
        "failure_code": None, "failure_message": None, "next_action": None, "risk": {"score": 0, "reasons": []},
        "fraud": None, "workflow_id": "payment/<tenant>/pay_3f2a…", "created_at": "2026-12-01T17:47:03.909254+00:00",
        "updated_at": "2026-12-01T17:47:04.031339+00:00"}]})

    id: str
    object: Literal["payment"]
    status: Literal["created", "pending", "processing", "completed", "failed", "canceled"]
    amount: str = Field(description="Decimal string in the currency's major unit")
    amount_micros: int
    currency: str
    customer_id: str
    payment_method_id: str
    description: str | None
    metadata: dict[str, Any]
    provider: str
    provider_intent_id: str | None
    failure_code: str | None
    failure_message: str | None
    next_action: dict[str, Any] | None = Field(
        description="3-D Secure: {type: redirect_to_url, redirect_to_url: {url}}")
    risk: Risk
    fraud: Fraud | None
    workflow_id: str
    destination: str | None = Field(default=None, description="A split charge's connected account")
    application_fee: str | None = Field(default=None, description="What the platform keeps of a split charge")
    created_at: str
    updated_at: str


class PaymentList(Out):
    object: Literal["list"]
    data: list[Payment]
    has_more: bool
    next_cursor: str | None


# --- refunds --------------------------------------------------------------------------------------------------
class Refund(Out):
    id: str
    object: Literal["refund"]
    payment_id: str
    status: Literal["pending", "succeeded", "failed", "canceled"]
    amount: str
    amount_micros: int
    currency: str
    reason: str | None
    provider_refund_id: str | None
    failure_code: str | None
    workflow_id: str
    created_at: str
    updated_at: str


class RefundList(Out):
    object: Literal["list"]
    data: list[Refund]
    amount_refunded: str
    amount_refundable: str


# --- disputes -------------------------------------------------------------------------------------------------
class Dispute(Out):
    id: str
    object: Literal["dispute"]
    payment_id: str
    status: Literal["needs_response", "under_review", "won", "lost", "accepted"]
    outcome: Literal["won", "lost"] | None
    reason: str | None
    amount: str
    amount_micros: int
    currency: str
    funds_withdrawn: str
    funds_reinstated: str
    evidence_due_by: str | None
    accepting_evidence: bool
    evidence: dict[str, str]
    evidence_submitted_at: str | None
    payment_dispute_status: str | None
    provider: str
    provider_dispute_id: str
    workflow_id: str
    created_at: str
    updated_at: str
    closed_at: str | None


class PaymentDisputes(Out):
    object: Literal["list"]
    payment_id: str
    dispute_status: Literal["none", "disputed", "disputed_lost", "disputed_won"]
    amount_disputed_net: str
    data: list[Dispute]


class DisputeList(Out):
    object: Literal["list"]
    data: list[Dispute]
    has_more: bool
    next_cursor: str | None


# --- audit, dead letters, webhooks, health, sandbox -----------------------------------------------------------
class AuditEvent(Out):
    id: int
    object: Literal["audit_event"]
    tenant_id: str
    actor: str
    action: str
    resource_type: str
    resource_id: str | None
    correlation_id: str | None
    request_id: str | None
    details: dict[str, Any]
    at: str


class AuditList(Out):
    object: Literal["list"]
    data: list[AuditEvent]
    has_more: bool
    next_cursor: int | None


class DeadLetter(Out):
    id: str
    object: Literal["dead_letter"]
    workflow_id: str
    payment_id: str | None
    step: str
    reason: str
    status: Literal["open", "replayed", "expired"]
    input: dict[str, Any]
    created_at: str
    resolved_at: str | None
    resolved_by: str | None


class DeadLetterList(Out):
    object: Literal["list"]
    data: list[DeadLetter]


class Replayed(Out):
    id: str
    object: Literal["dead_letter"]
    status: str


class WebhookAck(BaseModel):
    """A handler may add members of its own (handlers of other kinds than paysaga's)."""

    model_config = ConfigDict(extra="allow")

    received: Literal[True]
    duplicate: bool | None = None
    ignored: str | None = Field(default=None, description="Why the event was recorded but not acted on")
    note: str | None = None


class Live(Out):
    status: Literal["ok"]


class Ready(Out):
    status: Literal["ok"]
    checks: dict[str, str]


class SandboxIntent(Out):
    id: str
    object: Literal["payment_intent"]
    status: str


# --- the ledger -----------------------------------------------------------------------------------------------
class LedgerAccount(Out):
    id: str = Field(description="e.g. receivable:cus_1:EUR, revenue:EUR")
    object: Literal["ledger_account"]
    code: str
    subject: str | None
    currency: str
    type: Literal["asset", "liability", "revenue", "contra_revenue", "expense"]
    balance: str = Field(description="Debits minus credits, as a decimal string (credit balances are negative)")
    balance_micros: int
    created_at: str


class LedgerAccountList(Out):
    object: Literal["list"]
    data: list[LedgerAccount]
    at: str | None


class LedgerLine(Out):
    entry_id: str
    object: Literal["ledger_line"]
    event: str
    source_type: str
    source_id: str
    memo: str
    reverses: str | None
    side: Literal["debit", "credit"]
    amount: str
    amount_micros: int = Field(description="Signed: debit > 0, credit < 0")
    currency: str
    posted_at: str


class LedgerStatement(Out):
    object: Literal["list"]
    account_id: str
    data: list[LedgerLine]
    has_more: bool
    next_cursor: str | None


class TrialBalanceAccount(Out):
    id: str
    type: str
    balance_micros: int


class TrialBalanceCurrency(Out):
    currency: str
    debits: str
    credits: str
    balance_micros: int = Field(description="Always 0: every entry balances")
    by_type: dict[str, int]
    accounts: list[TrialBalanceAccount]


class TrialBalance(Out):
    object: Literal["trial_balance"]
    at: str | None
    currencies: list[TrialBalanceCurrency]
    balanced: bool


# --- invoices and credit notes --------------------------------------------------------------------------------
class InvoiceTax(Out):
    jurisdiction: str
    jurisdiction_name: str
    rate: str = Field(description="Percent, exact: \"19\", \"7.25\"")
    rate_ppm: int
    taxable_amount: str
    taxable_amount_micros: int
    amount: str
    amount_micros: int
    taxability_reason: str
    tax_type: str


class InvoiceLine(Out):
    id: str
    description: str
    quantity: str
    unit_amount: str
    amount: str
    amount_micros: int
    tax: str
    tax_micros: int
    period_start: str | None
    period_end: str | None
    tax_code: str
    taxes: list[InvoiceTax]


class Invoice(Out):
    id: str
    object: Literal["invoice"]
    number: str | None
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    customer_id: str
    currency: str
    collection_method: Literal["charge_automatically", "send_invoice"]
    days_until_due: int | None
    due_date: str | None
    description: str | None
    series: str | None
    period_start: str | None
    period_end: str | None
    subscription_id: str | None
    lines: list[InvoiceLine]
    subtotal: str
    subtotal_micros: int
    tax: str
    tax_micros: int
    total: str
    total_micros: int
    amount_due: str
    amount_due_micros: int
    amount_paid: str
    amount_paid_micros: int
    amount_remaining: str
    amount_remaining_micros: int
    amount_credited: str
    amount_credited_micros: int
    credit_applied: str = Field(description="Paid from the customer's credit balance when the invoice was finalized")
    credit_applied_micros: int
    credit_notes: list[str]
    tax_notes: list[str]
    paid_out_of_band: bool
    actions: list[str] = Field(description="What the invoice's state allows: clients need not encode the state "
                                           "machine")
    pdf: str | None
    workflow_id: str | None
    metadata: dict[str, Any]
    finalized_at: str | None
    paid_at: str | None
    voided_at: str | None
    void_reason: str | None
    marked_uncollectible_at: str | None
    created_at: str | None
    updated_at: str | None


class InvoicePayment(Invoice):
    payment_id: str | None = Field(description="The payment this attempt started; follow it at /v1/payments/{id}")


class InvoiceList(Out):
    object: Literal["list"]
    data: list[Invoice]
    has_more: bool
    next_cursor: str | None


class CreditNoteTax(Out):
    jurisdiction: str
    amount: str
    amount_micros: int


class CreditNoteLine(Out):
    line_id: str
    amount: str
    amount_micros: int
    tax: str
    tax_micros: int
    taxes: list[CreditNoteTax]


class CreditNote(Out):
    id: str | None
    object: Literal["credit_note"]
    number: str | None
    invoice_id: str
    type: Literal["pre_payment", "post_payment"]
    reason: str
    memo: str
    currency: str
    lines: list[CreditNoteLine]
    amount: str
    amount_micros: int
    tax: str
    tax_micros: int
    total: str
    total_micros: int
    refund_amount: str
    refund_amount_micros: int
    credit_amount: str
    credit_amount_micros: int
    out_of_band_amount: str
    out_of_band_amount_micros: int
    refund_id: str | None
    pdf: str | None
    created_at: str | None
    preview: bool = False


class CreditNoteList(Out):
    object: Literal["list"]
    data: list[CreditNote]
    has_more: bool


# --- the tenant as a seller -----------------------------------------------------------------------------------
class TenantProfile(Out):
    object: Literal["tenant_profile"]
    legal_name: str | None
    address: dict[str, Any] | None
    tax_ids: list[dict[str, Any]]


class TaxRegistration(Out):
    id: str
    object: Literal["tax_registration"]
    country: str
    state: str | None
    type: str
    active_from: str
    active_until: str | None


class TaxRegistrationList(Out):
    object: Literal["list"]
    data: list[TaxRegistration]
    has_more: bool


# --- connected accounts and the tenant's settings -----------------------------------------------------------------
class PayoutScheduleOut(Out):
    interval: Literal["weekly", "daily", "manual"]
    weekday: str
    delay_days: int
    minimum: str | None


class ReserveOut(Out):
    basis_points: int
    hold_days: int
    fixed: str | None


class PayoutMethodOut(Out):
    token: str = Field(description="The provider's token; bank details never reach paysaga")
    last4: str | None


class ConnectedAccount(Out):
    id: str
    object: Literal["connected_account"]
    country: str
    settlement_currency: str
    display_name: str | None
    email: str | None
    onboarding_status: Literal["pending", "restricted", "enabled", "rejected"]
    payouts_enabled: bool
    provider: str
    provider_account_id: str | None
    payout_schedule: PayoutScheduleOut
    reserve: ReserveOut
    payout_method: PayoutMethodOut | None
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class ConnectedAccountList(Out):
    object: Literal["list"]
    data: list[ConnectedAccount]
    has_more: bool
    next_cursor: str | None


class PayoutLineOut(Out):
    """One account and currency of a payout run (amounts are decimal strings in `currency`)."""

    account_id: str
    currency: str
    period_start: str
    period_end: str
    payout_date: str
    brought_forward: str
    gross: str
    fees: str
    refunds: str
    disputes: str
    other: str
    balance: str
    reserve: str
    net: str
    carried_forward: str
    pending: str
    decision: Literal["pay", "nothing", "negative", "below_minimum", "not_enabled"]
    settlement_currency: str | None
    settlement_net: str | None
    fx_rate: str | None
    fx_as_of: str | None
    fx_source: str | None


class ConnectedAccountBalance(Out):
    object: Literal["connected_account_balance"]
    account_id: str
    as_of: str
    lines: list[PayoutLineOut]


class TenantSettings(Out):
    object: Literal["tenant_settings"]
    settlement_currency: str | None
    payout_approval_required: bool
    payout_approval_hours: int
    payout_reminder_hours: int


# --- payouts --------------------------------------------------------------------------------------------------
class PayoutRun(Out):
    id: str
    object: Literal["payout_run"]
    status: Literal["computing", "awaiting_approval", "rejected", "expired", "paying", "settling", "completed"]
    as_of: str
    trigger: Literal["schedule", "api", "cli"]
    requested_by: str
    connected_account_id: str | None
    approval_required: bool
    approval_deadline: str | None
    decided_by: str | None
    decision_reason: str | None
    accounts: int
    payable: int
    payouts: dict[str, int] = Field(description="How many of its payouts are in each status")
    totals: dict[str, str] = Field(description="Net paid (or to pay) per currency")
    workflow_id: str
    created_at: str | None
    updated_at: str | None


class PayoutRunList(Out):
    object: Literal["list"]
    data: list[PayoutRun]
    has_more: bool
    next_cursor: str | None


class PayoutReportLine(PayoutLineOut):
    payout_id: str | None
    payout_status: str | None


class PayoutReport(Out):
    object: Literal["payout_report"]
    run_id: str
    status: str
    as_of: str
    lines: list[PayoutReportLine]


class Payout(Out):
    id: str
    object: Literal["payout"]
    run_id: str
    account_id: str
    status: Literal["pending", "in_transit", "paid", "failed", "canceled"]
    amount: str
    amount_micros: int
    currency: str
    period_start: str
    period_end: str
    provider_transfer_id: str | None
    provider_payout_id: str | None
    destination_amount: str | None
    destination_currency: str | None
    failure_code: str | None
    failure_message: str | None
    funds_returned: bool
    created_at: str
    updated_at: str


class PayoutList(Out):
    object: Literal["list"]
    data: list[Payout]
    has_more: bool
    next_cursor: str | None


# --- settlement reconciliation ------------------------------------------------------------------------------------
class SettlementCurrency(Out):
    currency: str
    volume: str
    unexplained: str
    variance_ratio: str = Field(description="Unexplained ÷ volume, as a decimal (exact to 12 places)")
    variance_ppm: int = Field(description="The ratio in parts per million, rounded up")
    matched: int
    discrepancies: int
    in_flight: int
    exceeds: bool = Field(description="At or above the objective (0.01 %)")


class SettlementDiscrepancy(Out):
    seq: int
    currency: str
    kind: Literal["missing_internal", "missing_at_provider", "amount", "currency", "fee", "timing"]
    key: str
    expected: str | None
    actual: str | None
    variance: str
    explained: bool
    detail: str
    records: list[dict[str, Any]]
    lines: list[dict[str, Any]]


class SettlementReport(Out):
    id: str
    object: Literal["settlement_report"]
    kind: Literal["daily", "weekly", "manual"]
    window_start: str
    window_end: str
    provider: str
    source_key: str | None
    lines: int
    records: int
    matched: int
    discrepancies: int
    exceeds: bool
    currencies: list[SettlementCurrency]
    generated_by: str
    created_at: str
    discrepancy_list: list[SettlementDiscrepancy] | None = Field(
        default=None, description="With GET …/{id}: every discrepancy, with the records and lines behind it")


class SettlementReportList(Out):
    object: Literal["list"]
    data: list[SettlementReport]
    has_more: bool
    next_cursor: str | None


# --- the catalogue and the billing policy ----------------------------------------------------------------------
class Product(Out):
    id: str
    object: Literal["product"]
    name: str
    active: bool
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class ProductList(Out):
    object: Literal["list"]
    data: list[Product]
    has_more: bool
    next_cursor: str | None


class Price(Out):
    id: str = Field(description="`<family>.v<version>`")
    object: Literal["price"]
    family: str
    version: int
    product_id: str
    currency: str
    billing_scheme: Literal["flat", "per_unit"]
    unit_amount: str
    unit_amount_micros: int
    interval: Literal["month", "year"]
    interval_count: int
    nickname: str
    supersedes: str | None
    tax_code: str
    active: bool
    created_at: str | None


class PriceList(Out):
    object: Literal["list"]
    data: list[Price]
    has_more: bool
    next_cursor: str | None


class ChangePolicy(Out):
    upgrades: Literal["now", "period_end"]
    downgrades: Literal["now", "period_end"]
    lateral: Literal["now", "period_end"]
    proration_behavior: Literal["create_prorations", "always_invoice", "none"]


class BillingPolicy(Out):
    object: Literal["billing_policy"]
    change_policy: ChangePolicy
    trial_end_behavior: Literal["pause", "cancel"]
    dunning_policy: dict[str, Any] | None
    updated_at: str | None


# --- subscriptions --------------------------------------------------------------------------------------------
class BillingCycleOut(Out):
    interval: Literal["month", "year"]
    interval_count: int
    day_of_month: int | None


class PauseCollectionOut(Out):
    behavior: Literal["keep_as_draft", "mark_uncollectible", "void"]
    resumes_at: str | None


class ScheduledChange(Out):
    price_id: str
    quantity: int
    effective_at: str | None


class Subscription(Out):
    id: str
    object: Literal["subscription"]
    status: Literal["incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled",
                    "paused"]
    customer_id: str
    price_id: str
    quantity: int
    currency: str
    collection_method: Literal["charge_automatically", "send_invoice"]
    days_until_due: int | None
    default_payment_method_id: str | None
    current_period_start: str | None
    current_period_end: str | None
    billing_cycle_anchor: str | None
    billing_cycle: BillingCycleOut
    trial_start: str | None
    trial_end: str | None
    trial_end_behavior: Literal["pause", "cancel"]
    cancel_at_period_end: bool
    canceled_at: str | None
    ended_at: str | None
    pause_collection: PauseCollectionOut | None
    scheduled_change: ScheduledChange | None
    latest_invoice_id: str | None
    next_action_at: str | None = Field(description="When the renewal run next looks at it (a renewal, the trial's "
                                                   "end, …)")
    actions: list[str] = Field(description="What the subscription's state allows")
    metadata: dict[str, Any]
    created_at: str | None
    updated_at: str | None
    latest_invoice: Invoice | None = Field(default=None, description="Set when the request issued an invoice")


class SubscriptionList(Out):
    object: Literal["list"]
    data: list[Subscription]
    has_more: bool
    next_cursor: str | None


class SubscriptionEvent(Out):
    id: str
    object: Literal["subscription_event"]
    type: str
    seq: int
    old_status: str | None
    new_status: str
    occurred_at: str | None
    data: dict[str, Any]


class SubscriptionEventList(Out):
    object: Literal["list"]
    data: list[SubscriptionEvent]
    has_more: bool


class InvoicePreview(Invoice):
    preview: bool = Field(description="Always true: nothing was written")
    period_start_at: str = Field(description="The subscription period it bills, as instants")
    period_end_at: str
