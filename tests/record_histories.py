"""Records workflow histories for the replay test: `make histories` (not part of the suite).

Run it when the workflow changes on purpose in a way running orders must survive; the recorded
files are committed, and tests/test_replay.py replays them against the current workflow code.

A history already recorded is never overwritten (set OMS_RERECORD=1 to force it): old histories are
the proof that runs started by older code, and before the payload codec, still replay. New ones are
encrypted with the suite's test key (tests/histories/test-codec-keys.txt).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.inventory import InventoryActivities
from config import SandboxMode
from domain.catalog import load_catalog
from models.catalog import CatalogFile
from models.fulfilment import CarrierEvent, PickedLine, ResolveRequest, WarehouseReport, WarehouseStep
from models.orders import FeedbackIn, OrderInput, ReturnReceipt, ReturnRequest, ShipmentLine
from models.shipping import CarrierEventType, Resolution, ShortPickPolicy
from models.steps import ReserveRequest
from models.workflow_names import sandbox_carrier_workflow_id, sandbox_warehouse_workflow_id
from services.fulfilment import resolve_shipment, submit_carrier_event, submit_warehouse_report
from services.orders import (
    add_note,
    cancel_order,
    confirm_delivery,
    give_feedback,
    handle,
    order_view,
    place_order,
    policy_from,
    receive_return,
    release_order,
    request_return,
    wait_until_settled,
)
from tests.helpers import (
    add_products,
    eventually,
    order_doc,
    place,
    set_stock,
    update_accepted,
    wait_status,
)

HISTORIES = Path(__file__).parent / "histories"

pytestmark = pytest.mark.usefixtures("worker")


async def _save(client: Client, order_id: str, name: str) -> None:
    await _save_run(handle(client, order_id), name)


async def _save_run(run: WorkflowHandle, name: str) -> None:
    path = HISTORIES / f"{name}.json"
    if path.exists() and not os.environ.get("OMS_RERECORD"):
        pytest.skip(f"{path.name} is recorded already (OMS_RERECORD=1 records it again)")
    history = await run.fetch_history()
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1))


@pytest.mark.parametrize("name", ["completed_with_feedback", "encrypted_completed_with_feedback"])
async def test_record_completed_with_feedback(client, settings, sessions, name):
    skus = add_products(sessions, {"TEE": 5, "MUG": 5}, price="12.50")
    order_id = await place(
        client, settings, order_doc([(skus["TEE"], 2), (skus["MUG"], 1)]), return_window=timedelta(seconds=3)
    )
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await wait_status(client, order_id, "delivered")
    await give_feedback(client, order_id, FeedbackIn(score=4, comment="quick"))
    await handle(client, order_id).result()
    await _save(client, order_id, name)


@pytest.mark.parametrize("name", ["payment_declined", "encrypted_payment_declined"])
async def test_record_declined(client, settings, sessions, name):
    skus = add_products(sessions, {"TEE": 5})
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)], token="tok_declined"))
    await handle(client, order_id).result()
    await _save(client, order_id, name)


async def test_record_overdue_then_delivered(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 5})
    order_id = await place(
        client,
        settings,
        order_doc([(skus["TEE"], 1)], token="tok_flaky"),
        delivery_sla=timedelta(seconds=1),
        return_window=timedelta(seconds=1),
    )
    await wait_status(client, order_id, "shipped")
    await eventually(lambda: order_view(client, order_id), lambda v: v.overdue, timeout=20)
    await confirm_delivery(client, order_id)
    await handle(client, order_id).result()
    await _save(client, order_id, "overdue_then_delivered")


async def test_record_cancelled_while_on_hold(client, settings, sessions):
    skus = add_products(sessions, {"TV": 2}, price="900.00")
    order_id = await place(client, settings, order_doc([(skus["TV"], 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")
    await cancel_order(client, order_id, "customer asked")
    await handle(client, order_id).result()
    await _save(client, order_id, "cancelled_on_hold")


async def test_record_cancelled_in_release_window(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 3})
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)]), release_delay=timedelta(hours=1))
    await eventually(lambda: order_view(client, order_id), lambda v: v.releases_at is not None)
    await cancel_order(client, order_id, "customer asked")
    await handle(client, order_id).result()
    await _save(client, order_id, "cancelled_in_release_window")


async def test_record_cancel_returns_stock_of_a_lost_task(client, sessions, gated_worker):
    """tests/test_cancel.py's lost workflow task: the safety net returns the stock it booked."""
    settings, gates = await gated_worker("authorize_payment")
    skus = add_products(sessions, {"TEE": 3})
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)]))
    await wait_status(client, order_id, "received")
    request = ReserveRequest(
        order_id=order_id, shipment_prefix=f"{order_id}-S", lines=[ShipmentLine(sku=skus["TEE"], quantity=1)]
    )
    InventoryActivities(sessions).reserve_stock(request)
    task = asyncio.ensure_future(cancel_order(client, order_id, "customer asked"))
    await eventually(lambda: update_accepted(client, order_id), bool)
    gates["authorize_payment"].set()
    await task
    await handle(client, order_id).result()
    await _save(client, order_id, "cancel_returns_stock_of_a_lost_task")


async def test_record_carrier_refusal_compensated(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 5})
    doc = order_doc([(skus["TEE"], 1)])
    doc["shipping_address"]["postal_code"] = "REFUSE"
    order_id = await place(client, settings, doc)
    await handle(client, order_id).result()
    await _save(client, order_id, "carrier_refused_compensated")


@pytest.mark.parametrize("name", ["returns_and_exchange", "lean_returns_and_exchange"])
async def test_record_returns_and_exchange(client, settings, sessions, name):
    skus = add_products(sessions, {"TEE": 5, "MUG": 5}, price="12.50")
    order_id = await place(
        client, settings, order_doc([(skus["TEE"], 2)]), return_window=timedelta(seconds=8)
    )
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await eventually(lambda: order_view(client, order_id), lambda v: v.return_window_ends is not None)
    refund = await request_return(
        client, order_id, ReturnRequest(sku=skus["TEE"], quantity=1, reason="small")
    )
    exchange = await request_return(
        client,
        order_id,
        ReturnRequest(sku=skus["TEE"], quantity=1, reason="colour", exchange_sku=skus["MUG"]),
    )
    await receive_return(client, order_id, ReturnReceipt(rma=refund.rma))
    await receive_return(client, order_id, ReturnReceipt(rma=exchange.rma, condition="damaged"))
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: any(s.exchange_for and s.status == "shipped" for s in v.shipments),
    )
    await confirm_delivery(client, order_id, next(s.id for s in view.shipments if s.exchange_for))
    await handle(client, order_id).result()
    await _save(client, order_id, name)


async def test_record_backordered_then_served(client, sessions, gated_worker):
    settings, _ = await gated_worker(supplier_lead_time=timedelta(seconds=2))
    sku = add_products(sessions, {"SAW": 1})["SAW"]
    load_catalog(
        sessions,
        CatalogFile.model_validate(
            {"stock": [{"sku": sku, "warehouse": "W1", "on_hand": 1, "reorder_point": 1, "reorder_qty": 5}]}
        ),
    )
    first = await place(client, settings, order_doc([(sku, 1)]))  # takes the last unit: replenishment starts
    await wait_status(client, first, "shipped")
    order_id = await place(client, settings, order_doc([(sku, 2)]), return_window=timedelta(seconds=1))
    await wait_status(client, order_id, "backordered")
    await wait_status(client, order_id, "shipped", timeout=20)
    await confirm_delivery(client, order_id)
    await handle(client, order_id).result()
    # since patch backorder-asks-for-stock (backordered_then_served: before it)
    await _save(client, order_id, "backordered_asks_for_stock_then_served")


async def test_record_held_released_by_name_over_the_door(client, settings, sessions):
    """Since the HTTP API: placed and waited for (the wait_settled update), released, noted, delivered and
    given feedback with the caller named (`by`) in every message."""
    skus = add_products(sessions, {"TV": 2}, price="900.00")
    doc = order_doc([(skus["TV"], 1)])
    placement = await place_order(
        client,
        settings,
        OrderInput.model_validate(doc),
        policy_from(settings).model_copy(
            update={"review_above": Decimal("500"), "return_window": timedelta(seconds=2)}
        ),
        by="shop-connector",
    )
    order_id = placement.order_id
    assert (await wait_until_settled(client, order_id)).status == "on_hold"
    await add_note(client, order_id, "called the customer", by="alice")
    await release_order(client, order_id, by="alice")
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id, by="parcel-carrier")
    await wait_status(client, order_id, "delivered")
    await give_feedback(client, order_id, FeedbackIn(score=5), by="shop-connector")
    await handle(client, order_id).result()
    await _save(client, order_id, "held_released_by_name")


@pytest.mark.parametrize(
    "name", ["cancelled_from_temporal_while_picking", "lean_cancelled_from_temporal_while_picking"]
)
async def test_record_cancelled_from_temporal_while_picking(client, sessions, gated_worker, name):
    """Since Temporal's own cancellation compensates: cancelled from the Web UI while a pick was in flight;
    the pick completes, then everything is undone and the run ends Canceled."""
    settings, gates = await gated_worker("record_pick")
    skus = add_products(sessions, {"TEE": 5})
    order_id = await place(client, settings, order_doc([(skus["TEE"], 2)]))
    await wait_status(client, order_id, "picking")
    await handle(client, order_id).cancel(reason="duplicate order")
    gates["record_pick"].set()

    async def run_status() -> WorkflowExecutionStatus | None:
        return (await handle(client, order_id).describe()).status

    await eventually(run_status, lambda status: status == WorkflowExecutionStatus.CANCELED)
    await _save(client, order_id, name)


# ---- warehouses and carriers as parties (workflows/parties.py) ----


@pytest.mark.parametrize(
    "name",
    [
        "parties_delivered",
        "lean_delivered",
        "lean_pack_confirms_pick_delivered",  # since the sandbox's `sandbox-pack-confirms-pick`
        "lean_write_at_pause_delivered",  # since `write-at-pause`: one write for pick and pack
        "lean_tracking_at_booking_delivered",  # since `tracking-at-booking`: no tracking step of its own
    ],
)
async def test_record_parties_delivered(client, settings, sessions, name):
    """The sandbox warehouse picks, packs and hands over; the carrier's events come in; delivered."""
    skus = add_products(sessions, {"TEE": 5}, price="12.50")
    order_id = await place(
        client, settings, order_doc([(skus["TEE"], 2)]), return_window=timedelta(seconds=3)
    )
    view = await wait_status(client, order_id, "shipped")
    tracking = view.shipments[0].tracking_number
    assert tracking is not None
    for kind in (CarrierEventType.in_transit, CarrierEventType.out_for_delivery, CarrierEventType.delivered):
        await submit_carrier_event(
            client,
            sessions,
            CarrierEvent(
                tracking_number=tracking, type=kind, event_id=f"rec-{kind.value}", at=datetime.now(UTC)
            ),
        )
    await wait_status(client, order_id, "delivered")
    await handle(client, order_id).result()
    await _save(client, order_id, name)


async def test_record_lean_low_stock_replenished(client, settings, sessions):
    """Since `leaner-steps`: the reservation takes the stock to its reorder point, so the
    order starts its replenishment (a run of its own) before it is confirmed."""
    skus = add_products(sessions, {"BOLT": 6}, price="3.00")
    set_stock(sessions, skus["BOLT"], "W1", 6, reorder_point=5, reorder_qty=20)
    order_id = await place(client, settings, order_doc([(skus["BOLT"], 2)]))
    view = await wait_status(client, order_id, "shipped")
    assert any(e.type == "order_confirmed" for e in view.events)
    await _save(client, order_id, "lean_low_stock_replenished")


@pytest.mark.parametrize(
    "name",
    [
        "sandbox_warehouse_reports_each_step",  # recorded before `sandbox-pack-confirms-pick`
        "sandbox_warehouse_pack_confirms_pick",
    ],
)
async def test_record_sandbox_warehouse(client, settings, sessions, name):
    """The sandbox warehouse's own run, from release to handover."""
    skus = add_products(sessions, {"TEE": 5}, price="12.50")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 2)]))
    view = await wait_status(client, order_id, "shipped")
    sandbox = client.get_workflow_handle(sandbox_warehouse_workflow_id(view.shipments[0].id))
    assert await sandbox.result() == "handed over"
    await _save_run(sandbox, name)


@pytest.mark.parametrize("name", ["parties_short_pick_and_lost_parcel", "lean_short_pick_and_lost_parcel"])
async def test_record_parties_short_pick_and_lost_parcel(client, sessions, gated_worker, name):
    """A manual warehouse picks short (those lines cancelled); the carrier loses the parcel; support
    has it refunded."""
    own, _ = await gated_worker(
        sandbox_warehouse=SandboxMode.manual, short_pick_policy=ShortPickPolicy.cancel_lines
    )
    skus = add_products(sessions, {"PEN": 2, "INK": 5}, price="5.00")
    order_id = await place(client, own, order_doc([(skus["PEN"], 2), (skus["INK"], 1)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    report = WarehouseReport(
        shipment_id=shipment.id, step=WarehouseStep.picked, lines=[PickedLine(sku=skus["PEN"], quantity=1)]
    )
    await submit_warehouse_report(client, report)
    packed = WarehouseReport(shipment_id=shipment.id, step=WarehouseStep.packed, parcels_g=[300])
    await submit_warehouse_report(client, packed)
    await submit_warehouse_report(
        client, WarehouseReport(shipment_id=shipment.id, step=WarehouseStep.handed_over)
    )
    view = await wait_status(client, order_id, "shipped")
    lost = CarrierEvent(
        tracking_number=view.shipments[0].tracking_number or "",
        type=CarrierEventType.lost,
        event_id="rec-lost",
        at=datetime.now(UTC),
    )
    await submit_carrier_event(client, sessions, lost)
    await wait_status(client, order_id, "delivery_exception")
    await resolve_shipment(
        client, order_id, ResolveRequest(shipment_id=shipment.id, resolution=Resolution.refund)
    )
    await handle(client, order_id).result()
    await _save(client, order_id, name)


async def test_record_report_during_release_delivered(client, sessions, gated_worker):
    """A manual warehouse confirms pick and pack while the pick list is still on its way (the release
    step held): the report is taken, and acted on once the release returns; then delivered."""
    own, gates = await gated_worker("release_shipment", sandbox_warehouse=SandboxMode.manual)
    skus = add_products(sessions, {"TEE": 5}, price="12.50")
    order_id = await place(client, own, order_doc([(skus["TEE"], 2)]), return_window=timedelta(seconds=3))
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: bool(v.shipments) and v.shipments[0].released_at is not None,
    )
    shipment_id = view.shipments[0].id
    packed = WarehouseReport(shipment_id=shipment_id, step=WarehouseStep.packed, parcels_g=[500])
    sent = asyncio.create_task(submit_warehouse_report(client, packed))
    await eventually(lambda: update_accepted(client, order_id), bool)
    gates["release_shipment"].set()
    await sent
    await submit_warehouse_report(
        client, WarehouseReport(shipment_id=shipment_id, step=WarehouseStep.handed_over)
    )
    view = await wait_status(client, order_id, "shipped")
    tracking = view.shipments[0].tracking_number or ""
    await submit_carrier_event(
        client,
        sessions,
        CarrierEvent(
            tracking_number=tracking,
            type=CarrierEventType.delivered,
            event_id="rec-delivered",
            at=datetime.now(UTC),
        ),
    )
    await wait_status(client, order_id, "delivered")
    await handle(client, order_id).result()
    await _save(client, order_id, "lean_report_during_release_delivered")


@pytest.mark.parametrize(
    "name",
    [
        "sandbox_carrier_from_the_handover",  # recorded before `sandbox-carrier-waits-for-pickup`
        "sandbox_carrier_waits_for_pickup",
    ],
)
async def test_record_sandbox_carrier(client, sessions, gated_worker, name):
    """The sandbox carrier's own run, from the moment the order asks it to track the parcel to delivered."""
    own, _ = await gated_worker(
        sandbox_warehouse=SandboxMode.auto,
        sandbox_carrier=SandboxMode.auto,
        sandbox_transit_time=timedelta(seconds=1),
        sandbox_loss_rate=0.0,
    )
    skus = add_products(sessions, {"TEE": 5}, price="12.50")
    order_id = await place(client, own, order_doc([(skus["TEE"], 2)]))
    view = await wait_status(client, order_id, "delivered", timeout=60)
    carrier = client.get_workflow_handle(sandbox_carrier_workflow_id(view.shipments[0].tracking_number or ""))
    assert await carrier.result() == "delivered"
    await _save_run(carrier, name)


async def test_record_replenishment_orders_again_for_backorders(client, sessions, gated_worker):
    """A replenishment since `po-quantity-from-the-purchase-order`: its purchase order arrives on
    schedule (received at the purchase order's quantity), the order waiting for it wants more, so the
    replenishment orders again (continue-as-new) for what that order wants. Its first run is recorded."""
    from domain.stock import purchase_orders
    from models.steps import StockKey
    from services.replenishment import replenish_if_low

    settings, _ = await gated_worker(supplier_lead_time=timedelta(seconds=4))
    sku = add_products(sessions, {"PLANE": 0})["PLANE"]
    set_stock(sessions, sku, "W1", 0, reorder_point=0, reorder_qty=2)
    (workflow_id,) = await replenish_if_low(
        client,
        sessions,
        settings.task_queue,
        settings.supplier_lead_time,
        [StockKey(sku=sku, warehouse="W1")],
    )
    first = client.get_workflow_handle(
        workflow_id, run_id=(await client.get_workflow_handle(workflow_id).describe()).run_id
    )

    async def raised() -> list[int]:
        return [po.quantity for po in purchase_orders(sessions) if po.sku == sku]

    await eventually(raised, lambda quantities: quantities == [2])
    order_id = await place(client, settings, order_doc([(sku, 5)]))  # 2 on order: it waits for more
    await wait_status(client, order_id, "backordered")
    await eventually(first.describe, lambda d: d.status == WorkflowExecutionStatus.CONTINUED_AS_NEW)
    await eventually(raised, lambda quantities: quantities == [2, 2 + 3])
    await wait_status(client, order_id, "shipped")
    await _save_run(first, "replenishment_orders_again_for_backorders")
