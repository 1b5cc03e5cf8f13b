"""Who acted: read the principal Temporal recorded on the event that carried an operator
action, and check the typed `operator` against it (rules/principal.py decides).

`PrincipalCheck.check` is a plain coroutine for the case kernel's step activity to call inside
its own attempt; `PrincipalCheck.check_activity` is the same as an activity, for a workflow.

Cost (reads only what it needs, one GetWorkflowExecutionHistory[Reverse] call per page):
- start: forward history, first page of `page_size` events (the Started event is event 1).
- update: reverse history from the newest event until the update's UpdateAccepted (or
  UpdateAdmitted) event, normally on the first page for an activity scheduled by the update's
  handler. A *local* activity of that workflow runs inside the workflow task that accepts the
  update, before the event is written, so it reads nothing (0 calls) and reports that.
  Either way no update is attributed (rules/principal.py), so the read only reports.
- signal by event id: reverse history down to that event id.
- signal by name + ordinal: forward history until that signal (all events before it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    GetWorkflowExecutionHistoryReverseRequest,
)
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.registry import RegistryStore
from rules.principal import (
    JWT_PRINCIPAL_TYPE,
    Carrier,
    decide,
    find_signal,
    find_start,
    find_update,
    update_id_of,
)
from schemas.registry import PrincipalCheckInput, PrincipalCheckOutput


class PrincipalCheck:
    def __init__(self, client: Client, registry: RegistryStore, *, require: bool, page_size: int = 50) -> None:
        self.client = client
        self.registry = registry
        self.require = require
        self.page_size = page_size

    # --- reading history ---------------------------------------------------------------------

    async def _pages(self, execution: WorkflowExecution, *, reverse: bool) -> AsyncIterator[list[HistoryEvent]]:
        token = b""
        while True:
            if reverse:
                resp = await self.client.workflow_service.get_workflow_execution_history_reverse(
                    GetWorkflowExecutionHistoryReverseRequest(
                        namespace=self.client.namespace, execution=execution,
                        maximum_page_size=self.page_size, next_page_token=token,
                    )
                )
            else:
                resp = await self.client.workflow_service.get_workflow_execution_history(
                    GetWorkflowExecutionHistoryRequest(
                        namespace=self.client.namespace, execution=execution,
                        maximum_page_size=self.page_size, next_page_token=token, skip_archival=True,
                    )
                )
            yield list(resp.history.events)
            token = resp.next_page_token
            if not token:
                return

    async def find_carrier(self, req: PrincipalCheckInput) -> tuple[Carrier | None, int, int]:
        """(the event that carried the action or None, events read, pages read)."""
        if req.kind == "update" and self._in_local_activity_of(req.workflow_id):
            return None, 0, 0  # its event is written when this very workflow task completes
        execution = WorkflowExecution(workflow_id=req.workflow_id, run_id=self._run_id(req))
        events_read = pages = seen = 0
        reverse = req.kind == "update" or (req.kind == "signal" and req.signal_event_id is not None)
        async for page in self._pages(execution, reverse=reverse):
            pages += 1
            events_read += len(page)
            found: Carrier | None = None
            if req.kind == "start":
                found = find_start(page)
                if found is None:  # event 1 is the Started event: nothing further can match
                    return None, events_read, pages
            elif req.kind == "update":
                hits = [e for e in page if update_id_of(e) == req.update_id]
                # Reverse order: the oldest hit is last; an Admitted event (older) wins.
                found = find_update(reversed(hits), req.update_id) if hits else None  # type: ignore[arg-type]
            elif req.signal_event_id is not None:
                found = find_signal(page, event_id=req.signal_event_id, name=req.signal_name)
                if found is None and page and min(e.event_id for e in page) <= req.signal_event_id:
                    return None, events_read, pages  # went past it: not a signal (of that name)
            else:
                # Count this run's signals of that name across forward pages.
                for event in page:
                    hit = find_signal([event], name=req.signal_name, ordinal=0)
                    if hit is not None:
                        if seen == req.signal_ordinal:
                            found = hit
                            break
                        seen += 1
            if found is not None:
                return found, events_read, pages
        return None, events_read, pages

    @staticmethod
    def _in_local_activity_of(workflow_id: str) -> bool:
        if not activity.in_activity():
            return False
        info = activity.info()
        return info.is_local and info.workflow_id == workflow_id

    def _run_id(self, req: PrincipalCheckInput) -> str:
        if req.run_id:
            return req.run_id
        if activity.in_activity():
            info = activity.info()
            if info.workflow_id == req.workflow_id:
                return info.workflow_run_id or ""
        return ""

    # --- the check ----------------------------------------------------------------------------

    async def check(self, req: PrincipalCheckInput) -> PrincipalCheckOutput:
        """Find the action's event, map its principal to a registry operator, decide. Never
        raises for a refusal (the caller records it); raises RPCError if history can't be read."""
        carrier, events_read, pages = await self.find_carrier(req)
        caller = carrier.caller if carrier else None
        registry_operator = None
        if caller is not None and caller.type == JWT_PRINCIPAL_TYPE:
            registry_operator = await self.registry.operator_for_principal(caller.name)
        require = self.require if req.require is None else req.require
        d = decide(caller, req.operator, registry_operator, require)
        reason = d.reason
        if carrier is None and req.kind == "update":
            reason = ("历史中还没有该更新的事件：它在接受更新的工作流任务完成时才写入，本地活动读不到 / "
                      "no event of this update in the history yet: it is written when the workflow "
                      "task that accepts the update completes, so a local activity cannot see it; " + reason)
        elif carrier is None:
            reason = (f"历史中找不到该操作的事件 / no event of this {req.kind} in the history; " + reason)
        elif carrier.note and not d.identity_verified:
            reason = f"{reason}; {carrier.note}"
        recorded = carrier.recorded if carrier else None
        return PrincipalCheckOutput(
            allowed=d.allowed,
            identity_verified=d.identity_verified,
            operator=d.operator,
            reason=reason,
            principal_type=caller.type if caller else None,
            principal_name=caller.name if caller else None,
            recorded=f"{recorded.type}/{recorded.name}" if recorded else None,
            event_id=carrier.event_id if carrier else None,
            event_type=carrier.event_type if carrier else None,
            events_read=events_read,
            pages=pages,
        )

    @activity.defn(name="principal.check")
    async def check_activity(self, req: PrincipalCheckInput) -> PrincipalCheckOutput:
        """`check` as an activity: a refusal is a business error (never retried), and so is a
        workflow run that does not exist."""
        try:
            out = await self.check(req)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            raise ApplicationError(
                f"找不到工作流 {req.workflow_id} / workflow run not found: {exc.message}",
                type="WorkflowNotFound", non_retryable=True,
            ) from None
        if not out.allowed:
            raise ApplicationError(out.reason, out.model_dump(), type="IdentityRefused", non_retryable=True)
        return out

