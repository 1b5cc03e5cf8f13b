"""Workflow classes; the worker registers ALL_WORKFLOWS."""

from workflows.clue_digest import MonthlyClueDigest
from workflows.clue_transfer import ClueTransfer

ALL_WORKFLOWS: list[type] = [ClueTransfer, MonthlyClueDigest]
