"""The sandbox payment provider: an embedded stand-in for Stripe's test mode, its state in Postgres.

- catalogue.py: Stripe's test payment methods and what each one does;
- intents.py, refunds.py, disputes.py: the API objects and their rules;
- faults.py: fault injection for drills;
- events.py: the Stripe-shaped events the sandbox sends, their signature, and their outbox (`sandbox.events`);
- network.py: `SandboxNetwork`, what Stripe's servers do over time (settlement, delivery), in its own process;
- delivery.py: one delivery attempt of one event, and the webhook knobs (duplicates, shuffle, drops);
- provider.py: `SandboxProvider`, the `PaymentProvider` port over intents, refunds and disputes.
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
from activities.providers.sandbox.network import SandboxNetwork
from activities.providers.sandbox.provider import SandboxProvider

__all__ = [
    "SANDBOX_COUNTRY",
    "SANDBOX_EXPIRY",
    "TEST_CARDS",
    "SandboxNetwork",
    "SandboxProvider",
    "TestCard",
    "UnknownPaymentMethod",
    "card_fingerprint",
    "describe_card_details",
    "describe_test_card",
    "sign",
]
