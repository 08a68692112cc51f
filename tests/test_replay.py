"""Replays recorded histories against the current workflow code: a change that would break orders
already running on this build fails here (such a change ships as a new build: docs/versioning.md)."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from models.orders import PlaceOrder
from models.workflow_names import ORDER_WORKFLOW
from tests.conftest import TEST_CONVERTER
from worker import WORKFLOWS, workflow_runner

# `binary/encrypted` as the history JSON writes metadata values: base64
ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()
HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
# Every path a person can drive, as 1.0 runs it (`make histories` records them from the fast tier)
PATHS = {
    "completed_with_feedback",
    "payment_declined",
    "held_then_released",
    "hold_timeout",
    "backordered_then_filled",
    "backorder_timeout",
    "cancelled_in_release_window",
    "cancelled_after_pack",
    "cancelled_from_temporal_after_pick",
    "cancelled_from_temporal_after_handover",
    "short_pick_reallocated",
    "short_pick_backordered",
    "short_pick_lines_cancelled",
    "partial_cancel_in_release_window",
    "partial_cancel_after_pick",
    "lost_parcel_reship",
    "lost_parcel_refund",
    "lost_parcel_refunded_by_timeout",
    "three_failed_deliveries",
    "return_good",
    "return_damaged",
    "exchange",
    "compensation_incident",
    "replenishment-replenishment",
    "forecast_true-forecast",
    "sandbox_parties-sandbox_warehouse",
    "sandbox_parties-sandbox_carrier",
}


def test_every_path_has_a_recorded_history():
    assert {p.stem for p in HISTORIES} >= PATHS, "run `make histories` to record the replay fixtures"


def _encrypted(path: Path) -> bool:
    return ENCRYPTED in path.read_text()


def test_histories_with_and_without_the_payload_codec_are_both_kept():
    """Encrypted histories prove the codec's payloads replay; plain ones, a deployment without it."""
    assert any(_encrypted(p) for p in HISTORIES) and any(not _encrypted(p) for p in HISTORIES)


def test_histories_are_of_the_one_code_path():
    """1.0 has no patch markers; a change after it ships as a new worker build (docs/versioning.md)."""
    marked = [p.stem for p in HISTORIES if '"markerName": "core_patch"' in p.read_text()]
    assert marked == []


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path):
    replayer = Replayer(workflows=WORKFLOWS, data_converter=TEST_CONVERTER, workflow_runner=workflow_runner())
    result = await replayer.replay_workflow(
        WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    )
    assert result.replay_failure is None


@workflow.defn(name=ORDER_WORKFLOW, sandboxed=False)
class _OrderThatWaitsFirst:
    """An incompatible change to the order: a timer before anything else, where every recorded order
    starts with its first step (a local activity)."""

    @workflow.run
    async def run(self, request: PlaceOrder) -> None:
        await workflow.sleep(timedelta(seconds=1))


@pytest.mark.parametrize("name", ["completed_with_feedback", "plain_payment_declined"])
async def test_a_history_against_an_incompatible_workflow_fails_with_nondeterminism(name: str):
    """The replay test can fail: a recorded order replayed against a workflow whose commands differ is
    refused with a nondeterminism error, as a worker would refuse it in production."""
    path = Path(__file__).parent / "histories" / f"{name}.json"
    replayer = Replayer(workflows=[_OrderThatWaitsFirst], data_converter=TEST_CONVERTER)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(WorkflowHistory.from_json(f"replay-{name}", path.read_text()))
