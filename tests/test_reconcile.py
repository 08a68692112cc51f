"""`starter.py reconcile`: terminate is the emergency brake (no code runs, so no compensation); reconcile
settles what the terminated run left held — authorization voided, reservations released, the order
cancelled — and a second run finds nothing to do. It also reports runs whose input could not be read,
which fail at once instead of retrying their first workflow task for ever."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from config import Settings
from models import tables as t
from models.workflow_names import ORDER_WORKFLOW, order_workflow_id
from services.orders import handle, policy_from
from tests.helpers import (
    add_products,
    assert_ledger_invariants,
    assert_stock_check_clean,
    cli,
    events,
    eventually,
    ledger,
    order_doc,
    place,
    stock_movements,
    stock_of,
    unique,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")


async def closed_as(client: Client, order_id: str, status: str) -> None:
    """Wait until visibility lists the order's run with this ExecutionStatus (it lags a little)."""
    query = f"WorkflowId = '{order_workflow_id(order_id)}' AND ExecutionStatus = '{status}'"

    async def found() -> list[str]:
        return [w.id async for w in client.list_workflows(query)]

    await eventually(found, lambda ids: ids != [])


async def reconcile(settings: Settings, *flags: str) -> tuple[int, dict[str, Any]]:
    status, out = await cli(settings, "reconcile", "--json", *flags)
    report = json.loads(out)
    # the suite's database holds other tests' orders too: the exit status follows the whole report
    assert status == (1 if any(o["problems"] for o in report["orders"]) else 0)
    return status, report


def entry(report: dict[str, Any], order_id: str) -> dict[str, Any] | None:
    return next((o for o in report["orders"] if o["order_id"] == order_id), None)


async def test_reconcile_settles_a_terminated_order_once(client, sessions, gated_worker):
    settings, _ = await gated_worker("record_pick")  # the pick never happens: the stock stays reserved
    sku = add_products(sessions, {"TEE": 5}, price="15.00")["TEE"]
    order_id = await place(client, settings, order_doc([(sku, 2)]))
    await wait_status(client, order_id, "picking")
    assert stock_of(sessions, sku) == (5, 2)

    await handle(client, order_id).terminate(reason="stuck, pulling the brake")
    await closed_as(client, order_id, "Terminated")
    assert stock_of(sessions, sku) == (5, 2)  # nothing ran: the authorization and the reservation stay
    assert ledger(sessions, order_id) == {"authorization": Decimal("30.00")}

    # a dry run says what it would do and changes nothing
    _, report = await reconcile(settings, "--dry-run")
    planned = entry(report, order_id)
    assert planned is not None and planned["run_status"] == "terminated"
    assert planned["settled"] == [
        "would void 30.00 EUR",
        f"would release 2 x {sku}@W1 ({order_id}-S1)",
        "would set status picking -> cancelled",
    ]
    assert stock_of(sessions, sku) == (5, 2) and "void" not in ledger(sessions, order_id)

    status, out = await cli(settings, "reconcile")
    (line,) = [line for line in out.splitlines() if line.startswith(order_id)]
    assert "terminated" in line and "voided 30.00 EUR (pay_" in line
    assert f"released 2 x {sku}@W1 ({order_id}-S1)" in line and "status picking -> cancelled" in line

    assert stock_of(sessions, sku) == (5, 0)
    assert [(m.kind, m.reserved_delta) for m in stock_movements(sessions, order_id)] == [
        ("reserve", 2),
        ("release", -2),
    ]
    assert ledger(sessions, order_id) == {"authorization": Decimal("30.00"), "void": Decimal("30.00")}
    assert assert_ledger_invariants(sessions, order_id).voided
    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == ("cancelled", "voided")
        void = session.query(t.Payment).filter_by(order_id=order_id, kind="void").one()
        assert void.idempotency_key == f"order-{order_id}:reconcile:void"
        shipment = session.get(t.Shipment, f"{order_id}-S1")
        assert shipment is not None and shipment.status == "cancelled"
    (reconciled,) = [e for e in events(sessions, order_id) if e.type == "reconciled"]
    assert reconciled.detail.startswith("run terminated: voided 30.00 EUR")
    await assert_stock_check_clean(settings, sku)

    # again: nothing left to settle for it
    _, report = await reconcile(settings)
    assert entry(report, order_id) is None
    assert ledger(sessions, order_id) == {"authorization": Decimal("30.00"), "void": Decimal("30.00")}
    assert stock_of(sessions, sku) == (5, 0)


async def test_reconcile_puts_back_units_picked_for_a_parcel_that_never_left(client, sessions, gated_worker):
    settings, _ = await gated_worker("record_pack")  # picked, never packed
    sku = add_products(sessions, {"MUG": 4}, price="8.00")["MUG"]
    order_id = await place(client, settings, order_doc([(sku, 3)]))
    await eventually(lambda: asyncio.to_thread(stock_of, sessions, sku), lambda level: level == (1, 0))
    await handle(client, order_id).terminate()
    await closed_as(client, order_id, "Terminated")

    _, report = await reconcile(settings)

    settled = entry(report, order_id)
    assert settled is not None and settled["problems"] == []
    assert settled["settled"][1:] == [
        f"put back 3 x {sku}@W1 ({order_id}-S1) (picked, never shipped)",
        "status picking -> cancelled",
    ]
    assert stock_of(sessions, sku) == (4, 0)
    assert [m.kind for m in stock_movements(sessions, order_id)] == ["reserve", "pick", "restock"]
    assert ledger(sessions, order_id) == {"authorization": Decimal("24.00"), "void": Decimal("24.00")}
    await assert_stock_check_clean(settings, sku)
    _, report = await reconcile(settings)
    assert entry(report, order_id) is None


async def test_reconcile_voids_a_terminated_hold(client, settings, sessions):
    sku = add_products(sessions, {"TV": 3}, price="900.00")["TV"]
    order_id = await place(client, settings, order_doc([(sku, 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")
    await handle(client, order_id).terminate()
    await closed_as(client, order_id, "Terminated")

    _, report = await reconcile(settings)

    settled = entry(report, order_id)
    assert settled is not None
    assert settled["settled"][0].startswith("voided 900.00 EUR") and settled["settled"][1:] == [
        "status on_hold -> cancelled"
    ]
    assert ledger(sessions, order_id) == {"authorization": Decimal("900.00"), "void": Decimal("900.00")}
    assert stock_of(sessions, sku) == (3, 0)
    _, report = await reconcile(settings)
    assert entry(report, order_id) is None


async def test_reconcile_settles_a_compensation_that_gave_up(client, settings, sessions):
    """A void that failed every attempt is an incident; the run completed with the order cancelled and
    the authorization open. Reconcile voids it once the gateway answers (the sandbox token that never
    voids keeps failing: reported, and exit status 1)."""
    sku = add_products(sessions, {"LAMP": 5}, price="12.50")["LAMP"]
    doc = order_doc([(sku, 1)], token="tok_void_unavailable")
    order_id = await place(client, settings, doc, review_above=Decimal("5"), compensation_attempts=1)
    await wait_status(client, order_id, "on_hold")
    status, _ = await cli(settings, "cancel", order_id, "--reason", "customer asked")
    assert status == 0
    await asyncio.wait_for(handle(client, order_id).result(), timeout=30)

    status, report = await reconcile(settings)

    assert status == 1
    failed = entry(report, order_id)
    assert failed is not None and failed["run_status"] == "completed" and failed["settled"] == []
    assert "void of 12.50 EUR failed: gateway timeout" in failed["problems"][0]
    assert ledger(sessions, order_id) == {"authorization": Decimal("12.50")}


def raw_order(settings: Settings, lines: int) -> dict[str, Any]:
    """A PlaceOrder as a plain document, as a source starting the workflow directly might send it."""
    sku = unique("SKU")
    doc = order_doc([(sku, 1)])
    doc["lines"] = [{"sku": sku, "quantity": 1} for _ in range(lines)]
    return {
        "order": doc,
        "policy": policy_from(settings).model_dump(mode="json"),
        "placed_at": datetime.now(UTC).isoformat(),
        "placed_by": "a-script",
    }


async def test_a_run_whose_input_the_model_refuses_fails_at_once(client, settings, sessions):
    document = raw_order(settings, lines=201)
    order_id = document["order"]["order_id"]
    started = await client.start_workflow(
        ORDER_WORKFLOW, document, id=order_workflow_id(order_id), task_queue=settings.task_queue
    )

    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(started.result(), timeout=20)

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "UnreadableOrderInput"
    assert cause.non_retryable and "order.lines" in cause.message and "200" in cause.message
    history = await started.fetch_history()
    types = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types  # no workflow task retried for ever
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    with sessions() as session:
        assert session.get(t.Order, order_id) is None  # nothing was recorded, nothing was charged

    await closed_as(client, order_id, "Failed")
    _, report = await reconcile(settings)
    (unreadable,) = [u for u in report["unreadable"] if u["workflow_id"] == order_workflow_id(order_id)]
    assert unreadable["run_status"] == "failed" and "order.lines" in unreadable["problem"]
    assert entry(report, order_id) is None
    status, out = await cli(settings, "reconcile")
    assert "runs whose input could not be decoded" in out
    assert any(line.startswith(order_workflow_id(order_id)) for line in out.splitlines())
    assert await cli(settings, "status", order_id) == (1, "")  # a clear refusal, not a traceback


async def test_a_valid_document_started_directly_still_runs(client, settings, sessions):
    """Taking the input raw changes nothing for a valid one (it is decoded exactly as before)."""
    sku = add_products(sessions, {"TEE": 5})["TEE"]
    document = raw_order(settings, lines=1)
    document["order"]["lines"] = [{"sku": sku, "quantity": 1}]
    order_id = document["order"]["order_id"]
    await client.start_workflow(
        ORDER_WORKFLOW, document, id=order_workflow_id(order_id), task_queue=settings.task_queue
    )
    view = await wait_status(client, order_id, "shipped")
    assert any(e.type == "order_received" and "(by a-script)" in e.detail for e in view.events)
