"""Who may perform which operator action (pure; the registry supplies the facts).

Every update names its `operator` (an operator id from the registry) and the `agency` they act
for. Workflows already check that the agency is the right party for the action; this adds that
the operator really belongs to that agency, is active, and holds the role some actions need.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.actions import Action

__all__ = ["ACTION_ROLES", "Action", "Role", "refusal"]


class Role(StrEnum):
    CLERK = "clerk"  # 经办人: acts for their own agency or unit
    INSPECTOR = "inspector"  # 督察组成员: reviews, look-backs, inspection records
    SUPERVISOR = "supervisor"  # 督办负责人 (law_office): extends deadlines


# The role each action needs beyond membership of the acting agency (None: membership is enough).
# Every Action has an entry; tests/test_permissions.py fails when one is added without it.
ACTION_ROLES: dict[Action, Role | None] = {
    Action.CLUE_TRANSFER: None,
    Action.CLUE_ACKNOWLEDGE: None,
    Action.CLUE_REPORT_RESULT: None,
    Action.CLUE_WITHDRAW: None,
    Action.CLUE_EXTEND_DEADLINE: Role.SUPERVISOR,
    Action.RECTIFICATION_SUBMIT_REPORT: None,
    Action.RECTIFICATION_REVIEW: Role.INSPECTOR,
    Action.RECTIFICATION_RECORD_LOOKBACK: Role.INSPECTOR,
    Action.RECTIFICATION_EXTEND_DEADLINE: Role.SUPERVISOR,
    Action.INSPECTION_SUBMIT_SELF_INSPECTION: None,
    Action.INSPECTION_RECORD_METHOD: Role.INSPECTOR,
    Action.INSPECTION_RECORD_FINDING: Role.INSPECTOR,
    Action.INSPECTION_EVALUATE: Role.INSPECTOR,
    Action.INSPECTION_ISSUE_FEEDBACK: Role.INSPECTOR,
    Action.ROUND_MANAGE: Role.INSPECTOR,  # the coordination group runs the routine round
}


def refusal(
    *, operator: str, agency: str, action: str, party: str | None, roles: list[str] | None, active: bool
) -> str | None:
    """None when allowed, else the reason in Chinese and English."""
    if party is None:
        return f"操作人 {operator} 未在登记册中登记 / operator {operator!r} is not registered"
    if not active:
        return f"操作人 {operator} 已停用 / operator {operator!r} is deactivated"
    if party != agency:
        return (f"操作人 {operator} 属于 {party}，不能代表 {agency} 操作 / "
                f"operator {operator!r} belongs to {party}, not {agency}")
    try:
        needed = ACTION_ROLES[Action(action)]
    except (ValueError, KeyError):
        return f"未知的操作 {action} / unknown action {action!r}"
    if needed is not None and needed.value not in (roles or []):
        return (f"操作人 {operator} 没有「{needed.value}」角色，不能执行 {action} / "
                f"operator {operator!r} lacks role {needed.value} for {action}")
    return None
