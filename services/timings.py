"""The configured rail's timings, which every payment a service or the worker starts carries with it."""

from __future__ import annotations

from contracts.invoices import CollectionTimings
from paysaga.settings import Settings


def collection_timings(settings: Settings) -> CollectionTimings:
    """Read from settings once, at the start: the run keeps them, so a later change never alters a run in flight."""
    return CollectionTimings(
        webhook_wait_seconds=settings.webhook_wait_seconds,
        poll_max_interval_seconds=settings.poll_max_interval_seconds,
        three_ds_timeout_seconds=settings.three_ds_timeout_seconds,
        settlement_timeout_seconds=settings.settlement_timeout_seconds,
        provider_call_timeout_seconds=settings.provider_call_timeout_seconds,
        provider_max_attempts=settings.provider_max_attempts,
        provider_retry_initial_seconds=settings.provider_retry_initial_seconds,
        provider_retry_max_interval_seconds=settings.provider_retry_max_interval_seconds,
        dead_letter_hold_seconds=settings.dead_letter_hold_seconds)
