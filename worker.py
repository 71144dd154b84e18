"""The Temporal worker: registers the workflows and their activities on one task queue (the composition root of
the worker process; only the CLI's `worker` command imports it)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.ai_client import BuiltinScorer
from activities.disputes import DisputeActivities
from activities.dunning import DunningActivities
from activities.dunning_start import DunningStarter
from activities.fx import build_rates
from activities.invoices import InvoiceActivities
from activities.notifications import NotificationActivities, build_notifier
from activities.payments import PaymentActivities
from activities.payouts import PayoutActivities
from activities.providers import build_provider
from activities.reconciliation import ReconcileActivities
from activities.refunds import RefundActivities
from activities.renewals import RenewalActivities
from activities.risk_report import RiskReportActivities
from activities.settlement import SettlementActivities
from activities.storage import build_object_store
from activities.tax import build_tax_provider
from domain.fraud import FraudPolicy
from domain.risk import RiskLimits
from paysaga.db import create_pool
from paysaga.schedules import ensure_schedules
from paysaga.settings import Settings
from paysaga.temporal import connect_client
from services.timings import collection_timings
from workflows.dispute import DisputeWorkflow
from workflows.dunning import DunningWorkflow
from workflows.invoice import InvoiceWorkflow
from workflows.payment import PaymentWorkflow
from workflows.payout import PayoutRunsWorkflow, PayoutWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.refund import RefundWorkflow
from workflows.renewals import RenewalRunWorkflow
from workflows.risk_report import RiskBiasReportWorkflow
from workflows.settlement import SettlementReconciliationWorkflow

log = structlog.get_logger("paysaga.worker")

WORKFLOWS = [PaymentWorkflow, RefundWorkflow, ReconcileWorkflow, DisputeWorkflow, RiskBiasReportWorkflow,
             InvoiceWorkflow, DunningWorkflow, PayoutWorkflow, PayoutRunsWorkflow,
             SettlementReconciliationWorkflow, RenewalRunWorkflow]


def risk_limits(settings: Settings) -> RiskLimits:
    return RiskLimits(
        max_amount_micros=settings.risk_max_amount_micros,
        velocity_max_payments=settings.risk_velocity_max_payments,
        velocity_window_seconds=settings.risk_velocity_window_seconds,
    )


@asynccontextmanager
async def running_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A started worker with its pool and provider; everything is closed on exit."""
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.database_url, max_size=10)
        stack.push_async_callback(pool.close)
        provider = build_provider(settings, pool)
        if hasattr(provider, "aclose"):
            stack.push_async_callback(provider.aclose)
        scorer = BuiltinScorer(FraudPolicy(require_3ds_at=settings.fraud_require_3ds_at,
                                           review_at=settings.fraud_review_at))
        # What conversions are quoted against (the ECB reference rates, PAYSAGA_FX_RATES_FILE): read once, here,
        # in a thread, rather than by the first activity that converts, on the event loop.
        rates = build_rates(settings)
        try:
            await asyncio.to_thread(lambda: rates.last_published)  # type: ignore[attr-defined]
        except Exception as exc:  # a missing or broken rate file: conversions then book without a quote
            log.warning("worker.fx_rates_unavailable", error=str(exc))
        timings = collection_timings(settings)
        notifier = build_notifier(settings, pool)
        dunning = DunningActivities(pool)
        dunning_starter = DunningStarter(pool, settings.task_queue, timings,
                                         prepare=lambda inp: dunning.prepare(inp, notifier))
        acts = PaymentActivities(pool, provider, risk_limits(settings), scorer, rates, dunning=dunning_starter)
        refunds = RefundActivities(pool, provider, rates)
        reconcile = ReconcileActivities(pool, provider)
        reports = RiskReportActivities(pool)
        disputes = DisputeActivities(pool, provider, rates)
        payouts = PayoutActivities(pool, provider, rates)
        objects = build_object_store(settings)
        settlement = SettlementActivities(pool, provider, objects, settings)
        notifications = NotificationActivities(notifier)
        tax = build_tax_provider(settings, pool)
        stack.push_async_callback(tax.aclose)
        invoices = InvoiceActivities(pool, tax, objects, client)
        renewals = RenewalActivities(pool, provider, tax, notifier, task_queue=settings.task_queue, timings=timings,
                                     dunning=dunning_starter)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            workflow_runner=SandboxedWorkflowRunner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner(),
            activities=[acts.admit_payment, acts.record_payment, acts.assess_risk, acts.score_fraud, acts.transition,
                        acts.create_intent, acts.submit_intent,
                        acts.get_intent, acts.cancel_intent, acts.record_dead_letter, acts.claim_dead_letter,
                        acts.expire_dead_letter,
                        refunds.record_refund, refunds.submit_refund, refunds.get_refund,
                        refunds.attach_provider_refund, refunds.settle_refund,
                        reconcile.reconcile_stale_payments, reports.generate_bias_report,
                        disputes.record_dispute, disputes.apply_dispute_change, disputes.submit_dispute_evidence,
                        disputes.accept_dispute, disputes.get_dispute, notifications.send_notification,
                        invoices.finalize_invoice, invoices.commit_tax, invoices.store_invoice_pdf,
                        invoices.invoice_state, invoices.plan_collection, invoices.hand_over,
                        invoices.apply_invoice_action, invoices.reverse_tax, invoices.tell_dunning,
                        dunning.dunning_setup, dunning.advise_retry, dunning.record_dunning, dunning.finish_dunning,
                        payouts.open_payout_run, payouts.payout_run_state, payouts.change_payout_run,
                        payouts.list_payout_tenants, payouts.compute_payout_page, payouts.pay_out_batch,
                        payouts.apply_payout_news, payouts.poll_payouts, payouts.return_payout_funds,
                        settlement.settlement_tenants, settlement.reconcile_tenant,
                        renewals.plan_batches, renewals.due_summary, renewals.invoice_batch, renewals.charge_batch,
                        renewals.sweep],
            # Autoscaling pollers keep enough polls on the queue where new workflows arrive
            # (see PERFORMANCE-NOTES: the default leaves about one).
            workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
            activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        )
        async with worker:
            log.info("worker.started", task_queue=settings.task_queue, provider=provider.name)
            yield worker


async def run_worker(settings: Settings, *, metrics_port: int | None = 9464) -> None:
    client = await connect_client(settings, metrics_port=metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # graceful: the worker finishes or hands back its tasks
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(client, settings):
        if settings.schedules_enabled:
            await ensure_schedules(client, settings)
        await stop.wait()
    log.info("worker.stopped")
