"""Retry policies and timeouts shared by every saga: the one place that says how paysaga retries."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Error types meaning "the request itself is wrong" (activities raise them): retrying cannot help.
INVALID_REQUEST = "InvalidRequest"
INVALID_TRANSITION = "InvalidTransition"
NON_RETRYABLE = [INVALID_REQUEST, INVALID_TRANSITION]

# Database steps (local activities): quick, idempotent, bounded.
DB_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(seconds=10),
                       non_retryable_error_types=NON_RETRYABLE)
# Provider calls: exponential backoff for network errors, 5xx, 409 and 429; then the dead-letter queue.
PROVIDER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), maximum_attempts=8,
                             non_retryable_error_types=NON_RETRYABLE)
# Stripe keeps idempotency keys for 24 h: a money-moving call must never be retried past that.
PROVIDER_SCHEDULE_TO_CLOSE = timedelta(hours=23)
