"""Every workflow class the worker registers.

Kept out of `workflows/__init__.py` on purpose: the sandbox imports a workflow's package each
time it starts a run, and an `__init__` that imported every workflow module would make each run
import all of them (docs/benchmarks.md, "sandbox").
"""

from workflows.annual_round import AnnualInspectionRound
from workflows.assessment import AnnualAssessment
from workflows.callback_delivery import CallbackDelivery
from workflows.clue_digest import MonthlyClueDigest
from workflows.clue_transfer import ClueTransfer
from workflows.ledger_anchor import LedgerAnchor
from workflows.rectification import Rectification
from workflows.risk_scan import RiskScan
from workflows.unit_inspection import UnitInspection

ALL_WORKFLOWS: list[type] = [ClueTransfer, MonthlyClueDigest, Rectification, CallbackDelivery,
                             AnnualInspectionRound, UnitInspection, RiskScan, AnnualAssessment, LedgerAnchor]
