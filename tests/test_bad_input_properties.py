"""Property-based bad input (hypothesis): every start input, update and signal model refuses
malformed JSON, wrong types, unknown codes, out-of-range dates and huge strings with a clear
message; and a workflow that receives such input is never wedged in a workflow-task failure loop.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from schemas import ids
from schemas.clue import Acknowledge, ClueStart, ReportResult, Transfer, Withdraw
from schemas.common import ExtendDeadline, Note
from schemas.digest import DigestStart
from schemas.rectification import RecordLookback, RectificationStart, Review, SubmitReport
from workflows.catalog import ALL_WORKFLOWS
from workflows.rectification import Rectification

MODELS: list[type[BaseModel]] = [
    ClueStart, Transfer, Acknowledge, ReportResult, Withdraw, ExtendDeadline, Note,
    RectificationStart, SubmitReport, Review, RecordLookback, DigestStart,
]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def valid_examples() -> dict[type[BaseModel], dict]:
    return {
        ClueStart: {"clue_no": "2026-0001", "route": "to_law_office", "source": "court",
                    "channel": "judgment_enforcement", "importance": "important", "discovered_on": "2026-11-20",
                    "subject_unit": "market_regulation", "title": "标题", "reported_by": "杨帆"},
        Transfer: {"operator": "杨帆", "agency": "court"},
        Acknowledge: {"operator": "李娜", "agency": "law_office"},
        ReportResult: {"operator": "李娜", "agency": "law_office", "outcome": "substantiated", "summary": "属实"},
        Withdraw: {"operator": "杨帆", "agency": "court", "reason": "重复"},
        ExtendDeadline: {"operator": "李娜", "agency": "law_office", "new_due_on": "2026-12-31", "reason": "复杂"},
        Note: {"operator": "李娜", "text": "备注"},
        RectificationStart: {"problem_no": "P1", "unit": "market_regulation", "origin": {"kind": "manual"},
                             "list": "common", "category": "程序", "description": "问题描述", "opinion": "整改意见",
                             "due_in_working_days": 10, "issued_by": "李娜"},
        SubmitReport: {"operator": "王晓东", "agency": "market_regulation", "measures": "已整改"},
        Review: {"operator": "李娜", "agency": "law_office", "decision": "accept"},
        RecordLookback: {"operator": "李娜", "agency": "law_office", "result": "pass", "findings": "良好"},
        DigestStart: {"month": "2026-12"},
    }


def test_every_model_has_a_valid_example():
    examples = valid_examples()
    for model in MODELS:
        model.model_validate(examples[model])  # the mutations below start from valid input


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=json_values)
def test_arbitrary_json_is_refused_or_valid_never_crashes(model, garbage):
    try:
        model.model_validate(garbage)
    except ValidationError as exc:
        assert exc.errors() and all(e["msg"] for e in exc.errors())


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_one_field_broken_is_refused_naming_that_field(model, data):
    good = valid_examples()[model]
    field = data.draw(st.sampled_from(sorted(good)))
    bad_value = data.draw(st.one_of(
        st.just("x" * 100_000),  # huge string
        st.just({"nested": True}), st.just([1, 2]), st.just(-10**12),
        st.just("9999-99-99"), st.just("no_such_code!"), st.just(None),
    ))
    candidate = {**good, field: bad_value}
    try:
        model.model_validate(candidate)
    except ValidationError as exc:
        locs = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
        assert any(loc.startswith(field) or loc == "" for loc in locs), (field, locs)
        return
    # Some fields accept some of these values (e.g. a free-text note accepts "no_such_code!").
    model.model_validate(candidate)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_unknown_fields_are_refused(model):
    with pytest.raises(ValidationError, match="extra|Extra"):
        model.model_validate({**valid_examples()[model], "surprise": 1})


def test_malformed_json_text_is_not_a_model():
    for text in ['{"clue_no": ', "[1, 2", "null", '"just a string"', "{'single': 'quotes'}"]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        with pytest.raises(ValidationError):
            ClueStart.model_validate(value)


# --- against running workflows -----------------------------------------------------------------


async def _no_task_failures(handle) -> None:
    history = await handle.fetch_history()
    failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failed, "a bad input must never put the workflow into a task-failure loop"


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=json_values)
async def test_garbage_start_input_fails_the_workflow_cleanly(env, garbage):
    environment, tq = env
    handle = await environment.client.start_workflow(
        Rectification.run, garbage, id=f"bad-start-{uuid.uuid4().hex[:8]}", task_queue=tq,
        execution_timeout=timedelta(minutes=5))
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert str(info.value.cause)
    await _no_task_failures(handle)


@pytest.fixture(scope="module")
def sample_rectification():
    return {"problem_no": f"PX{uuid.uuid4().hex[:6]}", "unit": "market_regulation",
            "origin": {"kind": "manual"}, "list": "individual", "category": "程序", "description": "问题描述",
            "opinion": "整改意见", "due_in_working_days": 10, "issued_by": "李娜"}


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=json_values, update=st.sampled_from([Rectification.submit_report, Rectification.review,
                                                          Rectification.record_lookback, Rectification.extend_deadline]))
async def test_garbage_updates_and_signals_are_refused_and_the_workflow_carries_on(
        env, receiver, sample_rectification, garbage, update):
    environment, tq = env
    wf_id = ids.rectification(sample_rectification["problem_no"])
    handle = environment.client.get_workflow_handle(wf_id)
    try:
        await handle.describe()
    except Exception:
        handle = await environment.client.start_workflow(
            Rectification.run, sample_rectification, id=wf_id, task_queue=tq)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(update, garbage)  # garbage JSON, named through the class
    await handle.signal(Rectification.add_note, garbage)  # a bad signal is dropped, never fatal
    state = await handle.query(Rectification.status)
    assert state.stage == "rectifying"
    await _no_task_failures(handle)


@pytest.mark.parametrize("workflow", sorted(ALL_WORKFLOWS, key=lambda wf: wf.__name__), ids=lambda wf: wf.__name__)
@pytest.mark.parametrize("start_input", [None, "not an object", [1, 2]], ids=["null", "string", "list"])
async def test_every_workflow_refuses_a_non_object_start_input_cleanly(env, workflow, start_input):
    environment, tq = env
    handle = await environment.client.start_workflow(
        workflow.run, start_input, id=f"bad-{workflow.__name__}-{uuid.uuid4().hex[:6]}", task_queue=tq,
        execution_timeout=timedelta(minutes=5))
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert re.search("InvalidInput|missing or unreadable|validation error", str(info.value.cause)), info.value.cause
    await _no_task_failures(handle)
