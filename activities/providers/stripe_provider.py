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
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import stripe

from activities.providers.base import (
    CardDeclined,
    CardDetails,
    ChargeResult,
    CreateIntent,
    DisputeResult,
    Intent,
    IntentStatus,
    ProviderUnavailable,
    RefundResult,
)

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
    return Intent(
        id=pi["id"],
        status=IntentStatus(pi["status"]),
        amount_minor=pi["amount"],
        currency=str(pi["currency"]).upper(),
        metadata={str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
        decline_code=error.get("decline_code") or error.get("code"),
        failure_message=error.get("message"),
        next_action_url=url or None,
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
