"""Workflow classes; the worker registers ALL_WORKFLOWS."""

from workflows.callback_delivery import CallbackDelivery
from workflows.clue_digest import MonthlyClueDigest
from workflows.clue_transfer import ClueTransfer
from workflows.rectification import Rectification

ALL_WORKFLOWS: list[type] = [ClueTransfer, MonthlyClueDigest, Rectification, CallbackDelivery]
