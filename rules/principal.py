"""Who really acted: the principal Temporal's server recorded on the event that carried an
operator action, and whether the typed `operator` claim agrees with it (pure; no I/O).

Temporal Server ≥ 1.31.0 (temporalio/temporal#9582) stamps every history event written in a
transaction with the principal the frontend's authorizer computed for the caller of that
transaction (`HistoryEvent.principal`, a `temporal.api.common.v1.Principal` {type, name}; the
default authorizer + default JWT claim mapper give type "jwt" and the token's `sub`), when the
dynamic config `frontend.enablePrincipalPropagation` is on. A client cannot set it: the frontend
strips inbound principal headers. The client-supplied `identity` fields are not proof of anything.

Which event names the caller of which action (server code at temporalio/temporal, Aug 2026):
- start: WorkflowExecutionStarted, written in the starter's transaction → the starter.
- signal: WorkflowExecutionSignaled, written (or buffered, keeping its stamp) in the sender's
  transaction → the sender. Signal-with-start: the same, in the starter's transaction.
- update: WorkflowExecutionUpdateAccepted is written in the transaction of the *worker* that
  completed the workflow task accepting the update, so its principal names the worker, never the
  operator who sent the update; WorkflowExecutionUpdateAdmitted is written only when a reset
  re-applies an update, in the resetting caller's transaction. Neither names the update's
  caller, so an update is never attributed (`ATTRIBUTES_CALLER`): under `require_principal`
  an operator action that must be verified has to arrive as a start or a signal.

Everything here reads the raw proto defensively, so it also runs against generated protos that
predate field 303 (`principal` then reads as absent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType

# Principal.type of the default JWT claim mapper (claims.AuthType); the only type this project
# maps to registry operators. "temporal" is the server itself (internal frontend, schedules).
JWT_PRINCIPAL_TYPE = "jwt"

STARTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
UPDATE_ADMITTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED
UPDATE_ACCEPTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED

# Event types whose recorded principal is the caller of the action they carry (module docstring).
ATTRIBUTES_CALLER = frozenset({STARTED, SIGNALED})


@dataclass(frozen=True)
class Principal:
    type: str
    name: str


@dataclass(frozen=True)
class Carrier:
    """The history event that carried one action, and what the server recorded on it."""

    event_id: int
    event_type: str  # EventType name, e.g. EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    recorded: Principal | None  # the principal stamped on the event, whoever it names
    caller: Principal | None  # `recorded` when this event type names the action's caller, else None
    note: str = ""  # why `caller` is None although something was recorded


def principal_of(event: object) -> Principal | None:
    """The principal stamped on one HistoryEvent proto, or None (not stamped, empty, or a proto
    generated before the field existed)."""
    descriptor = getattr(event, "DESCRIPTOR", None)
    fields = getattr(descriptor, "fields_by_name", {})
    if "principal" not in fields:
        return None
    try:
        if not event.HasField("principal"):  # type: ignore[attr-defined]
            return None
    except ValueError:
        return None
    raw = event.principal  # type: ignore[attr-defined]
    name = str(getattr(raw, "name", "") or "")
    kind = str(getattr(raw, "type", "") or "")
    if not name:
        return None
    return Principal(type=kind, name=name)


def _carrier(event: object) -> Carrier:
    event_type = int(getattr(event, "event_type", 0))
    recorded = principal_of(event)
    attributes = event_type in ATTRIBUTES_CALLER
    note = ""
    if recorded is not None and not attributes:
        note = (
            "更新的受理事件由接受它的 worker 写入，记录的是 worker 的身份而不是操作人 / "
            "an update's accepted/admitted event is written in the worker's (or a reset's) "
            "transaction: its principal is not the caller's"
        )
    return Carrier(
        event_id=int(getattr(event, "event_id", 0)),
        event_type=EventType.Name(event_type) if event_type in EventType.values() else str(event_type),
        recorded=recorded,
        caller=recorded if attributes else None,
        note=note,
    )


def find_start(events: Iterable[object]) -> Carrier | None:
    """The WorkflowExecutionStarted event (the first event of a run)."""
    for event in events:
        if getattr(event, "event_type", None) == STARTED:
            return _carrier(event)
    return None


def find_signal(
    events: Iterable[object], *, event_id: int | None = None, name: str | None = None, ordinal: int | None = None
) -> Carrier | None:
    """A WorkflowExecutionSignaled event: by its event id, or as the `ordinal`-th (0-based)
    signal named `name` of this run (the order in which the workflow's handlers saw them)."""
    if event_id is None and (name is None or ordinal is None):
        raise ValueError("find_signal needs event_id, or name and ordinal")
    seen = 0
    for event in events:
        if getattr(event, "event_type", None) != SIGNALED:
            continue
        if event_id is not None:
            if int(event.event_id) == event_id:  # type: ignore[attr-defined]
                if name is not None and signal_name(event) != name:
                    return None
                return _carrier(event)
            continue
        if signal_name(event) == name:
            if seen == ordinal:
                return _carrier(event)
            seen += 1
    return None


def signal_name(event: object) -> str:
    return str(event.workflow_execution_signaled_event_attributes.signal_name)  # type: ignore[attr-defined]


def update_id_of(event: object) -> str | None:
    """The update id an UpdateAdmitted / UpdateAccepted event is about, else None."""
    event_type = getattr(event, "event_type", None)
    if event_type == UPDATE_ADMITTED:
        return str(event.workflow_execution_update_admitted_event_attributes.request.meta.update_id)  # type: ignore[attr-defined]
    if event_type == UPDATE_ACCEPTED:
        attrs = event.workflow_execution_update_accepted_event_attributes  # type: ignore[attr-defined]
        return str(attrs.protocol_instance_id or attrs.accepted_request.meta.update_id)
    return None


def find_update(events: Iterable[object], update_id: str) -> Carrier | None:
    """The event that carried update `update_id`: its UpdateAdmitted event when there is one
    (written first), else its UpdateAccepted event. Either way `caller` is None (module
    docstring); `recorded` says what the server stamped."""
    accepted = None
    for event in events:
        if update_id_of(event) != update_id:
            continue
        if event.event_type == UPDATE_ADMITTED:  # type: ignore[attr-defined]
            return _carrier(event)
        if accepted is None:
            accepted = _carrier(event)
    return accepted


# --- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityDecision:
    allowed: bool
    identity_verified: bool
    operator: str | None  # who the action is recorded as: the verified operator, or the bare claim
    reason: str  # Chinese / English; empty when verified and allowed


def decide(
    principal: Principal | None,
    operator_claim: str | None,
    registry_operator: str | None,
    require: bool,
) -> IdentityDecision:
    """May the action go ahead, and is its operator verified?

    principal: the caller the server recorded (a Carrier's `caller`), or None.
    operator_claim: the `operator` typed into the action's input (may be omitted).
    registry_operator: the registry operator whose `principal` is principal.name (type "jwt"),
        or None when no operator signs in as that principal.
    require: DUCHA_REQUIRE_PRINCIPAL.

    A verified principal that contradicts the typed operator is an impersonation attempt and is
    refused whatever `require` says. Without a usable principal the action is refused when
    required, else allowed and marked unverified (recorded under the bare claim).
    """
    claim = (operator_claim or "").strip() or None
    usable = principal is not None and principal.type == JWT_PRINCIPAL_TYPE and bool(principal.name)
    if usable and registry_operator is not None:
        if claim is None or claim == registry_operator:
            return IdentityDecision(True, True, registry_operator, "")
        return IdentityDecision(
            False,
            True,
            registry_operator,
            f"填写的操作人 {claim} 与登录身份不符：登录身份 {principal.name} 是操作人 "  # type: ignore[union-attr]
            f"{registry_operator} / the typed operator {claim!r} is not the signed-in user: "
            f"principal {principal.name!r} is operator {registry_operator!r}",  # type: ignore[union-attr]
        )
    if principal is None:
        zh, en = "此操作没有经服务器核验的登录身份", "the action carries no server-verified identity"
    elif not usable:
        zh = f"登录身份类型 {principal.type} 不是操作人登录"
        en = f"principal type {principal.type!r} is not an operator sign-in ({JWT_PRINCIPAL_TYPE!r} expected)"
    else:
        zh = f"登录身份 {principal.name} 未在登记册中对应任何操作人"
        en = f"principal {principal.name!r} is not the sign-in of any registered operator"
    if require:
        return IdentityDecision(False, False, claim, f"拒绝：{zh}，而本系统要求核验身份 / refused: {en}, "
                                "and identity verification is required (DUCHA_REQUIRE_PRINCIPAL)")
    return IdentityDecision(True, False, claim, f"未核验身份：{zh} / identity not verified: {en}")
