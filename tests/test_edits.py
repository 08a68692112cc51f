"""Order edits (issue 26) through the doors on the real stack: the shipping address before release
(HTTP API, command line), after release if the warehouse accepts (a person's warehouse: until packed;
the sandbox warehouse: asked through its workflow), refusals that change nothing, and the parcel's label
printed to the new one."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from config import SandboxMode, Settings
from db import SessionFactory
from domain.api_keys import Role
from models import tables as t
from models.fulfilment import WarehouseReport, WarehouseStep
from services.fulfilment import submit_warehouse_report
from tests.helpers import (
    add_products,
    as_,
    assert_ledger_invariants,
    cli,
    events,
    eventually,
    ledger,
    money_order_doc,
    order_doc,
    outbox,
    place,
    stock_of,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")
D = Decimal

BERLIN = {
    "name": "Ada",
    "line1": "Unter den Linden 1",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
}


def address_of(sessions: SessionFactory, order_id: str) -> dict[str, str]:
    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None
        return dict(order.shipping_address)


async def test_address_edit_before_release(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    skus = add_products(sessions, {"ED": 10}, price="25.00")
    order_id = await place(client, settings, order_doc([(skus["ED"], 2)]), release_delay=timedelta(seconds=6))
    await wait_status(client, order_id, "confirmed")
    before = address_of(sessions, order_id)
    url = f"/orders/{order_id}/edits"
    # refusals: nothing changes
    refused = await http.post(
        url, json={"shipping_address": {**BERLIN, "country": "US"}}, headers=as_(api_keys, Role.support)
    )
    assert refused.status_code == 422 and "we do not ship to US" in refused.text, refused.text
    refused = await http.post(
        url, json={"lines": [{"sku": skus["ED"], "quantity": 11}]}, headers=as_(api_keys, Role.support)
    )
    assert refused.status_code == 409 and f"needs 9 x {skus['ED']} more: out of stock" in refused.text
    refused = await http.post(url, json={"shipping_address": BERLIN}, headers=as_(api_keys, Role.warehouse))
    assert refused.status_code == 403, refused.text
    assert address_of(sessions, order_id) == before
    # the edit, with an Idempotency-Key: a retry answers the same and edits once
    headers = as_(api_keys, Role.support) | {"Idempotency-Key": f"edit-{order_id}"}
    answer = await http.post(url, json={"shipping_address": BERLIN}, headers=headers)
    assert answer.status_code == 200, answer.text
    again = await http.post(url, json={"shipping_address": BERLIN}, headers=headers)
    assert again.status_code == 200 and again.json() == answer.json()
    assert address_of(sessions, order_id)["city"] == "Berlin"
    edited = [e.detail for e in events(sessions, order_id) if e.type == "order_edited"]
    assert len(edited) == 1 and "shipping address now Berlin, DE" in edited[0], edited
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "order_edited" in kinds)
    # released: the label goes to the new address, and the address can no longer change
    await wait_status(client, order_id, "shipped")
    with sessions() as session:
        labels = [s.label for s in session.query(t.Shipment).filter(t.Shipment.order_id == order_id)]
    assert labels and all(label and "Berlin" in label for label in labels), labels
    late = await http.post(url, json={"shipping_address": BERLIN}, headers=as_(api_keys, Role.admin))
    assert late.status_code == 409 and "was handed over to the carrier" in late.text, late.text


HAMBURG = {**BERLIN, "line1": "Jungfernstieg 7", "city": "Hamburg", "postal_code": "20354"}


def label_of(sessions: SessionFactory, shipment_id: str) -> str | None:
    with sessions() as session:
        shipment = session.get(t.Shipment, shipment_id)
        assert shipment is not None
        return shipment.label


def edited(sessions: SessionFactory, order_id: str) -> list[str]:
    return [e.detail for e in events(sessions, order_id) if e.type == "order_edited"]


async def test_address_edit_after_release_with_a_person_in_the_warehouse(
    client: Client,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
    gated_worker,  # type: ignore[no-untyped-def]
) -> None:
    """The manual warehouse accepts until the parcel is packed (its label is printed from the orders row
    then), refuses once it is labelled; after the handover the order itself refuses."""
    settings, _ = await gated_worker(sandbox_warehouse=SandboxMode.manual, sandbox_carrier=SandboxMode.manual)
    skus = add_products(sessions, {"EL": 10}, price="25.00")
    order_id = await place(client, settings, order_doc([(skus["EL"], 1)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    url, support = f"/orders/{order_id}/edits", as_(api_keys, Role.support)
    picked = WarehouseReport(shipment_id=shipment.id, step=WarehouseStep.picked, by="wh-anna")
    await submit_warehouse_report(client, picked)

    answer = await http.post(url, json={"shipping_address": BERLIN}, headers=support)  # picked, not packed
    assert answer.status_code == 200 and answer.json()["shipping_city"] == "Berlin", answer.text
    assert address_of(sessions, order_id)["city"] == "Berlin"
    assert len(edited(sessions, order_id)) == 1
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "order_edited" in kinds)
    packed = WarehouseReport(
        shipment_id=shipment.id, step=WarehouseStep.packed, parcels_g=[700], by="wh-anna"
    )
    await submit_warehouse_report(client, packed)
    assert "Berlin" in (label_of(sessions, shipment.id) or "")

    refused = await http.post(url, json={"shipping_address": HAMBURG}, headers=support)  # labelled: refused
    assert refused.status_code == 409, refused.text
    assert f"warehouse {shipment.warehouse} refused the new address" in refused.text, refused.text
    assert "already packed and labelled" in refused.text, refused.text
    assert address_of(sessions, order_id)["city"] == "Berlin" and len(edited(sessions, order_id)) == 1
    assert "Berlin" in (label_of(sessions, shipment.id) or "")

    handed = WarehouseReport(shipment_id=shipment.id, step=WarehouseStep.handed_over, by="wh-anna")
    await submit_warehouse_report(client, handed)
    await wait_status(client, order_id, "shipped")
    late = await http.post(url, json={"shipping_address": HAMBURG}, headers=support)
    assert late.status_code == 409 and "was handed over to the carrier" in late.text, late.text
    assert address_of(sessions, order_id)["city"] == "Berlin" and len(edited(sessions, order_id)) == 1


async def test_address_edit_after_release_asks_the_sandbox_warehouse(
    client: Client,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
    gated_worker,  # type: ignore[no-untyped-def]
) -> None:
    """The sandbox warehouse, still picking, is asked through its workflow and accepts."""
    settings, _ = await gated_worker(sandbox_pick_time=timedelta(minutes=10))
    skus = add_products(sessions, {"ES": 10}, price="25.00")
    order_id = await place(client, settings, order_doc([(skus["ES"], 1)]))
    await wait_status(client, order_id, "picking")
    url = f"/orders/{order_id}/edits"
    answer = await http.post(url, json={"shipping_address": HAMBURG}, headers=as_(api_keys, Role.support))
    assert answer.status_code == 200 and answer.json()["shipping_city"] == "Hamburg", answer.text
    assert address_of(sessions, order_id)["city"] == "Hamburg"
    status, out = await cli(settings, "cancel", order_id, "--reason", "test over")
    assert status == 0, out


async def test_cli_edit(settings: Settings, client: Client, sessions: SessionFactory, tmp_path: Path) -> None:
    skus = add_products(sessions, {"EC": 10}, price="25.00")
    order_id = await place(client, settings, order_doc([(skus["EC"], 1)]), release_delay=timedelta(minutes=5))
    await wait_status(client, order_id, "confirmed")
    file = tmp_path / "address.json"
    file.write_text(json.dumps({**BERLIN, "city": "Potsdam"}))
    status, out = await cli(settings, "edit", order_id, "--address-json", str(file))
    assert status == 0 and "edited" in out, out
    assert address_of(sessions, order_id)["city"] == "Potsdam"
    status, out = await cli(settings, "edit", order_id, "--line", f"{skus['EC']}=2")
    assert status == 0 and "50.00" in out, out
    assert stock_of(sessions, skus["EC"]) == (10, 2)
    status, out = await cli(settings, "edit", order_id, "--line", f"{skus['EC']}=0")
    assert status == 1  # refused ("cannot remove every line", on stderr): nothing moved
    assert stock_of(sessions, skus["EC"]) == (10, 2)
    status, out = await cli(settings, "cancel", order_id, "--reason", "test over")
    assert status == 0, out


def lines_of(sessions: SessionFactory, order_id: str) -> list[tuple[str, int, Decimal | None]]:
    with sessions() as session:
        rows = (
            session.query(t.OrderLine).filter(t.OrderLine.order_id == order_id).order_by(t.OrderLine.line_no)
        )
        return [(r.sku, r.quantity, r.unit_price) for r in rows]


async def test_line_edits_through_the_api(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    """Up (a unit more, a new SKU): reserved, the hold grown by an increment; down (the lamp removed):
    released, part of the hold voided; shipped: captured is the edited total, the ledger exact."""
    mugs = add_products(sessions, {"MUG": 6, "TEA": 4}, price="10.00")
    mug, tea = mugs["MUG"], mugs["TEA"]
    lamp = add_products(sessions, {"LAMP": 5}, price="10.00")["LAMP"]
    order_id = await place(client, settings, money_order_doc(mug, lamp), release_delay=timedelta(seconds=8))
    await wait_status(client, order_id, "confirmed")
    url, support = f"/orders/{order_id}/edits", as_(api_keys, Role.support)

    answer = await http.post(
        url, json={"lines": [{"sku": mug, "quantity": 4}, {"sku": tea, "quantity": 1}]}, headers=support
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # mugs 40.00 - 4.00 + 7.20 VAT, the lamp 12.00, the tea 10.00 + 2.00 VAT, shipping 6.00
    assert (body["subtotal"], body["discounts"], body["tax"], body["total"]) == (
        "60.00",
        "4.00",
        "12.20",
        "73.20",
    )
    assert ledger(sessions, order_id) == {"authorization": D("50.40"), "increment": D("22.80")}
    assert stock_of(sessions, mug) == (6, 4) and stock_of(sessions, tea) == (4, 1)
    assert lines_of(sessions, order_id) == [(mug, 4, D("10.00")), (lamp, 1, D("10.00")), (tea, 1, D("10.00"))]

    answer = await http.post(url, json={"lines": [{"sku": lamp, "quantity": 0}]}, headers=support)
    assert answer.status_code == 200 and answer.json()["total"] == "61.20", answer.text
    assert ledger(sessions, order_id) == {
        "authorization": D("50.40"),
        "increment": D("22.80"),
        "void": D("12.00"),
    }
    assert stock_of(sessions, lamp) == (5, 0)
    with sessions() as session:
        row = session.get(t.Order, order_id)
        assert row is not None and (row.total, row.subtotal, row.tax) == (D("61.20"), D("50.00"), D("10.20"))

    await wait_status(client, order_id, "shipped")
    await eventually(lambda: ledger(sessions, order_id).get("capture"), lambda c: c == D("61.20"))
    totals = assert_ledger_invariants(sessions, order_id)
    assert (totals.authorized, totals.captured, totals.voided) == (D("73.20"), D("61.20"), D("12.00"))
    assert stock_of(sessions, mug) == (2, 0) and stock_of(sessions, tea) == (3, 0)
    edited = [e.detail for e in events(sessions, order_id) if e.type == "order_edited"]
    assert len(edited) == 2 and "total 73.20 EUR -> 61.20 EUR" in edited[1], edited


async def test_a_line_edit_the_card_refuses_moves_nothing(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    skus = add_products(sessions, {"NOINC": 5}, price="20.00")
    order_id = await place(
        client,
        settings,
        order_doc([(skus["NOINC"], 1)], token="tok_no_increment"),
        release_delay=timedelta(seconds=30),
    )
    await wait_status(client, order_id, "confirmed")
    url = f"/orders/{order_id}/edits"
    refused = await http.post(
        url, json={"lines": [{"sku": skus["NOINC"], "quantity": 2}]}, headers=as_(api_keys, Role.support)
    )
    assert refused.status_code == 409 and "incremental_authorization_unavailable" in refused.text, (
        refused.text
    )
    assert ledger(sessions, order_id) == {"authorization": D("20.00")}
    assert stock_of(sessions, skus["NOINC"]) == (5, 1)
    assert lines_of(sessions, order_id) == [(skus["NOINC"], 1, None)]
    refused = await http.post(
        url, json={"lines": [{"sku": "NOT-SOLD-HERE", "quantity": 1}]}, headers=as_(api_keys, Role.support)
    )
    assert refused.status_code == 422 and "NOT-SOLD-HERE is unknown" in refused.text, refused.text
    refused = await http.post(
        url,
        json={"lines": [{"sku": skus["NOINC"], "quantity": 1}, {"sku": skus["NOINC"], "quantity": 2}]},
        headers=as_(api_keys, Role.support),
    )
    assert refused.status_code == 422 and f"SKU {skus['NOINC']} named more than once" in refused.text, (
        refused.text
    )
    refused = await http.post(
        url, json={"lines": [{"sku": skus["NOINC"], "quantity": 0}]}, headers=as_(api_keys, Role.support)
    )
    assert refused.status_code == 422 and "cannot remove every line" in refused.text, refused.text
    assert ledger(sessions, order_id) == {"authorization": D("20.00")}
    assert stock_of(sessions, skus["NOINC"]) == (5, 1)
    await http.post(
        f"/orders/{order_id}/cancel", json={"reason": "test over"}, headers=as_(api_keys, Role.support)
    )
