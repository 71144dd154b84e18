"""The Temporal client every process uses: pydantic payloads, optional Prometheus metrics of the SDK."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from paysaga.settings import Settings


async def connect_client(settings: Settings, *, metrics_port: int | None = None) -> Client:
    runtime = None
    if metrics_port:
        telemetry = TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{metrics_port}"))
        runtime = Runtime(telemetry=telemetry)
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter, **({"runtime": runtime} if runtime else {}),
    )
