"""Prometheus metrics of the API process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "paysaga_http_request_duration_seconds", "HTTP request latency", ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5),
        )
        self.payments_created = Counter(
            "paysaga_payments_created_total", "Payments accepted by the API", ["currency"], registry=self.registry
        )
        self.payments_by_status = Gauge(
            "paysaga_payments", "Payments by status (all tenants)", ["status"], registry=self.registry
        )
        self.webhook_events = Counter(
            "paysaga_webhook_events_total", "Webhook deliveries by outcome", ["outcome"], registry=self.registry
        )
        # Of each tenant's latest settlement reconciliation report, per settlement currency: unexplained
        # discrepancy ÷ volume (deploy/prometheus/paysaga-alerts.yml alerts at the 0.01 % objective).
        self.settlement_variance = Gauge(
            "paysaga_settlement_variance_ratio", "Settlement reconciliation variance (unexplained / volume) of the "
            "latest report", ["tenant_id", "currency"], registry=self.registry)
        self.webhook_seconds = Histogram(
            "paysaga_webhook_processing_seconds", "Webhook processing latency", registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1),
        )
        self.renewals = Gauge(
            "paysaga_renewals", "Subscription renewals by outcome (all tenants)", ["outcome"], registry=self.registry
        )
        self.dunning_recoveries = Gauge(
            "paysaga_dunning_recoveries", "Invoices dunning recovered, by the stage that did", ["stage"],
            registry=self.registry,
        )
        self.dunning_revenue_recovered = Gauge(
            "paysaga_dunning_revenue_recovered_micros", "Revenue dunning recovered (micro-units)", ["currency"],
            registry=self.registry,
        )
