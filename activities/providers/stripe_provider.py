"""The Stripe adapter: the official SDK's async API (`StripeClient.v1.*_async`) behind the PaymentProvider.

Error policy, because Temporal owns retries (so the SDK's own retries are off):
- `CardDeclined`: a card_error (402). A business outcome, never retried.
- `ProviderUnavailable` (retryable): network errors, 429 (rate limits, Stripe's idempotency `lock_timeout`),
  5xx and other unexpected statuses such as 409 "another request with this key is in progress",
  401/403 (a bad or revoked key is operator-fixable: payments in flight resume once the key is fixed).
- `ValueError` (non-retryable): 400/404 validation errors, and idempotency_error (the same key reused with
  different parameters: a bug in how we derive keys, retrying cannot help).

Parameters work on real Stripe and on localstripe (which rejects any parameter it does not know):
`payment_method_types=["card"]` rather than `automatic_payment_methods`, so that a server-side confirm
without `return_url` is valid on Stripe; `description` and `return_url` are sent only when set (localstripe
rejects both with a 400, i.e. ValueError).

Connect ("separate charges and transfers"): a split charge carries `transfer_group` (the payment id) and the
destination in its metadata, and lands whole in the platform's balance; the payout run then makes a `Transfer`
to the connected account and a `Payout` on it (`Stripe-Account` header), each with its idempotency key. Accounts
are `custom` accounts with the `transfers` capability, their payout method an external-account token. What the
platform settled for an object is its `BalanceTransaction` (expanded from the charge, refund, dispute or
transfer); `settlement_report` lists the platform's balance transactions of a window (`expand[]=data.source`,
keeping the tenant's: their source's `metadata.tenant_id`, a dispute through its PaymentIntent) and the payouts of
the given connected accounts, written as the itemized payout reconciliation report's columns.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn

import stripe

from activities.fx.base import published_rate
from activities.providers.base import (
    Balance,
    BalanceTransaction,
    CardDeclined,
    CardDetails,
    ChargeResult,
    CreateAccount,
    CreateIntent,
    CreatePayout,
    CreateTransfer,
    DisputeResult,
    Intent,
    IntentStatus,
    PayoutResult,
    ProviderAccount,
    ProviderUnavailable,
    RefundResult,
    TransferResult,
)
from activities.providers.settlement_report import write_settlement_report
from domain.money import Money, get_currency
from domain.settlement import SettlementLine

# Stripe refuses to cancel intents in these states; for `cancel()` they are an answer, not an error.
_NOT_CANCELABLE = {IntentStatus.CANCELED, IntentStatus.SUCCEEDED, IntentStatus.PROCESSING}
# Bound on the list fallback of find_intent: 10 pages of 100.
_LIST_PAGES = 10
# Stripe has no batch endpoint: a batch is this many requests in flight at once (the caller paces the batches).
_BATCH_CONCURRENCY = 8


def _translate(err: stripe.StripeError) -> NoReturn:
    """Re-raise an SDK error as the port's exception taxonomy (see module docstring)."""
    if isinstance(err, stripe.IdempotencyError):
        raise ValueError(f"stripe idempotency conflict (bug: key reused with other params): {err}") from err
    if isinstance(err, stripe.InvalidRequestError):
        raise ValueError(f"stripe rejected the request: {err}") from err
    if isinstance(
        err,
        stripe.RateLimitError
        | stripe.APIConnectionError
        | stripe.APIError
        | stripe.AuthenticationError
        | stripe.PermissionError,
    ):
        raise ProviderUnavailable(f"stripe unavailable ({type(err).__name__}): {err}") from err
    raise err


def _to_intent(pi: dict[str, Any]) -> Intent:
    error = pi.get("last_payment_error") or {}
    next_action = pi.get("next_action") or {}
    # redirect_to_url when we sent a return_url; otherwise Stripe asks for Stripe.js (use_stripe_sdk), whose
    # `stripe_js` URL is set for 3DS1-style redirects and empty on localstripe. REQUIRES_ACTION is the signal.
    redirect = next_action.get("redirect_to_url") or {}
    sdk = next_action.get("use_stripe_sdk") or {}
    url = redirect.get("url") or sdk.get("stripe_js")
    charge = pi.get("latest_charge")
    settled = charge.get("balance_transaction") if isinstance(charge, dict) else None
    return Intent(
        id=pi["id"],
        status=IntentStatus(pi["status"]),
        amount_minor=pi["amount"],
        currency=str(pi["currency"]).upper(),
        metadata={str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
        decline_code=error.get("decline_code") or error.get("code"),
        failure_message=error.get("message"),
        next_action_url=url or None,
        balance_transactions=[_to_balance_transaction(settled)] if isinstance(settled, dict) else [],
    )


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None = None, *, timeout_s: float = 30.0) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout_s)  # async-only httpx client; no blocking calls
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=0,  # Temporal's retry policy is the only one
        )
        self._pi = self._client.v1.payment_intents

    async def aclose(self) -> None:
        await self._http.close_async()

    async def create_and_confirm(self, req: CreateIntent) -> Intent:
        params: dict[str, Any] = {
            "amount": req.amount_minor,
            "currency": req.currency.lower(),
            "payment_method": req.payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": req.metadata,
            # What the charge settled comes with the answer: one request per payment instead of two.
            "expand": ["latest_charge.balance_transaction"],
        }
        if req.description is not None:
            params["description"] = req.description
        if req.return_url is not None:
            params["return_url"] = req.return_url
        if req.off_session:  # a renewal: the customer is not there to authenticate
            params["off_session"] = True
        if req.request_three_d_secure:  # the advisory fraud score asked for a challenge
            params["payment_method_options"] = {"card": {"request_three_d_secure": "any"}}
        try:
            pi = await self._pi.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": req.idempotency_key},
            )
        except stripe.CardError as err:
            raise await self._declined(err) from err
        except stripe.StripeError as err:
            _translate(err)
        return _to_intent(pi.to_dict())

    async def create_and_confirm_many(self, reqs: list[CreateIntent]) -> list[ChargeResult]:
        gate = asyncio.Semaphore(_BATCH_CONCURRENCY)

        async def one(req: CreateIntent) -> ChargeResult:
            async with gate:
                try:
                    intent = await self.create_and_confirm(req)
                except CardDeclined as exc:
                    return ChargeResult(payment_id=req.payment_id, attempt=req.attempt, decline_code=exc.decline_code,
                                        failure_message=exc.message)
                except ProviderUnavailable as exc:
                    return ChargeResult(payment_id=req.payment_id, attempt=req.attempt, error=str(exc),
                                        throttled="RateLimitError" in str(exc))
                except ValueError as exc:
                    return ChargeResult(payment_id=req.payment_id, attempt=req.attempt,
                                        decline_code="invalid_request", failure_message=str(exc))
            return ChargeResult(payment_id=req.payment_id, attempt=req.attempt, intent=intent)

        return list(await asyncio.gather(*(one(r) for r in reqs)))

    async def retrieve_many(self, intent_ids: list[str]) -> list[Intent]:
        gate = asyncio.Semaphore(_BATCH_CONCURRENCY)

        async def one(intent_id: str) -> Intent:
            async with gate:
                return await self.retrieve(intent_id)

        return list(await asyncio.gather(*(one(i) for i in intent_ids)))

    async def _declined(self, err: stripe.CardError) -> CardDeclined:
        body: dict[str, Any] = (err.json_body or {}).get("error") or {}
        intent_id = (body.get("payment_intent") or {}).get("id")
        if intent_id is None and body.get("charge"):
            # Stripe embeds the PaymentIntent in the error; localstripe only names the charge. The saga needs
            # the intent id to reconcile, so ask the charge (best effort: the decline is the answer anyway).
            try:
                charge = await self._client.v1.charges.retrieve_async(body["charge"])
                intent_id = charge.to_dict().get("payment_intent")
            except stripe.StripeError:
                pass
        return CardDeclined(
            intent_id=intent_id,
            decline_code=body.get("decline_code") or err.code or "card_declined",
            message=body.get("message") or str(err),
        )

    async def find_intent(self, payment_id: str, attempt: int) -> Intent | None:
        def ours(pi: dict[str, Any]) -> bool:
            md = pi.get("metadata") or {}
            return md.get("payment_id") == payment_id and md.get("attempt") == str(attempt)

        quoted = payment_id.replace("\\", "\\\\").replace("'", "\\'")
        try:
            # Search is eventually consistent (seconds; up to an hour in incidents): a miss right after a
            # create is possible, which is why creates also carry an idempotency key.
            found = await self._pi.search_async(
                params={"query": f"metadata['payment_id']:'{quoted}'", "limit": 100}
            )
            candidates = [pi.to_dict() for pi in found.data]
        except stripe.InvalidRequestError:
            # No search here (localstripe answers 404; Stripe in India has no search): scan the list.
            candidates = await self._scan_list()
        except stripe.StripeError as err:
            _translate(err)
        match = next((pi for pi in candidates if ours(pi)), None)
        return _to_intent(match) if match else None

    async def _scan_list(self) -> list[dict[str, Any]]:
        # Stripe lists newest first; localstripe oldest first. Bounded either way.
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        try:
            for _ in range(_LIST_PAGES):
                page = await self._pi.list_async(params=params)  # type: ignore[arg-type]
                out.extend(pi.to_dict() for pi in page.data)
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1].id
        except stripe.StripeError as err:
            _translate(err)
        return out

    async def retrieve(self, intent_id: str) -> Intent:
        try:
            return _to_intent((await self._pi.retrieve_async(intent_id)).to_dict())
        except stripe.StripeError as err:
            _translate(err)

    async def cancel(self, intent_id: str) -> Intent:
        try:
            return _to_intent((await self._pi.cancel_async(intent_id)).to_dict())
        except stripe.InvalidRequestError as err:
            # Already canceled / succeeded / processing: Stripe says "unexpected state". Idempotent: report
            # the intent as it is. Anything else (e.g. unknown id) is a real error.
            current = await self.retrieve(intent_id)
            if current.status in _NOT_CANCELABLE:
                return current
            _translate(err)
        except stripe.StripeError as err:
            _translate(err)

    async def refund(
        self, intent_id: str, amount_minor: int | None, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> RefundResult:
        params: dict[str, Any] = {"payment_intent": intent_id}
        if amount_minor is not None:
            params["amount"] = amount_minor
        if metadata:
            params["metadata"] = metadata
        try:
            refund = await self._client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as err:
            _translate(err)
        return _to_refund(refund)

    async def retrieve_refund(self, refund_id: str) -> RefundResult:
        try:
            refund = await self._client.v1.refunds.retrieve_async(refund_id)
        except stripe.StripeError as err:
            _translate(err)
        return _to_refund(refund)

    async def describe_payment_method(self, token: str) -> CardDetails:
        """`pm_`/`card_`/`src_` ids through the PaymentMethods API (which also answers for legacy cards and
        sources), `tok_` tokens through the Tokens API; both carry the same `card` hash."""
        try:
            if token.startswith("tok_"):
                card = (await self._client.v1.tokens.retrieve_async(token)).to_dict().get("card") or {}
            else:
                pm = (await self._client.v1.payment_methods.retrieve_async(token)).to_dict()
                card = pm.get("card") or {}
        except stripe.StripeError as err:
            _translate(err)
        if not card:
            raise ValueError(f"stripe payment method {token} is not a card")
        brand = card.get("brand")
        return CardDetails(
            brand=str(brand).lower() if brand else None,  # PaymentMethods say "visa", Tokens' cards "Visa"
            last4=card.get("last4"),
            exp_month=card.get("exp_month"),
            exp_year=card.get("exp_year"),
            fingerprint=card.get("fingerprint"),
            country=card.get("country"),
        )


    # --- disputes ---------------------------------------------------------------------------------------------
    async def submit_dispute_evidence(
        self, dispute_id: str, evidence: dict[str, str], submit: bool, idempotency_key: str | None = None
    ) -> DisputeResult:
        try:
            dispute = await self._client.v1.disputes.update_async(
                dispute_id, params={"evidence": evidence, "submit": submit},  # type: ignore[arg-type, typeddict-item]
                options={"idempotency_key": idempotency_key} if idempotency_key else {},
            )
        except stripe.StripeError as err:
            _translate(err)
        return _to_dispute(dispute.to_dict())

    async def accept_dispute(self, dispute_id: str) -> DisputeResult:
        try:
            dispute = await self._client.v1.disputes.close_async(dispute_id)
        except stripe.InvalidRequestError as err:
            current = await self.retrieve_dispute(dispute_id)  # closing a closed (lost) dispute: the answer
            if current.status == "lost":
                return current
            _translate(err)
        except stripe.StripeError as err:
            _translate(err)
        return _to_dispute(dispute.to_dict())

    async def retrieve_dispute(self, dispute_id: str) -> DisputeResult:
        try:
            return _to_dispute((await self._client.v1.disputes.retrieve_async(dispute_id)).to_dict())
        except stripe.StripeError as err:
            _translate(err)

    # --- Connect --------------------------------------------------------------------------------------------
    async def create_account(self, req: CreateAccount) -> ProviderAccount:
        params: dict[str, Any] = {"type": "custom", "country": req.country.upper(),
                                  "default_currency": req.default_currency.lower(),
                                  "capabilities": {"transfers": {"requested": True}}, "metadata": req.metadata}
        if req.email:
            params["email"] = req.email
        try:
            account = await self._client.v1.accounts.create_async(
                params=params, options={"idempotency_key": req.idempotency_key})  # type: ignore[arg-type]
        except stripe.StripeError as err:
            _translate(err)
        return _to_account(account.to_dict())

    async def update_account(self, account_id: str, *, external_account: str | None = None) -> ProviderAccount:
        params: dict[str, Any] = {}
        if external_account is not None:
            params["external_account"] = external_account
        try:
            account = await self._client.v1.accounts.update_async(account_id, params=params)  # type: ignore[arg-type]
        except stripe.StripeError as err:
            _translate(err)
        return _to_account(account.to_dict())

    async def retrieve_account(self, account_id: str) -> ProviderAccount:
        try:
            return _to_account((await self._client.v1.accounts.retrieve_async(account_id)).to_dict())
        except stripe.StripeError as err:
            _translate(err)

    async def create_transfer(self, req: CreateTransfer) -> TransferResult:
        params: dict[str, Any] = {"amount": req.amount_minor, "currency": req.currency.lower(),
                                  "destination": req.destination, "metadata": req.metadata,
                                  "expand": ["balance_transaction"]}
        if req.transfer_group:
            params["transfer_group"] = req.transfer_group
        try:
            transfer = (await self._client.v1.transfers.create_async(
                params=params, options={"idempotency_key": req.idempotency_key})).to_dict()  # type: ignore[arg-type]
            arrived = await self._destination_payment(transfer)
        except stripe.StripeError as err:
            _translate(err)
        return _to_transfer(transfer, arrived)

    async def _destination_payment(self, transfer: dict[str, Any]) -> dict[str, Any] | None:
        """What reached the connected account: the balance transaction of the transfer's destination payment (on
        that account, in its currency)."""
        payment = transfer.get("destination_payment")
        if not isinstance(payment, str):
            return None
        charge = await self._client.v1.charges.retrieve_async(
            payment, params={"expand": ["balance_transaction"]},
            options={"stripe_account": transfer["destination"]})
        bt = charge.to_dict().get("balance_transaction")
        return bt if isinstance(bt, dict) else None

    async def reverse_transfer(self, transfer_id: str, idempotency_key: str) -> TransferResult:
        try:
            reversal = (await self._client.v1.transfers.reversals.create_async(
                transfer_id, params={"expand": ["balance_transaction"]},
                options={"idempotency_key": idempotency_key})).to_dict()
            transfer = (await self._client.v1.transfers.retrieve_async(transfer_id)).to_dict()
        except stripe.InvalidRequestError as err:
            transfer = await self._retrieve_transfer(transfer_id)
            if transfer.get("reversed"):  # already fully reversed: reversing twice is reversing once
                return _to_transfer(transfer, None)
            _translate(err)
        except stripe.StripeError as err:
            _translate(err)
        return _to_transfer({**transfer, "balance_transaction": reversal.get("balance_transaction")}, None)

    async def _retrieve_transfer(self, transfer_id: str) -> dict[str, Any]:
        try:
            return (await self._client.v1.transfers.retrieve_async(transfer_id)).to_dict()
        except stripe.StripeError as err:
            _translate(err)

    async def create_payout(self, req: CreatePayout) -> PayoutResult:
        try:
            payout = await self._client.v1.payouts.create_async(
                params={"amount": req.amount_minor, "currency": req.currency.lower(), "metadata": req.metadata},
                options={"idempotency_key": req.idempotency_key, "stripe_account": req.account})
        except stripe.StripeError as err:
            _translate(err)
        return _to_payout(payout.to_dict(), req.account)

    async def retrieve_payout(self, account: str, payout_id: str) -> PayoutResult:
        try:
            payout = await self._client.v1.payouts.retrieve_async(payout_id, options={"stripe_account": account})
        except stripe.StripeError as err:
            _translate(err)
        return _to_payout(payout.to_dict(), account)

    async def retrieve_balance(self, account: str | None = None) -> Balance:
        try:
            found = await self._client.v1.balance.retrieve_async(
                options={"stripe_account": account} if account else None)
        except stripe.StripeError as err:
            _translate(err)
        body = found.to_dict()

        def per_currency(key: str) -> dict[str, int]:
            return {str(x["currency"]).upper(): int(x["amount"]) for x in body.get(key) or []}

        return Balance(available=per_currency("available"), pending=per_currency("pending"))

    async def balance_transactions_of(self, source_id: str) -> list[BalanceTransaction]:
        v1 = self._client.v1
        expand = {"expand": ["balance_transaction"]}
        try:
            if source_id.startswith("pi_"):
                pi = (await v1.payment_intents.retrieve_async(
                    source_id, params={"expand": ["latest_charge.balance_transaction"]})).to_dict()
                charge = pi.get("latest_charge")
                found = [charge.get("balance_transaction")] if isinstance(charge, dict) else []
            elif source_id.startswith(("re_", "pyr_")):
                found = [(await v1.refunds.retrieve_async(source_id, params=expand)).to_dict()  # type: ignore[arg-type]
                         .get("balance_transaction")]
            elif source_id.startswith(("du_", "dp_")):
                found = list((await v1.disputes.retrieve_async(source_id)).to_dict().get("balance_transactions") or [])
            elif source_id.startswith("tr_"):
                found = [(await v1.transfers.retrieve_async(source_id, params=expand)).to_dict()  # type: ignore[arg-type]
                         .get("balance_transaction")]
            else:
                page = await v1.balance_transactions.list_async(params={"source": source_id, "limit": 100})
                found = [bt.to_dict() for bt in page.data]
        except stripe.StripeError as err:
            _translate(err)
        return [_to_balance_transaction(bt) for bt in found if isinstance(bt, dict)]

    async def settlement_report(self, tenant_id: str, start: datetime, end: datetime,
                                connected_accounts: Sequence[str] = ()) -> str:
        window = {"gte": int(start.timestamp()), "lt": int(end.timestamp())}
        lines: list[SettlementLine] = []
        owners: dict[str, bool] = {}
        for bt in await self._all_balance_transactions({"created": window, "expand": ["data.source"]}, None):
            source = bt.get("source")
            if isinstance(source, dict) and await self._belongs_to(source, tenant_id, owners):
                lines.append(_settlement_line(bt, source, None))
        for account in connected_accounts:
            for kind in ("payout", "payout_failure"):
                for bt in await self._all_balance_transactions({"created": window, "type": kind}, account):
                    lines.append(_settlement_line(bt, None, account))
        out = io.StringIO(newline="")
        write_settlement_report(sorted(lines, key=lambda line: line.created), out)
        return out.getvalue()

    async def _all_balance_transactions(self, params: dict[str, Any], account: str | None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params = {**params, "limit": 100}
        try:
            while True:
                page = await self._client.v1.balance_transactions.list_async(
                    params=params, options={"stripe_account": account} if account else None)  # type: ignore[arg-type]
                found.extend(bt.to_dict() for bt in page.data)
                if not page.has_more or not page.data:
                    return found
                params["starting_after"] = page.data[-1].id
        except stripe.StripeError as err:
            _translate(err)

    async def _belongs_to(self, source: dict[str, Any], tenant_id: str, owners: dict[str, bool]) -> bool:
        """The tenant's money: the source carries our metadata, or (a dispute) its PaymentIntent does."""
        meta = source.get("metadata") or {}
        if meta.get("tenant_id"):
            return bool(meta.get("tenant_id") == tenant_id)
        intent = source.get("payment_intent")
        if source.get("object") != "dispute" or not isinstance(intent, str):
            return False
        if intent not in owners:
            try:
                pi = (await self._pi.retrieve_async(intent)).to_dict()
            except stripe.StripeError as err:
                _translate(err)
            owners[intent] = (pi.get("metadata") or {}).get("tenant_id") == tenant_id
        return owners[intent]


def _to_account(a: dict[str, Any]) -> ProviderAccount:
    requirements = a.get("requirements") or {}
    externals = ((a.get("external_accounts") or {}).get("data")) or []
    return ProviderAccount(
        id=a["id"], country=a.get("country"),
        default_currency=str(a["default_currency"]).upper() if a.get("default_currency") else None,
        charges_enabled=bool(a.get("charges_enabled")), payouts_enabled=bool(a.get("payouts_enabled")),
        details_submitted=bool(a.get("details_submitted")), disabled_reason=requirements.get("disabled_reason"),
        external_account_last4=externals[0].get("last4") if externals else None)


def _rate_text(value: Any) -> str | None:
    """Stripe's exchange_rate (a JSON number) as the decimal text it was published as."""
    if value is None:
        return None
    rate = published_rate(value)  # a published decimal: its denominator is a power of ten, so this is exact
    return format(Decimal(rate.numerator) / Decimal(rate.denominator), "f")


def _to_balance_transaction(bt: dict[str, Any], account: str | None = None) -> BalanceTransaction:
    source = bt.get("source")
    source_id = source.get("id") if isinstance(source, dict) else source
    return BalanceTransaction(
        id=bt["id"], type=str(bt.get("type")), reporting_category=str(bt.get("reporting_category") or bt.get("type")),
        source_id=str(source_id or ""), currency=str(bt["currency"]).upper(), amount_minor=int(bt["amount"]),
        fee_minor=int(bt.get("fee") or 0), net_minor=int(bt["net"]), exchange_rate=_rate_text(bt.get("exchange_rate")),
        created=int(bt["created"]), available_on=int(bt.get("available_on") or bt["created"]), account=account)


def _to_transfer(t: dict[str, Any], arrived: dict[str, Any] | None) -> TransferResult:
    bt = t.get("balance_transaction")
    return TransferResult(
        id=t["id"], amount_minor=int(t["amount"]), currency=str(t["currency"]).upper(), destination=t["destination"],
        destination_amount_minor=int(arrived["amount"]) if arrived else None,
        destination_currency=str(arrived["currency"]).upper() if arrived else None,
        reversed=bool(t.get("reversed")),
        balance_transaction=_to_balance_transaction(bt) if isinstance(bt, dict) else None)


def _to_payout(p: dict[str, Any], account: str) -> PayoutResult:
    return PayoutResult(id=p["id"], account=account, amount_minor=int(p["amount"]),
                        currency=str(p["currency"]).upper(), status=str(p["status"]),
                        failure_code=p.get("failure_code"), failure_message=p.get("failure_message"),
                        arrival_date=p.get("arrival_date"))


# Stripe's reporting_category of a balance transaction, by its type, when a listing leaves it out.
_CATEGORIES = {"payment": "charge", "payment_refund": "refund", "payout_failure": "payout_reversal",
               "transfer_cancel": "transfer_reversal", "transfer_refund": "transfer_reversal"}


def _settlement_line(bt: dict[str, Any], source: dict[str, Any] | None, account: str | None) -> SettlementLine:
    """A balance transaction as a row of the itemized payout reconciliation report."""
    currency = get_currency(str(bt["currency"])).code
    category = str(bt.get("reporting_category") or _CATEGORIES.get(str(bt.get("type")), bt.get("type")))
    facing = None
    if source is not None and source.get("amount") is not None and source.get("currency"):
        sign = 1 if int(bt["amount"]) >= 0 else -1
        facing = Money.from_minor_units(sign * abs(int(source["amount"])), get_currency(str(source["currency"])).code)
    source_id = source.get("id") if source is not None else bt.get("source")
    charge = source.get("charge") if source is not None else None
    intent = source.get("payment_intent") if source is not None else None
    if source is not None and source.get("object") == "charge":
        charge = source.get("id")
    return SettlementLine(
        balance_transaction_id=bt["id"], created=datetime.fromtimestamp(int(bt["created"]), UTC),
        available_on=datetime.fromtimestamp(int(bt.get("available_on") or bt["created"]), UTC).date(),
        gross=Money.from_minor_units(int(bt["amount"]), currency), fee=Money.from_minor_units(int(bt["fee"]), currency),
        net=Money.from_minor_units(int(bt["net"]), currency), reporting_category=category,
        source_id=str(source_id or bt["id"]), customer_facing_amount=facing,
        description=str(bt.get("description") or ""), charge_id=charge if isinstance(charge, str) else None,
        payment_intent_id=intent if isinstance(intent, str) else None, connected_account_id=account)


def _to_refund(refund: Any) -> RefundResult:
    return RefundResult(id=refund.id, status=str(refund.status), amount_minor=refund.amount,
                        failure_reason=getattr(refund, "failure_reason", None))


def _to_dispute(d: dict[str, Any]) -> DisputeResult:
    intent = d.get("payment_intent")
    details = d.get("evidence_details") or {}
    return DisputeResult(
        id=d["id"], status=str(d["status"]), amount_minor=d["amount"], currency=str(d["currency"]).upper(),
        reason=d.get("reason"), payment_intent=intent if isinstance(intent, str) else (intent or {}).get("id"),
        evidence_due_by=details.get("due_by"),
    )
