"""Issue 22: the order's vocabulary as types. Every event type the workflows write is an
`OrderEventType`; migration 0013 adds `order_events.reason_code`, 0014 gives older rows the code
their text names; every message the order sends is a `NotificationKind` with a template."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import text

from activities.notifications import TEMPLATES
from db import alembic_config, migrate
from models import tables as t
from models.choices import CarrierEventType
from models.events import OrderEventType, ReasonCode
from models.orders import OrderStatus, ShipmentStatus, ShipmentTrouble
from models.shipping import PARCEL_LOST
from models.steps import NotificationKind
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
            arg = ast.unparse(node.args[index]).removeprefix("event_type or ")  # an override, else this
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
    for scan in CarrierEventType:  # a scan that can leave the status as it was has its own event
        changes_status = scan in (CarrierEventType.delivered, *PARCEL_LOST)
        assert (OrderEventType.of_scan(scan) is None) == changes_status, scan


# (event type, text as the code before migration 0013 wrote it) -> the code 0014 gives the row
OLDER_ROWS: list[tuple[str, str, str | None]] = [
    ("order_rejected", "payment declined: card_declined (not one of ...)", ReasonCode.payment_declined),
    ("order_rejected", "out of stock: SKU-1 short by 3", ReasonCode.out_of_stock),
    ("order_rejected", "line 1: unknown SKU FOO; line 2: SKU BAR is not active", ReasonCode.unknown_sku),
    (
        "order_rejected",
        "line 1: unit price 9.00 for X differs from catalog price 10.00",
        ReasonCode.price_mismatch,
    ),
    ("order_rejected", "invalid order: at least one line is required", ReasonCode.invalid_order),
    ("order_rejected", "the data cannot be stored: a value is too long", ReasonCode.invalid_data),
    (
        "order_cancelled",
        "cancelled: out of stock says the customer (by cli:ann)",
        ReasonCode.cancelled_by_support,
    ),
    ("order_cancelled", "cancelled from Temporal by an operator: test", ReasonCode.cancelled_from_temporal),
    ("order_cancelled", "on hold for longer than 3 days, 0:00:00", ReasonCode.hold_timeout),
    (
        "order_cancelled",
        "still out of stock 7 days, 0:00:00 after backordering",
        ReasonCode.backorder_timeout,
    ),
    ("order_cancelled", "Olist status unavailable", ReasonCode.cancelled_at_source),
    ("order_cancelled", "every line was cancelled by a cancellation invoice", ReasonCode.cancelled_at_source),
    ("order_backordered", "out of stock: A short by 3; on order: 10 x A", ReasonCode.out_of_stock),
    (
        "order_on_hold",
        "customer e-mail x@y.z is on the blocklist (chargebacks)",
        ReasonCode.blocklisted_customer,
    ),
    ("order_on_hold", "order total 900.00 is above the review limit 500", ReasonCode.above_review_limit),
    ("order_completed", "nothing was delivered", ReasonCode.nothing_delivered),
    (
        "shipment_resolved",
        "O-S1: refunded 5.00 EUR (no choice within 3 days, 0:00:00)",
        ReasonCode.exception_timeout,
    ),
    ("shipment_resolved", "O-S1: reshipped as O-S2 (chosen by console:ann)", None),
    ("order_rejected", "the gateway said something new", None),  # no rule reads it: it stays without
    ("order_completed", "return window closed", None),
]


def test_migrations_0013_and_0014_give_older_events_the_codes_their_texts_name(tmp_path):
    with fresh_database(tmp_path, "m0014") as (url, sessions):
        command.downgrade(alembic_config(url), "0012")
        at = datetime.now(UTC)
        with sessions.begin() as session:
            add_order_row(session, "M14-1", "C14", status="rejected", payment_status="declined", placed_at=at)
            for seq, (type_, detail, _) in enumerate(OLDER_ROWS, start=1):
                session.execute(  # the table as 0012 had it: no reason_code column for the ORM to write
                    text(
                        "INSERT INTO order_events (order_id, seq, at, type, detail)"
                        " VALUES ('M14-1', :seq, :at, :type, :detail)"
                    ),
                    {"seq": seq, "at": at, "type": type_, "detail": detail},
                )
        migrate(url)
        with sessions() as session:
            rows = session.query(t.OrderEvent).filter_by(order_id="M14-1").order_by(t.OrderEvent.seq).all()
            assert [(e.type, e.detail, e.reason_code) for e in rows] == OLDER_ROWS


def test_every_message_kind_has_its_template_and_nothing_else_has_one():
    assert set(TEMPLATES) == set(NotificationKind)


# (type, text) as the workflows wrote carrier scans before migration 0017 -> the type 0017 gives the row
OLDER_SCANS: list[tuple[str, str, str]] = [
    ("shipment_shipped", "O-S1: in_transit at Leipzig hub (by carrier-api)", "parcel_in_transit"),
    ("shipment_shipped", "O-S1: in_transit", "parcel_in_transit"),
    ("shipment_shipped", "O-S1: out_for_delivery at Berlin", "parcel_out_for_delivery"),
    ("shipment_exception", "O-S1: out_for_delivery", "parcel_out_for_delivery"),  # moving again
    ("shipment_shipped", "O-S1: delivery_failed (attempt 1 of 3)", "parcel_delivery_failed"),
    ("shipment_shipped", "O-S1: exception at customs", "parcel_held_up"),
    # a status change stays the status's event: the last failed attempt, a loss, the handover
    ("shipment_exception", "O-S1: delivery_failed (attempt 3 of 3)", "shipment_exception"),
    ("shipment_exception", "O-S1: lost at Leipzig hub", "shipment_exception"),
    ("shipment_shipped", "O-S1 with DHL, tracking T1 (by wh-anna)", "shipment_shipped"),
]
# and a lost parcel's resolution, worded with one pair of brackets
OLDER_RESOLUTION = ("shipment_resolved", "O-S1: refunded 5.00 EUR (chosen (by cli:ann))")
WORDED_RESOLUTION = ("shipment_resolved", "O-S1: refunded 5.00 EUR (chosen by cli:ann)")


def test_migration_0017_gives_older_scans_their_types_and_rewords_resolutions(tmp_path):
    with fresh_database(tmp_path, "m0017") as (url, sessions):
        command.downgrade(alembic_config(url), "0014")
        at = datetime.now(UTC)
        with sessions.begin() as session:
            add_order_row(session, "M17-1", "C17", status="shipped", payment_status="captured", placed_at=at)
            for seq, (type_, detail, _) in enumerate([*OLDER_SCANS, (*OLDER_RESOLUTION, "")], start=1):
                session.execute(
                    text(
                        "INSERT INTO order_events (order_id, seq, at, type, detail)"
                        " VALUES ('M17-1', :seq, :at, :type, :detail)"
                    ),
                    {"seq": seq, "at": at, "type": type_, "detail": detail},
                )
        migrate(url)
        with sessions() as session:
            rows = session.query(t.OrderEvent).filter_by(order_id="M17-1").order_by(t.OrderEvent.seq).all()
            assert [(e.type, e.detail) for e in rows] == [
                *((new, detail) for _, detail, new in OLDER_SCANS),
                WORDED_RESOLUTION,
            ]
            assert {e.type for e in rows} <= set(OrderEventType)
