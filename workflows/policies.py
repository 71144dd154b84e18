"""Retry policies and timeouts shared by every workflow: the one place that says how paysaga retries."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from contracts.errors import NON_RETRYABLE

# Database steps (local activities): quick, idempotent, bounded.
DB_STEP_TIMEOUT = timedelta(seconds=10)
DB_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(seconds=10),
                       non_retryable_error_types=list(NON_RETRYABLE))
# Provider calls: exponential backoff for network errors, 5xx, 409 and 429; then the dead-letter queue.
PROVIDER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), maximum_attempts=8,
                             non_retryable_error_types=list(NON_RETRYABLE))
# Stripe keeps idempotency keys for 24 h: a money-moving call must never be retried past that.
PROVIDER_SCHEDULE_TO_CLOSE = timedelta(hours=23)
# Provider calls made for an update have a caller waiting on the other end of an HTTP request: fewer, faster tries.
INTERACTIVE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                maximum_interval=timedelta(seconds=10), maximum_attempts=4,
                                non_retryable_error_types=list(NON_RETRYABLE))
INTERACTIVE_SCHEDULE_TO_CLOSE = timedelta(minutes=2)
# Notifications must never stall a saga: many patient tries, then it is logged and skipped.
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(minutes=5), maximum_attempts=20)
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_SCHEDULE_TO_CLOSE = timedelta(hours=6)
# A run that does one batch job in one activity (reconciliation, reports).
BATCH_RETRY = RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(minutes=1),
                          non_retryable_error_types=list(NON_RETRYABLE))
REPORT_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=list(NON_RETRYABLE))
