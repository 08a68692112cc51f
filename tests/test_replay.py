"""Replays recorded histories against the current workflow code: a change that would break orders
already running in production fails here (use workflow.patched() for such changes)."""

from __future__ import annotations

import base64
import json
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
from workflows.context import BACKORDER_ASKS_FOR_STOCK, LEAN_STEPS
from workflows.order import LEANER_STEPS, STOCK_OF_LOST_STEPS_RETURNED, TRACKING_AT_BOOKING, WRITE_AT_PAUSE
from workflows.sandbox_parties import PACK_CONFIRMS_PICK, WAITS_FOR_PICKUP

# `binary/encrypted` as the history JSON writes metadata values: base64
ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()
LEAN_PATCHES = (LEAN_STEPS, LEANER_STEPS, WRITE_AT_PAUSE, TRACKING_AT_BOOKING)  # each lean order carries one
HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded():
    assert len(HISTORIES) >= 3, "run `make histories` to record the replay fixtures"


def _encrypted(path: Path) -> bool:
    return ENCRYPTED in path.read_text()


def test_histories_from_before_and_after_the_codec_are_both_kept():
    """Plain histories prove that runs started before the codec still decode (they pass through);
    encrypted ones (the suite's test key) prove the codec's own payloads replay."""
    assert any(_encrypted(p) for p in HISTORIES) and any(not _encrypted(p) for p in HISTORIES)


def test_histories_of_lean_orders_are_kept():
    """Orders placed since `lean-steps` (local steps, batched writes) have their own recorded runs, and
    so do those since `leaner-steps`, `write-at-pause` and `tracking-at-booking` (each lean too, with its
    marker only)."""
    lean = {p.stem: _patches(p) for p in HISTORIES if p.stem.startswith("lean_")}
    runs = {patch: [name for name, patches in lean.items() if patch in patches] for patch in LEAN_PATCHES}
    assert len(runs[LEAN_STEPS]) >= 4 and len(runs[LEANER_STEPS]) >= 2 and len(runs[WRITE_AT_PAUSE]) >= 2
    assert len(runs[TRACKING_AT_BOOKING]) >= 1
    assert sum(len(names) for names in runs.values()) == len(lean)


def test_histories_of_the_sandbox_warehouse_before_and_after_one_report_are_kept():
    """Its runs from before `sandbox-pack-confirms-pick` (picked, weighing, packed) and since (one
    report of pick and pack) both replay: sandbox warehouses may be mid-run when a worker upgrades."""
    runs = {p.stem: _patches(p) for p in HISTORIES if p.stem.startswith("sandbox_warehouse_")}
    assert runs.get("sandbox_warehouse_reports_each_step") == set()
    assert runs.get("sandbox_warehouse_pack_confirms_pick") == {PACK_CONFIRMS_PICK}


def test_histories_of_the_sandbox_carrier_before_and_after_it_waits_for_pickup_are_kept():
    """Its runs started at the handover (before `sandbox-carrier-waits-for-pickup`) and since (started
    with the label, collecting the parcel first) both replay: carriers may be mid-journey at an upgrade."""
    runs = {p.stem: _patches(p) for p in HISTORIES if p.stem.startswith("sandbox_carrier_")}
    assert runs.get("sandbox_carrier_from_the_handover") == set()
    assert runs.get("sandbox_carrier_waits_for_pickup") == {WAITS_FOR_PICKUP}


def test_histories_of_backorders_before_and_after_they_ask_for_stock_are_kept():
    """A backordered order from before `backorder-asks-for-stock` (it waited for the purchase order it
    saw) and one since (still short on its first try, it asked for a replenishment) both replay."""
    runs = {p.stem: _patches(p) for p in HISTORIES if p.stem.startswith("backordered_")}
    assert BACKORDER_ASKS_FOR_STOCK not in runs["backordered_then_served"]
    assert BACKORDER_ASKS_FOR_STOCK in runs["backordered_asks_for_stock_then_served"]


def test_histories_of_cancellations_before_and_after_the_stock_safety_net_are_kept():
    """Cancelled orders from before `stock-of-lost-steps-returned` and since (their last undo returns
    what a lost workflow task booked: silent when there is nothing, as in the release window) replay."""
    runs = {p.stem: _patches(p) for p in HISTORIES}
    assert STOCK_OF_LOST_STEPS_RETURNED not in runs["cancelled_on_hold"]
    assert STOCK_OF_LOST_STEPS_RETURNED in runs["cancelled_in_release_window"]
    assert STOCK_OF_LOST_STEPS_RETURNED in runs["cancel_returns_stock_of_a_lost_task"]


def _patches(path: Path) -> set[str]:
    """The patch ids a recorded history's version markers carry."""
    ids = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_patch":
            for payload in marker["details"]["patch-data"]["payloads"]:
                ids.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return ids


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
    starts with its first step (a local activity, or an activity before lean steps)."""

    @workflow.run
    async def run(self, request: PlaceOrder) -> None:
        await workflow.sleep(timedelta(seconds=1))


@pytest.mark.parametrize("name", ["lean_tracking_at_booking_delivered", "completed_with_feedback"])
async def test_a_history_against_an_incompatible_workflow_fails_with_nondeterminism(name: str):
    """The replay test can fail: a recorded order replayed against a workflow whose commands differ is
    refused with a nondeterminism error, as a worker would refuse it in production."""
    path = Path(__file__).parent / "histories" / f"{name}.json"
    replayer = Replayer(workflows=[_OrderThatWaitsFirst], data_converter=TEST_CONVERTER)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(WorkflowHistory.from_json(f"replay-{name}", path.read_text()))
