"""Temporal client with the project's data converter (pydantic JSON, encrypted when keys are
configured: workers/codec.py)."""

from __future__ import annotations

import dataclasses

import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from config.settings import Settings
from workers.codec import codec_from_settings

log = structlog.get_logger(__name__)
_warned_plaintext = False


def data_converter(settings: Settings | None = None) -> DataConverter:
    """pydantic JSON, plus the AES-GCM payload codec when `settings` configure keys.

    Without settings (replayers, tests) it is the plain pydantic converter; with the codec it
    still reads payloads written before encryption was turned on.
    """
    codec = codec_from_settings(settings) if settings is not None else None
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


async def connect(settings: Settings, *, metrics_port: int = 0) -> Client:
    global _warned_plaintext
    runtime = None
    if metrics_port:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=f"0.0.0.0:{metrics_port}")
            )
        )
    converter = data_converter(settings)
    if converter.payload_codec is None and not _warned_plaintext:
        _warned_plaintext = True
        log.warning(
            "payload encryption is off: set DUCHA_CODEC_KEYS and DUCHA_CODEC_KEY_ID "
            "(docs/deployment.md); clue contents go to Temporal in plain text"
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=converter,
        runtime=runtime,
    )
