"""Orders refused before they start (the CLI's structural checks) and by the catalog (the validate step)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowExecutionStatus

from cli import dispatch
from config import Settings
from db import SessionFactory
from models import tables as t
from services.orders import UnknownOrder, handle, order_view
from tests.helpers import (
    add_products,
    events,
    ledger,
    notifications,
    order_doc,
    place,
    rejection,
    stock_of,
    unique,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")

MISSING = object()


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], str]:
    """A mutation of the order document: set (or with MISSING, delete) the field at a dotted path."""

    def mutate(doc: dict[str, Any]) -> str:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is MISSING:
            del target[last]
        else:
            target[last] = value
        return json.dumps(doc)

    return mutate


def priced(price: Any) -> Callable[[dict[str, Any]], str]:
    return setting("lines.0.unit_price", price)


async def run_cli(settings: Settings, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await dispatch(list(argv), settings, out)
    return status, out.getvalue()


def doc_with(lines: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """An order document with lines given in full (e.g. with unit prices)."""
    return {**order_doc([], **overrides), "lines": lines}


def order_row(sessions: SessionFactory, order_id: str) -> t.Order | None:
    with sessions() as session:
        return session.get(t.Order, order_id)


# ---- structural refusals: exit status 2, the field named, nothing started ----


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda doc: json.dumps(doc)[:-1], "invalid JSON", id="invalid-json"),
        pytest.param(setting("customer", MISSING), "customer: Field required", id="no-customer"),
        pytest.param(setting("lines.0.sku", MISSING), "lines.0.sku: Field required", id="no-sku"),
        pytest.param(setting("gift_wrap", True), "gift_wrap: Extra inputs are not permitted", id="unknown"),
        pytest.param(setting("customer.vip", True), "customer.vip: Extra inputs", id="unknown-nested"),
        pytest.param(setting("lines", []), "lines: List should have at least 1 item", id="no-lines"),
        pytest.param(setting("lines.0.quantity", 0), "lines.0.quantity", id="qty-0"),
        pytest.param(setting("lines.0.quantity", -1), "lines.0.quantity", id="qty-negative"),
        pytest.param(setting("lines.0.quantity", 1.5), "lines.0.quantity", id="qty-fraction"),
        pytest.param(setting("lines.0.quantity", "2"), "lines.0.quantity", id="qty-string"),
        pytest.param(setting("customer.email", "ada.example.com"), "customer.email", id="email-no-at"),
        pytest.param(setting("customer.email", "ada@"), "customer.email", id="email-no-domain"),
        pytest.param(priced("19.9.0"), "lines.0.unit_price", id="price-garbled"),
        pytest.param(priced("-1"), "lines.0.unit_price", id="price-negative"),
        pytest.param(priced("1.234"), "lines.0.unit_price", id="price-sub-cent"),
        pytest.param(setting("shipping_address.country", "UK"), "shipping_address.country", id="UK"),
        pytest.param(setting("shipping_address.country", "gbr"), "shipping_address.country", id="gbr"),
        pytest.param(setting("currency", "euro"), "currency", id="currency"),
        pytest.param(setting("channel", "fax"), "channel", id="channel"),
    ],
)
async def test_structurally_invalid_order_is_refused_before_anything_starts(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[dict[str, Any]], str],
    field: str,
):
    skus = add_products(sessions, {"TEE": 5})
    doc = order_doc([(skus["TEE"], 1)])
    path = tmp_path / "order.json"
    path.write_text(mutate(doc))

    status, out = await run_cli(settings, "place", str(path))

    assert status == 2
    assert out == ""
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and field in stderr
    with pytest.raises(UnknownOrder):
        await order_view(client, doc["order_id"])
    assert order_row(sessions, doc["order_id"]) is None
    assert stock_of(sessions, skus["TEE"]) == (5, 0)


async def test_unreadable_file_is_invalid_input(settings, tmp_path, capsys):
    status, out = await run_cli(settings, "place", str(tmp_path / "missing.json"))
    assert (status, out) == (2, "")
    assert "cannot read" in capsys.readouterr().err


async def test_place_reads_the_order_from_stdin(client, settings, sessions, monkeypatch):
    skus = add_products(sessions, {"TEE": 5})
    doc = order_doc([(skus["TEE"], 2)])
    del doc["order_id"]  # the system assigns one
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(doc)))

    status, out = await run_cli(settings, "place", "-")

    assert status == 0
    order_id = out.strip()
    assert order_id.startswith("O-") and "\n" not in order_id
    view = await wait_status(client, order_id, "shipped")
    assert view.total == Decimal("20.00")
    assert stock_of(sessions, skus["TEE"]) == (3, 0)


# ---- catalog refusals: the validate step rejects, nothing is charged or reserved ----


Refusal = tuple[list[dict[str, Any]], str, str]  # lines, order currency, expected reason


def unknown_sku(sessions: SessionFactory, ok: str) -> Refusal:
    ghost = unique("GHOST")
    return [{"sku": ok, "quantity": 2}, {"sku": ghost, "quantity": 1}], "EUR", f"line 2: unknown SKU {ghost}"


def inactive_sku(sessions: SessionFactory, ok: str) -> Refusal:
    old = add_products(sessions, {"OLD": 5}, active=False)["OLD"]
    return (
        [{"sku": ok, "quantity": 2}, {"sku": old, "quantity": 1}],
        "EUR",
        f"line 2: SKU {old} is not active",
    )


def wrong_price(sessions: SessionFactory, ok: str) -> Refusal:
    reason = f"line 1: unit price 9.99 for {ok} differs from catalog price 10.00"
    return [{"sku": ok, "quantity": 2, "unit_price": "9.99"}], "EUR", reason


def wrong_currency(sessions: SessionFactory, ok: str) -> Refusal:
    return [{"sku": ok, "quantity": 2}], "USD", f"line 1: SKU {ok} is sold in EUR, order is in USD"


@pytest.mark.parametrize("refusal", [unknown_sku, inactive_sku, wrong_price, wrong_currency])
async def test_catalog_refusal_rejects_without_charging_or_reserving(
    client: Client, settings: Settings, sessions: SessionFactory, refusal: Callable[..., Refusal]
):
    ok = add_products(sessions, {"OK": 5})["OK"]
    lines, currency, reason = refusal(sessions, ok)
    doc = doc_with(lines, currency=currency)

    order_id = await place(client, settings, doc)

    result = await rejection(client, order_id)
    assert (await handle(client, order_id).describe()).status == WorkflowExecutionStatus.COMPLETED
    assert (result.status, result.payment_status) == ("rejected", "pending")
    assert [e.detail for e in result.events if e.type == "order_rejected"] == [reason]
    stored = [e for e in events(sessions, order_id) if e.type == "order_rejected"]
    assert [e.detail for e in stored] == [reason]
    with sessions() as session:
        levels = session.scalars(select(t.Stock).where(t.Stock.sku.in_([line["sku"] for line in lines])))
        assert {(s.on_hand, s.reserved) for s in levels} == {(5, 0)}  # every catalogued line untouched
        assert session.scalar(select(func.count()).where(t.Payment.order_id == order_id)) == 0
        assert session.scalar(select(func.count()).where(t.Reservation.order_id == order_id)) == 0
        row = session.get(t.Order, order_id)
        assert row is not None and (row.status, row.payment_status) == ("rejected", "pending")
    assert ledger(sessions, order_id) == {}
    (notice,) = notifications(sessions, order_id)
    assert notice.kind == "order_rejected" and notice.recipient == "ada@example.com"
    assert reason in notice.body


@pytest.mark.parametrize("unit_price", ["19.90", "19.9", 19.9], ids=["exact", "short", "json-number"])
async def test_unit_price_equal_to_catalog_price_is_accepted(client, settings, sessions, unit_price):
    sku = add_products(sessions, {"TEE": 5}, price="19.90")["TEE"]
    doc = doc_with([{"sku": sku, "quantity": 2, "unit_price": unit_price}])
    order_id = await place(client, settings, doc)
    view = await wait_status(client, order_id, "shipped")
    assert view.total == Decimal("39.80")
    assert ledger(sessions, order_id) == {"authorization": Decimal("39.80"), "capture": Decimal("39.80")}
    assert stock_of(sessions, sku) == (3, 0)


# ---- place --wait prints the outcome ----


async def test_place_wait_prints_the_rejection_reason(settings, sessions, tmp_path):
    ok = add_products(sessions, {"OK": 5})["OK"]
    doc = order_doc([(ok, 1)], currency="USD")
    path = tmp_path / "order.json"
    path.write_text(json.dumps(doc))

    status, out = await run_cli(settings, "place", str(path), "--wait")

    assert status == 1  # refused: docs/cli.md's exit status for a rejected order
    assert out == f"{doc['order_id']} rejected: line 1: SKU {ok} is sold in EUR, order is in USD\n"


async def test_place_wait_prints_the_settled_status(settings, sessions, tmp_path):
    ok = add_products(sessions, {"OK": 5})["OK"]
    doc = order_doc([(ok, 1)])
    path = tmp_path / "order.json"
    path.write_text(json.dumps(doc))

    status, out = await run_cli(settings, "place", str(path), "--wait")

    assert status == 0
    order_id, outcome = out.rstrip("\n").split(" ")  # no reason for an accepted order
    assert order_id == doc["order_id"]
    assert outcome == "confirmed"  # how it settled, even if it has moved on to picking since
