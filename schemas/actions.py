"""The operator actions the workflows authorize, one per update (rules/permissions.py gives each
its role; schemas/registry.py AuthorizeInput carries one, so an unknown action cannot be expressed)."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """Every operator action the workflows authorize (the update it is named for)."""

    CLUE_TRANSFER = "clue.transfer"
    CLUE_ACKNOWLEDGE = "clue.acknowledge"
    CLUE_REPORT_RESULT = "clue.report_result"
    CLUE_WITHDRAW = "clue.withdraw"
    CLUE_EXTEND_DEADLINE = "clue.extend_deadline"
    RECTIFICATION_SUBMIT_REPORT = "rectification.submit_report"
    RECTIFICATION_REVIEW = "rectification.review"
    RECTIFICATION_RECORD_LOOKBACK = "rectification.record_lookback"
    RECTIFICATION_EXTEND_DEADLINE = "rectification.extend_deadline"
    INSPECTION_SUBMIT_SELF_INSPECTION = "inspection.submit_self_inspection"
    INSPECTION_RECORD_METHOD = "inspection.record_method"
    INSPECTION_RECORD_FINDING = "inspection.record_finding"
    INSPECTION_EVALUATE = "inspection.evaluate"
    INSPECTION_ISSUE_FEEDBACK = "inspection.issue_feedback"
    ROUND_MANAGE = "round.manage"
