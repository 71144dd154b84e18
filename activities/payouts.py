"""Activities of the payout run, and the arithmetic they share with the API (a connected account's balance).

A run works in batches (no workflow per account): one activity call computes the lines of up to `limit` accounts
(their ledger lines read in one query, domain/payouts.py deciding each line), one call pays up to `limit` lines.
Paying a line is, each step idempotent and resumable by the payout's row:

    the payout row (pending; one per payout key: account, period, currency, whatever run asks)
    → the transfer at the provider (idempotency key transfer_key) → its ledger entry `transfer.created` (and,
      when the platform's balance is in another currency, the conversion at the provider's rate), with the
      transfer's id, in one transaction
    → the payout on the connected account (idempotency key payout_key) → in_transit

News of a payout (a webhook, a poll) moves it on: paid posts `payout.paid`; failed or canceled posts
`payout.failed` (the transfer's entry reversed, or the returned funds after a paid payout) and is then returned:
the transfer reversed at the provider and its conversion booked back, so the funds are in the seller's balance
for the next run. A refusal by the provider (a transfer or payout it will not make) fails the payout the same way.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.fx.base import FxRates, RateUnavailable
from activities.providers.base import CreatePayout, CreateTransfer, ProviderUnavailable
from activities.stores import connected_accounts as accounts
from activities.stores import ledger, provider_settlements
from activities.stores import payouts as store
from contracts.errors import INVALID_REQUEST, INVALID_TRANSITION
from contracts.payouts import (
    ComputePage,
    NewsBatch,
    PageDone,
    PayBatch,
    PayBatchDone,
    PayoutNews,
    PayoutRunInput,
    PayoutRunsInput,
    ReturnFunds,
    RunChange,
    RunState,
    RunStep,
    Settled,
    payout_id_for,
    payout_run_workflow_id,
)
from domain.connect import ConnectedAccount, PayoutInterval
from domain.ledger import AccountCode
from domain.money import Money, RoundingMode
from domain.payout_runs import InvalidRunMove, PayoutStatus, RunStatus, check_run_move, from_provider, payout_moves
from domain.payouts import (
    BalanceItem,
    PayoutDecision,
    PayoutLine,
    PayoutPeriod,
    balance_items,
    payout_failed,
    payout_key,
    payout_lines,
    payout_paid,
    payout_period,
    report_row,
    transfer_created,
    transfer_key,
)
from paysaga.db import tenant_tx

log = structlog.get_logger("paysaga.payouts")

# Lines paid at once within one batch: provider calls overlap, the database sees a few connections.
PARALLEL_PAYOUTS = 8
RATE_UNAVAILABLE = "RateUnavailable"


# --- the arithmetic -------------------------------------------------------------------------------------------
async def balance_items_of(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> dict[str, list[BalanceItem]]:
    """Each account's balance items, from every entry on its seller_payable accounts (one query for all). A
    charge's funds are payable once both the provider made them available and the schedule's delay passed."""
    ids = [r["account_id"] for r in rows]
    if not ids:
        return {}
    payable = await conn.fetch(
        "SELECT account_id FROM paysaga.ledger_accounts WHERE code = $1 AND subject = ANY($2::text[])",
        AccountCode.SELLER_PAYABLE.value, ids)
    entries = await ledger.entries_touching(conn, [r["account_id"] for r in payable])
    charges = [e.source_id for e, _ in entries if e.event == "payment.completed"]
    available = {r["source_id"]: r["available_on"] for r in await conn.fetch(
        """SELECT source_id, max(available_on) AS available_on FROM paysaga.provider_balance_transactions
            WHERE source_type = 'payment' AND event = 'payment.completed' AND source_id = ANY($1::text[])
            GROUP BY source_id""", charges)}
    domain_accounts = {r["account_id"]: accounts.to_domain(r) for r in rows}
    out: dict[str, list[BalanceItem]] = defaultdict(list)
    for posted, at in entries:
        subjects = {line.account.subject for line in posted.lines
                    if line.account.code is AccountCode.SELLER_PAYABLE}
        for account_id in sorted(subjects & set(ids)):
            day = at.astimezone(UTC).date()
            if posted.event == "payment.completed":
                scheduled = domain_accounts[account_id].schedule.available_on(day)
                day = max(scheduled, available.get(posted.source_id, day))
            out[account_id].extend(balance_items(posted, account_id, day))
    return dict(out)


def period_for(account: ConnectedAccount, on: date) -> PayoutPeriod:
    """The period a run on `on` pays; an account paid manually is paid what is available on `on`."""
    if account.schedule.interval is PayoutInterval.MANUAL:
        return PayoutPeriod(on, on, account.schedule.delay_days)
    return payout_period(account.schedule, on)


def lines_for(row: asyncpg.Record, items: list[BalanceItem], on: date, rates: FxRates | None) -> list[PayoutLine]:
    """The account's line per currency for a run on `on`, with the FX column at the port's rate of that day."""
    account = accounts.to_domain(row)
    wanted = sorted({i.currency for i in items} - {account.settlement_currency})
    found = {c: rates.rate(c, account.settlement_currency, on) for c in wanted} if rates is not None else {}
    return payout_lines(account, items, period_for(account, on), found)


def line_json(line: PayoutLine) -> dict[str, str]:
    return report_row(line)


# --- the activities -------------------------------------------------------------------------------------------
class PayoutActivities:
    def __init__(self, pool: asyncpg.Pool, provider: Any, rates: FxRates | None = None) -> None:
        self._pool = pool
        self._provider = provider  # a PaymentProvider that is also a ConnectProvider (both adapters are)
        self._rates = rates

    # --- the run (local activities: short database steps) ---------------------------------------------------
    @activity.defn
    async def open_payout_run(self, inp: PayoutRunInput) -> RunState:
        wf_id = payout_run_workflow_id(inp.tenant_id, inp.run_id)
        async with tenant_tx(self._pool, inp.tenant_id) as conn:
            settings = await accounts.settings_of(conn)
            if inp.connected_account_id and await accounts.fetch(conn, inp.connected_account_id) is None:
                raise ApplicationError(f"no connected account {inp.connected_account_id}", type=INVALID_REQUEST,
                                       non_retryable=True)
            row = await store.insert_run(
                conn, tenant_id=inp.tenant_id, run_id=inp.run_id, as_of=inp.as_of, trigger=inp.trigger,
                requested_by=inp.requested_by, connected_account_id=inp.connected_account_id,
                approval_required=settings.payout_approval_required, workflow_id=wf_id,
                idempotency_key=inp.idempotency_key, correlation_id=wf_id)
            return await store.run_state(conn, row, settings.payout_approval_hours, settings.payout_reminder_hours)

    @activity.defn
    async def payout_run_state(self, step: RunStep) -> RunState:
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            row = await store.fetch_run(conn, step.run_id)
            if row is None:
                raise ApplicationError(f"no payout run {step.run_id}", type=INVALID_REQUEST, non_retryable=True)
            return await store.run_state(conn, row)

    @activity.defn
    async def change_payout_run(self, change: RunChange) -> RunState:
        """Move the run (at the seq the workflow saw: a retried step whose first try committed moves nothing)."""
        async with tenant_tx(self._pool, change.tenant_id) as conn:
            row = await store.fetch_run(conn, change.run_id, lock=True)
            if row is None:
                raise ApplicationError(f"no payout run {change.run_id}", type=INVALID_REQUEST, non_retryable=True)
            if row["event_seq"] != change.expected_seq:
                return await store.run_state(conn, row)
            old, new = RunStatus(row["status"]), RunStatus(change.status)
            try:
                check_run_move(old, new)
            except InvalidRunMove as exc:
                raise ApplicationError(str(exc), type=INVALID_TRANSITION, non_retryable=True) from exc
            columns: dict[str, Any] = {}
            if old is RunStatus.COMPUTING:
                columns["accounts"], columns["payable"] = await store.line_counts(conn, change.run_id)
            if new is RunStatus.AWAITING_APPROVAL:
                columns["approval_deadline"] = change.approval_deadline
            if old is RunStatus.AWAITING_APPROVAL:
                columns |= {"decided_by": change.actor, "decided_at": datetime.now(UTC),
                            "decision_reason": change.reason}
            updated = await store.change_run(conn, row, new.value, change.actor, change.correlation_id, **columns)
            return await store.run_state(conn, updated)

    @activity.defn
    async def list_payout_tenants(self, inp: PayoutRunsInput) -> list[str]:
        """The tenants a scheduled run is opened for, after the input's cursor."""
        return [t for t in await store.payout_tenants(self._pool) if inp.after_tenant is None or t > inp.after_tenant]

    # --- batches (regular activities) -----------------------------------------------------------------------
    @activity.defn
    async def compute_payout_page(self, page: ComputePage) -> PageDone:
        """The lines of up to `limit` accounts after `after`, written once."""
        async with tenant_tx(self._pool, page.tenant_id) as conn:
            rows = await accounts.page_by_id(conn, page.after, page.limit, page.connected_account_id)
            # Accounts paid manually are paid only by a run that names them.
            eligible = [r for r in rows if page.connected_account_id or r["payout_interval"] != "manual"]
            items = await balance_items_of(conn, eligible)
            lines: list[PayoutLine] = []
            try:
                for row in eligible:
                    lines += lines_for(row, items.get(row["account_id"], []), page.as_of, self._rates)
            except RateUnavailable as exc:  # keep the rate file current (README): retrying cannot help
                raise ApplicationError(str(exc), type=RATE_UNAVAILABLE, non_retryable=True) from exc
            await store.insert_lines(conn, page.tenant_id, page.run_id, lines)
        activity.heartbeat(rows[-1]["account_id"] if rows else None)
        return PageDone(next_after=rows[-1]["account_id"] if len(rows) == page.limit else None,
                        accounts=len(eligible), payable=sum(line.decision is PayoutDecision.PAY for line in lines))

    @activity.defn
    async def pay_out_batch(self, batch: PayBatch) -> PayBatchDone:
        """Pay up to `limit` lines after `after` (each: payout row, transfer, payout; see the module docstring)."""
        async with tenant_tx(self._pool, batch.tenant_id) as conn:
            lines = await store.lines_of(conn, batch.run_id, payable_only=True, after=batch.after, limit=batch.limit)
            settings = await accounts.settings_of(conn)
            by_id = {r["account_id"]: r for r in await accounts.fetch_many(conn, [x["account_id"] for x in lines])}
        gate = asyncio.Semaphore(PARALLEL_PAYOUTS)

        async def one(line: asyncpg.Record) -> str | None:
            async with gate:
                refused = await self._pay_line(batch, line, by_id[line["account_id"]], settings.settlement_currency)
                activity.heartbeat(f"{line['account_id']}/{line['currency']}")
                return refused

        results = await asyncio.gather(*(one(line) for line in lines))
        last = lines[-1] if lines else None
        activity.heartbeat(f"{last['account_id']}/{last['currency']}" if last else None)
        return PayBatchDone(next_after=f"{last['account_id']}/{last['currency']}" if last and
                            len(lines) == batch.limit else None, made=len(lines),
                            returned=[r for r in results if r is not None])

    async def _pay_line(self, batch: PayBatch, line: asyncpg.Record, account: asyncpg.Record,
                        platform_currency: str | None) -> str | None:
        """Returns the payout's id when the provider refused it (its funds go back), else None."""
        tenant, actor = batch.tenant_id, "workflow"
        period, amount = store.line_period(line), Money(line["net_micros"], line["currency"])
        pkey = payout_key(line["account_id"], period, amount.currency)
        tkey = transfer_key(line["account_id"], period, amount.currency)
        payout_id = payout_id_for(tenant, pkey)
        async with tenant_tx(self._pool, tenant) as conn:
            payout, _ = await store.insert_payout(
                conn, tenant_id=tenant, payout_id=payout_id, run_id=batch.run_id, account_id=line["account_id"],
                amount=amount, period=period, payout_key=pkey, transfer_key=tkey, provider=self._provider.name,
                workflow_id=payout_run_workflow_id(tenant, batch.run_id), actor=actor)
        if payout["run_id"] != batch.run_id or payout["status"] != PayoutStatus.PENDING:
            return None  # made by an earlier run of the same period, or already on its way
        destination = account["provider_account_id"]
        if destination is None:
            return await self._refuse(tenant, payout_id, "no_provider_account",
                                      "The connected account has no account at the provider yet.")
        minor = amount.to_minor_units(RoundingMode.DOWN)  # lines are whole minor units (rounded down when made)
        if payout["provider_transfer_id"] is None:
            try:
                transfer = await self._provider.create_transfer(CreateTransfer(
                    tenant_id=tenant, payout_id=payout_id, destination=destination, amount_minor=minor,
                    currency=amount.currency, idempotency_key=tkey, transfer_group=batch.run_id,
                    source_currency=platform_currency if platform_currency not in (None, amount.currency) else None))
            except ProviderUnavailable:
                raise
            except ValueError as exc:
                return await self._refuse(tenant, payout_id, "transfer_refused", str(exc))
            async with tenant_tx(self._pool, tenant) as conn:
                payout = await store.fetch_payout(conn, payout_id, lock=True)
                assert payout is not None
                if payout["provider_transfer_id"] is None:
                    arrived = (Money.from_minor_units(transfer.destination_amount_minor, transfer.destination_currency)
                               if transfer.destination_amount_minor is not None and transfer.destination_currency
                               else amount)
                    payout = await store.change_payout(
                        conn, payout, "payout.transfer_created", actor, batch.correlation_id,
                        {"provider_transfer_id": transfer.id}, provider_transfer_id=transfer.id,
                        destination_amount_micros=arrived.micros, destination_currency=arrived.currency)
                    await ledger.post(conn, tenant, transfer_created(line["account_id"], period, amount))
                    if transfer.balance_transaction is not None:
                        await provider_settlements.book(
                            conn, tenant, self._provider.name, source_type="payout", source_id=pkey,
                            event="transfer.created", bt=transfer.balance_transaction, presentment=-amount,
                            rates=self._rates)
        if payout["provider_payout_id"] is None:
            arrived = Money(payout["destination_amount_micros"] or amount.micros,
                            payout["destination_currency"] or amount.currency)
            try:
                made = await self._provider.create_payout(CreatePayout(
                    tenant_id=tenant, payout_id=payout_id, account=destination,
                    amount_minor=arrived.to_minor_units(RoundingMode.DOWN), currency=arrived.currency,
                    idempotency_key=pkey))
            except ProviderUnavailable:
                raise
            except ValueError as exc:
                return await self._refuse(tenant, payout_id, "payout_refused", str(exc))
            async with tenant_tx(self._pool, tenant) as conn:
                payout = await store.fetch_payout(conn, payout_id, lock=True)
                assert payout is not None
                if payout["provider_payout_id"] is None and payout["status"] == PayoutStatus.PENDING:
                    await store.change_payout(conn, payout, "payout.in_transit", actor, batch.correlation_id,
                                              {"provider_payout_id": made.id}, status=PayoutStatus.IN_TRANSIT.value,
                                              provider_payout_id=made.id)
        return None

    async def _refuse(self, tenant_id: str, payout_id: str, code: str, message: str) -> str:
        """The provider will not make it: the payout fails (its transfer, if one was made, is reversed later)."""
        async with tenant_tx(self._pool, tenant_id) as conn:
            payout = await store.fetch_payout(conn, payout_id, lock=True)
            assert payout is not None
            if payout["status"] == PayoutStatus.PENDING:
                await self._fail(conn, payout, PayoutStatus.FAILED, code, message, "workflow", payout["workflow_id"])
        log.warning("billing.payout.refused", payout_id=payout_id, tenant_id=tenant_id, failure_code=code,
                    message=message)
        return payout_id

    async def _fail(self, conn: asyncpg.Connection, payout: asyncpg.Record, status: PayoutStatus, code: str | None,
                    message: str | None, actor: str, correlation_id: str) -> asyncpg.Record:
        """failed | canceled, with `payout.failed` posted when a transfer had left the seller's balance; with
        nothing transferred there is nothing to give back."""
        transferred = payout["provider_transfer_id"] is not None
        updated = await store.change_payout(
            conn, payout, f"payout.{status.value}", actor, correlation_id,
            {"failure_code": code, "after_paid": payout["status"] == PayoutStatus.PAID}, status=status.value,
            failure_code=code, failure_message=message, failed_at=datetime.now(UTC),
            funds_returned=not transferred)
        if transferred:
            period = PayoutPeriod(payout["period_start"], payout["period_end"])
            await ledger.post(conn, str(payout["tenant_id"]), payout_failed(
                payout["account_id"], period, Money(payout["amount_micros"], payout["currency"]), payout["provider"],
                after_paid=payout["status"] == PayoutStatus.PAID))
        return updated

    # --- news of payouts --------------------------------------------------------------------------------------
    @activity.defn
    async def apply_payout_news(self, batch: NewsBatch) -> Settled:
        failed: list[dict[str, Any]] = []
        for news in batch.news:
            async with tenant_tx(self._pool, batch.tenant_id) as conn:
                outcome = await self._apply(conn, news, batch.correlation_id)
            if outcome is not None:
                failed.append(outcome)
        return await self._settled(batch.tenant_id, batch.run_id, failed)

    async def _apply(self, conn: asyncpg.Connection, news: PayoutNews, correlation_id: str
                     ) -> dict[str, Any] | None:
        """One payout moved by news (a webhook's or a poll's): returns what a failure notification needs."""
        payout = await store.fetch_payout(conn, news.payout_id, lock=True)
        target = from_provider(news.status)
        if payout is None or target is None:
            return None
        if target is PayoutStatus.PENDING:  # the provider's pending is our in transit: it has the payout
            target = PayoutStatus.IN_TRANSIT
        actor = f"provider:{news.event_id}"
        old = PayoutStatus(payout["status"])
        if old is PayoutStatus.PENDING and target is not PayoutStatus.IN_TRANSIT \
                and payout["provider_transfer_id"] is not None:
            # News overtook our own record of the payout's creation: it exists at the provider, so it is in transit.
            payout = await store.change_payout(conn, payout, "payout.in_transit", actor, correlation_id, {},
                                               status=PayoutStatus.IN_TRANSIT.value,
                                               provider_payout_id=payout["provider_payout_id"]
                                               or news.provider_payout_id)
            old = PayoutStatus.IN_TRANSIT
        if not payout_moves(old, target):
            return None  # stale or repeated news
        if target is PayoutStatus.IN_TRANSIT:
            await store.change_payout(conn, payout, "payout.in_transit", actor, correlation_id, {},
                                      status=target.value)
            return None
        if target is PayoutStatus.PAID:
            await store.change_payout(conn, payout, "payout.paid", actor, correlation_id, {}, status=target.value,
                                      paid_at=datetime.now(UTC))
            period = PayoutPeriod(payout["period_start"], payout["period_end"])
            await ledger.post(conn, str(payout["tenant_id"]), payout_paid(
                payout["account_id"], period, Money(payout["amount_micros"], payout["currency"]), payout["provider"]))
            return None
        updated = await self._fail(conn, payout, target, news.failure_code, news.failure_message, actor,
                                   correlation_id)
        return {"payout_id": updated["payout_id"], "account_id": updated["account_id"],
                "amount_micros": updated["amount_micros"], "currency": updated["currency"],
                "status": updated["status"], "failure_code": updated["failure_code"]}

    @activity.defn
    async def poll_payouts(self, step: RunStep) -> Settled:
        """Ask the provider about the run's payouts still in transit (the fallback when a webhook is lost)."""
        async with tenant_tx(self._pool, step.tenant_id) as conn:
            open_ = await store.payouts_of_run(conn, step.run_id, [PayoutStatus.IN_TRANSIT.value])
            owners = {r["account_id"]: r["provider_account_id"]
                      for r in await accounts.fetch_many(conn, sorted({p["account_id"] for p in open_}))}
        news: list[PayoutNews] = []
        for payout in open_:
            if payout["provider_payout_id"] is None or owners.get(payout["account_id"]) is None:
                continue
            found = await self._provider.retrieve_payout(owners[payout["account_id"]], payout["provider_payout_id"])
            news.append(PayoutNews(event_id=f"poll:{payout['payout_id']}:{found.status}", payout_id=payout["payout_id"],
                                   status=found.status, provider_payout_id=found.id, failure_code=found.failure_code,
                                   failure_message=found.failure_message))
            activity.heartbeat(payout["payout_id"])
        return await self.apply_payout_news(NewsBatch(tenant_id=step.tenant_id, run_id=step.run_id, news=news,
                                                      correlation_id=step.correlation_id))

    async def _settled(self, tenant_id: str, run_id: str, failed: list[dict[str, Any]]) -> Settled:
        async with tenant_tx(self._pool, tenant_id) as conn:
            row = await store.fetch_run(conn, run_id)
            assert row is not None
            return Settled(returned=await store.unreturned(conn, run_id), failed=failed,
                           state=await store.run_state(conn, row))

    @activity.defn
    async def return_payout_funds(self, req: ReturnFunds) -> RunState:
        """Failed and canceled payouts' transfers come back to the platform's balance, their conversion booked
        back at the provider's rate; the funds are in the seller's balance again (posted with the failure)."""
        for payout_id in req.payout_ids:
            async with tenant_tx(self._pool, req.tenant_id) as conn:
                payout = await store.fetch_payout(conn, payout_id)
            if payout is None or payout["funds_returned"] or payout["status"] not in ("failed", "canceled"):
                continue
            reversal = await self._provider.reverse_transfer(payout["provider_transfer_id"],
                                                             f"transfer-reversal:{payout['payout_key']}")
            activity.heartbeat(payout_id)
            async with tenant_tx(self._pool, req.tenant_id) as conn:
                payout = await store.fetch_payout(conn, payout_id, lock=True)
                assert payout is not None
                if payout["funds_returned"]:
                    continue
                amount = Money(payout["amount_micros"], payout["currency"])
                if reversal.balance_transaction is not None:
                    await provider_settlements.book(
                        conn, req.tenant_id, payout["provider"], source_type="payout", source_id=payout["payout_key"],
                        event="transfer.reversed", bt=reversal.balance_transaction, presentment=amount,
                        rates=self._rates)
                await store.change_payout(conn, payout, "payout.funds_returned", "workflow", req.correlation_id,
                                          {"reversal_of": payout["provider_transfer_id"]}, funds_returned=True)
        async with tenant_tx(self._pool, req.tenant_id) as conn:
            row = await store.fetch_run(conn, req.run_id)
            assert row is not None
            return await store.run_state(conn, row)

