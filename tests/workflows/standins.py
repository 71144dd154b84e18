"""Stand-ins for the child workflows an invoice starts, for workflow tests: a PaymentWorkflow whose outcome the
payment method decides, and a RefundWorkflow that only exists. Kept in a module of their own, with only what the
workflow sandbox allows at import."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.dunning import DunningInput
    from contracts.payments import PaymentInput, PaymentView
    from contracts.refunds import RefundInput, RefundView
    from domain.payment import PaymentStatus

DECLINES = {"pm_lost": "lost_card", "pm_expired": "expired_card"}


@workflow.defn(name="PaymentWorkflow")
class StandInPayment:
    """Completes when charged to pm_ok, fails otherwise with the card's decline (pm_lost: lost_card, else
    card_declined)."""

    @workflow.run
    async def run(self, inp: PaymentInput) -> PaymentView:
        ok = inp.payment_method_id == "pm_ok"
        now = workflow.now()
        return PaymentView(id=inp.payment_id, tenant_id=inp.tenant_id, customer_id=inp.customer_id,
                           payment_method_id=inp.payment_method_id, amount_micros=inp.amount_micros,
                           currency=inp.currency, status=PaymentStatus.COMPLETED if ok else PaymentStatus.FAILED,
                           failure_code=None if ok else DECLINES.get(inp.payment_method_id, "card_declined"),
                           provider="sandbox",
                           workflow_id=workflow.info().workflow_id, invoice_id=inp.invoice_id, created_at=now,
                           updated_at=now)


@workflow.defn(name="RefundWorkflow")
class StandInRefund:
    @workflow.run
    async def run(self, inp: RefundInput) -> RefundView | None:
        return None




@workflow.defn(name="DunningWorkflow")
class StandInDunning:
    """Records nothing and ends: the invoice tests only see that dunning was started."""

    @workflow.run
    async def run(self, inp: DunningInput) -> None:
        return None
