"""Connected accounts: create one (ours and the provider's), read, list, change its onboarding, settlement
currency, payout schedule, reserve and payout method (a provider token, never bank details); its balance as the
next payout would see it. And the tenant's own settings: its settlement currency and payout approval."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import structlog

from activities import payouts as payout_math
from activities.fx import RateUnavailable, build_rates
from activities.providers.base import CreateAccount, ProviderUnavailable
from activities.stores import connected_accounts as store
from contracts.auth import Principal
from contracts.connected_accounts import (
    WEEKDAYS,
    ConnectedAccountCreate,
    ConnectedAccountUpdate,
    PayoutScheduleBody,
    ReserveBody,
    TenantSettings,
    TenantSettingsBody,
)
from domain.connect import (
    ConnectedAccount,
    ConnectError,
    OnboardingStatus,
    PayoutInterval,
    PayoutMethod,
    PayoutSchedule,
    ReservePolicy,
    Weekday,
)
from domain.money import Money, MoneyError, UnknownCurrency, get_currency
from paysaga.db import tenant_tx
from services import audit, idempotency
from services.context import AppContext
from services.errors import BadRequest, Unavailable, Unprocessable, not_found
from services.ids import new_id

log = structlog.get_logger("paysaga.connect")
ACCOUNTS_PATH = "/v1/connected_accounts"


def _money(row: Any, column: str) -> str | None:
    value = row[column]
    return Money(value, row["settlement_currency"]).to_decimal_string() if value is not None else None


def account_json(row: Any) -> dict[str, Any]:
    account = store.to_domain(row)
    method = ({"token": row["payout_method_token"], "last4": row["payout_method_last4"]}
              if row["payout_method_token"] else None)
    return {
        "id": row["account_id"], "object": "connected_account", "country": row["country"],
        "settlement_currency": row["settlement_currency"], "display_name": row["display_name"],
        "email": row["email"], "onboarding_status": row["onboarding_status"],
        "payouts_enabled": account.payouts_enabled, "provider": row["provider"],
        "provider_account_id": row["provider_account_id"],
        "payout_schedule": {"interval": row["payout_interval"], "weekday": WEEKDAYS[row["payout_weekday"]],
                            "delay_days": row["payout_delay_days"], "minimum": _money(row, "payout_minimum_micros")},
        "reserve": {"basis_points": row["reserve_basis_points"], "hold_days": row["reserve_hold_days"],
                    "fixed": _money(row, "reserve_fixed_micros")},
        "payout_method": method, "metadata": row["metadata"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }


def _refused(code: str, detail: str) -> Unprocessable:
    return Unprocessable(code, "Connected account refused", detail)


def _currency(code: str) -> str:
    try:
        return get_currency(code).code
    except UnknownCurrency as exc:
        raise Unprocessable("unknown-currency", "Unknown currency", str(exc)) from exc


def _amount(text: str | None, currency: str, what: str) -> Money | None:
    if text is None:
        return None
    try:
        money = Money.parse(text, currency)
    except MoneyError as exc:
        raise Unprocessable("invalid-amount", "Invalid amount", f"{what}: {exc}") from exc
    if money.is_negative():
        raise Unprocessable("invalid-amount", "Invalid amount", f"{what} cannot be negative.")
    return money


def _schedule(body: PayoutScheduleBody, currency: str) -> PayoutSchedule:
    try:
        return PayoutSchedule(PayoutInterval(body.interval), Weekday(WEEKDAYS.index(body.weekday)), body.delay_days,
                              _amount(body.minimum, currency, "payout_schedule.minimum"))
    except ConnectError as exc:
        raise _refused("invalid-payout-schedule", str(exc)) from exc


def _reserve(body: ReserveBody, currency: str) -> ReservePolicy:
    try:
        return ReservePolicy(body.basis_points, body.hold_days, _amount(body.fixed, currency, "reserve.fixed"))
    except ConnectError as exc:
        raise _refused("invalid-reserve", str(exc)) from exc


def _method(token: str, last4: str | None) -> PayoutMethod:
    try:
        return PayoutMethod(token, last4)
    except ConnectError as exc:
        raise _refused("bank-details-refused", str(exc)) from exc


def _columns(account: ConnectedAccount) -> dict[str, Any]:
    s, r, m = account.schedule, account.reserve, account.payout_method
    return {"settlement_currency": account.settlement_currency, "onboarding_status": account.onboarding.value,
            "payout_interval": s.interval.value, "payout_weekday": int(s.weekday), "payout_delay_days": s.delay_days,
            "payout_minimum_micros": s.minimum.micros if s.minimum is not None else None,
            "reserve_basis_points": r.basis_points, "reserve_hold_days": r.hold_days,
            "reserve_fixed_micros": r.fixed.micros if r.fixed is not None else None,
            "payout_method_token": m.token if m else None, "payout_method_last4": m.last4 if m else None}


async def create(ctx: AppContext, who: Principal, body: ConnectedAccountCreate, key: str | None
                 ) -> idempotency.Answer:
    """Ours first (so a retry resumes it), then the provider's account, then its payout method."""
    key = idempotency.require_key(key)
    currency = _currency(body.settlement_currency)
    method = _method(body.payout_method.token, body.payout_method.last4) if body.payout_method else None
    try:
        account = ConnectedAccount("acct_check", currency, OnboardingStatus.PENDING,
                                   _schedule(body.payout_schedule, currency), method,
                                   _reserve(body.reserve, currency))
    except ConnectError as exc:
        raise _refused("invalid-connected-account", str(exc)) from exc
    columns = {**_columns(account), "country": body.country, "display_name": body.display_name,
               "email": body.email, "metadata": body.metadata}

    async def act(account_id: str) -> idempotency.Answer:
        async with tenant_tx(ctx.pool, who.tenant_id) as conn:
            row, _ = await store.insert(conn, who.tenant_id, account_id, ctx.settings.provider, columns, key,
                                        who.actor, who.request_id or "")
            await audit.record(conn, who, "connected_account.create", "connected_account", account_id)
        row = await _at_provider(ctx, who, row)
        return idempotency.Answer(201, account_json(row))

    return await idempotency.once(ctx, who, key, ACCOUNTS_PATH, body.model_dump(mode="json"), new_id("acct"), act)


async def _at_provider(ctx: AppContext, who: Principal, row: asyncpg.Record) -> asyncpg.Record:
    """Make the provider's account if it is not made yet and give it the payout method; remember its id."""
    if row["provider_account_id"] is not None:
        return row
    try:
        async with ctx.provider() as provider:
            made = await provider.create_account(CreateAccount(  # type: ignore[attr-defined]
                tenant_id=who.tenant_id, account_id=row["account_id"], country=row["country"],
                default_currency=row["settlement_currency"], email=row["email"]))
            if row["payout_method_token"]:
                await provider.update_account(made.id, external_account=row["payout_method_token"])  # type: ignore[attr-defined]
    except ProviderUnavailable as exc:
        raise Unavailable("temporarily-unavailable", "Try again", "The provider could not be reached; retry with "
                          "the same Idempotency-Key.", headers={"Retry-After": "1"}) from exc
    except ValueError as exc:
        raise _refused("provider-refused", str(exc)) from exc
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        locked = await store.fetch(conn, row["account_id"], lock=True)
        assert locked is not None
        return await store.update(conn, locked, {"provider_account_id": made.id}, who.actor, who.request_id or "")


async def get(ctx: AppContext, who: Principal, account_id: str) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.fetch(conn, account_id)
    if row is None:
        raise not_found("connected_account", account_id)
    return account_json(row)


async def list_page(ctx: AppContext, who: Principal, limit: int, starting_after: str | None,
                    onboarding_status: str | None) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        try:
            rows, more = await store.list_page(conn, limit, starting_after, onboarding_status)
        except LookupError:
            raise BadRequest("invalid-cursor", "Invalid cursor", f"No connected account {starting_after}.") from None
    data = [account_json(r) for r in rows]
    return {"object": "list", "data": data, "has_more": more, "next_cursor": data[-1]["id"] if more else None}


async def update(ctx: AppContext, who: Principal, account_id: str, body: ConnectedAccountUpdate) -> dict[str, Any]:
    """Only what was sent changes; the result is checked whole, as the domain's account."""
    sent = body.model_dump(exclude_unset=True)
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.fetch(conn, account_id)
    if row is None:
        raise not_found("connected_account", account_id)
    current = store.to_domain(row)
    currency = _currency(body.settlement_currency) if body.settlement_currency else current.settlement_currency
    if currency != current.settlement_currency:
        stale = [name for name, value, section in (
            ("payout_schedule.minimum", current.schedule.minimum, "payout_schedule"),
            ("reserve.fixed", current.reserve.fixed, "reserve")) if value is not None and section not in sent]
        if stale:
            raise _refused("amounts-in-old-currency", f"{', '.join(stale)} are in {current.settlement_currency}: "
                           f"send them again in {currency} with the new settlement currency.")
    schedule = _schedule(body.payout_schedule, currency) if body.payout_schedule else current.schedule
    reserve = _reserve(body.reserve, currency) if body.reserve else current.reserve
    method = _method(body.payout_method.token, body.payout_method.last4) if body.payout_method \
        else current.payout_method
    try:
        account = ConnectedAccount(account_id, currency,
                                   OnboardingStatus(body.onboarding_status or current.onboarding), schedule, method,
                                   reserve)
    except ConnectError as exc:
        raise _refused("invalid-connected-account", str(exc)) from exc
    changes: dict[str, Any] = _columns(account)
    for name in ("display_name", "email", "metadata"):
        if name in sent:
            changes[name] = sent[name]
    new_token = method.token if method else None
    if new_token != row["payout_method_token"] and new_token and row["provider_account_id"]:
        try:
            async with ctx.provider() as provider:
                await provider.update_account(row["provider_account_id"], external_account=new_token)  # type: ignore[attr-defined]
        except ProviderUnavailable as exc:
            raise Unavailable("temporarily-unavailable", "Try again", "The provider could not be reached.",
                              headers={"Retry-After": "1"}) from exc
        except ValueError as exc:
            raise _refused("provider-refused", str(exc)) from exc
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        locked = await store.fetch(conn, account_id, lock=True)
        assert locked is not None
        updated = await store.update(conn, locked, changes, who.actor, who.request_id or "")
        await audit.record(conn, who, "connected_account.update", "connected_account", account_id,
                           changed=sorted(k for k in changes if changes[k] != locked[k]))
    if row["provider_account_id"] is None:  # its provider account was never made: make it now
        updated = await _at_provider(ctx, who, updated)
    return account_json(updated)


async def balance(ctx: AppContext, who: Principal, account_id: str, as_of: date | None) -> dict[str, Any]:
    """What a payout run on `as_of` (today) would pay, per currency: the run report's line, computed now."""
    on = as_of or datetime.now(UTC).date()
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        row = await store.fetch(conn, account_id)
        if row is None:
            raise not_found("connected_account", account_id)
        items = await payout_math.balance_items_of(conn, [row])
    try:
        lines = payout_math.lines_for(row, items.get(account_id, []), on, build_rates(ctx.settings))
    except RateUnavailable as exc:
        raise Unavailable("rate-unavailable", "No exchange rate", str(exc)) from exc
    return {"object": "connected_account_balance", "account_id": account_id, "as_of": on.isoformat(),
            "lines": [payout_math.line_json(line) for line in lines]}


# --- the tenant's settings -----------------------------------------------------------------------------------------
def settings_json(settings: TenantSettings) -> dict[str, Any]:
    return {"object": "tenant_settings", **settings.model_dump()}


async def get_settings(ctx: AppContext, who: Principal) -> dict[str, Any]:
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        return settings_json(await store.settings_of(conn))


async def put_settings(ctx: AppContext, who: Principal, body: TenantSettingsBody) -> dict[str, Any]:
    if body.payout_reminder_hours >= body.payout_approval_hours:
        raise Unprocessable("invalid-settings", "Invalid settings",
                            "The reminder must come before the deadline: payout_reminder_hours < "
                            "payout_approval_hours.")
    settings = TenantSettings(
        settlement_currency=_currency(body.settlement_currency) if body.settlement_currency else None,
        payout_approval_required=body.payout_approval_required, payout_approval_hours=body.payout_approval_hours,
        payout_reminder_hours=body.payout_reminder_hours)
    async with tenant_tx(ctx.pool, who.tenant_id) as conn:
        saved = await store.put_settings(conn, who.tenant_id, settings)
        await audit.record(conn, who, "tenant.settings.update", "tenant", who.tenant_id, **saved.model_dump())
    return settings_json(saved)
