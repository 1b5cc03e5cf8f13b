"""Committed histories of real runs, replayed against today's code: a change to a workflow's
logic that would break running workflows fails here (use `workflow.patched`; docs/replay.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.catalog import ALL_WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "replay" / "histories").glob("*.json"))


def test_every_workflow_type_has_a_committed_history():
    covered = {path.name.split("--", 1)[0] for path in HISTORIES}
    names = {wf.__temporal_workflow_definition.name for wf in ALL_WORKFLOWS}
    missing = names - covered
    assert not missing, f"add replay fixtures for {sorted(missing)} (docs/replay.md)"


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem.split("--", 1)[1], path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path):
    history = _load(path)
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
