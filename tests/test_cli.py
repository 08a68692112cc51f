"""The command line as support staff, carriers and operators use it, against the real stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from config import Settings
from db import SessionFactory
from models import tables as t
from models.orders import OrderInput, OrderPolicy, PlaceOrder, ShipmentLine
from models.steps import ReserveRequest
from tests.helpers import add_products, cli, eventually, order_doc, place, stock_of, unique, wait_status

pytestmark = pytest.mark.usefixtures("worker")


async def run_json(settings: Settings, *argv: str) -> Any:
    status, out = await cli(settings, *argv, "--json")
    assert status == 0
    return json.loads(out)


def count(sessions: SessionFactory, column: Any, *where: Any) -> int:
    with sessions() as session:
        return session.scalar(select(func.count(column)).where(*where)) or 0


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


# ---- status ----


async def test_status_json_is_the_live_view(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 5}, price="12.50")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 2)]))
    view = await wait_status(client, order_id, "shipped")

    doc = await run_json(settings, "status", order_id)

    assert (doc["order_id"], doc["status"], doc["payment_status"]) == (order_id, "shipped", "captured")
    assert (doc["total"], doc["currency"]) == ("25.00", "EUR")
    assert [(x["sku"], x["quantity"], x["unit_price"], x["line_total"]) for x in doc["lines"]] == [
        (skus["TEE"], 2, "12.50", "25.00")
    ]
    (shipment,) = doc["shipments"]
    (expected,) = view.shipments
    assert shipment["id"] == f"{order_id}-S1"
    assert (shipment["warehouse"], shipment["status"]) == ("W1", "shipped")
    assert (shipment["carrier"], shipment["tracking_number"]) == (expected.carrier, expected.tracking_number)
    assert shipment["tracking_number"].startswith("SBX")
    types = [e["type"] for e in doc["events"]]
    assert types[:2] == ["order_received", "order_validated"] and "shipment_shipped" in types
    assert all(set(e) == {"at", "type", "detail", "reason_code"} for e in doc["events"])
    assert datetime.fromisoformat(doc["events"][0]["at"]) <= datetime.now(UTC)
    assert doc["events"][1]["detail"] == "total 25.00 EUR"


async def test_status_for_people(client, settings, sessions):
    skus = add_products(sessions, {"MUG": 5})
    order_id = await place(client, settings, order_doc([(skus["MUG"], 1)]))
    view = await wait_status(client, order_id, "shipped")

    status, out = await cli(settings, "status", order_id)

    assert status == 0
    assert f"Order {order_id}  [shipped]  payment: captured" in out
    assert view.shipments[0].tracking_number in out
    cells = [line.split() for line in out.splitlines()]
    events_table = cells[cells.index(["AT", "EVENT", "DETAIL"]) + 2 :]  # after the header and its rule
    assert [row[2] for row in events_table] == [e.type for e in view.events]  # row: date, time, event, ...


async def test_status_of_an_unknown_order(settings, capsys):
    status, out = await cli(settings, "status", "NO-SUCH-ORDER")
    assert (status, out) == (1, "")
    assert "error: unknown order NO-SUCH-ORDER" in capsys.readouterr().err


# ---- list (Temporal visibility: eventually consistent) ----


async def test_list_by_customer_and_status(client, settings, sessions, capsys):
    skus = add_products(sessions, {"CAP": 10})
    customer = unique("CUST")
    doc = order_doc([(skus["CAP"], 1)])
    mine = [
        await place(
            client,
            settings,
            {**doc, "order_id": unique("T"), "customer": {**doc["customer"], "id": customer}},
        )
        for _ in range(2)
    ]
    await place(client, settings, order_doc([(skus["CAP"], 1)]))  # someone else's
    for order_id in mine:
        await wait_status(client, order_id, "shipped")

    listed = await eventually(
        lambda: run_json(settings, "list", "--customer", customer),
        lambda rows: (
            sorted((r["order_id"], r["status"]) for r in rows) == sorted((o, "shipped") for o in mine)
        ),
    )
    assert {(r["customer_id"], r["channel"], r["total"]) for r in listed} == {(customer, "web", "10.00")}

    status, _ = await cli(settings, "deliver", mine[0])
    assert status == 0
    delivered = await eventually(
        lambda: run_json(settings, "list", "--status", "delivered", "--customer", customer),
        lambda rows: len(rows) > 0,
    )
    assert [(r["order_id"], r["status"]) for r in delivered] == [(mine[0], "delivered")]

    status, out = await cli(settings, "list", "--customer", customer)
    assert status == 0 and mine[0] in out and mine[1] in out and "delivered" in out

    # a page at a time: the newest first, then the page its token names
    capsys.readouterr()
    first = await run_json(settings, "list", "--customer", customer, "--limit", "1")
    more = capsys.readouterr().err
    assert [r["order_id"] for r in first] == [mine[1]] and "more orders: list again with --page " in more
    token = more.rsplit("--page ", 1)[1].strip()
    second = await run_json(settings, "list", "--customer", customer, "--limit", "1", "--page", token)
    assert [r["order_id"] for r in second] == [mine[0]]
    capsys.readouterr()  # (visibility may offer one more, empty, page after a full one)
    assert await cli(settings, "list", "--page", "not-a-token") == (2, "")
    assert "not one this system handed out" in capsys.readouterr().err


# ---- stock ----


async def test_stock_shows_on_hand_reserved_and_available(settings, sessions):
    skus = add_products(sessions, {"LAMP": 10})
    order_id = unique("T")
    request = PlaceOrder(
        order=OrderInput.model_validate(order_doc([(skus["LAMP"], 3)], order_id=order_id)),
        policy=OrderPolicy(delivery_sla=timedelta(days=1), return_window=timedelta(days=1)),
        placed_at=datetime.now(UTC),
    )
    OrderActivities(sessions).admit_order(request)
    InventoryActivities(sessions).reserve_stock(
        ReserveRequest(
            order_id=order_id,
            lines=[ShipmentLine(sku=skus["LAMP"], quantity=3)],
            shipment_prefix=f"{order_id}-S",
        )
    )

    levels = await run_json(settings, "stock", "--sku", skus["LAMP"])
    assert levels == [
        {
            "sku": skus["LAMP"],
            "warehouse": "W1",
            "on_hand": 10,
            "reserved": 3,
            "available": 7,
            "reorder_point": None,
            "reorder_qty": None,
            "count_requested_at": None,
            "count_reason": None,
        }
    ]

    status, out = await cli(settings, "stock", "--sku", skus["LAMP"])
    header, _, row = out.splitlines()
    assert status == 0
    assert header.split() == "SKU WAREHOUSE ON HAND RESERVED AVAILABLE REORDER AT REORDER QTY COUNT".split()
    assert row.split() == [skus["LAMP"], "W1", "10", "3", "7"]


# ---- catalog load ----


def catalog(skus: list[str], on_hand: int = 5) -> dict[str, Any]:
    return {
        "warehouses": [{"code": "W1", "name": "Warehouse W1"}],
        "products": [
            {"sku": sku, "name": f"Product {sku}", "price": "3.00", "currency": "EUR", "weight_g": 100}
            for sku in skus
        ],
        "stock": [{"sku": sku, "warehouse": "W1", "on_hand": on_hand} for sku in skus],
    }


async def test_catalog_load_twice_changes_nothing_the_second_time(settings, sessions, tmp_path):
    skus = [unique("PEN"), unique("INK")]
    path = write_json(tmp_path / "catalog.json", catalog(skus, on_hand=7))

    assert await cli(settings, "catalog", "load", str(path)) == (
        0,
        "loaded 1 warehouses, 2 products, 2 stock rows (2 levels changed)\n",
    )
    movements = count(sessions, t.StockMovement.id, t.StockMovement.sku.in_(skus))
    assert movements == 2

    assert await cli(settings, "catalog", "load", str(path)) == (
        0,
        "loaded 1 warehouses, 2 products, 2 stock rows (0 levels changed)\n",
    )
    assert count(sessions, t.StockMovement.id, t.StockMovement.sku.in_(skus)) == movements
    assert [stock_of(sessions, sku) for sku in skus] == [(7, 0), (7, 0)]


async def test_invalid_catalog_file_names_the_field(settings, sessions, tmp_path, capsys):
    doc = catalog([unique("PEN")])
    del doc["products"][0]["currency"]
    status, _ = await cli(settings, "catalog", "load", str(write_json(tmp_path / "bad.json", doc)))
    assert status == 2
    assert "invalid catalog file: products.0.currency: Field required" in capsys.readouterr().err


async def test_catalog_with_an_unknown_sku_writes_nothing(settings, sessions, tmp_path, capsys):
    new, ghost = unique("PEN"), unique("GHOST")
    doc = catalog([new])
    doc["stock"].append({"sku": ghost, "warehouse": "W1", "on_hand": 3})

    status, _ = await cli(settings, "catalog", "load", str(write_json(tmp_path / "bad.json", doc)))

    assert status == 2
    assert f"stock row names unknown SKU {ghost}" in capsys.readouterr().err
    assert count(sessions, t.Product.sku, t.Product.sku == new) == 0
    assert count(sessions, t.Stock.sku, t.Stock.sku == new) == 0
    assert count(sessions, t.StockMovement.id, t.StockMovement.sku == new) == 0


# ---- deliver and feedback ----


async def test_deliver_a_rejected_order_is_refused(client, settings, sessions, capsys):
    skus = add_products(sessions, {"HAT": 2})
    order_id = await place(client, settings, order_doc([(skus["HAT"], 1)], token="tok_declined"))
    await wait_status(client, order_id, "rejected")

    assert await cli(settings, "deliver", order_id) == (1, "")
    assert f"order {order_id} has no shipment on its way to confirm" in capsys.readouterr().err


async def test_deliver_then_feedback(client, settings, sessions, capsys):
    skus = add_products(sessions, {"BAG": 2})
    order_id = await place(client, settings, order_doc([(skus["BAG"], 1)]))
    await wait_status(client, order_id, "shipped")

    assert await cli(settings, "feedback", order_id, "--score", "4") == (1, "")
    assert f"order {order_id} has not been delivered yet (status: shipped)" in capsys.readouterr().err

    assert await cli(settings, "deliver", order_id) == (0, f"delivery confirmed for {order_id}-S1\n")
    await wait_status(client, order_id, "delivered")

    assert await cli(settings, "feedback", order_id, "--score", "6") == (2, "")
    assert "invalid feedback: score: Input should be less than or equal to 5" in capsys.readouterr().err

    assert await cli(settings, "feedback", order_id, "--score", "4", "--comment", "ok") == (
        0,
        f"feedback recorded for {order_id}\n",
    )

    async def stored() -> tuple[int, str | None] | None:
        with sessions() as session:
            row = session.get(t.Feedback, order_id)
            return None if row is None else (row.score, row.comment)

    await eventually(stored, lambda row: row == (4, "ok"))


# ---- place ----


async def test_placing_money_that_does_not_reconcile_exits_2_naming_the_difference(
    client, settings, sessions, tmp_path, capsys
):
    skus = add_products(sessions, {"KEY": 3})
    doc = order_doc([(skus["KEY"], 1)])
    doc["lines"][0] |= {
        "unit_price": "10.00",
        "tax_lines": [{"title": "VAT", "rate": "0.2", "price": "2.00"}],
    }
    doc |= {"shipping_lines": [{"title": "Post", "price": "4.00"}], "total_price": "14.00"}  # the rule: 16.00
    status, _ = await cli(settings, "place", str(write_json(tmp_path / "order.json", doc)))
    assert status == 2
    assert "total_price 14.00 differs from the total 16.00" in capsys.readouterr().err
    assert count(sessions, t.Order.id, t.Order.id == doc["order_id"]) == 0


async def test_placing_the_same_order_file_twice(client, settings, sessions, tmp_path, capsys):
    skus = add_products(sessions, {"KEY": 3})
    doc = order_doc([(skus["KEY"], 1)])
    path = write_json(tmp_path / "order.json", doc)

    assert await cli(settings, "place", str(path)) == (0, f"{doc['order_id']}\n")
    assert "already placed" not in capsys.readouterr().err
    assert await cli(settings, "place", str(path)) == (0, f"{doc['order_id']}\n")
    assert f"order {doc['order_id']} was already placed" in capsys.readouterr().err

    await wait_status(client, doc["order_id"], "shipped")
    assert count(sessions, t.Order.id, t.Order.id == doc["order_id"]) == 1
    assert (
        count(
            sessions, t.Payment.id, t.Payment.order_id == doc["order_id"], t.Payment.kind == "authorization"
        )
        == 1
    )
    assert stock_of(sessions, skus["KEY"]) == (2, 0)


# ---- migrate ----


async def test_migrate_twice_is_a_no_op(settings, sessions):
    skus = add_products(sessions, {"OLD": 4})
    for _ in range(2):
        status, out = await cli(settings, "migrate")
        assert status == 0 and out.startswith("database is at the latest migration")
    assert stock_of(sessions, skus["OLD"]) == (4, 0)  # existing data untouched
