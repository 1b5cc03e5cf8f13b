"""The compact state a case workflow carries (and hands to its next run when it continues as
new). Defined here, outside the workflow modules, so the sandbox does not build the models again
for every workflow run."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.calendar import DeadlineState
from schemas.common import HistoryEntry, Link
from schemas.registry import OperatorGrant


class CaseState(BaseModel):
    """The compact state every case carries (across continue-as-new, too)."""

    stage: str
    seq: int = 0  # the case's action counter: ledger seq and callback event id
    deadlines: dict[str, DeadlineState] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)
    history_total: int = 0
    links: list[Link] = Field(default_factory=list)
    notes: int = 0
    times: dict[str, datetime] = Field(default_factory=dict)
    provisional_years: list[int] = Field(default_factory=list, description="not yet announced")
    warned_years: list[int] = Field(default_factory=list, description="provisional warning sent")
    unrecorded: list[HistoryEntry] = Field(default_factory=list, description="notes carried to the next run")
    # the case's parties and a copy of their operators, refreshed by every step and by signal
    # `registry_changed`: an unauthorized update is refused before it is accepted
    parties: list[str] = Field(default_factory=list)
    operators: dict[str, OperatorGrant] = Field(default_factory=dict)
    # runs started before the kernel (LEGACY_PROVISIONAL)
    legacy_pending: bool = False
    legacy_warned: bool = False
