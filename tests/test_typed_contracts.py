"""Issue 22: the order's vocabulary as types. Every event type the workflows write is an
`OrderEventType`; migration 0013 adds `order_events.reason_code` and leaves older rows without one."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import text

from db import alembic_config, migrate
from models import tables as t
from models.events import OrderEventType, ReasonCode
from models.orders import OrderStatus, ShipmentStatus, ShipmentTrouble
from tests.helpers import add_order_row, fresh_database

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def _event_type_arguments() -> list[tuple[str, str]]:
    """(where, source) of the event-type argument of every `.event(...)` and `.set_status(...)` call
    in workflows/ that records an order event (a shipment's set_status takes a ShipmentStatus)."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            index = {"event": 0, "set_status": 1}.get(node.func.attr)
            if index is None or len(node.args) <= index:
                continue
            arg = ast.unparse(node.args[index])
            if arg.startswith("ShipmentStatus.") or arg in ("status or shipment.status", "event_type"):
                continue  # a shipment's status (fulfilment.set_status), or a delegation
            found.append((f"{path.name}:{node.lineno}", arg))
    return found


def test_every_event_type_the_workflows_write_is_an_enum_member():
    found = _event_type_arguments()
    assert len(found) > 30  # the scan sees the calls
    for where, arg in found:
        if arg.startswith("OrderEventType.of_"):
            continue  # a mapping, checked below
        assert arg.startswith("OrderEventType."), f"{where}: event type {arg} is not an OrderEventType"
        assert arg.removeprefix("OrderEventType.") in OrderEventType.__members__, f"{where}: {arg}"


def test_the_dynamic_event_names_map_every_status_they_can_take():
    for status in ShipmentStatus:  # today's f"shipment_{status}" names
        assert OrderEventType.of_shipment(status) == f"shipment_{status.value}"
    for status in OrderStatus:
        if status.value in ("picking", "packed", "shipped", "delivered", "delivery_exception"):
            continue  # an order reaches these through its shipments' events
        assert OrderEventType.of_order(status) == f"order_{status.value}"
    for trouble in ShipmentTrouble:  # a parcel's trouble is also the reason code of its exception event
        assert ReasonCode(trouble.value)


def test_migration_0013_adds_reason_codes_and_keeps_older_events(tmp_path):
    with fresh_database(tmp_path, "m0013") as (url, sessions):
        command.downgrade(alembic_config(url), "0012")
        at = datetime.now(UTC)
        with sessions.begin() as session:
            add_order_row(session, "M13-1", "C13", status="rejected", payment_status="declined", placed_at=at)
            session.execute(  # the table as 0012 had it: no reason_code column for the ORM to write
                text(
                    "INSERT INTO order_events (order_id, seq, at, type, detail)"
                    " VALUES ('M13-1', 1, :at, 'order_rejected', 'payment declined: card_declined')"
                ),
                {"at": at},
            )
        migrate(url)
        with sessions.begin() as session:
            old = session.query(t.OrderEvent).filter_by(order_id="M13-1").one()
            assert (old.type, old.detail, old.reason_code) == (
                OrderEventType.order_rejected,
                "payment declined: card_declined",
                None,
            )
            session.add(
                t.OrderEvent(
                    order_id="M13-1",
                    seq=2,
                    at=at,
                    type=OrderEventType.support_note,
                    detail="x",
                    reason_code=ReasonCode.cancelled_by_support,
                )
            )
        with sessions() as session:
            codes = [
                e.reason_code for e in session.query(t.OrderEvent).filter_by(order_id="M13-1").order_by("seq")
            ]
            assert codes == [None, "cancelled_by_support"]
