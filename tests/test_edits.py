"""Order edits (issue 26) through the doors on the real stack: the shipping address before release
(HTTP API, command line), after release if the warehouse accepts (a person's warehouse: until packed;
the sandbox warehouse: asked through its workflow), refusals that change nothing, and the parcel's label
printed to the new one."""

from __future__ import annotations

import json
from datetime import timedelta
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
from tests.helpers import add_products, as_, cli, events, eventually, order_doc, outbox, place, wait_status

pytestmark = pytest.mark.usefixtures("worker")

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
        url, json={"lines": [{"sku": skus["ED"], "quantity": 3}]}, headers=as_(api_keys, Role.support)
    )
    assert refused.status_code == 422 and "not supported yet" in refused.text, refused.text
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
    assert status != 0
    status, out = await cli(settings, "cancel", order_id, "--reason", "test over")
    assert status == 0, out
