"""Callback events: what workflows publish and agencies receive (docs/agencies.md).

Workflows publish with `PublishEvent` through the `callbacks.publish` activity; delivery happens
outside the business workflow. Bodies are thin: ids, type, a Chinese summary and links, never
clue or problem contents.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class EventType(StrEnum):
    PING = "ping"
    CALENDAR_PROVISIONAL = "calendar.provisional"
    # clues (线索移送)
    CLUE_REGISTERED = "clue.registered"
    CLUE_TRANSFERRED = "clue.transferred"
    CLUE_ACKNOWLEDGED = "clue.acknowledged"
    CLUE_DUE_SOON = "clue.due_soon"
    CLUE_OVERDUE = "clue.overdue"
    CLUE_ESCALATED = "clue.escalated"
    CLUE_DEADLINE_EXTENDED = "clue.deadline_extended"
    CLUE_DEADLINE_RECOMPUTED = "clue.deadline_recomputed"
    CLUE_CONCLUDED = "clue.concluded"
    CLUE_WITHDRAWN = "clue.withdrawn"
    CLUE_MONTHLY_DIGEST = "clue.monthly_digest"
    # rectification (整改)
    RECTIFICATION_REQUIRED = "rectification.required"
    RECTIFICATION_DUE_SOON = "rectification.due_soon"
    RECTIFICATION_OVERDUE = "rectification.overdue"
    RECTIFICATION_ESCALATED = "rectification.escalated"
    RECTIFICATION_REPORTED = "rectification.reported"
    RECTIFICATION_REJECTED = "rectification.rejected"
    RECTIFICATION_ACCEPTED = "rectification.accepted"
    RECTIFICATION_DEADLINE_EXTENDED = "rectification.deadline_extended"
    RECTIFICATION_DEADLINE_RECOMPUTED = "rectification.deadline_recomputed"
    RECTIFICATION_LOOKBACK_DUE = "rectification.lookback_due"
    RECTIFICATION_REOPENED = "rectification.reopened"
    RECTIFICATION_CLOSED = "rectification.closed"
    RECTIFICATION_CARRIED_OVER = "rectification.carried_over"
    BULLETIN_PUBLISHED = "bulletin.published"
    # inspections (督察)
    INSPECTION_STARTED = "inspection.started"
    INSPECTION_DUE_SOON = "inspection.due_soon"
    INSPECTION_OVERDUE = "inspection.overdue"
    INSPECTION_DEADLINE_RECOMPUTED = "inspection.deadline_recomputed"
    INSPECTION_FEEDBACK_ISSUED = "inspection.feedback_issued"
    INSPECTION_COVERAGE_GAP = "inspection.coverage_gap"
    # assessment (考核)
    ASSESSMENT_PUBLISHED = "assessment.published"


JsonScalar = str | int | float | bool | None


class PublishEvent(BaseModel):
    """One business event, to be delivered to each recipient's registered endpoint."""

    event_id: str = Field(
        min_length=1, max_length=200,
        description="deterministic per workflow step, e.g. 'clue-2026-0007.transferred': the idempotency key",
    )
    type: EventType
    recipients: list[str] = Field(min_length=1, description="registry codes (agencies or units)")
    workflow_id: str
    summary: str = Field(max_length=500, description="one Chinese sentence for people")
    data: dict[str, JsonScalar | list[JsonScalar]] = Field(default_factory=dict)
    occurred_at: datetime


class PublishResult(BaseModel):
    event_id: str
    queued: list[str] = Field(default_factory=list, description="recipients whose delivery started")
    skipped: list[str] = Field(default_factory=list, description="recipients with no enabled endpoint")
