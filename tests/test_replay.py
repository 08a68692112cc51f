"""Replays recorded histories against the current workflow code: a change that would break orders
already running in production fails here (use workflow.patched() for such changes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS, workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded():
    assert len(HISTORIES) >= 3, "run `make histories` to record the replay fixtures"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path):
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(
        WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    )
    assert result.replay_failure is None
