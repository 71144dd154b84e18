"""The `AIClient` port: who scores a payment for fraud, and the facts it is given.

Adapters
--------
* ``BuiltinScorer`` — the explainable additive model of ``domain.fraud`` (no network, microseconds). It is the
  default, and the fallback of every other adapter.
* A remote model (a hosted classifier, a vendor API) plugs in as any object with
  ``async def score_payment(self, features: FraudFeatures) -> FraudAssessment``. Such an adapter should:

  - send only the ``FraudFeatures`` (no PAN, no e-mail, no name: the features are already the minimum);
  - build its answer as a ``FraudAssessment`` with ``action=policy.action_for(score)`` so that *our* thresholds
    decide, and with reasons the model can explain (``FraudAssessment`` refuses any action but allow /
    require_3ds / review and any score outside 0..100 — a remote model cannot decline a payment);
  - set ``model`` to something traceable (``"vendorx-2026-11"``);
  - never be called bare: wrap it in ``TimeBoxedAIClient(adapter, timeout_s=…)``. The score is advisory, so a
    slow or broken model must cost neither availability nor latency: on timeout or on any error the wrapper
    answers with the built-in score (``model = "builtin-v2+fallback"``) and logs why.

``gather_features(conn, payment_id)`` reads the facts with plain SQL inside the caller's tenant transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Protocol, runtime_checkable

import asyncpg
import structlog

from domain.fraud import BUILTIN_MODEL, FraudAssessment, FraudFeatures, FraudPolicy, score

log = structlog.get_logger("paysaga.fraud")

FALLBACK_MODEL = f"{BUILTIN_MODEL}+fallback"


@runtime_checkable
class AIClient(Protocol):
    async def score_payment(self, features: FraudFeatures) -> FraudAssessment: ...


class BuiltinScorer:
    """``domain.fraud.score`` behind the port."""

    name = BUILTIN_MODEL
    # Pure arithmetic in this process: safe to ask inside a database transaction.
    in_process = True

    def __init__(self, policy: FraudPolicy | None = None) -> None:
        self.policy = policy or FraudPolicy()

    async def score_payment(self, features: FraudFeatures) -> FraudAssessment:
        return score(features, self.policy)


class TimeBoxedAIClient:
    """Ask ``inner`` for at most ``timeout_s`` seconds; on timeout, error or a malformed answer use ``fallback``.

    Cancellation of the caller (the activity being cancelled) is not swallowed: ``asyncio.CancelledError`` is not
    an ``Exception``.
    """

    def __init__(self, inner: AIClient, timeout_s: float, fallback: BuiltinScorer | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.inner = inner
        self.timeout_s = timeout_s
        self.fallback = fallback or BuiltinScorer()

    async def score_payment(self, features: FraudFeatures) -> FraudAssessment:
        try:
            result = await asyncio.wait_for(self.inner.score_payment(features), self.timeout_s)
            if not isinstance(result, FraudAssessment):
                raise TypeError(f"scorer returned {type(result).__name__}, not a FraudAssessment")
            return result
        except TimeoutError:
            reason = f"timed out after {self.timeout_s}s"
        except Exception as exc:  # advisory: any failure of the model means "use the built-in score"
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("fraud.scorer.fallback", scorer=type(self.inner).__name__, reason=reason)
        return replace(await self.fallback.score_payment(features), model=FALLBACK_MODEL)


# One statement, all relative to the payment's own created_at (not now()) so a retried activity computes the
# same features. Card country: `to_jsonb(pm)->>'country'` reads the column if the payment_methods table has it
# (migration 20261121000005) and yields NULL otherwise, so this query needs neither.
FEATURES_SQL = """
SELECT p.amount_micros, p.currency::text AS currency,
       hist.median_amount, hist.completed_count,
       vel.last_hour, vel.last_day, vel.failed_last_day,
       GREATEST(0, floor(extract(epoch FROM p.created_at - pm.created_at)))::bigint AS pm_age_seconds,
       pm_uses.n AS pm_previous_uses,
       NULLIF(btrim(to_jsonb(pm)->>'country'), '') AS card_country,
       NULLIF(btrim(c.country), '') AS customer_country
  FROM paysaga.payments p
  LEFT JOIN paysaga.payment_methods pm
         ON pm.tenant_id = p.tenant_id AND pm.payment_method_id = p.payment_method_id
  LEFT JOIN paysaga.customers c ON c.tenant_id = p.tenant_id AND c.customer_id = p.customer_id
  CROSS JOIN LATERAL (
        SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY q.amount_micros) AS median_amount,
               count(*) AS completed_count
          FROM paysaga.payments q
         WHERE q.tenant_id = p.tenant_id AND q.customer_id = p.customer_id AND q.currency = p.currency
           AND q.status = 'completed' AND q.payment_id <> p.payment_id AND q.created_at <= p.created_at) hist
  CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE q.created_at > p.created_at - interval '1 hour'
                                  AND q.status <> 'canceled') AS last_hour,
               count(*) FILTER (WHERE q.status <> 'canceled') AS last_day,
               count(*) FILTER (WHERE q.status = 'failed') AS failed_last_day
          FROM paysaga.payments q
         WHERE q.tenant_id = p.tenant_id AND q.customer_id = p.customer_id AND q.payment_id <> p.payment_id
           AND q.created_at > p.created_at - interval '1 day' AND q.created_at <= p.created_at) vel
  CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM paysaga.payments q
         WHERE q.tenant_id = p.tenant_id AND q.payment_method_id = p.payment_method_id
           AND q.payment_id <> p.payment_id AND q.status = 'completed'
           AND q.created_at <= p.created_at) pm_uses
 WHERE p.payment_id = $1
"""


async def gather_features(conn: asyncpg.Connection, payment_id: str) -> FraudFeatures:
    """The facts about ``payment_id``, read inside the caller's tenant transaction (RLS scopes every row).

    Raises ``LookupError`` if the payment is not visible to the connection's tenant.
    """
    row = await conn.fetchrow(FEATURES_SQL, payment_id)
    if row is None:
        raise LookupError(f"payment {payment_id} not found for the current tenant")
    return FraudFeatures(
        amount_micros=row["amount_micros"],
        currency=row["currency"],
        customer_median_amount_micros=row["median_amount"],
        customer_completed_count=row["completed_count"],
        payments_last_hour=row["last_hour"],
        payments_last_day=row["last_day"],
        payment_method_age_seconds=row["pm_age_seconds"],
        payment_method_previous_uses=row["pm_previous_uses"],
        card_country=row["card_country"],
        customer_country=row["customer_country"],
        prior_failed_last_day=row["failed_last_day"],
    )


async def record_assessment(
    conn: asyncpg.Connection, payment_id: str, assessment: FraudAssessment
) -> FraudAssessment | None:
    """Write the assessment onto the payment once, while it is ``created``; return what the row holds.

    Idempotent: a retried activity (or a re-run after a crash) keeps the first assessment written, so the score
    the saga acted on is the score the payment shows. ``None`` if the row has no assessment and is no longer
    ``created`` (nothing may be written any more), or is not visible to this tenant.
    """
    row = await conn.fetchrow(
        """WITH written AS (
               UPDATE paysaga.payments SET fraud_score = $2, fraud_reasons = $3, fraud_action = $4
                WHERE payment_id = $1 AND status = 'created' AND fraud_score IS NULL
            RETURNING fraud_score, fraud_reasons, fraud_action)
           SELECT fraud_score, fraud_reasons, fraud_action FROM written
            UNION ALL
           SELECT fraud_score, fraud_reasons, fraud_action FROM paysaga.payments
            WHERE payment_id = $1 AND fraud_score IS NOT NULL AND NOT EXISTS (SELECT 1 FROM written)""",
        payment_id, assessment.score, assessment.reasons_json(), assessment.action,
    )
    if row is None:
        return None
    if row["fraud_score"] == assessment.score and row["fraud_action"] == assessment.action:
        return assessment  # ours (or identical): keep the model name
    return FraudAssessment.from_record(row["fraud_score"], row["fraud_reasons"], row["fraud_action"],
                                       model="stored")
