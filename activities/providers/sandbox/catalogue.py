"""Stripe's published test payment methods, as the sandbox knows them.

Docs: testing → "cards by brand", "cards by country" (international cards), "declined payments", "3D Secure". A
token names a card and its fate: it succeeds, is declined with a code, or asks for 3-D Secure; two special ones
make refunds fail or the payment disputed afterwards. A card that succeeds does so when it is confirmed, as on
Stripe; one sandbox-only card (``pm_card_visa_settlesLater``) is `processing` at confirm and succeeds later,
announced by webhook, as a bank debit does: the path a saga takes when the answer is not synchronous. Every card
is issued in the US except the international ones, which Stripe issues in the country their token names
(``pm_card_de``: Germany) and which all succeed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from activities.providers.base import CardDetails

# `succeed`: succeeded at confirm; `succeed_later`: processing at confirm, settled by the sandbox network later.
CardOutcome = Literal["succeed", "succeed_later", "decline", "authenticate"]


# Every sandbox card expires in December 2040 (Stripe: "any future date"); the issuer is in the US unless the card
# says otherwise.
SANDBOX_EXPIRY = (12, 2040)
SANDBOX_COUNTRY = "US"


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    outcome: CardOutcome
    decline_code: str | None = None
    refund_fails: bool = False
    creates_dispute: bool = False  # the payment succeeds, then the cardholder disputes it
    country: str = SANDBOX_COUNTRY  # ISO 3166-1 alpha-2 of the issuing bank


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
    "pm_card_visa_settlesLater": TestCard("visa", "1881", "succeed_later"),
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

# Stripe's "cards by country": (token, brand, last4, issuing country); each payment with one succeeds. The last4
# are those of the numbers Stripe publishes for the tokens. Not here: Stripe also lists `pm_card_jcb` as a
# Japanese card, but the sandbox has always issued that one in the US (its number in "cards by brand").
INTERNATIONAL_CARDS: tuple[tuple[str, str, str, str], ...] = (
    # Americas
    ("pm_card_us", "visa", "4242", "US"),
    ("pm_card_ar", "visa", "0021", "AR"),
    ("pm_card_br", "visa", "0002", "BR"),
    ("pm_card_ca", "visa", "0000", "CA"),
    ("pm_card_cl", "visa", "0001", "CL"),
    ("pm_card_co", "visa", "0003", "CO"),
    ("pm_card_cr", "visa", "0005", "CR"),
    ("pm_card_ec", "visa", "0000", "EC"),
    ("pm_card_mx", "visa", "8001", "MX"),
    ("pm_card_pa", "visa", "0000", "PA"),
    ("pm_card_py", "visa", "0066", "PY"),
    ("pm_card_pe", "visa", "0068", "PE"),
    ("pm_card_uy", "visa", "0003", "UY"),
    # Europe and the Middle East
    ("pm_card_ae", "visa", "0001", "AE"),
    ("pm_card_ae_mastercard", "mastercard", "0022", "AE"),
    ("pm_card_at", "visa", "0008", "AT"),
    ("pm_card_be", "visa", "0004", "BE"),
    ("pm_card_bg", "visa", "0000", "BG"),
    ("pm_card_by", "visa", "0005", "BY"),
    ("pm_card_hr", "visa", "0009", "HR"),
    ("pm_card_cy", "visa", "0008", "CY"),
    ("pm_card_cz", "visa", "0002", "CZ"),
    ("pm_card_dk", "visa", "0001", "DK"),
    ("pm_card_ee", "visa", "0009", "EE"),
    ("pm_card_fi", "visa", "0001", "FI"),
    ("pm_card_fr", "visa", "0003", "FR"),
    ("pm_card_de", "visa", "0016", "DE"),
    ("pm_card_gi", "visa", "0005", "GI"),
    ("pm_card_gr", "visa", "0030", "GR"),
    ("pm_card_hu", "visa", "0005", "HU"),
    ("pm_card_ie", "visa", "0005", "IE"),
    ("pm_card_it", "visa", "0008", "IT"),
    ("pm_card_lv", "visa", "0005", "LV"),
    ("pm_card_li", "visa", "0004", "LI"),
    ("pm_card_lt", "visa", "0000", "LT"),
    ("pm_card_lu", "visa", "0006", "LU"),
    ("pm_card_mt", "visa", "0007", "MT"),
    ("pm_card_nl", "visa", "0002", "NL"),
    ("pm_card_no", "visa", "0007", "NO"),
    ("pm_card_pl", "visa", "0005", "PL"),
    ("pm_card_pt", "visa", "0007", "PT"),
    ("pm_card_ro", "visa", "0001", "RO"),
    ("pm_card_sa", "visa", "0007", "SA"),
    ("pm_card_si", "visa", "0006", "SI"),
    ("pm_card_sk", "visa", "0001", "SK"),
    ("pm_card_es", "visa", "0007", "ES"),
    ("pm_card_se", "visa", "0008", "SE"),
    ("pm_card_ch", "visa", "0009", "CH"),
    ("pm_card_gb", "visa", "0000", "GB"),
    ("pm_card_gb_debit", "visa", "0005", "GB"),
    ("pm_card_gb_mastercard", "mastercard", "4449", "GB"),
    # Asia Pacific
    ("pm_card_au", "visa", "0006", "AU"),
    ("pm_card_cn", "visa", "0002", "CN"),
    ("pm_card_hk", "visa", "0004", "HK"),
    ("pm_card_in", "visa", "0008", "IN"),
    ("pm_card_jp", "visa", "0003", "JP"),
    ("pm_card_my", "visa", "0002", "MY"),
    ("pm_card_nz", "visa", "0008", "NZ"),
    ("pm_card_sg", "visa", "0003", "SG"),
    ("pm_card_tw", "visa", "0008", "TW"),
    ("pm_card_th_credit", "visa", "0003", "TH"),
    ("pm_card_th_debit", "visa", "0008", "TH"),
)
TEST_CARDS.update({token: TestCard(brand, last4, "succeed", country=country)
                   for token, brand, last4, country in INTERNATIONAL_CARDS})


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
    """Stands in for the provider's fingerprint of the card number: the sandbox knows brand, last4 and issuing
    country only, so two tokens of the same test card (pm_card_visa, tok_visa, pm_card_us) share it, as Stripe's
    do. Several international cards end in the same digits (pm_card_ca, pm_card_gb: 0000): their country tells
    them apart. US cards keep the fingerprint they had before the sandbox knew other countries, so methods already
    attached are still recognised as duplicates."""
    country = "" if card.country == SANDBOX_COUNTRY else f":{card.country}"
    return hashlib.sha256(f"sandbox:{card.brand}:{card.last4}{country}".encode()).hexdigest()[:16]


def describe_card_details(token: str) -> CardDetails:
    card = describe_test_card(token)
    return CardDetails(brand=card.brand, last4=card.last4, exp_month=SANDBOX_EXPIRY[0], exp_year=SANDBOX_EXPIRY[1],
                       fingerprint=card_fingerprint(card), country=card.country)
