"""The HTTP API through a real uvicorn process, against the real dev server, worker and database."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db import SessionFactory
from domain.api_keys import Role, create_key, revoke_key
from domain.blocklist import update_blocklist
from models import tables as t
from services.orders import UnknownOrder, order_view
from tests.helpers import (
    add_products,
    as_,
    assert_ledger_invariants,
    eventually,
    ledger,
    order_doc,
    set_stock,
    stock_of,
    unique,
    wait_status,
)


async def placed(
    http: httpx.AsyncClient, keys: dict[Role, str], doc: dict[str, Any], **params: str
) -> httpx.Response:
    return await http.post("/orders", json=doc, headers=as_(keys, Role.source), params=params)


def authorizations(sessions: SessionFactory, order_id: str) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count()).where(t.Payment.order_id == order_id, t.Payment.kind == "authorization")
        )


async def no_workflow(client, order_id: str) -> bool:
    try:
        await order_view(client, order_id)
    except UnknownOrder:
        return True
    return False


# ---- probes ----


async def test_health_and_readiness_need_no_key(http, settings):
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    answer = ready.json()
    assert (answer["temporal"], answer["database"]) == ("ok", "ok")
    # where the API connects, and how: the same target `starter.py doctor` prints
    assert answer["temporal_target"]["address"] == settings.temporal_address
    assert answer["temporal_target"]["tls"] is False and answer["temporal_target"]["api_key"] is False
    assert (await http.get("/docs")).status_code == 200
    assert "/orders/import" in (await http.get("/openapi.json")).json()["paths"]


# ---- placing orders ----


async def test_an_order_placed_over_http_runs_and_says_who_placed_it(http, api_keys, client, sessions, api):
    skus = add_products(sessions, {"MUG": 5}, price="12.50")
    doc = order_doc([(skus["MUG"], 2)])
    answer = await placed(http, api_keys, doc)
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"/orders/{doc['order_id']}"
    assert answer.json()["created"] is True

    view = await wait_status(client, doc["order_id"], "shipped")
    assert view.total == Decimal("25.00")
    got = (await http.get(answer.headers["location"], headers=as_(api_keys, Role.support))).json()
    assert got["order_id"] == doc["order_id"] and got["status"] == "shipped"
    source_name = _key_name(sessions, api_keys[Role.source])
    assert f"(by {source_name})" in view.events[0].detail  # the order's event log says who placed it
    assert f"key={source_name} role=source POST /orders -> 201" in api.log()  # and so does the audit log


async def test_placing_the_same_order_again_is_200_and_a_different_body_is_409(
    http, api_keys, client, sessions
):
    skus = add_products(sessions, {"PEN": 10})
    doc = order_doc([(skus["PEN"], 1)])
    assert (await placed(http, api_keys, doc)).status_code == 201
    again = await placed(http, api_keys, {**doc, "customer": dict(doc["customer"])})  # same content
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["status"] in ("received", "confirmed", "picking", "packed", "shipped")
    different = await placed(http, api_keys, {**doc, "lines": [{"sku": skus["PEN"], "quantity": 3}]})
    assert different.status_code == 409
    assert "different content" in different.json()["detail"]
    await wait_status(client, doc["order_id"], "shipped")
    assert ledger(sessions, doc["order_id"])["authorization"] == Decimal("10.00")  # one order of one pen


async def test_ten_concurrent_posts_of_one_order_start_one_workflow_and_one_authorization(
    http, api_keys, client, sessions
):
    skus = add_products(sessions, {"LAMP": 10})
    doc = order_doc([(skus["LAMP"], 1)])
    answers = await asyncio.gather(*(placed(http, api_keys, doc) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [200] * 9 + [201]
    await wait_status(client, doc["order_id"], "shipped")
    runs = [w async for w in client.list_workflows(f"WorkflowId = 'order-{doc['order_id']}'")]
    assert len(runs) == 1
    assert authorizations(sessions, doc["order_id"]) == 1
    assert stock_of(sessions, skus["LAMP"]) == (9, 0)


async def test_the_idempotency_key_header_names_an_order_without_an_id(http, api_keys, client, sessions):
    skus = add_products(sessions, {"CUP": 5})
    doc = order_doc([(skus["CUP"], 1)])
    key = doc.pop("order_id")
    headers = {**as_(api_keys, Role.source), "Idempotency-Key": key}
    first = await http.post("/orders", json=doc, headers=headers)
    assert first.status_code == 201 and first.json()["order_id"] == key
    assert (await http.post("/orders", json=doc, headers=headers)).status_code == 200
    clash = await http.post("/orders", json={**doc, "order_id": unique("T")}, headers=headers)
    assert clash.status_code == 422 and "Idempotency-Key" in clash.json()["detail"]
    bad = await http.post("/orders", json=doc, headers={**headers, "Idempotency-Key": "no spaces allowed"})
    assert bad.status_code == 422 and bad.json()["problems"][0].startswith("header.idempotency-key")
    await wait_status(client, key, "shipped")


async def test_wait_answers_once_the_order_has_settled(http, api_keys, client, sessions):
    skus = add_products(sessions, {"BOWL": 5})
    confirmed = await placed(http, api_keys, order_doc([(skus["BOWL"], 1)]), wait="true")
    assert confirmed.status_code == 201
    body = confirmed.json()
    assert body["status"] == "confirmed" and body["reason"] is None
    assert body["order"]["status"] != "received"

    declined = await placed(http, api_keys, order_doc([(skus["BOWL"], 1)], token="tok_declined"), wait="true")
    body = declined.json()
    assert declined.status_code == 201 and body["status"] == "rejected"
    assert "declined" in body["reason"]
    await wait_status(client, confirmed.json()["order_id"], "shipped")
    assert stock_of(sessions, skus["BOWL"]) == (4, 0)  # the declined order took nothing


async def test_invalid_orders_get_422_naming_every_bad_field_and_start_nothing(http, api_keys, client):
    doc = order_doc([("ANY-SKU", 0)])
    doc["customer"]["email"] = "not-an-email"
    doc["surprise"] = True
    answer = await placed(http, api_keys, doc)
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert any(p.startswith("lines.0.quantity:") for p in problems), problems
    assert any(p.startswith("customer.email:") for p in problems), problems
    assert any(p.startswith("surprise:") for p in problems), problems
    assert await no_workflow(client, doc["order_id"])


async def test_money_that_does_not_reconcile_gets_422_naming_the_difference(http, api_keys, client):
    doc = order_doc([("ANY-SKU", 2)])
    doc["lines"][0] |= {"unit_price": "10.00", "discount_allocations": [{"amount": "2.00"}]}
    doc |= {
        "discount_codes": [{"code": "TWO", "amount": "2.50"}],
        "shipping_lines": [{"title": "Post", "price": "4.99"}],
    }
    answer = await placed(http, api_keys, doc)
    assert answer.status_code == 422
    assert any("a difference of 0.50" in p for p in answer.json()["problems"]), answer.json()
    doc |= {"discount_codes": [{"code": "TWO", "amount": "2.00"}], "total_price": "22.98"}
    answer = await placed(http, api_keys, doc)
    assert answer.status_code == 422  # 20.00 - 2.00 + 4.99 = 22.99
    assert any("differs from the total 22.99" in p for p in answer.json()["problems"]), answer.json()
    assert await no_workflow(client, doc["order_id"])


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b'{"order_id": "X", ', "application/json", 400, "invalid_json"),
        (b"order_id=X", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"[[[[[[[[[[" * 100, "application/json", 400, "invalid_json"),
        (b"[]", "application/json", 422, "invalid_request"),
        (b"x" * (2 * 1024 * 1024), "application/json", 413, "too_large"),
    ],
    ids=["malformed", "form", "nested", "not-an-object", "huge"],
)
async def test_bad_bodies_get_a_clear_error_not_a_traceback(
    http, api_keys, body, content_type, status, error
):
    answer = await http.post(
        "/orders", content=body, headers={**as_(api_keys, Role.source), "Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert "Traceback" not in answer.text


# ---- keys and roles ----


async def test_no_key_or_an_unknown_key_is_401(http):
    missing = await http.get("/orders")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = await http.get("/orders", headers={"Authorization": "Bearer oms_not-a-real-key"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown or revoked API key"


async def test_a_revoked_key_stops_working(http, sessions):
    name = unique("short-lived")
    key = create_key(sessions, name, Role.support).key
    assert (await http.get("/orders", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    revoke_key(sessions, name)

    async def answer() -> int:
        return (await http.get("/orders", headers={"Authorization": f"Bearer {key}"})).status_code

    # a running API remembers a key for OMS_API_KEY_CACHE_TTL (2 s) before it looks again
    assert await eventually(answer, lambda code: code == 401, timeout=10) == 401


ROLE_BOUNDARIES = [
    # (role, method, path, body): each is refused with 403 before anything happens
    (Role.source, "POST", "/orders/ANY/cancel", {"reason": "x"}),
    (Role.source, "POST", "/orders/ANY/returns", {"sku": "S", "quantity": 1, "reason": "x"}),
    (Role.source, "POST", "/stock/adjustments", {"sku": "S", "warehouse": "W1", "delta": 1, "reason": "x"}),
    (Role.source, "POST", "/carrier/events", {"tracking_number": "T", "type": "delivered"}),
    (Role.carrier, "GET", "/orders", None),
    (Role.carrier, "POST", "/orders", {}),
    (Role.carrier, "GET", "/stock", None),
    (Role.carrier, "POST", "/orders/ANY/notes", {"text": "x"}),
    (Role.warehouse, "POST", "/orders", {}),
    (Role.warehouse, "POST", "/orders/ANY/cancel", {"reason": "x"}),
    (Role.support, "POST", "/stock/adjustments", {"sku": "S", "warehouse": "W1", "delta": 1, "reason": "x"}),
    (Role.support, "POST", "/carrier/events", {"tracking_number": "T", "type": "delivered"}),
]


@pytest.mark.parametrize(("role", "method", "path", "body"), ROLE_BOUNDARIES)
async def test_each_role_reaches_only_its_endpoints(http, api_keys, role, method, path, body):
    answer = await http.request(method, path, json=body, headers=as_(api_keys, role))
    assert answer.status_code == 403, answer.text
    assert f"a {role.value} key may not do this" in answer.json()["detail"]


async def test_admin_reaches_everything(http, api_keys):
    admin = as_(api_keys, Role.admin)
    for path in ("/orders", "/stock", "/purchase-orders"):
        assert (await http.get(path, headers=admin)).status_code == 200, path


# ---- lists ----


async def test_orders_are_listed_by_filter_a_page_at_a_time(http, api_keys, client, sessions):
    skus = add_products(sessions, {"FORK": 10})
    customer = unique("C")
    ids = []
    for _ in range(3):
        doc = order_doc([(skus["FORK"], 1)])
        doc["customer"]["id"] = customer
        assert (await placed(http, api_keys, doc)).status_code == 201
        ids.append(doc["order_id"])
    for order_id in ids:
        await wait_status(client, order_id, "shipped")
    support = as_(api_keys, Role.support)

    async def first_page() -> dict[str, Any]:
        answer = await http.get(
            "/orders", params={"customer": customer, "status": "shipped", "page_size": 2}, headers=support
        )
        return answer.json()

    page = await eventually(first_page, lambda p: len(p["orders"]) == 2 and p["next_page_token"])
    rest = (
        await http.get(
            "/orders",
            params={
                "customer": customer,
                "status": "shipped",
                "page_size": 2,
                "page_token": page["next_page_token"],
            },
            headers=support,
        )
    ).json()
    listed = [o["order_id"] for o in page["orders"] + rest["orders"]]
    assert sorted(listed) == sorted(ids) and rest["next_page_token"] is None
    assert all(o["channel"] == "web" and o["customer_id"] == customer for o in page["orders"])

    refused = await http.get("/orders", params={"status": "lost-in-space"}, headers=support)
    assert refused.status_code == 422 and refused.json()["problems"][0].startswith("query.status")
    # not base64; base64 but never handed out; handed out for another query: refused, never sent to Temporal
    for params in (
        {"page_token": "%%%"},
        {"page_token": "true"},
        {"page_token": page["next_page_token"][:-4]},
        {"customer": customer, "status": "confirmed", "page_token": page["next_page_token"]},
    ):
        bad_token = await http.get("/orders", params=params, headers=support)
        assert bad_token.status_code == 422, (params, bad_token.text)
        assert bad_token.json()["detail"] == "page_token is not a token this API handed out"


async def test_an_unknown_order_is_404(http, api_keys):
    support = as_(api_keys, Role.support)
    assert (await http.get("/orders/NO-SUCH-ORDER", headers=support)).status_code == 404
    answer = await http.post("/orders/NO-SUCH-ORDER/cancel", json={"reason": "x"}, headers=support)
    assert answer.status_code == 404 and answer.json()["detail"] == "unknown order NO-SUCH-ORDER"


# ---- support ----


async def test_support_cancels_a_held_order_and_the_event_log_names_them(
    http, api_keys, client, sessions, api
):
    skus = add_products(sessions, {"VASE": 3})
    doc = order_doc([(skus["VASE"], 1)])
    email = f"{unique('hold').lower()}@example.com"
    doc["customer"]["email"] = email
    update_blocklist(sessions, "add", email, "chargebacks")
    assert (await placed(http, api_keys, doc)).status_code == 201
    await wait_status(client, doc["order_id"], "on_hold")
    support = as_(api_keys, Role.support)

    answer = await http.post(
        f"/orders/{doc['order_id']}/cancel", json={"reason": "customer asked"}, headers=support
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled" and answer.json()["payment_status"] == "voided"
    name = _key_name(sessions, api_keys[Role.support])
    cancelled = [e for e in answer.json()["events"] if e["type"] == "order_cancelled"]
    assert cancelled[0]["detail"] == f"cancelled: customer asked (by {name})"
    assert f"key={name} role=support POST /orders/{doc['order_id']}/cancel -> 200" in api.log()
    assert stock_of(sessions, skus["VASE"]) == (3, 0)
    assert_ledger_invariants(sessions, doc["order_id"])

    again = await http.post(f"/orders/{doc['order_id']}/cancel", json={"reason": "again"}, headers=support)
    assert again.status_code == 409 and "closed" in again.json()["detail"]


async def test_support_releases_a_held_order_and_refusals_are_409(http, api_keys, client, sessions):
    skus = add_products(sessions, {"RUG": 3})
    doc = order_doc([(skus["RUG"], 1)])
    email = f"{unique('rel').lower()}@example.com"
    doc["customer"]["email"] = email
    update_blocklist(sessions, "add", email)
    assert (await placed(http, api_keys, doc)).status_code == 201
    await wait_status(client, doc["order_id"], "on_hold")
    support = as_(api_keys, Role.support)

    released = await http.post(f"/orders/{doc['order_id']}/release", headers=support)
    assert released.status_code == 200 and released.json()["status"] != "on_hold"
    await wait_status(client, doc["order_id"], "shipped")
    refused = await http.post(
        f"/orders/{doc['order_id']}/cancel", json={"reason": "too late"}, headers=support
    )
    assert refused.status_code == 409
    assert "can no longer be cancelled" in refused.json()["detail"]
    not_held = await http.post(f"/orders/{doc['order_id']}/release", headers=support)
    assert not_held.status_code == 409 and "not on hold" in not_held.json()["detail"]


async def test_delivery_feedback_return_and_receipt_over_http(http, api_keys, client, sessions):
    skus = add_products(sessions, {"SHOE": 4}, price="40.00")
    doc = order_doc([(skus["SHOE"], 2)])
    assert (await placed(http, api_keys, doc)).status_code == 201
    view = await wait_status(client, doc["order_id"], "shipped")
    tracking = view.shipments[0].tracking_number
    carrier = as_(api_keys, Role.carrier)

    delivered = await http.post(
        "/carrier/events", json={"tracking_number": tracking, "type": "delivered"}, headers=carrier
    )
    assert delivered.status_code == 202 and delivered.json()["duplicate"] is False
    await wait_status(client, doc["order_id"], "delivered")
    again = await http.post(
        "/carrier/events", json={"tracking_number": tracking, "type": "delivered"}, headers=carrier
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    unknown = await http.post(
        "/carrier/events", json={"tracking_number": "NOPE", "type": "delivered"}, headers=carrier
    )
    assert unknown.status_code == 404
    lost = await http.post(
        "/carrier/events", json={"tracking_number": tracking, "type": "teleported"}, headers=carrier
    )
    assert lost.status_code == 422 and lost.json()["problems"][0].startswith("type:")

    support = as_(api_keys, Role.support)
    order_url = f"/orders/{doc['order_id']}"
    assert (
        await http.post(f"{order_url}/feedback", json={"score": 5}, headers=as_(api_keys, Role.source))
    ).status_code == 202
    assert (
        await http.post(f"{order_url}/notes", json={"text": "called the customer"}, headers=support)
    ).status_code == 202
    too_many = await http.post(
        f"{order_url}/returns", json={"sku": skus["SHOE"], "quantity": 3, "reason": "x"}, headers=support
    )
    assert too_many.status_code == 409 and "remain returnable" in too_many.json()["detail"]
    rma = await http.post(
        f"{order_url}/returns",
        json={"sku": skus["SHOE"], "quantity": 1, "reason": "too small"},
        headers=support,
    )
    assert rma.status_code == 201, rma.text
    receipt = await http.post(
        f"{order_url}/returns/{rma.json()['rma']}/receipt",
        json={"condition": "good"},
        headers=as_(api_keys, Role.warehouse),
    )
    assert receipt.status_code == 202

    final = await eventually(
        lambda: order_view(client, doc["order_id"]),
        lambda v: v.status == "partially_returned" and v.payment.refunded,
    )
    assert final.payment.refunded == Decimal("40.00")
    assert final.feedback is not None and final.feedback.score == 5
    kinds = [e.type for e in final.events]
    assert {"support_note", "feedback_received", "return_authorized", "return_received"} <= set(kinds)
    assert_ledger_invariants(sessions, doc["order_id"])
    assert stock_of(sessions, skus["SHOE"]) == (3, 0)  # one pair back on the shelf


# ---- stock ----


async def test_warehouses_adjust_and_receive_stock_and_everyone_reads_it(http, api_keys, sessions):
    skus = add_products(sessions, {"NAIL": 10})
    sku = skus["NAIL"]
    warehouse = as_(api_keys, Role.warehouse)
    levels = (await http.get("/stock", params={"sku": sku}, headers=as_(api_keys, Role.support))).json()
    assert levels == [
        {
            "sku": sku,
            "warehouse": "W1",
            "on_hand": 10,
            "reserved": 0,
            "available": 10,
            "reorder_point": None,
            "reorder_qty": None,
            "count_requested_at": None,
            "count_reason": None,
        }
    ]

    adjusted = await http.post(
        "/stock/adjustments",
        json={"sku": sku, "warehouse": "W1", "delta": -3, "reason": "cycle count"},
        headers=warehouse,
    )
    assert adjusted.status_code == 200 and adjusted.json()["level"]["on_hand"] == 7
    received = await http.post(
        "/stock/receipts", json={"sku": sku, "warehouse": "W1", "quantity": 5}, headers=warehouse
    )
    assert received.status_code == 200 and received.json()["level"]["on_hand"] == 12
    assert stock_of(sessions, sku) == (12, 0)

    below = await http.post(
        "/stock/adjustments",
        json={"sku": sku, "warehouse": "W1", "delta": -13, "reason": "x"},
        headers=warehouse,
    )
    assert below.status_code == 422 and "below" in below.json()["detail"]
    unknown = await http.post(
        "/stock/adjustments",
        json={"sku": "NO-SUCH", "warehouse": "W1", "delta": 1, "reason": "x"},
        headers=warehouse,
    )
    assert unknown.status_code == 422 and "unknown SKU" in unknown.json()["detail"]
    no_po = await http.post(
        "/stock/receipts",
        json={"sku": sku, "warehouse": "W1", "quantity": 1, "purchase_order": "PO-NOPE"},
        headers=warehouse,
    )
    assert no_po.status_code == 404
    assert stock_of(sessions, sku) == (12, 0)  # refusals changed nothing
    assert (await http.get("/purchase-orders", headers=warehouse)).status_code == 200
    with sessions() as session:
        reasons = session.scalars(select(t.StockMovement.reason).where(t.StockMovement.sku == sku)).all()
    assert f"cycle count (by {_key_name(sessions, api_keys[Role.warehouse])})" in reasons


# ---- outages ----


def _key_name(sessions: SessionFactory, key: str) -> str:
    from domain.api_keys import authenticate

    who = authenticate(sessions, key)
    assert who is not None
    return who.name


async def test_a_receipt_for_a_purchase_order_is_booked_by_its_replenishment(http, api_keys, sessions):
    sku = add_products(sessions, {"SCREW": 5})["SCREW"]
    set_stock(sessions, sku, "W1", 5, reorder_point=4, reorder_qty=20)
    warehouse = as_(api_keys, Role.warehouse)
    count = {"sku": sku, "warehouse": "W1", "delta": -1, "reason": "cycle count"}
    adjusted = await http.post("/stock/adjustments", json=count, headers=warehouse)
    assert adjusted.json()["replenishing"] == [f"replenish-{sku}-W1"]  # it fell to its reorder point

    async def its_purchase_orders() -> list[dict[str, Any]]:
        listed = (await http.get("/purchase-orders", headers=as_(api_keys, Role.support))).json()
        return [po for po in listed if po["sku"] == sku]

    (po,) = await eventually(its_purchase_orders, lambda pos: len(pos) == 1)
    assert (po["status"], po["quantity"]) == ("open", 20)
    goods = {"sku": sku, "warehouse": "W1", "quantity": 20, "purchase_order": po["id"]}
    elsewhere = await http.post("/stock/receipts", json={**goods, "warehouse": "W2"}, headers=warehouse)
    assert elsewhere.status_code == 422 and "is for" in elsewhere.json()["detail"]

    booked = await http.post("/stock/receipts", json=goods, headers=warehouse)
    assert booked.status_code == 202 and booked.json()["id"] == po["id"]
    await eventually(its_purchase_orders, lambda pos: pos[0]["status"] == "received")
    assert stock_of(sessions, sku) == (24, 0)
    again = await http.post("/stock/receipts", json=goods, headers=warehouse)
    assert again.status_code == 409 and "already received" in again.json()["detail"]


async def test_a_partial_cancel_is_checked_at_the_door_and_refused_with_the_reason(
    http, api_keys, client, sessions
):
    """Issue 26: `lines` on POST /orders/{id}/cancel; a malformed line is 422 before the order sees it,
    a unit the order cannot give up is 409 with why, and nothing moved."""
    skus = add_products(sessions, {"BOWL": 3})
    doc = order_doc([(skus["BOWL"], 2)])
    email = f"{unique('part').lower()}@example.com"
    doc["customer"]["email"] = email
    update_blocklist(sessions, "add", email, "chargebacks")  # held: nothing reserved yet
    assert (await placed(http, api_keys, doc)).status_code == 201
    await wait_status(client, doc["order_id"], "on_hold")
    support = as_(api_keys, Role.support)
    url = f"/orders/{doc['order_id']}/cancel"
    for lines in ([{"sku": skus["BOWL"], "quantity": 0}], [], [{"sku": skus["BOWL"], "quantity": 1}] * 2):
        answer = await http.post(url, json={"reason": "x", "lines": lines}, headers=support)
        assert answer.status_code == 422, (lines, answer.text)
    answer = await http.post(
        url, json={"reason": "x", "lines": [{"sku": skus["BOWL"], "quantity": 1}]}, headers=support
    )
    assert answer.status_code == 409 and "not reserved yet" in answer.json()["detail"], answer.text
    view = (await http.get(f"/orders/{doc['order_id']}", headers=support)).json()
    assert view["status"] == "on_hold" and "lines_cancelled" not in [e["type"] for e in view["events"]]
