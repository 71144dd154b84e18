"""The sandbox's test cards: who issued them, and which of them are the same card."""

from __future__ import annotations

import hashlib

import pytest

from activities.providers.sandbox import SANDBOX_COUNTRY, TEST_CARDS, card_fingerprint, describe_card_details
from activities.providers.sandbox.catalogue import INTERNATIONAL_CARDS

INTERNATIONAL = {token for token, *_ in INTERNATIONAL_CARDS}


@pytest.mark.parametrize(("token", "brand", "last4", "country"), [
    ("pm_card_de", "visa", "0016", "DE"), ("pm_card_fr", "visa", "0003", "FR"), ("pm_card_gb", "visa", "0000", "GB"),
    ("pm_card_br", "visa", "0002", "BR"), ("pm_card_ca", "visa", "0000", "CA"), ("pm_card_mx", "visa", "8001", "MX"),
    ("pm_card_jp", "visa", "0003", "JP"), ("pm_card_in", "visa", "0008", "IN"), ("pm_card_au", "visa", "0006", "AU"),
    ("pm_card_es", "visa", "0007", "ES"), ("pm_card_it", "visa", "0008", "IT"), ("pm_card_nl", "visa", "0002", "NL"),
    ("pm_card_ae", "visa", "0001", "AE"), ("pm_card_sg", "visa", "0003", "SG"),
    ("pm_card_gb_mastercard", "mastercard", "4449", "GB"), ("pm_card_us", "visa", "4242", "US"),
])
def test_international_cards_are_issued_where_stripe_says(token: str, brand: str, last4: str, country: str) -> None:
    card = describe_card_details(token)
    assert (card.brand, card.last4, card.country) == (brand, last4, country)
    assert TEST_CARDS[token].outcome == "succeed"


def test_every_international_token_names_its_country() -> None:
    for token, _, _, country in INTERNATIONAL_CARDS:
        assert token.removeprefix("pm_card_")[:2] == country.lower(), token


def test_the_other_cards_are_still_issued_in_the_us() -> None:
    others = {token: card for token, card in TEST_CARDS.items() if token not in INTERNATIONAL}
    assert {"pm_card_visa", "pm_card_jcb", "pm_card_threeDSecure2Required", "tok_visa"} <= set(others)
    assert {describe_card_details(token).country for token in others} == {SANDBOX_COUNTRY}


def test_only_tokens_of_the_same_card_share_a_fingerprint() -> None:
    by_fingerprint: dict[str, set[tuple[str, str, str]]] = {}
    for card in TEST_CARDS.values():
        by_fingerprint.setdefault(card_fingerprint(card), set()).add((card.brand, card.last4, card.country))
    assert all(len(cards) == 1 for cards in by_fingerprint.values())
    assert card_fingerprint(TEST_CARDS["pm_card_us"]) == card_fingerprint(TEST_CARDS["pm_card_visa"])
    assert card_fingerprint(TEST_CARDS["pm_card_ca"]) != card_fingerprint(TEST_CARDS["pm_card_gb"])


def test_us_cards_keep_the_fingerprint_methods_were_attached_with() -> None:
    assert card_fingerprint(TEST_CARDS["pm_card_visa"]) == hashlib.sha256(b"sandbox:visa:4242").hexdigest()[:16]
