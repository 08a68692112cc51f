"""Idempotency-Key on the mutating doors (api/idempotency.py), through the real API process: a retry
answers the first answer and changes nothing twice, checked in the stock ledger and the order's log."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from db import SessionFactory
from domain import idempotency
from domain.api_keys import Role, create_key
from domain.blocklist import update_blocklist
from domain.idempotency import Claimed, Conflict, IdempotencyStatus, KeyedRequest, RecordedAnswer, Replay
from models import tables as t
from tests.api_server import free_port, running_api
from tests.helpers import add_products, as_, eventually, order_doc, set_stock, stock_of, unique, wait_status

REPLAYED = "idempotent-replayed"


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def movements(sessions: SessionFactory, sku: str, kind: str) -> list[int]:
    """The on-hand deltas of the SKU's ledger rows of this kind, oldest first (not the catalog load's)."""
    with sessions() as session:
        query = (
            select(t.StockMovement.on_hand_delta)
            .where(
                t.StockMovement.sku == sku,
                t.StockMovement.kind == kind,
                t.StockMovement.reason.is_distinct_from("catalog load"),
            )
            .order_by(t.StockMovement.id)
        )
        return list(session.scalars(query))


async def adjust(
    http: httpx.AsyncClient, headers: dict[str, str], sku: str, delta: int, key: str
) -> httpx.Response:
    body = {"sku": sku, "warehouse": "W1", "delta": delta, "reason": "cycle count"}
    return await http.post("/stock/adjustments", json=body, headers=keyed(headers, key))


def same_answer(first: httpx.Response, again: httpx.Response) -> bool:
    return (again.status_code, again.json(), again.headers.get(REPLAYED)) == (
        first.status_code,
        first.json(),
        "true",
    )


async def test_a_retried_adjustment_moves_stock_once(http, api_keys, sessions):
    sku = add_products(sessions, {"BOLT": 10})["BOLT"]
    warehouse, key = as_(api_keys, Role.warehouse), str(uuid.uuid4())

    first = await adjust(http, warehouse, sku, -3, key)
    again = await adjust(http, warehouse, sku, -3, key)

    assert first.status_code == 200 and first.json()["level"]["on_hand"] == 7, first.text
    assert REPLAYED not in first.headers
    assert same_answer(first, again)
    assert stock_of(sessions, sku) == (7, 0)
    assert movements(sessions, sku, "adjust") == [-3]
    # without a key the door is what it always was: every request is a new adjustment
    plain = {"sku": sku, "warehouse": "W1", "delta": -3, "reason": "cycle count"}
    assert (await http.post("/stock/adjustments", json=plain, headers=warehouse)).status_code == 200
    assert movements(sessions, sku, "adjust") == [-3, -3]


async def test_a_retried_receipt_books_the_goods_in_once(http, api_keys, sessions):
    sku = add_products(sessions, {"CRATE": 2})["CRATE"]
    headers = keyed(as_(api_keys, Role.warehouse), str(uuid.uuid4()))
    body = {"sku": sku, "warehouse": "W1", "quantity": 5}

    first = await http.post("/stock/receipts", json=body, headers=headers)
    # a client that serializes its retry differently (key order, spaces) still sends the same request
    reordered = json.dumps({"quantity": 5, "warehouse": "W1", "sku": sku}, indent=2)
    again = await http.post(
        "/stock/receipts", content=reordered, headers={**headers, "Content-Type": "application/json"}
    )

    assert first.status_code == 200 and first.json()["level"]["on_hand"] == 7, first.text
    assert same_answer(first, again)
    assert stock_of(sessions, sku) == (7, 0)
    assert movements(sessions, sku, "receive") == [5]


async def test_a_retried_purchase_order_receipt_books_the_goods_in_once(http, api_keys, sessions):
    sku = add_products(sessions, {"SCREW": 5})["SCREW"]
    set_stock(sessions, sku, "W1", 5, reorder_point=4, reorder_qty=20)
    warehouse = as_(api_keys, Role.warehouse)
    count = {"sku": sku, "warehouse": "W1", "delta": -1, "reason": "cycle count"}
    assert (await http.post("/stock/adjustments", json=count, headers=warehouse)).status_code == 200

    async def its_purchase_orders() -> list[dict[str, Any]]:
        listed = (await http.get("/purchase-orders", headers=warehouse)).json()
        return [po for po in listed if po["sku"] == sku]

    (po,) = await eventually(its_purchase_orders, lambda pos: len(pos) == 1)
    goods = {"sku": sku, "warehouse": "W1", "quantity": 20, "purchase_order": po["id"]}
    headers = keyed(warehouse, str(uuid.uuid4()))

    # the retry comes while the purchase order may still be open: replayed, it does not signal again
    # (the replenishment would ignore a second signal; once received, a plain repeat is 409)
    first = await http.post("/stock/receipts", json=goods, headers=headers)
    again = await http.post("/stock/receipts", json=goods, headers=headers)

    assert first.status_code == 202 and first.json()["id"] == po["id"], first.text
    assert same_answer(first, again)
    await eventually(its_purchase_orders, lambda pos: pos[0]["status"] == "received")
    assert stock_of(sessions, sku) == (24, 0)
    assert movements(sessions, sku, "receive") == [20]


async def test_a_retried_cancel_answers_the_cancellation_again(http, api_keys, client, sessions):
    skus = add_products(sessions, {"JUG": 3})
    doc = order_doc([(skus["JUG"], 1)])
    email = f"{unique('idem').lower()}@example.com"
    doc["customer"]["email"] = email
    update_blocklist(sessions, "add", email, "chargebacks")  # held: support can cancel it
    placed = await http.post("/orders", json=doc, headers=as_(api_keys, Role.source))
    assert placed.status_code == 201, placed.text
    order_id = doc["order_id"]
    await wait_status(client, order_id, "on_hold")
    support = keyed(as_(api_keys, Role.support), str(uuid.uuid4()))

    first = await http.post(f"/orders/{order_id}/cancel", json={"reason": "customer asked"}, headers=support)
    again = await http.post(f"/orders/{order_id}/cancel", json={"reason": "customer asked"}, headers=support)

    assert first.status_code == 200 and first.json()["status"] == "cancelled", first.text
    assert same_answer(first, again)  # run again it would be 409 "closed"
    view = (await http.get(f"/orders/{order_id}", headers=as_(api_keys, Role.support))).json()
    assert [e["type"] for e in view["events"]].count("order_cancelled") == 1
    assert stock_of(sessions, skus["JUG"]) == (3, 0)
    new_key = keyed(as_(api_keys, Role.support), str(uuid.uuid4()))
    refused = await http.post(f"/orders/{order_id}/cancel", json={"reason": "again"}, headers=new_key)
    assert refused.status_code == 409 and "closed" in refused.json()["detail"]


async def test_the_same_key_with_another_request_is_refused_and_moves_nothing(http, api_keys, sessions):
    sku = add_products(sessions, {"HINGE": 10})["HINGE"]
    warehouse, key = as_(api_keys, Role.warehouse), str(uuid.uuid4())
    assert (await adjust(http, warehouse, sku, -1, key)).status_code == 200

    other_body = await adjust(http, warehouse, sku, -2, key)
    other_door = await http.post(
        "/stock/receipts",
        json={"sku": sku, "warehouse": "W1", "quantity": 4},
        headers=keyed(warehouse, key),
    )

    assert other_body.status_code == 409 and other_body.json()["error"] == "conflict"
    assert "used before with a different body" in other_body.json()["detail"]
    assert other_door.status_code == 409 and other_door.json()["error"] == "conflict"
    assert "used before for POST /stock/adjustments" in other_door.json()["detail"]
    assert stock_of(sessions, sku) == (9, 0)
    assert movements(sessions, sku, "adjust") == [-1] and movements(sessions, sku, "receive") == []


async def test_concurrent_duplicates_have_one_effect(http, api_keys, sessions):
    sku = add_products(sessions, {"RIVET": 20})["RIVET"]
    warehouse, key = as_(api_keys, Role.warehouse), str(uuid.uuid4())

    answers = await asyncio.gather(*(adjust(http, warehouse, sku, 5, key) for _ in range(4)))

    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert sorted(a.headers.get(REPLAYED, "") for a in answers) == ["", "true", "true", "true"]
    assert stock_of(sessions, sku) == (25, 0)
    assert movements(sessions, sku, "adjust") == [5]


async def test_a_key_of_another_caller_is_another_key(http, api_keys, sessions):
    sku = add_products(sessions, {"WASHER": 10})["WASHER"]
    other = create_key(sessions, unique("test-warehouse-2"), Role.warehouse).key
    key = str(uuid.uuid4())

    mine = await adjust(http, as_(api_keys, Role.warehouse), sku, -1, key)
    theirs = await adjust(http, {"Authorization": f"Bearer {other}"}, sku, -1, key)

    assert (mine.status_code, theirs.status_code) == (200, 200)
    assert REPLAYED not in theirs.headers
    assert movements(sessions, sku, "adjust") == [-1, -1] and stock_of(sessions, sku) == (8, 0)


async def test_an_error_answer_is_not_remembered(http, api_keys, sessions):
    """An error changed nothing, so the key is free again: the corrected request runs."""
    sku = add_products(sessions, {"SPRING": 3})["SPRING"]
    warehouse, key = as_(api_keys, Role.warehouse), str(uuid.uuid4())

    below = await adjust(http, warehouse, sku, -5, key)
    corrected = await adjust(http, warehouse, sku, -2, key)

    assert below.status_code == 422 and "below" in below.json()["detail"]
    assert corrected.status_code == 200 and REPLAYED not in corrected.headers
    assert movements(sessions, sku, "adjust") == [-2] and stock_of(sessions, sku) == (1, 0)


async def test_a_retry_after_a_503_that_came_after_the_stock_moved_moves_it_once(
    http, api_keys, settings, sessions, tmp_path: Path
):
    """The adjustment writes the ledger, then starts a replenishment over Temporal: with Temporal away
    that answers 503 after the stock moved, and gives the key back. Its retries find the movement."""
    sku = add_products(sessions, {"NUT": 10})["NUT"]
    set_stock(sessions, sku, "W1", 10, reorder_point=5, reorder_qty=20)
    warehouse, key = as_(api_keys, Role.warehouse), str(uuid.uuid4())
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with running_api(settings, tmp_path, ready=False, OMS_TEMPORAL_ADDRESS=dead) as cut_off:
        async with httpx.AsyncClient(base_url=cut_off.url, timeout=60) as away:
            for _ in range(2):  # the request, and a retry while Temporal is still away
                answer = await adjust(away, warehouse, sku, -6, key)
                assert answer.status_code == 503 and answer.json()["error"] == "unavailable", answer.text
    assert movements(sessions, sku, "adjust") == [-6] and stock_of(sessions, sku) == (4, 0)

    retried = await adjust(http, warehouse, sku, -6, key)  # Temporal is back (the suite's API)

    assert retried.status_code == 200 and REPLAYED not in retried.headers, retried.text
    assert retried.json()["level"]["on_hand"] == 4 and len(retried.json()["replenishing"]) == 1
    assert movements(sessions, sku, "adjust") == [-6] and stock_of(sessions, sku) == (4, 0)
    assert same_answer(retried, await adjust(http, warehouse, sku, -6, key))
    # the same key with another request is refused (409), and without a key the door moves again
    assert (await adjust(http, warehouse, sku, -1, key)).status_code == 409
    plain = {"sku": sku, "warehouse": "W1", "delta": -1, "reason": "cycle count"}
    assert (await http.post("/stock/adjustments", json=plain, headers=warehouse)).status_code == 200
    assert movements(sessions, sku, "adjust") == [-6, -1] and stock_of(sessions, sku) == (3, 0)


async def test_invalid_keys_are_refused_before_anything_runs(http, api_keys, sessions):
    sku = add_products(sessions, {"CLAMP": 3})["CLAMP"]
    warehouse = as_(api_keys, Role.warehouse)
    for bad in ("x" * 256, ""):
        answer = await adjust(http, warehouse, sku, -1, bad)
        assert answer.status_code == 422, answer.text
        assert answer.json()["problems"][0].startswith("header.idempotency-key:")
    assert movements(sessions, sku, "adjust") == []


async def test_a_claim_whose_process_died_is_in_doubt_and_not_run_again(http, sessions):
    sku = add_products(sessions, {"DOWEL": 3})["DOWEL"]
    name = unique("test-warehouse-doubt")
    headers = {"Authorization": f"Bearer {create_key(sessions, name, Role.warehouse).key}"}
    key = str(uuid.uuid4())
    body = {"sku": sku, "warehouse": "W1", "delta": -1, "reason": "cycle count"}
    digest = idempotency.request_digest("POST", "/stock/adjustments", b"", json.dumps(body).encode())
    long_ago = datetime.now(UTC) - timedelta(hours=1)  # beyond the lease (10 min), within the TTL
    with sessions.begin() as session:
        session.add(
            t.IdempotencyKey(
                caller=name,
                key=key,
                route="POST /stock/adjustments",
                digest=digest,
                status=IdempotencyStatus.in_progress,
                created_at=long_ago,
                expires_at=long_ago + timedelta(hours=24),
            )
        )

    answer = await http.post("/stock/adjustments", json=body, headers=keyed(headers, key))

    assert answer.status_code == 409 and answer.json()["error"] == "in_doubt", answer.text
    assert movements(sessions, sku, "adjust") == []


async def test_a_duplicate_waits_for_the_first_request_and_answers_its_answer(http, sessions):
    """The second of two racing requests finds the first's claim and waits for its answer: here the
    "first" is a claim written straight into the table and completed while the duplicate waits."""
    sku = add_products(sessions, {"PEG": 3})["PEG"]
    name = unique("test-warehouse-twin")
    headers = {"Authorization": f"Bearer {create_key(sessions, name, Role.warehouse).key}"}
    key = str(uuid.uuid4())
    body = {"sku": sku, "warehouse": "W1", "delta": -1, "reason": "cycle count"}
    digest = idempotency.request_digest("POST", "/stock/adjustments", b"", json.dumps(body).encode())
    request = KeyedRequest(caller=name, key=key, route="POST /stock/adjustments", digest=digest)
    claimed = idempotency.claim(sessions, request, datetime.now(UTC), timedelta(hours=24))
    assert isinstance(claimed, Claimed)

    duplicate = asyncio.create_task(http.post("/stock/adjustments", json=body, headers=keyed(headers, key)))
    first = RecordedAnswer(status=200, content_type="application/json", location=None, body=b'{"first": 1}')
    await asyncio.to_thread(idempotency.complete, sessions, claimed.claim_id, first)
    answer = await duplicate

    assert (answer.status_code, answer.json(), answer.headers[REPLAYED]) == (200, {"first": 1}, "true")
    assert movements(sessions, sku, "adjust") == []


def test_a_key_expires_after_its_ttl(sessions):
    request = KeyedRequest(caller=unique("caller"), key="k-1", route="POST /x", digest="d" * 64)
    now, ttl = datetime.now(UTC), timedelta(hours=24)
    claimed = idempotency.claim(sessions, request, now, ttl)
    assert isinstance(claimed, Claimed)
    answer = RecordedAnswer(status=200, content_type="application/json", location=None, body=b"{}")
    idempotency.complete(sessions, claimed.claim_id, answer)

    assert idempotency.claim(sessions, request, now + ttl - timedelta(seconds=1), ttl) == Replay(answer)
    other: Any = KeyedRequest(caller=request.caller, key="k-1", route="POST /x", digest="e" * 64)
    assert idempotency.claim(sessions, other, now + timedelta(hours=1), ttl) == Conflict("POST /x", True)
    # a day later the key is free again, for any request
    assert isinstance(idempotency.claim(sessions, other, now + ttl, ttl), Claimed)
    # (pruning this late removes every key in the suite's database: this is the module's last test)
    assert idempotency.prune(sessions, now + 3 * ttl) >= 1
    with sessions() as session:
        assert (
            session.scalar(select(t.IdempotencyKey).where(t.IdempotencyKey.caller == request.caller)) is None
        )


async def test_a_retried_partial_cancel_cancels_the_units_once(http, api_keys, client, settings, sessions):
    from decimal import Decimal

    from services.orders import order_view
    from tests.helpers import place

    skus = add_products(sessions, {"PLATE": 5}, price="10.00")
    order_id = await place(
        client, settings, order_doc([(skus["PLATE"], 3)]), release_delay=timedelta(minutes=10)
    )
    await eventually(lambda: order_view(client, order_id), lambda v: v.releases_at is not None)
    support = keyed(as_(api_keys, Role.support), str(uuid.uuid4()))
    body = {"reason": "one is enough", "lines": [{"sku": skus["PLATE"], "quantity": 1}]}

    first = await http.post(f"/orders/{order_id}/cancel", json=body, headers=support)
    again = await http.post(f"/orders/{order_id}/cancel", json=body, headers=support)

    assert first.status_code == 200, first.text
    assert same_answer(first, again)  # run again it would cancel a second plate
    view = await order_view(client, order_id)
    assert [e.type for e in view.events].count("lines_cancelled") == 1
    assert view.shipments[0].lines[0].quantity == 2 and view.shipments[0].amount == Decimal("20.00")
    assert stock_of(sessions, skus["PLATE"]) == (5, 2)
