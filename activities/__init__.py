"""Activities: all I/O. `build_activities` binds every activity to its injected dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg
    from temporalio.client import Client

    from activities.pinned_http import PinnedClient
    from config.settings import Settings


def build_activities(
    pool: asyncpg.Pool, settings: Settings, client: Client, http: PinnedClient
) -> list:
    """Every activity of the project, bound to one pool, one Temporal client and one HTTP client."""
    from activities.assessment import AssessmentActivities
    from activities.calendar import CalendarActivities
    from activities.callbacks import CallbackActivities
    from activities.cases import CaseActivities
    from activities.inspections import InspectionActivities
    from activities.ledger import LedgerActivities
    from activities.registry import RegistryStore
    from config.chain_key import load_chain_key

    chain = load_chain_key(settings)  # exits naming DUCHA_LEDGER_CHAIN_KEY when there is none
    registry = RegistryStore(pool, chain)
    calendar = CalendarActivities(pool, settings)
    ledger = LedgerActivities(pool, chain)
    callbacks = CallbackActivities(pool, settings, client, http)
    cases = CaseActivities(pool, callbacks, chain, require_principal=settings.require_principal)
    inspections = InspectionActivities(pool, client, chain)
    assessment = AssessmentActivities(pool, settings, callbacks)
    return [
        cases.step,
        registry.lookup_parties,
        registry.require_parties,
        registry.authorize,
        calendar.plan_deadline,
        ledger.record_clue,
        ledger.record_rectification,
        ledger.routine_clues_due,
        inspections.round_inputs,
        inspections.record_round,
        inspections.record_inspection,
        inspections.start_inspections,
        inspections.describe,
        inspections.special_slot,
        inspections.indicators,
        *callbacks.activity_methods(),
        assessment.score_year,
        assessment.publish_scores,
        ledger.chain_heads,
    ]
