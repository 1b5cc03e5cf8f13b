"""The action table: every action has a role entry, and an unknown action is refused."""

import pytest
from pydantic import ValidationError

from rules.permissions import ACTION_ROLES, Action, Role, refusal
from schemas.actions import Action as SchemaAction
from schemas.registry import AuthorizeInput


def test_every_action_has_a_role_entry():
    assert set(ACTION_ROLES) == set(Action)


def member(action: str, roles: list[str] | None = None) -> str | None:
    return refusal(operator="李娜", agency="law_office", action=action, party="law_office",
                   roles=roles or ["clerk"], active=True)


def test_an_unknown_action_is_refused_not_allowed():
    assert member("clue.transfr") is not None
    assert "unknown action" in member("rectification.reveiw")


def test_membership_is_enough_for_a_clerk_action():
    assert member(Action.CLUE_TRANSFER) is None


def test_a_role_action_needs_the_role():
    assert member(Action.RECTIFICATION_REVIEW) is not None
    assert member(Action.RECTIFICATION_REVIEW, [Role.INSPECTOR.value]) is None


def test_an_unknown_action_cannot_be_expressed_in_an_authorization():
    ok = AuthorizeInput(operator="李娜", agency="law_office", action="rectification.review", workflow_id="w")
    assert ok.action is Action.RECTIFICATION_REVIEW
    assert ok.model_dump(mode="json")["action"] == "rectification.review"  # the wire form is unchanged
    with pytest.raises(ValidationError):
        AuthorizeInput(operator="李娜", agency="law_office", action="rectification.reveiw", workflow_id="w")


def test_the_action_enum_lives_in_schemas_and_rules_re_exports_it():
    assert Action is SchemaAction
