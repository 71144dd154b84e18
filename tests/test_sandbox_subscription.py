"""The sandbox's webhook endpoint is subscribed to event types, as a Stripe endpoint's `enabled_events` are."""

from __future__ import annotations

from paysaga.settings import Settings


def test_by_default_the_endpoint_hears_what_paysaga_acts_on() -> None:
    settings = Settings()
    assert settings.sandbox_subscribes_to("payment_intent.succeeded")
    assert settings.sandbox_subscribes_to("payment_intent.payment_failed")
    assert settings.sandbox_subscribes_to("charge.dispute.funds_withdrawn")  # a prefix entry
    assert settings.sandbox_subscribes_to("refund.updated")
    assert not settings.sandbox_subscribes_to("payment_intent.created")  # carries nothing paysaga needs
    assert not settings.sandbox_subscribes_to("payment_intent.processing")  # nor this, for card payments
    assert not settings.sandbox_subscribes_to("customer.created")


def test_star_subscribes_to_everything_and_lists_are_exact() -> None:
    assert Settings(sandbox_webhook_events="*").sandbox_subscribes_to("payment_intent.created")
    only = Settings(sandbox_webhook_events="payment_intent.succeeded")
    assert only.sandbox_subscribes_to("payment_intent.succeeded")
    assert not only.sandbox_subscribes_to("payment_intent.succeeded_later")
