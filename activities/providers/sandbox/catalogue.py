"""Stripe's published test payment methods, as the sandbox knows them.

Docs: testing → "cards by brand", "declined payments", "3D Secure". A token names a card and its fate: it
succeeds, is declined with a code, or asks for 3-D Secure; two special ones make refunds fail or the payment
disputed afterwards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from activities.providers.base import CardDetails

CardOutcome = Literal["succeed", "decline", "authenticate"]


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    outcome: CardOutcome
    decline_code: str | None = None
    refund_fails: bool = False
    creates_dispute: bool = False  # the payment succeeds, then the cardholder disputes it


TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242", "succeed"),
    "pm_card_visa_debit": TestCard("visa", "5556", "succeed"),
    "pm_card_mastercard": TestCard("mastercard", "4444", "succeed"),
    "pm_card_amex": TestCard("amex", "8431", "succeed"),
    "pm_card_discover": TestCard("discover", "1117", "succeed"),
    "pm_card_jcb": TestCard("jcb", "0505", "succeed"),
    "pm_card_unionpay": TestCard("unionpay", "0005", "succeed"),
    "pm_card_refundFail": TestCard("visa", "5126", "succeed", refund_fails=True),
    "pm_card_createDispute": TestCard("visa", "0259", "succeed", creates_dispute=True),
    "tok_visa": TestCard("visa", "4242", "succeed"),
    "tok_mastercard": TestCard("mastercard", "4444", "succeed"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", "decline", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", "decline", "insufficient_funds"),
    "pm_card_chargeDeclinedLostCard": TestCard("visa", "9987", "decline", "lost_card"),
    "pm_card_chargeDeclinedStolenCard": TestCard("visa", "9979", "decline", "stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": TestCard("visa", "0069", "decline", "expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard("visa", "0127", "decline", "incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": TestCard("visa", "0119", "decline", "processing_error"),
    "pm_card_chargeDeclinedFraudulent": TestCard("visa", "0019", "decline", "fraudulent"),
    "pm_card_threeDSecure2Required": TestCard("visa", "3220", "authenticate"),
    "pm_card_threeDSecureRequired": TestCard("visa", "3063", "authenticate"),
    "pm_card_authenticationRequired": TestCard("visa", "3184", "authenticate"),
}

# Every sandbox card expires in December 2040 and is issued in the US (Stripe: "any future date").
SANDBOX_EXPIRY = (12, 2040)
SANDBOX_COUNTRY = "US"


class UnknownPaymentMethod(ValueError):
    pass


def describe_test_card(token: str) -> TestCard:
    card = TEST_CARDS.get(token)
    if card is None:
        raise UnknownPaymentMethod(f"No such PaymentMethod: '{token}' (the sandbox knows Stripe's test methods)")
    return card


def card_of(payment_method: str) -> TestCard:
    """The card behind a stored intent's payment method. Intents are only ever made with known tokens; the
    fallback keeps rows written by an older catalogue readable."""
    return TEST_CARDS.get(payment_method, TEST_CARDS["pm_card_visa"])


def card_fingerprint(card: TestCard) -> str:
    """Stands in for the provider's fingerprint of the card number: the sandbox knows brand + last4 only, so two
    tokens of the same test card (pm_card_visa, tok_visa) share it, as Stripe's do."""
    return hashlib.sha256(f"sandbox:{card.brand}:{card.last4}".encode()).hexdigest()[:16]


def describe_card_details(token: str) -> CardDetails:
    card = describe_test_card(token)
    return CardDetails(brand=card.brand, last4=card.last4, exp_month=SANDBOX_EXPIRY[0], exp_year=SANDBOX_EXPIRY[1],
                       fingerprint=card_fingerprint(card), country=SANDBOX_COUNTRY)
