"""The two doors of warehouses and carriers (issue 10): the `warehouse`, `carrier-event` and `resolve`
commands and their HTTP endpoints. Parsing, roles and refusals that need no order in a given state."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client

from config import SandboxMode, Settings
from domain.api_keys import Role
from models.orders import ShipmentView
from services.orders import order_view
from tests.helpers import (
    add_products,
    add_warehouse,
    as_,
    assert_ledger_invariants,
    cli,
    eventually,
    order_doc,
    place,
    unique,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")


def unknown_shipment() -> str:
    return f"{unique('NO-SUCH-ORDER')}-S1"


# ---- command line: parsing ----


@pytest.mark.parametrize("line", ["MUG", "MUG=", "=2", "MUG=two", "MUG=-1", "MUG=1.5", "MUG 2"])
async def test_pick_with_a_bad_line_is_invalid_input(settings, capsys, line):
    status, out = await cli(settings, "warehouse", "pick", unknown_shipment(), "--line", line)
    assert (status, out) == (2, "")
    err = capsys.readouterr().err
    assert f"error: --line {line!r}: write SKU=QTY" in err


async def test_pick_with_a_sku_the_models_refuse_names_it(settings, capsys):
    status, _ = await cli(settings, "warehouse", "pick", unknown_shipment(), "--line", "no spaces=1")
    assert status == 2
    assert "error: --line 'no spaces=1': sku:" in capsys.readouterr().err


@pytest.mark.parametrize("weight", ["heavy", "0", "-5", "1.5", "1000001"])
async def test_pack_with_a_bad_parcel_weight_is_invalid_input(settings, capsys, weight):
    status, out = await cli(
        settings, "warehouse", "pack", unknown_shipment(), "--parcel", "800", "--parcel", weight
    )
    assert (status, out) == (2, "")
    assert "error:" in (err := capsys.readouterr().err) and "parcel" in err


async def test_pack_needs_at_least_one_parcel(settings, capsys):
    with pytest.raises(SystemExit) as exit_:
        await cli(settings, "warehouse", "pack", unknown_shipment())
    assert exit_.value.code == 2
    assert "--parcel" in capsys.readouterr().err


async def test_a_malformed_shipment_id_is_invalid_input(settings, capsys):
    status, _ = await cli(settings, "warehouse", "handover", "not a shipment")
    assert status == 2
    assert "error: invalid report: shipment_id:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["TRACK-1", "teleported"],  # not a carrier event type
        ["TRACK-1", "delivery_failed", "--attempt", "second"],
    ],
)
async def test_carrier_event_arguments_argparse_refuses(settings, capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        await cli(settings, "carrier-event", *argv)
    assert exit_.value.code == 2


async def test_carrier_event_with_a_bad_time_or_attempt_is_invalid_input(settings, capsys):
    status, _ = await cli(settings, "carrier-event", "TRACK-1", "in_transit", "--at", "yesterday noon")
    assert status == 2
    assert "error: --at 'yesterday noon': an ISO 8601 time" in capsys.readouterr().err
    status, _ = await cli(settings, "carrier-event", "TRACK-1", "delivery_failed", "--attempt", "11")
    assert status == 2
    assert "error: invalid carrier event: attempt:" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [[], ["--reship", "--refund"]])
async def test_resolve_needs_exactly_one_of_reship_and_refund(settings, capsys, flags):
    with pytest.raises(SystemExit) as exit_:
        await cli(settings, "resolve", "A-1", "A-1-S1", *flags)
    assert exit_.value.code == 2
    assert "--reship" in capsys.readouterr().err


def test_the_commands_are_documented_in_the_synopsis():
    import starter

    synopsis = starter.__doc__ or ""
    for command in ("warehouse queue", "warehouse pick", "warehouse pack", "warehouse handover"):
        assert command in synopsis
    assert "carrier-event TRACKING TYPE" in synopsis and "resolve ORDER_ID SHIPMENT_ID" in synopsis


def test_carrier_event_help_says_how_to_make_a_resend_harmless(capsys):
    from cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["carrier-event", "--help"])
    assert "Pass the carrier's own id to make a resend harmless" in " ".join(capsys.readouterr().out.split())


# ---- command line: unknown shipments and tracking numbers ----


@pytest.mark.parametrize(
    "argv",
    [
        ["warehouse", "pick"],
        ["warehouse", "pick", "--line", "MUG=1"],
        ["warehouse", "pack", "--parcel", "850"],
        ["warehouse", "handover", "--id", "wms-1"],
    ],
)
async def test_a_report_for_an_unknown_shipment_is_refused(settings, capsys, argv):
    shipment = unknown_shipment()
    status, out = await cli(settings, *argv[:2], shipment, *argv[2:])
    assert (status, out) == (1, "")
    err = capsys.readouterr().err
    assert err.startswith("error: ") and shipment.rpartition("-S")[0] in err


async def test_an_event_for_an_unknown_tracking_number_is_refused(settings, capsys):
    tracking = unique("NOTRACK")
    status, out = await cli(settings, "carrier-event", tracking, "in_transit", "--place", "Leipzig hub")
    assert (status, out) == (1, "")
    assert tracking in capsys.readouterr().err


async def test_resolving_a_shipment_of_an_unknown_order_is_refused(settings, capsys):
    order_id = unique("NO-SUCH-ORDER")
    status, out = await cli(settings, "resolve", order_id, f"{order_id}-S1", "--refund")
    assert (status, out) == (1, "")
    assert order_id in capsys.readouterr().err


async def test_the_queue_of_a_warehouse_with_nothing_released_is_empty(settings, sessions):
    code = add_warehouse(sessions)
    status, out = await cli(settings, "warehouse", "queue", code, "--json")
    assert status == 0 and json.loads(out) == []
    status, out = await cli(settings, "warehouse", "queue", code)
    assert status == 0
    assert out.split() == ["SHIPMENT", "ORDER", "STATUS", "RELEASED", "LINES", "LABEL"] + out.split()[6:]
    assert len(out.splitlines()) == 2  # the header and its rule


# ---- HTTP: roles ----


ROLE_BOUNDARIES = [
    # (role, method, path, body): each is refused with 403 before anything happens
    (Role.source, "GET", "/warehouses/W1/queue", None),
    (Role.carrier, "GET", "/warehouses/W1/queue", None),
    (Role.support, "POST", "/shipments/A-1-S1/picked", {"lines": []}),
    (Role.carrier, "POST", "/shipments/A-1-S1/packed", {"parcels_g": [800]}),
    (Role.source, "POST", "/shipments/A-1-S1/handed-over", {}),
    (Role.warehouse, "POST", "/carrier/events", {"tracking_number": "T", "type": "lost", "event_id": "e1"}),
    (Role.warehouse, "POST", "/orders/A-1/shipments/A-1-S1/resolution", {"resolution": "refund"}),
    (Role.carrier, "POST", "/orders/A-1/shipments/A-1-S1/resolution", {"resolution": "reship"}),
]


@pytest.mark.parametrize(("role", "method", "path", "body"), ROLE_BOUNDARIES)
async def test_each_role_reaches_only_its_endpoints(http, api_keys, role, method, path, body):
    answer = await http.request(method, path, json=body, headers=as_(api_keys, role))
    assert answer.status_code == 403, answer.text
    assert f"a {role.value} key may not do this" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/warehouses/W1/queue"),
        ("POST", "/shipments/A-1-S1/picked"),
        ("POST", "/carrier/events"),
        ("POST", "/orders/A-1/shipments/A-1-S1/resolution"),
    ],
)
async def test_no_key_is_401(http, method, path):
    assert (await http.request(method, path, json={})).status_code == 401


# ---- HTTP: bad bodies ----


BAD_BODIES = [
    # (role, path, body, the first problem's field)
    (
        Role.warehouse,
        "/shipments/A-1-S1/picked",
        {"lines": [{"sku": "MUG", "quantity": -1}]},
        "lines.0.quantity",
    ),
    (Role.warehouse, "/shipments/A-1-S1/picked", {"lines": [{"sku": "MUG"}]}, "lines.0.quantity"),
    (Role.warehouse, "/shipments/A-1-S1/picked", {"lines": [], "colour": "red"}, "colour"),
    (Role.warehouse, "/shipments/A-1-S1/packed", {}, "parcels_g"),
    (Role.warehouse, "/shipments/A-1-S1/packed", {"parcels_g": []}, "parcels_g"),
    (Role.warehouse, "/shipments/A-1-S1/packed", {"parcels_g": [800, 0]}, "parcels_g.1"),
    (Role.warehouse, "/shipments/A-1-S1/handed-over", {"report_id": ""}, "report_id"),
    (Role.warehouse, "/shipments/not%20a%20shipment/handed-over", {}, "path.shipment_id"),
    (
        Role.carrier,
        "/carrier/events",
        {"tracking_number": "T", "type": "teleported", "event_id": "e"},
        "type",
    ),
    (Role.carrier, "/carrier/events", {"tracking_number": "T", "type": "in_transit"}, "body"),
    (
        Role.carrier,
        "/carrier/events",
        {"tracking_number": "T", "type": "delivery_failed", "event_id": "e", "attempt": 11},
        "attempt",
    ),
    (
        Role.carrier,
        "/carrier/events",
        {"tracking_number": "T", "type": "lost", "event_id": "e", "at": "soon"},
        "at",
    ),
    (Role.support, "/orders/A-1/shipments/A-1-S1/resolution", {"resolution": "teleport"}, "resolution"),
    (Role.support, "/orders/A-1/shipments/A-1-S1/resolution", {}, "resolution"),
]


@pytest.mark.parametrize(("role", "path", "body", "field"), BAD_BODIES)
async def test_bad_bodies_are_422_naming_the_field(http, api_keys, role, path, body, field):
    answer = await http.post(path, json=body, headers=as_(api_keys, role))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert answer.json()["problems"][0].startswith(f"{field}:"), answer.json()


async def test_an_event_without_an_id_says_it_needs_one(http, api_keys):
    answer = await http.post(
        "/carrier/events",
        json={"tracking_number": "T", "type": "out_for_delivery"},
        headers=as_(api_keys, Role.carrier),
    )
    assert answer.status_code == 422
    assert "event_id is required for a out_for_delivery event" in answer.json()["problems"][0]


# ---- HTTP: unknown shipments, tracking numbers, warehouses ----


@pytest.mark.parametrize(
    ("step", "body"),
    [
        ("picked", {"lines": [{"sku": "MUG", "quantity": 1}]}),
        ("packed", {"parcels_g": [850]}),
        ("handed-over", None),
    ],
)
async def test_a_report_for_an_unknown_shipment_is_404(http, api_keys, step, body):
    shipment = unknown_shipment()
    answer = await http.post(
        f"/shipments/{shipment}/{step}", json=body, headers=as_(api_keys, Role.warehouse)
    )
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"] == "not_found"


@pytest.mark.parametrize("event_type", ["in_transit", "delivered", "lost"])
async def test_an_event_for_an_unknown_tracking_number_is_404(http, api_keys, event_type):
    tracking = unique("NOTRACK")
    body: dict[str, Any] = {"tracking_number": tracking, "type": event_type, "event_id": unique("EV")}
    answer = await http.post("/carrier/events", json=body, headers=as_(api_keys, Role.carrier))
    assert answer.status_code == 404, answer.text
    assert tracking in answer.json()["detail"]


async def test_resolving_a_shipment_of_an_unknown_order_is_404(http, api_keys):
    order_id = unique("NO-SUCH-ORDER")
    answer = await http.post(
        f"/orders/{order_id}/shipments/{order_id}-S1/resolution",
        json={"resolution": "reship"},
        headers=as_(api_keys, Role.support),
    )
    assert answer.status_code == 404, answer.text


async def test_the_queue_of_a_warehouse_with_nothing_released_is_empty_over_http(http, api_keys, sessions):
    code = add_warehouse(sessions)
    for role in (Role.warehouse, Role.support, Role.admin):
        answer = await http.get(f"/warehouses/{code}/queue", headers=as_(api_keys, role))
        assert (answer.status_code, answer.json()) == (200, []), role


async def test_the_new_endpoints_are_in_the_openapi_schema(http):
    paths = (await http.get("/openapi.json")).json()["paths"]
    for path in (
        "/warehouses/{code}/queue",
        "/shipments/{shipment_id}/picked",
        "/shipments/{shipment_id}/packed",
        "/shipments/{shipment_id}/handed-over",
        "/orders/{order_id}/shipments/{shipment_id}/resolution",
    ):
        assert path in paths, path


# ---- end to end: a real order, with a person as its warehouse and its carrier ----


@pytest.fixture
async def by_hand(gated_worker, sessions) -> tuple[Settings, dict[str, threading.Event], str]:
    """A worker whose warehouse and carrier are people (the doors under test), its label printing
    (`book_carrier`) held until the test opens the gate, and a warehouse of its own."""
    own, gates = await gated_worker(
        "book_carrier",
        sandbox_warehouse=SandboxMode.manual,
        sandbox_carrier=SandboxMode.manual,
        release_delay=timedelta(0),
    )
    return own, gates, add_warehouse(sessions)


async def first_shipment(client: Client, order_id: str, *statuses: str) -> ShipmentView:
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: bool(v.shipments) and v.shipments[0].status in statuses,
    )
    return view.shipments[0]


async def test_a_warehouse_and_a_carrier_on_the_command_line(client, sessions, by_hand, capsys):
    own, gates, code = by_hand
    skus = add_products(sessions, {"MUG": 5, "PEN": 5}, warehouse=code)
    order_id = await place(client, own, order_doc([(skus["MUG"], 2), (skus["PEN"], 1)]))
    shipment = await first_shipment(client, order_id, "released")

    queued = json.loads((await cli(own, "warehouse", "queue", code, "--json"))[1])
    assert [(q["shipment_id"], q["order_id"], q["status"]) for q in queued] == [
        (shipment.id, order_id, "released")
    ]
    assert sorted((x["sku"], x["quantity"]) for x in queued[0]["lines"]) == sorted(
        [(skus["MUG"], 2), (skus["PEN"], 1)]
    )
    status, out = await cli(own, "warehouse", "queue", code)
    assert status == 0 and shipment.id in out and f"2 x {skus['MUG']}" in out

    status, _ = await cli(own, "warehouse", "handover", shipment.id)  # out of order
    assert status == 1 and "out of order" in capsys.readouterr().err
    # a pack straight after the release confirms the pick: its lines are checked as a pick's
    status, _ = await cli(
        own, "warehouse", "pack", shipment.id, "--parcel", "500", "--line", f"{skus['MUG']}=3"
    )
    assert status == 1 and "3 picked but 2 ordered" in capsys.readouterr().err
    status, out = await cli(own, "warehouse", "pick", shipment.id, "--id", "wms-pick-1")
    assert status == 0 and out.startswith(f"{shipment.id}: 3 units picked in {code} (by cli:"), out
    status, _ = await cli(own, "warehouse", "pick", shipment.id)
    assert status == 1 and "duplicate" in capsys.readouterr().err

    packing = asyncio.create_task(cli(own, "warehouse", "pack", shipment.id, "--parcel", "850"))
    await first_shipment(client, order_id, "packed")
    status, _ = await cli(own, "warehouse", "handover", shipment.id)  # the label is not printed yet
    assert status == 1
    assert "try again once the label is printed" in capsys.readouterr().err
    gates["book_carrier"].set()
    status, out = await packing
    assert status == 0 and "label" in out
    status, out = await cli(own, "warehouse", "handover", shipment.id)
    assert status == 0, capsys.readouterr().err
    tracking = (await first_shipment(client, order_id, "shipped")).tracking_number
    assert tracking and tracking in out
    assert json.loads((await cli(own, "warehouse", "queue", code, "--json"))[1]) == []

    assert (await cli(own, "carrier-event", tracking, "in_transit", "--id", "ev-1", "--place", "Hub"))[0] == 0
    status, out = await cli(own, "carrier-event", tracking, "in_transit", "--id", "ev-1")
    assert status == 0 and "already recorded, nothing changed" in out
    status, _ = await cli(
        own, "carrier-event", tracking, "delivery_failed", "--attempt", "1", "--at", "2030-01-01T10:00:00Z"
    )
    assert status == 1 and "ahead" in capsys.readouterr().err  # a carrier's clock years off
    now = datetime.now(UTC).isoformat()
    status, _ = await cli(own, "carrier-event", tracking, "delivery_failed", "--attempt", "1", "--at", now)
    assert status == 0
    assert (await cli(own, "carrier-event", tracking, "delivered"))[0] == 0
    view = await wait_status(client, order_id, "delivered")
    (delivered,) = view.shipments
    assert [e.type for e in delivered.tracking] == ["in_transit", "delivery_failed", "delivered"]
    assert delivered.tracking[0].place == "Hub" and delivered.delivery_attempts == 1
    status, _ = await cli(own, "resolve", order_id, shipment.id, "--refund")
    assert status == 1 and "no lost parcel" in capsys.readouterr().err


async def test_a_warehouse_and_a_carrier_over_http(http, api_keys, client, sessions, by_hand):
    own, gates, code = by_hand
    skus = add_products(sessions, {"LAMP": 5, "BULB": 5}, price="20.00", warehouse=code)
    order_id = await place(client, own, order_doc([(skus["LAMP"], 1), (skus["BULB"], 2)]))
    shipment = await first_shipment(client, order_id, "released")
    warehouse, carrier, support = (as_(api_keys, r) for r in (Role.warehouse, Role.carrier, Role.support))
    url = f"/shipments/{shipment.id}"

    queued = await http.get(f"/warehouses/{code}/queue", headers=support)
    assert [q["shipment_id"] for q in queued.json()] == [shipment.id]
    early = await http.post(f"{url}/handed-over", headers=warehouse)
    assert early.status_code == 409 and early.json()["error"] == "refused"
    assert "out of order" in early.json()["detail"]
    stranger = await http.post(  # a pack confirming the pick (no `picked` yet) of a SKU not on the list
        f"{url}/packed",
        json={"parcels_g": [900], "lines": [{"sku": "NOPE", "quantity": 1}]},
        headers=warehouse,
    )
    assert stranger.status_code == 409 and "not on the pick list" in stranger.json()["detail"]
    picked = await http.post(
        f"{url}/picked",
        json={"lines": [{"sku": skus["LAMP"], "quantity": 1}], "report_id": "wms-7"},
        headers=warehouse,
    )
    assert picked.status_code == 200, picked.text
    assert (picked.json()["order_id"], picked.json()["shipment_id"]) == (order_id, shipment.id)
    again = await http.post(f"{url}/picked", json={"lines": []}, headers=warehouse)
    assert again.status_code == 409 and "duplicate" in again.json()["detail"]

    packing = asyncio.create_task(
        http.post(f"{url}/packed", json={"parcels_g": [900, 450]}, headers=warehouse)
    )
    await first_shipment(client, order_id, "packed")
    too_early = await http.post(f"{url}/handed-over", headers=warehouse)
    assert too_early.status_code == 409, too_early.text
    assert too_early.json()["error"] == "too_early" and int(too_early.headers["retry-after"]) > 0
    gates["book_carrier"].set()
    packed = await packing
    assert packed.status_code == 200 and "label" in packed.json()["detail"]
    handed = await http.post(f"{url}/handed-over", json={"report_id": "wms-8"}, headers=warehouse)
    assert handed.status_code == 200, handed.text
    tracking = (await first_shipment(client, order_id, "shipped")).tracking_number
    assert tracking

    event = {"tracking_number": tracking, "type": "in_transit", "event_id": "c-1", "place": "Hub"}
    accepted = await http.post("/carrier/events", json=event, headers=carrier)
    assert accepted.status_code == 202, accepted.text
    assert (accepted.json()["shipment_id"], accepted.json()["duplicate"]) == (shipment.id, False)
    duplicate = await http.post("/carrier/events", json=event, headers=carrier)
    assert duplicate.status_code == 200, duplicate.text
    assert (duplicate.json()["order_id"], duplicate.json()["duplicate"]) == (order_id, True)
    lost = {
        "tracking_number": tracking,
        "type": "lost",
        "event_id": "c-2",
        "at": datetime.now(UTC).isoformat(),
    }
    assert (await http.post("/carrier/events", json=lost, headers=carrier)).status_code == 202
    await first_shipment(client, order_id, "exception")
    after = {"tracking_number": tracking, "type": "delivered", "event_id": "c-3"}
    refused = await http.post("/carrier/events", json=after, headers=carrier)
    assert refused.status_code == 409 and refused.json()["error"] == "refused"

    resolution = f"/orders/{order_id}/shipments/{shipment.id}/resolution"
    refunded = await http.post(resolution, json={"resolution": "refund"}, headers=support)
    assert refunded.status_code == 200, refunded.text
    (resolved,) = [s for s in refunded.json()["shipments"] if s["id"] == shipment.id]
    assert (resolved["status"], resolved["resolution"]) == ("resolved", "refund")
    twice = await http.post(resolution, json={"resolution": "reship"}, headers=support)
    assert twice.status_code == 409
    view = await order_view(client, order_id)
    assert view.payment.refunded == view.payment.captured > Decimal("0")
    assert_ledger_invariants(sessions, order_id)
