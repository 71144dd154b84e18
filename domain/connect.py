"""Connected accounts (the sellers of a platform) and what a split charge, its refunds and its disputes post.

A connected account
    ``ConnectedAccount``: its id (a ledger subject: ``seller_payable:<id>:<currency>``), its onboarding status
    (payouts only once ``enabled``), its settlement currency, its payout schedule (weekly by default, on a
    weekday, with a delay in days before a charge's funds are payable, and a minimum payout), an optional reserve
    policy, and a payout method — a provider token (``ba_…``, ``card_…``) with at most its last four digits for
    display; bank details in clear are refused.

A split charge (the platform charges the customer, keeps an application fee, owes the rest to the seller)::

    charge succeeded          Dr cash:<provider>         amount
                              Cr platform_fees           application fee
                              Cr seller_payable:<acct>   amount - fee           (the seller's share)
    refund / dispute lost     Dr platform_fees           fee given back
                              Dr seller_payable:<acct>   share given back
                              Cr cash:<provider>         amount refunded / withdrawn
    dispute won (reinstated)  the withdrawal's lines, negated

These replace ``payment_completed`` / ``refund_succeeded`` / ``dispute_funds_*`` for a split charge and use the
same business events (``payment.completed``, ``refund.succeeded``, ``dispute.funds_withdrawn``,
``dispute.funds_reinstated``) so their entry ids are the same: a charge cannot be posted both as plain and as
split.

Taking back proportionally, rounded cumulatively: after refunds and lost disputes totalling R of a charge C with
fee F, the fee given back so far is round_half_even(F * R / C) to minor units, and each reversal gives back the
difference between that and what was already given back (``Reversed`` carries both totals). So partial reversals
add up exactly to what one reversal of their sum would give, and a full reversal returns both platform_fees and
seller_payable for the charge to exactly zero.

Pure; money in integer micros; amounts of a charge are whole minor units (they move at a provider).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import IntEnum, StrEnum

from domain.ledger import Account, AccountCode, JournalEntry, Line, cash, entry, single
from domain.money import Money, RoundingMode, get_currency

# Ledger subjects are joined with ":" into account ids, so an account id may not contain one.
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
# A provider token: a lower-case prefix, an underscore, an opaque body (Stripe: ba_1N…, card_1N…, pm_…).
_TOKEN = re.compile(r"[a-z]{2,12}_[A-Za-z0-9]{6,250}")
# Nine or more digits in a row, or an IBAN's country + check digits + body: an account number, not a token.
_LOOKS_LIKE_ACCOUNT_NUMBER = re.compile(r"[0-9]{9,}|[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


class ConnectError(ValueError):
    pass


class OnboardingStatus(StrEnum):
    """Where a connected account is in onboarding (know-your-customer); only ``enabled`` receives payouts."""

    PENDING = "pending"  # created, details not yet submitted
    RESTRICTED = "restricted"  # details missing or under review: charges may be held, no payouts
    ENABLED = "enabled"  # verified: charges and payouts
    REJECTED = "rejected"  # refused or closed: nothing further


class PayoutInterval(StrEnum):
    WEEKLY = "weekly"
    DAILY = "daily"
    MANUAL = "manual"  # paid only when someone asks


class Weekday(IntEnum):
    """``date.weekday()`` numbering."""

    MONDAY = 0
    TUESDAY = 1
    WEDNESDAY = 2
    THURSDAY = 3
    FRIDAY = 4
    SATURDAY = 5
    SUNDAY = 6


def check_account_id(account_id: str) -> str:
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        raise ConnectError(f"a connected account id is letters, digits and ._- (no ':'), got {account_id!r}")
    return account_id


@dataclass(frozen=True)
class PayoutSchedule:
    """When a connected account is paid: weekly on ``weekday`` by default; a charge's funds become payable
    ``delay_days`` after the charge; a payout smaller than ``minimum`` waits for the next one."""

    interval: PayoutInterval = PayoutInterval.WEEKLY
    weekday: Weekday = Weekday.MONDAY
    delay_days: int = 7
    minimum: Money | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", PayoutInterval(self.interval))
        object.__setattr__(self, "weekday", Weekday(self.weekday))
        if not isinstance(self.delay_days, int) or not 0 <= self.delay_days <= 365:
            raise ConnectError(f"delay_days must be within 0..365, got {self.delay_days!r}")
        if self.minimum is not None and self.minimum.is_negative():
            raise ConnectError("a minimum payout cannot be negative")

    def available_on(self, charged_on: date) -> date:
        """When a charge made on ``charged_on`` becomes payable (when the provider does not say)."""
        return charged_on + timedelta(days=self.delay_days)


@dataclass(frozen=True)
class ReservePolicy:
    """What is held back from a payout: ``basis_points`` of the seller's share of each charge for ``hold_days``
    after its funds became available (a rolling reserve), plus ``fixed`` in its currency (always held). The
    default holds nothing."""

    basis_points: int = 0
    hold_days: int = 0
    fixed: Money | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.basis_points, int) or not 0 <= self.basis_points <= 10_000:
            raise ConnectError(f"basis_points must be within 0..10000, got {self.basis_points!r}")
        if not isinstance(self.hold_days, int) or self.hold_days < 0:
            raise ConnectError(f"hold_days must be >= 0, got {self.hold_days!r}")
        if self.basis_points and not self.hold_days:
            raise ConnectError("a percentage reserve needs hold_days: how long each part is held")
        if self.fixed is not None and self.fixed.is_negative():
            raise ConnectError("a fixed reserve cannot be negative")


@dataclass(frozen=True)
class PayoutMethod:
    """Where payouts go, as the provider's token for it. Never an account number or an IBAN: the provider keeps
    those; ``last4`` is for display only."""

    token: str
    last4: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not _TOKEN.fullmatch(self.token):
            raise ConnectError("a payout method is a provider token like 'ba_1Nq…' (prefix, '_', opaque id)")
        if _LOOKS_LIKE_ACCOUNT_NUMBER.search(self.token.split("_", 1)[1]):
            raise ConnectError("that looks like bank details, not a token: send them to the provider, keep its token")
        if self.last4 is not None and not re.fullmatch(r"[0-9A-Za-z]{4}", self.last4):
            raise ConnectError("last4 is the last four characters only")

    def __repr__(self) -> str:
        # Tokens are not secrets, but they need not be in every log line either.
        return f"PayoutMethod(token='{self.token[:self.token.index('_') + 5]}…', last4={self.last4!r})"


@dataclass(frozen=True)
class ConnectedAccount:
    account_id: str
    settlement_currency: str
    onboarding: OnboardingStatus = OnboardingStatus.PENDING
    schedule: PayoutSchedule = field(default_factory=PayoutSchedule)
    payout_method: PayoutMethod | None = None
    reserve: ReservePolicy = field(default_factory=ReservePolicy)

    def __post_init__(self) -> None:
        check_account_id(self.account_id)
        object.__setattr__(self, "settlement_currency", get_currency(self.settlement_currency).code)
        object.__setattr__(self, "onboarding", OnboardingStatus(self.onboarding))

    @property
    def payouts_enabled(self) -> bool:
        """Onboarded and with somewhere to pay to."""
        return self.onboarding is OnboardingStatus.ENABLED and self.payout_method is not None


# --- split charges ---------------------------------------------------------------------------------------------
def seller_payable(account_id: str, currency: str) -> Account:
    return Account(AccountCode.SELLER_PAYABLE, currency, check_account_id(account_id))


def _whole_minor(amount: Money, what: str) -> None:
    if amount.micros % get_currency(amount.currency).micros_per_minor:
        raise ConnectError(f"{what} must be a whole number of minor units, got {amount}")


def application_fee(amount: Money, basis_points: int, fixed: Money | None = None,
                    rounding: RoundingMode = RoundingMode.HALF_EVEN) -> Money:
    """A platform's fee on a charge: ``basis_points`` of it plus ``fixed``, rounded once to minor units, capped at
    the charge (a fee can take all of it, never more)."""
    fee = amount.scale_to_minor(basis_points, 10_000, rounding)
    if fixed is not None:
        _whole_minor(fixed, "a fixed fee")
        fee = fee + fixed
    return min(max(fee, Money.zero(amount.currency)), amount)


@dataclass(frozen=True)
class SplitCharge:
    """A charge of ``amount`` for ``destination``, of which the platform keeps ``fee``."""

    charge_id: str
    destination: str
    amount: Money
    fee: Money

    def __post_init__(self) -> None:
        check_account_id(self.destination)
        if self.fee.currency != self.amount.currency:
            raise ConnectError("the application fee is in the charge's currency")
        _whole_minor(self.amount, "a charge")
        _whole_minor(self.fee, "an application fee")
        if not self.amount.is_positive():
            raise ConnectError("a charge is positive")
        if self.fee.is_negative() or self.fee > self.amount:
            raise ConnectError(f"an application fee is within 0..{self.amount}, got {self.fee}")

    @property
    def currency(self) -> str:
        return self.amount.currency

    @property
    def share(self) -> Money:
        """What the seller is owed: the charge less the platform's fee."""
        return self.amount - self.fee

    def fee_after_reversing(self, total: Money) -> Money:
        """The fee given back once ``total`` of the charge has been taken back: F * total / C, half-even, in
        minor units — the cumulative target every reversal steps to."""
        return self.fee.scale_to_minor(total.micros, self.amount.micros, RoundingMode.HALF_EVEN)


@dataclass(frozen=True)
class Clawback:
    """One reversal of a split charge: ``fee`` back from the platform, ``share`` back from the seller."""

    fee: Money
    share: Money

    @property
    def amount(self) -> Money:
        return self.fee + self.share


@dataclass(frozen=True)
class Reversed:
    """What has been taken back from a split charge so far (refunds and lost disputes, less reinstated ones)."""

    amount: Money
    fee: Money

    @classmethod
    def nothing(cls, split: SplitCharge) -> Reversed:
        return cls(Money.zero(split.currency), Money.zero(split.currency))

    @property
    def share(self) -> Money:
        return self.amount - self.fee

    def plus(self, clawback: Clawback) -> Reversed:
        return Reversed(self.amount + clawback.amount, self.fee + clawback.fee)

    def minus(self, clawback: Clawback) -> Reversed:
        """After a reinstated dispute: its clawback is undone."""
        return Reversed(self.amount - clawback.amount, self.fee - clawback.fee)


def clawback(split: SplitCharge, amount: Money, before: Reversed) -> Clawback:
    """How a reversal of ``amount`` divides between the platform's fee and the seller's share (module docstring).

    ``before`` is what earlier reversals took back. The fee part steps to the cumulative target, kept within what
    this reversal and what is left of fee and share allow, so neither part goes negative or beyond its remainder,
    and the last reversal takes exactly what is left of each.
    """
    if amount.currency != split.currency or before.amount.currency != split.currency:
        raise ConnectError("a reversal is in the charge's currency")
    _whole_minor(amount, "a refund or dispute")
    if not amount.is_positive():
        raise ConnectError("a reversal takes back a positive amount")
    remaining = split.amount - before.amount
    if amount > remaining:
        raise ConnectError(f"cannot take back {amount}: only {remaining} of the charge is left")
    fee_left, share_left = split.fee - before.fee, split.share - before.share
    if fee_left.is_negative() or share_left.is_negative():
        raise ConnectError("what was taken back before exceeds the charge's fee or share")
    target = split.fee_after_reversing(before.amount + amount) - before.fee
    lowest = max(Money.zero(split.currency), amount - share_left)
    highest = min(amount, fee_left)
    fee = min(max(target, lowest), highest)
    return Clawback(fee, amount - fee)


def _platform_fees(currency: str) -> Account:
    return single(AccountCode.PLATFORM_FEES, currency)


def split_charge_succeeded(split: SplitCharge, provider: str) -> JournalEntry:
    """Funds arrive for a split charge: the platform earns its fee, the rest is owed to the seller."""
    c = split.currency
    return entry("payment", split.charge_id, "payment.completed", [
        Line(cash(provider, c), split.amount.micros),
        Line(_platform_fees(c), -split.fee.micros),
        Line(seller_payable(split.destination, c), -split.share.micros),
    ], memo=f"split for {split.destination}")


def _taken_back(source_type: str, source_id: str, event: str, split: SplitCharge, provider: str,
                back: Clawback) -> JournalEntry:
    c = split.currency
    return entry(source_type, source_id, event, [
        Line(_platform_fees(c), back.fee.micros),
        Line(seller_payable(split.destination, c), back.share.micros),
        Line(cash(provider, c), -back.amount.micros),
    ], memo=f"charge {split.charge_id} for {split.destination}")


def split_refund_succeeded(refund_id: str, split: SplitCharge, provider: str, amount: Money, before: Reversed
                           ) -> tuple[JournalEntry, Clawback]:
    """A refund of (part of) a split charge; returns the entry and the clawback (add it to ``Reversed``)."""
    back = clawback(split, amount, before)
    return _taken_back("refund", refund_id, "refund.succeeded", split, provider, back), back


def split_dispute_funds_withdrawn(dispute_id: str, split: SplitCharge, provider: str, amount: Money,
                                  before: Reversed) -> tuple[JournalEntry, Clawback]:
    """A dispute withdrew (part of) a split charge: taken back from fee and share like a refund."""
    back = clawback(split, amount, before)
    return _taken_back("dispute", dispute_id, "dispute.funds_withdrawn", split, provider, back), back


def split_dispute_funds_reinstated(dispute_id: str, split: SplitCharge, provider: str, withdrawn: Clawback
                                   ) -> JournalEntry:
    """A won dispute: what its withdrawal took back is returned as it was (``Reversed.minus`` it)."""
    c = split.currency
    return entry("dispute", dispute_id, "dispute.funds_reinstated", [
        Line(cash(provider, c), withdrawn.amount.micros),
        Line(_platform_fees(c), -withdrawn.fee.micros),
        Line(seller_payable(split.destination, c), -withdrawn.share.micros),
    ], memo=f"charge {split.charge_id} for {split.destination}")


def onboarding_from_provider(*, payouts_enabled: bool, details_submitted: bool, disabled_reason: str | None
                             ) -> OnboardingStatus:
    """Where onboarding stands by what the provider says of the account (Stripe's `Account`): refused or closed
    (`requirements.disabled_reason` rejected.*) → rejected; able to receive payouts → enabled; details handed in
    but something missing or under review → restricted; else pending."""
    if disabled_reason and disabled_reason.startswith("rejected"):
        return OnboardingStatus.REJECTED
    if payouts_enabled:
        return OnboardingStatus.ENABLED
    if details_submitted:
        return OnboardingStatus.RESTRICTED
    return OnboardingStatus.PENDING
