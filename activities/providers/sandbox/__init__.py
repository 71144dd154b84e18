"""The sandbox payment provider: an embedded stand-in for Stripe's test mode, its state in Postgres.

- catalogue.py: Stripe's test payment methods and what each one does;
- intents.py, refunds.py, disputes.py: the API objects and their rules;
- faults.py: fault injection for drills;
- events.py: the Stripe-shaped events the sandbox sends, and their signature;
- network.py: the provider's side of the wire (webhook delivery, settlement over time);
- provider.py: `SandboxProvider`, the `PaymentProvider` port over all of it.
"""

from activities.providers.sandbox.catalogue import (
    SANDBOX_COUNTRY,
    SANDBOX_EXPIRY,
    TEST_CARDS,
    TestCard,
    UnknownPaymentMethod,
    card_fingerprint,
    describe_card_details,
    describe_test_card,
)
from activities.providers.sandbox.events import sign
from activities.providers.sandbox.provider import SandboxProvider

__all__ = [
    "SANDBOX_COUNTRY",
    "SANDBOX_EXPIRY",
    "TEST_CARDS",
    "SandboxProvider",
    "TestCard",
    "UnknownPaymentMethod",
    "card_fingerprint",
    "describe_card_details",
    "describe_test_card",
    "sign",
]
