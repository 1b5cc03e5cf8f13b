"""Who may perform which operator action (pure; the registry supplies the facts).

Every update names its `operator` (an operator id from the registry) and the `agency` they act
for. Workflows already check that the agency is the right party for the action; this adds that
the operator really belongs to that agency, is active, and holds the role some actions need.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CLERK = "clerk"  # 经办人: acts for their own agency or unit
    INSPECTOR = "inspector"  # 督察组成员: reviews, look-backs, inspection records
    SUPERVISOR = "supervisor"  # 督办负责人 (law_office): extends deadlines


# Actions that need more than membership of the acting agency.
ACTION_ROLES: dict[str, Role] = {
    "clue.extend_deadline": Role.SUPERVISOR,
    "rectification.extend_deadline": Role.SUPERVISOR,
    "rectification.review": Role.INSPECTOR,
    "rectification.record_lookback": Role.INSPECTOR,
    "inspection.record_method": Role.INSPECTOR,
    "inspection.record_finding": Role.INSPECTOR,
    "inspection.evaluate": Role.INSPECTOR,
    "inspection.issue_feedback": Role.INSPECTOR,
    "round.manage": Role.INSPECTOR,  # the coordination group runs the routine round
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
    needed = ACTION_ROLES.get(action)
    if needed is not None and needed.value not in (roles or []):
        return (f"操作人 {operator} 没有「{needed.value}」角色，不能执行 {action} / "
                f"operator {operator!r} lacks role {needed.value} for {action}")
    return None
