"""Temporal client with the project's data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from workers.settings import Settings


def data_converter():
    return pydantic_data_converter


async def connect(settings: Settings, *, metrics_port: int = 0) -> Client:
    runtime = None
    if metrics_port:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=f"0.0.0.0:{metrics_port}")
            )
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=data_converter(),
        runtime=runtime,
    )
