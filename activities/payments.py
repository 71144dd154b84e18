"""Activities of the payment saga: the only code in the saga with side effects.

Every activity is idempotent: database writes go through unique keys and status guards (`stores.payments`), and
the provider is called with idempotency key `{payment_id}:{attempt}` after looking for an intent already made
for that attempt — a retry never creates a second PaymentIntent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ai_client import AIClient, BuiltinScorer, gather_features, record_assessment
from activities.dunning_start import DunningStarter
from activities.fx.base import FxRates
from activities.providers.base import (
    BalanceTransaction,
    CardDeclined,
    CreateIntent,
    Intent,
    IntentStatus,
    PaymentProvider,
    ProviderUnavailable,
)
from activities.stores import connected_accounts as accounts
from activities.stores import dead_letters
from activities.stores import payment_methods as methods
from activities.stores import payments as store
from contracts.dead_letters import DeadLetter, ReplayRequest
from contracts.errors import INVALID_REQUEST, INVALID_TRANSITION, INVOICE_ALREADY_COLLECTING
from contracts.payments import (
    Admission,
    FraudResult,
    IntentOutcome,
    IntentRequest,
    PaymentInput,
    PaymentView,
    RiskRequest,
    RiskResult,
    Submission,
    SubmitRequest,
    TransitionRequest,
    payment_workflow_id,
)
from domain.fraud import FraudFeatures, FraudPolicy
from domain.money import Money, RoundingMode
from domain.payment import InvalidTransition, PaymentStatus, Transition, TransitionCommand
from domain.risk import CustomerHistory, RiskLimits, assess
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.billing")


async def submit(req: SubmitRequest, create: Callable[[IntentRequest], Awaitable[IntentOutcome]],
                 record: Callable[[list[TransitionRequest]], Awaitable[PaymentView]]) -> Submission:
    """The provider call, then the transitions its answer drives, recorded together (the workflow tests' fakes
    submit through this too, with their own provider and store)."""
    outcome = await create(req.intent)
    steps = Submission.transitions(req, outcome)
    assert steps  # every answer drives at least one transition
    return Submission(outcome=outcome, view=await record(steps))


class PaymentActivities:
    def __init__(
        self, pool: asyncpg.Pool, provider: PaymentProvider, limits: RiskLimits, ai: AIClient | None = None,
        rates: FxRates | None = None, *, dunning: DunningStarter | None = None,
    ) -> None:
        self._pool = pool
        self._provider = provider
        self._limits = limits
        self._ai: AIClient = ai or BuiltinScorer(FraudPolicy())
        # A scorer in this process answers in microseconds and does no I/O: its score is written in the admission's
        # transaction. Any other model is asked after it: a slow one never holds a database connection.
        self._score_in_tx: bool = getattr(self._ai, "in_process", False)
        self._dunning = dunning
        self._rates = rates  # what a conversion's rate is quoted against (activities/fx)

    # --- database steps (run as local activities: short, idempotent) --------------------------------------
    @activity.defn
    async def admit_payment(self, inp: PaymentInput) -> Admission:
        """The first step in one: record the payment, apply the hard rules (a decline fails it in the same
        transaction) and ask for the advisory fraud score."""
        req = RiskRequest(tenant_id=inp.tenant_id, payment_id=inp.payment_id, customer_id=inp.customer_id,
                          amount_micros=inp.amount_micros, currency=inp.currency)
        async with tenant_tx(self._pool, inp.tenant_id) as conn:
            try:
                view = await store.insert_created(conn, inp, self._provider.name, inp.actor)
            except store.InvoiceAlreadyCollecting as exc:
                raise ApplicationError(str(exc), type=INVOICE_ALREADY_COLLECTING, non_retryable=True) from exc
            if view.status != PaymentStatus.CREATED:  # a re-run after the payment moved on
                return Admission(view=view, risk=RiskResult(allowed=True, score=view.risk_score or 0,
                                                            reasons=view.risk_reasons or []))
            risk = await self._assess(conn, req)
            if not risk.allowed:
                view = await self._decline(conn, view, risk)
                return Admission(view=view, risk=risk)
            features = await gather_features(conn, inp.payment_id)
            token = await methods.provider_token(conn, inp.payment_method_id)
            settlement_currency = (await accounts.settings_of(conn)).settlement_currency
            if self._score_in_tx:
                fraud = await self._assess_fraud(req, features, conn)
        if not self._score_in_tx:
            fraud = await self._assess_fraud(req, features)
        return Admission(view=view, risk=risk, fraud=fraud, payment_method_token=token,
                         settlement_currency=settlement_currency if settlement_currency != inp.currency else None)

    @activity.defn
    async def record_payment(self, inp: PaymentInput) -> PaymentView:
        """The first step of runs started before `admit_payment` existed."""
        async with tenant_tx(self._pool, inp.tenant_id) as conn:
            return await store.insert_created(conn, inp, self._provider.name, inp.actor)

    @activity.defn
    async def assess_risk(self, req: RiskRequest) -> RiskResult:
        """The second step of runs started before `admit_payment` existed."""
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            return await self._assess(conn, req)

    @activity.defn
    async def score_fraud(self, req: RiskRequest) -> FraudResult | None:
        """The third step of runs started before `admit_payment` existed."""
        return await self._score(req)

    async def _assess(self, conn: asyncpg.Connection, req: RiskRequest) -> RiskResult:
        recent, typical = await store.customer_history(conn, req.customer_id, req.payment_id, req.currency,
                                                       float(self._limits.velocity_window_seconds))
        decision = assess(Money(req.amount_micros, req.currency), CustomerHistory(recent, typical), self._limits)
        await store.record_risk(conn, req.payment_id, decision.score, decision.reasons)
        return RiskResult(allowed=decision.allowed, score=decision.score, reasons=decision.reasons,
                          decline_code=decision.decline_code)

    async def _decline(self, conn: asyncpg.Connection, view: PaymentView, risk: RiskResult) -> PaymentView:
        command = TransitionCommand(Transition.MARK_FAILED, failure_code=risk.decline_code,
                                    failure_message=f"declined by risk rule {risk.decline_code}")
        correlation_id = payment_workflow_id(view.tenant_id, view.id)
        view, changed = await store.apply_transition(conn, view.id, command, {}, "workflow", correlation_id,
                                                     view.event_seq)
        if changed:
            _log_result(view, correlation_id)
        return view

    async def _score(self, req: RiskRequest) -> FraudResult | None:
        """Advisory: read the facts, ask the AIClient, store the score once. Three steps, so a slow remote model
        never holds a database connection."""
        try:
            async with tenant_tx(self._pool, req.tenant_id) as conn:
                features = await gather_features(conn, req.payment_id)
        except LookupError as exc:
            raise ApplicationError(str(exc), type=INVALID_REQUEST, non_retryable=True) from exc
        return await self._assess_fraud(req, features)

    async def _assess_fraud(self, req: RiskRequest, features: FraudFeatures,
                            conn: asyncpg.Connection | None = None) -> FraudResult | None:
        """Score, and store the score once (in `conn`'s transaction if given, else in one of its own)."""
        assessment = await self._ai.score_payment(features)
        if conn is not None:
            stored = await record_assessment(conn, req.payment_id, assessment)
        else:
            async with tenant_tx(self._pool, req.tenant_id) as own:
                stored = await record_assessment(own, req.payment_id, assessment)
        if stored is None:
            return None
        return FraudResult(score=stored.score, action=stored.action, reasons=[r.code for r in stored.top_reasons])

    @activity.defn
    async def transition(self, req: TransitionRequest) -> PaymentView:
        return await self.record([req])

    async def record(self, steps: list[TransitionRequest],
                     charges: Sequence[BalanceTransaction] = ()) -> PaymentView:
        """Transitions of one payment, in order, in one transaction: a provider's answer that drives two of them
        (processing, then succeeded at confirm) is never seen half applied, so a webhook arriving meanwhile finds
        the payment either not yet submitted or already settled, and a signal never races the run's end.
        `charges` are what the provider's answer said the charge settled, if it said."""
        first = steps[0]
        intent_id = next((s.provider_intent_id for s in steps if s.provider_intent_id), None)
        settled = None
        if any(_completes(s) for s in steps):
            settled = (store.Settled(list(charges), self._rates) if charges
                       else await self._settled(first, intent_id))
        applied: list[tuple[PaymentView, bool]] = []
        try:
            async with tenant_tx(self._pool, first.tenant_id) as conn:
                for req in steps:
                    columns: dict[str, object] = {}
                    if req.next_action is not None or req.clear_next_action:
                        columns["next_action"] = req.next_action
                    applied.append(await store.apply_transition(
                        conn, req.payment_id, req.command(), columns, req.actor, req.correlation_id,
                        req.expected_seq, settled=settled if _completes(req) else None))
        except InvalidTransition as exc:
            raise ApplicationError(str(exc), type=INVALID_TRANSITION, non_retryable=True) from exc
        for view, changed in applied:
            if changed and view.status.is_terminal:
                _log_result(view, first.correlation_id)
            if (changed and self._dunning is not None and view.invoice_id is not None
                    and view.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED)):
                # A subscription's invoice whose first charge failed was handed to dunning in that transaction:
                # its DunningWorkflow starts now (or, should this fail, by the renewal run's sweep of what is owed).
                await self._dunning.start_invoices(activity.client(), first.tenant_id, [view.invoice_id])
        return applied[-1][0]

    async def _settled(self, req: TransitionRequest, intent_id: str | None) -> store.Settled | None:
        """What the provider settled for the charge (its balance transaction: the amount in the settlement
        currency, the fee), asked once when the payment completes. Best effort: a provider that cannot say now
        never holds up the completion; the payment then completes without it (its fee and conversion unbooked,
        which the settlement reconciliation shows)."""
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            row = await store.settlement_context(conn, req.payment_id)
        intent_id = intent_id or (row["provider_intent_id"] if row else None)
        if row is None or intent_id is None or PaymentStatus(row["status"]).is_terminal:
            return None
        lookup = getattr(self._provider, "balance_transactions_of", None)
        if lookup is None:
            return None
        try:
            found = await asyncio.wait_for(lookup(intent_id), SETTLEMENT_LOOKUP_SECONDS)
        except Exception as exc:  # any failure here is "not known now", never a failed payment
            log.warning("billing.settlement.unavailable", payment_id=req.payment_id, intent_id=intent_id,
                        error=f"{type(exc).__name__}: {exc}")
            return None
        charges = [bt for bt in found if bt.reporting_category == "charge"]
        return store.Settled(charges, self._rates) if charges else None

    # --- dead letters ---------------------------------------------------------------------------------------
    @activity.defn
    async def record_dead_letter(self, letter: DeadLetter) -> None:
        async with tenant_tx(self._pool, letter.tenant_id) as conn:
            await dead_letters.insert(conn, letter)
        log.warning("billing.dead_letter", dlq_id=letter.dlq_id, step=letter.step, reason=letter.reason,
                    tenant_id=letter.tenant_id, correlation_id=letter.workflow_id)

    @activity.defn
    async def claim_dead_letter(self, req: ReplayRequest) -> bool:
        """open → replayed, once (status guard). Runs in the workflow, whose tenant the dead letter has."""
        return await self._resolve(req, "replayed")

    @activity.defn
    async def expire_dead_letter(self, req: ReplayRequest) -> bool:
        return await self._resolve(req, "expired")

    async def _resolve(self, req: ReplayRequest, status: str) -> bool:
        assert req.tenant_id is not None
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            return await dead_letters.resolve(conn, req.dlq_id, status, req.actor)

    # --- provider steps: retried with backoff, < 24 h so the provider's idempotency keys still hold ---------
    @activity.defn
    async def create_intent(self, req: IntentRequest) -> IntentOutcome:
        return (await self._create_intent(req))[0]

    async def _create_intent(self, req: IntentRequest) -> tuple[IntentOutcome, list[BalanceTransaction]]:
        """The outcome, and the charge's balance transaction when the provider answered with it."""
        started = time.perf_counter()
        existing = await self._provider.find_intent(req.payment_id, req.attempt)
        if existing is not None:  # a previous try got as far as the provider: never create a second intent
            return self._outcome(existing, req, started, replayed=True), _charges(existing)
        token = req.payment_method_token
        if token is None:  # runs recorded before the admission step carried it
            async with tenant_tx(self._pool, req.tenant_id) as conn:
                token = await methods.provider_token(conn, req.payment_method_id)
        if token is None:
            raise ApplicationError(f"unknown payment method {req.payment_method_id}", type=INVALID_REQUEST,
                                   non_retryable=True)
        money = Money(req.amount_micros, req.currency)
        # The API accepts only amounts with at most the currency's minor digits, so this never rounds;
        # HALF_EVEN is named because a conversion must always say how it would.
        minor = money.to_minor_units(RoundingMode.HALF_EVEN)
        create = CreateIntent(
            payment_id=req.payment_id, tenant_id=req.tenant_id, attempt=req.attempt, amount_minor=minor,
            currency=money.currency, payment_method=token, description=req.description,
            request_three_d_secure=req.request_three_d_secure, destination=req.destination_account_id,
            application_fee_minor=(Money(req.application_fee_micros or 0, money.currency)
                                   .to_minor_units(RoundingMode.HALF_EVEN) if req.destination_account_id else None),
            settlement_currency=req.settlement_currency,
        )
        try:
            intent = await self._provider.create_and_confirm(create)
        except CardDeclined as exc:
            self._log_rail(req, "declined", started, decline_code=exc.decline_code)
            return IntentOutcome(intent_id=exc.intent_id, status="declined", decline_code=exc.decline_code,
                                 failure_message=exc.message), []
        except ProviderUnavailable:
            self._log_rail(req, "provider_unavailable", started)
            raise  # retryable: the retry policy backs off
        except ValueError as exc:
            raise ApplicationError(str(exc), type=INVALID_REQUEST, non_retryable=True) from exc
        return self._outcome(intent, req, started, replayed=False), _charges(intent)

    @activity.defn
    async def submit_intent(self, req: SubmitRequest) -> Submission:
        """Create and confirm the intent and record what its answer means, in one step. Safe to re-run: the
        intent is found, not created again, and each transition sits at its own event slot."""
        charges: list[BalanceTransaction] = []

        async def create(intent: IntentRequest) -> IntentOutcome:
            outcome, settled = await self._create_intent(intent)
            charges.extend(settled)
            return outcome

        async def record(steps: list[TransitionRequest]) -> PaymentView:
            return await self.record(steps, charges)

        return await submit(req, create, record)

    @activity.defn
    async def get_intent(self, intent_id: str) -> IntentOutcome:
        return outcome_of(await self._provider.retrieve(intent_id))

    @activity.defn
    async def cancel_intent(self, req: IntentRequest) -> IntentOutcome | None:
        """Compensation: cancel whatever intent this payment attempt created, if any (idempotent)."""
        intent = await self._provider.find_intent(req.payment_id, req.attempt)
        if intent is None:
            return None
        if intent.status in (IntentStatus.SUCCEEDED, IntentStatus.CANCELED):
            return outcome_of(intent)
        return outcome_of(await self._provider.cancel(intent.id))

    def _outcome(self, intent: Intent, req: IntentRequest, started: float, *, replayed: bool) -> IntentOutcome:
        outcome = outcome_of(intent)
        self._log_rail(req, outcome.status, started, intent_id=intent.id, replayed=replayed,
                       decline_code=outcome.decline_code)
        return outcome

    def _log_rail(self, req: IntentRequest, status: str, started: float, **extra: object) -> None:
        info = activity.info()
        log.info(
            "billing.rail.execution", provider=self._provider.name, status=status, payment_id=req.payment_id,
            tenant_id=req.tenant_id, attempt=req.attempt, activity_attempt=info.attempt,
            correlation_id=info.workflow_id, duration_ms=round((time.perf_counter() - started) * 1000, 2),
            **extra,
        )


# A completion waits this long at most for the provider to say what it settled.
SETTLEMENT_LOOKUP_SECONDS = 3.0
_COMPLETING = (Transition.MARK_COMPLETED, Transition.CONFIRM_FROM_PENDING)


def _charges(intent: Intent) -> list[BalanceTransaction]:
    return [bt for bt in intent.balance_transactions if bt.reporting_category == "charge"]


def _completes(req: TransitionRequest) -> bool:
    return req.transition in _COMPLETING or (req.transition == Transition.RECONCILE
                                             and req.outcome == PaymentStatus.COMPLETED)


def outcome_of(intent: Intent) -> IntentOutcome:
    """The provider's intent in the saga's vocabulary: a failed attempt reads `declined`."""
    declined = intent.status == IntentStatus.REQUIRES_PAYMENT_METHOD and intent.decline_code
    return IntentOutcome(
        intent_id=intent.id, status="declined" if declined else intent.status.value,
        decline_code=intent.decline_code, failure_message=intent.failure_message,
        next_action_url=intent.next_action_url,
    )


def _log_result(view: PaymentView, correlation_id: str) -> None:
    log.info(
        "billing.execution.result", payment_id=view.id, tenant_id=view.tenant_id, status=view.status,
        provider=view.provider, failure_code=view.failure_code, correlation_id=correlation_id,
        duration_ms=int((view.updated_at - view.created_at).total_seconds() * 1000),
        amount_micros=view.amount_micros, currency=view.currency,
    )
