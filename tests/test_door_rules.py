"""One rule for every door (issue 21): what a model accepts, the database can store. Times within a sane
range and not before the step they report on; no control characters in ids, paths or query parameters;
numbers of the right type; duplicate JSON keys refused; every refusal JSON naming the field, with nothing
changed. And a report the database refuses after all is refused to its sender while the order goes on."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from alembic import command
from sqlalchemy import select, text

from db import alembic_config, make_engine, migrate
from domain.api_keys import Role
from models import tables as t
from models.workflow_names import order_workflow_id
from services.orders import order_view
from tests.api_server import ApiServer
from tests.helpers import (
    add_order_row,
    add_products,
    as_,
    cli,
    eventually,
    fresh_database,
    order_doc,
    place,
    unique,
)
from tests.test_parties import hand_over, manual_worker

pytestmark = pytest.mark.usefixtures("worker")


def assert_refused(answer: httpx.Response, field: str) -> None:
    """422 in the API's error shape, naming the field."""
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_request", body
    assert any(p.startswith(field) for p in body["problems"]), body


async def shipped_order(client, sessions, gated_worker) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """An order whose one parcel the (manual) warehouse handed over: (order id, shipment id, tracking)."""
    settings = await manual_worker(gated_worker, release_delay=timedelta(0))
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: bool(v.shipments) and v.shipments[0].status == "released",
    )
    shipment_id = view.shipments[0].id
    tracking = await hand_over(client, shipment_id)
    await eventually(lambda: order_view(client, order_id), lambda v: v.status == "shipped")
    return order_id, shipment_id, tracking


def stuck(view) -> bool:  # type: ignore[no-untyped-def]
    return any(e.type == "step_stuck" for e in view.events)


async def delivered(http, carrier, client, order_id: str, tracking: str) -> None:  # type: ignore[no-untyped-def]
    event = {"tracking_number": tracking, "type": "delivered", "event_id": unique("d")}
    answer = await http.post("/carrier/events", json=event, headers=carrier)
    assert answer.status_code == 202, answer.text
    view = await order_view(client, order_id)
    assert view.status == "delivered" and not stuck(view)


# ---- times, ids and numbers of a carrier's event ----

BAD_EVENTS = {
    "year 1 with an offset (overflows UTC)": ({"at": "0001-01-01T00:00:00+05:00"}, "at"),
    "year 9999 with an offset (overflows UTC)": ({"at": "9999-12-31T23:00:00-05:00"}, "at"),
    "1970": ({"at": "1970-01-01T00:00:00Z"}, "at"),
    "a number for a time": ({"at": 1_700_000_000}, "at"),
    "NUL in the event id": ({"event_id": "e\x001"}, "event_id"),
    "newline in the event id": ({"event_id": "e\n1"}, "event_id"),
    "NUL in the tracking number": ({"tracking_number": "T\x001"}, "tracking_number"),
    "attempt as a string": ({"type": "delivery_failed", "attempt": "3"}, "attempt"),
}


@pytest.mark.parametrize("case", list(BAD_EVENTS))
async def test_a_carrier_event_the_database_could_not_store_is_refused_at_the_door(
    http, api_keys, client, sessions, gated_worker, case
):
    order_id, _, tracking = await shipped_order(client, sessions, gated_worker)
    carrier = as_(api_keys, Role.carrier)
    changes, field = BAD_EVENTS[case]
    event = {"tracking_number": tracking, "type": "in_transit", "event_id": unique("e")} | changes
    assert_refused(await http.post("/carrier/events", json=event, headers=carrier), field)
    # nothing kept, nothing stuck: the real delivery goes through
    with sessions() as session:
        assert (
            session.scalars(select(t.TrackingEvent).where(t.TrackingEvent.tracking_number == tracking)).all()
            == []
        )
    await delivered(http, carrier, client, order_id, tracking)


async def test_events_dated_before_their_step_or_days_ahead_are_refused(
    http, api_keys, client, sessions, gated_worker
):
    order_id, shipment_id, tracking = await shipped_order(client, sessions, gated_worker)
    carrier = as_(api_keys, Role.carrier)
    view = await order_view(client, order_id)
    (shipment,) = view.shipments
    assert shipment.released_at is not None and shipment.shipped_at is not None
    between = shipment.released_at + (shipment.shipped_at - shipment.released_at) / 2  # picked, packed

    def event(kind: str, at: datetime) -> dict[str, str]:
        return {"tracking_number": tracking, "type": kind, "event_id": unique("e"), "at": at.isoformat()}

    before_release = await http.post(
        "/carrier/events",
        json=event("in_transit", shipment.released_at - timedelta(hours=1)),
        headers=carrier,
    )
    assert before_release.status_code == 409 and "before" in before_release.json()["detail"], (
        before_release.text
    )
    before_handover = await http.post(
        "/carrier/events",
        json=event("delivered", between),
        headers=carrier,
    )
    assert before_handover.status_code == 409, before_handover.text
    assert "before it was handed over" in before_handover.json()["detail"]
    ahead = await http.post(
        "/carrier/events", json=event("in_transit", datetime.now(UTC) + timedelta(days=2)), headers=carrier
    )
    assert ahead.status_code == 409 and "ahead" in ahead.json()["detail"], ahead.text
    # a pickup scan dated before the warehouse's handover report (but after the release) is fine
    pickup = event("in_transit", between)
    assert (await http.post("/carrier/events", json=pickup, headers=carrier)).status_code == 202
    await delivered(http, carrier, client, order_id, tracking)
    assert (await order_view(client, order_id)).shipments[0].id == shipment_id


# ---- a report the database refuses after all ----


@contextmanager
def database_refuses_place(sessions, place: str) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Make the real database refuse a tracking event at `place` (a CHECK constraint, a trigger on
    SQLite): data that the model accepts and the database does not, as a hole in the doors would be."""
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    engine = sessions.kw["bind"]
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            conn.execute(
                text(
                    f"ALTER TABLE tracking_events ADD CONSTRAINT {name} CHECK (place IS DISTINCT FROM '{place}') NOT VALID"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON tracking_events WHEN NEW.place = '{place}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"ALTER TABLE tracking_events DROP CONSTRAINT {name}"
                    if postgres
                    else f"DROP TRIGGER {name}"
                )
            )


async def test_an_event_the_database_refuses_is_refused_to_the_carrier_and_the_order_goes_on(
    http, api_keys, client, sessions, gated_worker
):
    order_id, _, tracking = await shipped_order(client, sessions, gated_worker)
    carrier = as_(api_keys, Role.carrier)
    poison = unique("poison")
    with database_refuses_place(sessions, poison):
        event = {"tracking_number": tracking, "type": "in_transit", "event_id": "e-1", "place": poison}
        refused = await http.post("/carrier/events", json=event, headers=carrier)
        assert refused.status_code == 409, refused.text
        assert "not recorded" in refused.json()["detail"] and poison not in refused.json()["detail"]
    view = await order_view(client, order_id)
    assert view.status == "shipped" and not stuck(view)
    assert view.shipments[0].tracking == []
    assert any(e.type == "carrier_event_refused" for e in view.events)
    # the same event id, now storable, is taken: the refused one was not kept as seen
    event["place"] = "Leipzig hub"
    again = await http.post("/carrier/events", json=event, headers=carrier)
    assert again.status_code == 202, again.text
    await delivered(http, carrier, client, order_id, tracking)


# ---- paths, query parameters and headers ----


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/stock?sku=a%00b", "query.sku"),
        ("/warehouses/a%00b/queue", "path"),
        ("/imports/a%00b", "path"),
        ("/orders/a%0Ab", "path"),
        ("/orders?customer=a%00b", "query.customer"),
    ],
)
async def test_control_characters_in_a_path_or_query_are_refused_before_any_route(
    http, api_keys, path, field
):
    support = as_(api_keys, Role.support)
    assert_refused(await http.get(path, headers=support), field)
    assert (await http.get("/stock", headers=support)).status_code == 200  # the connection goes on


async def test_a_customer_filter_that_is_no_customer_id_is_invalid_not_unavailable(http, api_keys):
    answer = await http.get(
        "/orders", params={"customer": "a'b\"c OR 1=1"}, headers=as_(api_keys, Role.support)
    )
    assert answer.status_code == 422 and answer.json()["detail"].startswith("customer: "), answer.text
    assert "retry-after" not in answer.headers


async def test_a_control_character_in_a_header_gets_the_apis_json_error(api: ApiServer, api_keys):
    parts = urlsplit(api.url)
    request = (
        "POST /orders HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {api_keys[Role.source]}\r\nIdempotency-Key: A-\x01-1\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"] == "invalid_http"


async def test_the_audit_line_of_a_path_with_a_newline_is_one_escaped_line(http, api_keys, api: ApiServer):
    marker = unique("forged")
    path = f"/orders/{marker}%0A2026-01-01 INFO oms.api.audit: key=admin role=admin POST /orders/X/cancel -> 200/cancel"
    await http.post(path, json={"reason": "x"}, headers=as_(api_keys, Role.support))
    lines = await eventually(lambda: _lines_with(api, marker), lambda found: bool(found), timeout=10)
    (line,) = lines
    assert "\\n2026-01-01 INFO" in line  # escaped, on the line of the request it belongs to
    assert not any(x.startswith("2026-01-01 INFO oms.api.audit") for x in api.log().splitlines())


async def _lines_with(api: ApiServer, marker: str) -> list[str]:
    return [line for line in api.log().splitlines() if marker in line]


# ---- bodies: duplicate keys and numbers of the wrong type ----


def raw_order(sku: str, **replace: str) -> str:
    doc = json.dumps(order_doc([(sku, 1)], order_id=unique("DUP")))
    for old, new in replace.items():
        doc = doc.replace(old, new)
    return doc


async def test_an_order_naming_a_key_twice_is_refused_and_nothing_starts(
    http, api_keys, client, sessions, settings, tmp_path, capsys
):
    sku = add_products(sessions, {"MUG": 5})["MUG"]
    body = raw_order(sku, **{'"token": "tok_visa"': '"token": "tok_declined", "token": "tok_visa"'})
    assert body.count('"token"') == 2
    order_id = json.loads(body)["order_id"]
    headers = as_(api_keys, Role.source) | {"Content-Type": "application/json"}
    assert_refused(await http.post("/orders", content=body, headers=headers), "payment.token")
    assert (await http.get(f"/orders/{order_id}", headers=headers)).status_code == 404

    path = tmp_path / "order.json"
    path.write_text(body)
    status, _ = await cli(settings, "place", str(path))
    assert status == 2 and "payment.token: given more than once" in capsys.readouterr().err

    path = tmp_path / "orders.jsonl"
    path.write_text(body + "\n")
    status, out = await cli(settings, "import", str(path))
    assert status == 1 and "line 1: payment.token: given more than once" in out, out
    with pytest.raises(Exception, match="not found|NotFound"):
        await client.get_workflow_handle(order_workflow_id(order_id)).describe()


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        ({'"quantity": 1': '"quantity": "1"'}, "lines.0.quantity"),
        ({'"quantity": 1': '"quantity": 1, "unit_price": "1_000"'}, "lines.0.unit_price"),
        ({'"quantity": 1': '"quantity": 1, "unit_price": "1e3"'}, "lines.0.unit_price"),
        ({'"quantity": 1': '"quantity": 1, "unit_price": " 12.00"'}, "lines.0.unit_price"),
    ],
    ids=["quantity-string", "price-underscores", "price-exponent", "price-padded"],
)
async def test_numbers_are_not_guessed_from_text(http, api_keys, sessions, replace, field):
    sku = add_products(sessions, {"MUG": 5})["MUG"]
    headers = as_(api_keys, Role.source) | {"Content-Type": "application/json"}
    assert_refused(await http.post("/orders", content=raw_order(sku, **replace), headers=headers), field)


async def test_a_parcel_weight_as_text_is_refused(http, api_keys):
    answer = await http.post(
        "/shipments/X-S1/packed", json={"parcels_g": ["900"]}, headers=as_(api_keys, Role.warehouse)
    )
    assert_refused(answer, "parcels_g.0")


# ---- imports: an id no database can hold is a refused order, not a traceback ----


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_an_import_row_with_a_nul_in_its_order_id_is_refused_alone(
    settings, sessions, tmp_path, capsys, fmt
):
    sku = add_products(sessions, {"MUG": 5})["MUG"]
    good, bad = unique("IMP"), "IMP-\x00-1"
    if fmt == "jsonl":
        rows = [json.dumps(order_doc([(sku, 1)], order_id=oid)) for oid in (bad, good)]
    else:
        header = "order_id,channel,customer_id,customer_name,customer_email,ship_name,ship_line1,ship_city,ship_postal_code,ship_country,currency,payment_token,sku,quantity"
        rows = [header] + [
            f"{oid},csv,C-7,Ada,ada@example.com,Ada,1 Road,London,SW1Y 4JH,GB,EUR,tok_visa,{sku},1"
            for oid in (bad, good)
        ]
    path = tmp_path / f"orders.{fmt}"
    path.write_text("\n".join(rows) + "\n")
    status, out = await cli(settings, "import", str(path))
    captured = capsys.readouterr()
    assert status == 1, captured
    assert "Traceback" not in captured.err + out
    assert "IMP-\\x00-1" in out and "order_id" in out, out


# ---- logs: no bound values in database errors ----


def test_database_errors_do_not_quote_the_values_they_refused(settings, sessions):
    engine = make_engine(settings.database_url)
    customer = unique("C")
    secret = f"{uuid.uuid4().hex}@example.com"
    with engine.begin() as conn:
        conn.execute(t.Customer.__table__.insert(), {"id": customer, "name": "Ada", "email": secret})
    with pytest.raises(Exception) as caught, engine.begin() as conn:
        conn.execute(t.Customer.__table__.insert(), {"id": customer, "name": "Ada Lovelace", "email": secret})
    assert secret not in str(caught.value) and "Ada Lovelace" not in str(caught.value)
    engine.dispose()


# ---- the shipments row follows the order after a lost parcel is settled ----


async def test_a_resolved_parcel_is_resolved_in_the_shipments_row(
    http, api_keys, client, sessions, gated_worker
):
    order_id, shipment_id, tracking = await shipped_order(client, sessions, gated_worker)
    lost = {"tracking_number": tracking, "type": "lost", "event_id": unique("l")}
    assert (
        await http.post("/carrier/events", json=lost, headers=as_(api_keys, Role.carrier))
    ).status_code == 202
    answer = await http.post(
        f"/orders/{order_id}/shipments/{shipment_id}/resolution",
        json={"resolution": "refund"},
        headers=as_(api_keys, Role.support),
    )
    assert answer.status_code == 200, answer.text
    with sessions() as session:
        assert session.get(t.Shipment, shipment_id).status == "resolved"


def test_migration_0012_resolves_the_rows_of_settled_parcels(tmp_path):
    """Rows left `exception` after support's choice (a claim was lodged) become `resolved`; a parcel still
    waiting for the choice (no claim yet) stays `exception`."""
    with fresh_database(tmp_path, "m0012") as (url, sessions):
        command.downgrade(alembic_config(url), "0011")
        with sessions.begin() as session:
            session.add(t.Warehouse(code="W1", name="W1", priority=1))
            add_order_row(
                session,
                "M-1",
                "C-1",
                status="delivery_exception",
                payment_status="captured",
                placed_at=datetime.now(UTC),
            )
            for sid in ("M-1-S1", "M-1-S2"):
                session.add(t.Shipment(id=sid, order_id="M-1", warehouse="W1", status="exception"))
            session.flush()
            session.add(
                t.CarrierClaim(
                    order_id="M-1", shipment_id="M-1-S1", tracking_number="T1", reason="lost", amount=1
                )
            )
        migrate(url)
        with sessions() as session:
            assert session.get(t.Shipment, "M-1-S1").status == "resolved"
            assert session.get(t.Shipment, "M-1-S2").status == "exception"
