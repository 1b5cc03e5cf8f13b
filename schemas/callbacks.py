"""Callback delivery models: the CallbackDelivery workflow's input and output and its
activities' (no secrets in any of them). Kept apart from activities/callbacks.py so the workflow
imports only these, not the HTTP and database code."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    SKIPPED = "skipped"


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # 5xx, 408, 429, network or DNS failure: try again later
    FAILED = "failed"  # other 4xx, 3xx, unusable secret: final
    GONE = "gone"  # 410: the endpoint is disabled, final
    FORBIDDEN = "forbidden"  # refused by the SSRF guard, final
    DISABLED = "disabled"  # no endpoint, or it was disabled meanwhile: final, nothing sent


class DeliveryInput(BaseModel):
    """Input of the CallbackDelivery workflow."""

    event_id: str
    recipient: str
    schedule: list[float] = Field(
        min_length=1, description="seconds to wait before each attempt; the first is usually 0"
    )
    attempt_timeout_seconds: float = Field(40.0, gt=0, description="start-to-close of one attempt")
    previous_attempts: int = Field(
        0, ge=0, description="attempts made before this workflow (the first one by publish)"
    )
    retry_after_seconds: float = Field(
        0.0, ge=0, description="the previous attempt's Retry-After: the first wait is at least this"
    )


class DeliveryOutput(BaseModel):
    event_id: str
    recipient: str
    status: DeliveryStatus
    attempts: int
    last_http_status: int | None = None
    last_error: str | None = None


class AttemptInput(BaseModel):
    event_id: str
    recipient: str
    attempt: int = Field(1, ge=1, description="attempt number within this delivery run")


class AttemptResult(BaseModel):
    outcome: AttemptOutcome
    final: bool
    http_status: int | None = None
    latency_ms: int | None = None
    retry_after: float | None = Field(None, description="seconds, from Retry-After")
    error: str | None = None


class MarkDeadInput(BaseModel):
    event_id: str
    recipient: str
    attempts: int
    last_error: str | None = None
