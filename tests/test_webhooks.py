"""Outbound webhooks (docs/webhooks.md) against a real HTTP receiver on 127.0.0.1: subscribed through
the API, sent by the suite's worker, verified with the Standard Webhooks reference library."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain import stock
from domain.api_keys import Role
from domain.dashboard import dashboard
from domain.webhook_outbox import put_order_events, subscribers, webhook_types
from domain.webhook_payloads import redacted_view
from domain.webhook_subscriptions import NewSubscription, create, remove
from models.choices import WebhookEventType
from models.orders import OrderView
from models.steps import EventRecord
from services.webhook_dispatcher import WebhookDispatcher
from tests.api_server import ApiServer, free_port, running_api
from tests.helpers import add_products, as_, cli, eventually, order_doc, place, set_stock, unique, wait_status
from tests.test_console_session import csrf_of, sign_in

SLOW = 1.6  # seconds the receiver sleeps in its slow phase: past the suite's webhook_timeout (1 s)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | None  # None: the client had given up (the slow phase)

    @property
    def message(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers 500 to the first `failing` requests, sleeps past the client's timeout on the next `slow`
    ones, then accepts (204). Keeps every request."""

    failing: int = 3
    slow: int = 2
    seen: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self) -> tuple[int, float]:
        """The status and the pause of the next request (called under `lock`)."""
        n = len(self.seen)
        if n < self.failing:
            return 500, 0.0
        if n < self.failing + self.slow:
            return 200, SLOW
        return 204, 0.0

    @property
    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.seen if r.answered == 204]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with box.lock:  # which phase this request falls in, decided and kept at once
                status, pause = box.answer()
                # in the slow phase the dispatcher has given up by the time this answers
                box.seen.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, None if pause else status)
                )
            time.sleep(pause)
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()


ALL_TYPES = [t.value for t in WebhookEventType]


async def test_every_event_arrives_signed_once_and_in_order_per_order(
    client: Client, settings: Settings, sessions: SessionFactory, http, api_keys, worker, receiver: Receiver
):
    admin = as_(api_keys, Role.admin)
    answer = await http.post("/webhooks", json={"url": receiver.url, "events": ALL_TYPES}, headers=admin)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    secret, sub_id = created["secret"], created["id"]
    assert secret.startswith("whsec_")
    # the secret is shown once: neither the list nor the subscription shows it again
    listed = await http.get("/webhooks", headers=admin)
    assert sub_id in [w["id"] for w in listed.json()] and "whsec_" not in listed.text
    assert "secret" not in (await http.get(f"/webhooks/{sub_id}", headers=admin)).json()

    skus = add_products(sessions, {"mug": 10, "pen": 10})
    orders = [
        await place(client, settings, order_doc([(skus["mug"], 1)])),
        await place(client, settings, order_doc([(skus["pen"], 2), (skus["mug"], 1)])),
    ]
    for order_id in orders:  # the sandbox warehouse picks and packs; the carrier (manual) never delivers
        await wait_status(client, order_id, "shipped", timeout=60)

    wanted = {(o, t) for o in orders for t in ("order.created", "order.confirmed", "order.shipped")}

    def arrived() -> set[tuple[str, str]]:
        return {
            (r.message["data"]["order_id"], r.message["type"])
            for r in receiver.accepted
            if r.message["data"].get("order_id") in orders
        }

    await eventually(arrived, lambda got: wanted <= got, timeout=60, what="every order event accepted")

    # the receiver failed the first attempts, then let the client time out, then accepted
    answered = [r.answered for r in receiver.seen]
    assert answered[:5] == [500, 500, 500, None, None], answered
    ours = [r for r in receiver.accepted if r.message["data"].get("order_id") in orders]
    ids = [r.headers["webhook-id"] for r in ours]
    assert len(ids) == len(set(ids)), "a message was accepted twice"
    # Standard Webhooks' reference library verifies every message (signature and timestamp)
    verifier = Webhook(secret)
    for r in receiver.seen:
        verifier.verify(r.body, r.headers)
    # in order per order: each order's messages arrived in its events' order
    for order_id in orders:
        seqs = [r.message["data"]["event"]["seq"] for r in ours if r.message["data"]["order_id"] == order_id]
        assert seqs == sorted(seqs), (order_id, seqs)
        kinds = [r.message["type"] for r in ours if r.message["data"]["order_id"] == order_id]
        assert kinds.index("order.created") < kinds.index("order.confirmed") < kinds.index("order.shipped")
    # the body: type, timestamp, the order's view as the API shows it, less personal free text
    shipped = next(r.message for r in ours if r.message["type"] == "order.shipped")
    assert shipped["timestamp"].endswith("Z") and shipped["data"]["order"]["order_id"] in orders
    assert shipped["data"]["order"]["customer_id"] == "C-7"
    for r in receiver.seen:  # no name, e-mail, phone, address or instructions in any body
        assert not any(
            pii in r.body for pii in (b"Lovelace", b"ada@example", b"7946", b"St James", b"concierge")
        )
    assert all("detail" not in e for e in shipped["data"]["order"]["events"])

    # the delivery log: every delivery delivered, the failed attempts logged with status or error
    log = (await http.get(f"/webhooks/{sub_id}/deliveries?limit=500", headers=admin)).json()
    mine = [d for d in log if d["order_id"] in orders]
    assert {d["status"] for d in mine} == {"delivered"}
    attempts = [a for d in log for a in d["log"]]
    assert {a["status_code"] for a in attempts} >= {500, 204}
    assert any(a["status_code"] is None and "timed out" in a["error"] for a in attempts)
    assert all(a["latency_ms"] >= 0 for a in attempts)

    # manual redelivery (the CLI's door): the same webhook-id again, signed afresh
    first = mine[-1]
    status, out = await cli(settings, "webhooks", "redeliver", str(first["id"]))
    assert status == 0, out
    await eventually(
        lambda: [r.headers["webhook-id"] for r in receiver.accepted].count(first["webhook_id"]),
        lambda n: n == 2,
        what="the redelivery",
    )
    for r in receiver.seen:
        verifier.verify(r.body, r.headers)

    assert (await http.delete(f"/webhooks/{sub_id}", headers=admin)).status_code == 204
    assert sub_id not in [w["id"] for w in (await http.get("/webhooks", headers=admin)).json()]
    assert (await http.delete(f"/webhooks/{sub_id}", headers=admin)).status_code == 404


async def test_only_admins_manage_webhooks(http, api_keys):
    body = {"url": "https://example.com/hooks", "events": ["order.created"]}
    assert (await http.post("/webhooks", json=body)).status_code == 401
    for role in (Role.support, Role.source, Role.warehouse, Role.carrier):
        answer = await http.post("/webhooks", json=body, headers=as_(api_keys, role))
        assert answer.status_code == 403, (role, answer.text)
        assert (await http.get("/webhooks", headers=as_(api_keys, role))).status_code == 403
    assert (await http.get("/webhooks")).status_code == 401


async def test_bad_subscriptions_are_refused_by_name_and_change_nothing(http, api_keys, settings: Settings):
    admin = as_(api_keys, Role.admin)
    before = (await http.get("/webhooks", headers=admin)).json()
    unknown = await http.post(
        "/webhooks",
        json={"url": "https://example.com/h", "events": ["order.created", "order.teleported"]},
        headers=admin,
    )
    assert unknown.status_code == 422 and "order.teleported" in unknown.text, unknown.text
    for url in ("ftp://example.com/h", "not a url", "https://user:pw@example.com/h", "https:///nohost"):
        answer = await http.post("/webhooks", json={"url": url, "events": ["order.created"]}, headers=admin)
        assert answer.status_code == 422, (url, answer.text)
    assert (
        await http.post("/webhooks", json={"url": "https://example.com/h", "events": []}, headers=admin)
    ).status_code == 422
    assert (await http.get("/webhooks", headers=admin)).json() == before
    status, _ = await cli(settings, "webhooks", "add", "https://example.com/h", "--event", "order.teleported")
    assert status == 2


async def test_private_targets_are_refused_without_the_allow_setting(
    settings: Settings, api_keys, worker, tmp_path
):
    with running_api(settings, tmp_path, OMS_WEBHOOK_ALLOW_PRIVATE="false") as guarded:
        async with httpx.AsyncClient(base_url=guarded.url, timeout=30) as http:
            admin = as_(api_keys, Role.admin)
            for url in (
                "http://127.0.0.1:9/hooks",
                "http://localhost/hooks",
                "http://10.1.2.3/hooks",
                "http://192.168.0.10/hooks",
                "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hooks",
            ):
                answer = await http.post(
                    "/webhooks", json={"url": url, "events": ["order.created"]}, headers=admin
                )
                assert answer.status_code == 422, (url, answer.text)
                assert "public addresses only" in answer.json()["detail"]


async def test_a_repeated_subscribe_with_the_same_idempotency_key_creates_nothing_new(http, api_keys):
    admin = {**as_(api_keys, Role.admin), "Idempotency-Key": unique("sub")}
    body = {"url": f"http://127.0.0.1:{free_port()}/hooks", "events": ["order.created"]}
    first = await http.post("/webhooks", json=body, headers=admin)
    again = await http.post("/webhooks", json=body, headers=admin)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = await http.post("/webhooks", json={**body, "events": ["order.shipped"]}, headers=admin)
    assert other.status_code == 409
    assert (await http.delete(f"/webhooks/{first.json()['id']}", headers=admin)).status_code == 204


async def test_a_subscription_failing_for_a_day_is_disabled_and_shown_to_admins(
    client: Client, settings: Settings, sessions: SessionFactory, http, api_keys, worker, receiver: Receiver
):
    admin = as_(api_keys, Role.admin)
    receiver.failing, receiver.slow = 10**9, 0  # down: 500 to everything, until the test says otherwise
    answer = await http.post(
        "/webhooks",
        json={"url": receiver.url, "events": ["stock.low", "purchase_order.raised"]},
        headers=admin,
    )
    sub_id = answer.json()["id"]
    skus = add_products(sessions, {"bolt": 2})
    set_stock(sessions, skus["bolt"], "W1", 2, reorder_point=5, reorder_qty=10)
    po_id = unique("PO")
    at = datetime.now(UTC)
    stock.raise_purchase_order(sessions, po_id, skus["bolt"], "W1", 10, at + timedelta(days=2), "ref")

    # at delivery time too, a private address is refused without the allow setting
    guarded = WebhookDispatcher(
        sessions, client, settings.model_copy(update={"webhook_allow_private": False})
    )
    dispatcher = WebhookDispatcher(sessions, client, settings)
    async with httpx.AsyncClient() as out:

        async def log() -> list[dict[str, Any]]:
            return (await http.get(f"/webhooks/{sub_id}/deliveries", headers=admin)).json()

        async def refused_once() -> list[dict[str, Any]]:
            await guarded.dispatch_once(out, at + timedelta(minutes=5))
            return await log()

        found = await eventually(
            refused_once,
            lambda ds: any((a["error"] or "").startswith("refused:") for d in ds for a in d["log"]),
            what="a delivery refused by the SSRF guard",
        )
        assert {d["event_type"] for d in found} == {"stock.low", "purchase_order.raised"}
        assert (await http.get(f"/webhooks/{sub_id}", headers=admin)).json()["status"] == "active"

        # a day later, still failing: the deliveries are given up and the subscription disabled
        async def a_day_later() -> dict[str, Any]:
            await dispatcher.dispatch_once(out, at + timedelta(hours=25))
            return (await http.get(f"/webhooks/{sub_id}", headers=admin)).json()

        disabled = await eventually(a_day_later, lambda w: w["status"] == "disabled", what="disabled")
        assert disabled["disabled_reason"] and disabled["disabled_at"]
        assert any(d["status"] == "failed" for d in await log())

    assert sub_id in [w.id for w in dashboard(sessions).disabled_webhooks]
    delivery = (await log())[0]["id"]
    status, _ = await cli(settings, "webhooks", "redeliver", str(delivery))
    assert status == 1  # refused: the subscription is disabled
    redo = await http.post(f"/webhooks/deliveries/{delivery}/redeliver", headers=admin)
    assert redo.status_code == 409 and "disabled" in redo.text
    status, out_text = await cli(settings, "webhooks", "list")
    assert status == 0 and sub_id in out_text and "disabled" in out_text

    # the endpoint answers again: an admin enables the subscription and redelivers what was given up
    receiver.failing = 0
    status, _ = await cli(settings, "webhooks", "enable", sub_id)
    assert status == 0
    enabled = (await http.get(f"/webhooks/{sub_id}", headers=admin)).json()
    assert (enabled["status"], enabled["disabled_reason"], enabled["failing_since"]) == ("active", None, None)
    assert sub_id not in [w.id for w in dashboard(sessions).disabled_webhooks]
    redo = await http.post(f"/webhooks/deliveries/{delivery}/redeliver", headers=admin)
    assert redo.status_code == 202
    webhook_id = redo.json()["webhook_id"]
    await eventually(
        lambda: [r.headers["webhook-id"] for r in receiver.accepted], lambda ids: webhook_id in ids
    )
    status, _ = await cli(settings, "webhooks", "remove", sub_id)
    assert status == 0


async def test_a_rotated_secret_signs_next_to_the_old_one_until_the_overlap_ends(
    client: Client, settings: Settings, sessions: SessionFactory, http, api_keys, worker, receiver: Receiver
):
    """Rotation: the new secret is shown once; while the old one still signs each message carries both
    signatures and a receiver with either secret accepts it; rotated again with no overlap (a leaked
    secret), only the newest verifies."""
    receiver.failing = receiver.slow = 0
    admin = as_(api_keys, Role.admin)
    created = await http.post(
        "/webhooks", json={"url": receiver.url, "events": ["order.created"]}, headers=admin
    )
    sub_id, first_secret = created.json()["id"], created.json()["secret"]
    skus = add_products(sessions, {"lamp": 5})
    order_id = await place(client, settings, order_doc([(skus["lamp"], 1)]))
    await eventually(lambda: len(receiver.accepted), lambda n: n >= 1, what="the first message")

    # refused, nothing rotated: another role, an unknown subscription, a bad overlap
    rotate = f"/webhooks/{sub_id}/rotate-secret"
    assert (await http.post(rotate, json={}, headers=as_(api_keys, Role.support))).status_code == 403
    assert (await http.post("/webhooks/wh_nosuch/rotate-secret", json={}, headers=admin)).status_code == 404
    bad = await http.post(rotate, json={"keep_old_for_seconds": -1}, headers=admin)
    assert bad.status_code == 422 and "keep_old_for_seconds" in bad.text

    keyed = admin | {"Idempotency-Key": unique("rotate")}
    rotated = await http.post(rotate, json={}, headers=keyed)
    assert rotated.status_code == 200, rotated.text
    second_secret = rotated.json()["secret"]
    assert second_secret.startswith("whsec_") and second_secret != first_secret
    overlap_ends = datetime.fromisoformat(rotated.json()["previous_secret_until"])
    assert timedelta(hours=23) < overlap_ends - datetime.now(UTC) <= settings.webhook_secret_overlap
    assert (await http.post(rotate, json={}, headers=keyed)).json()["secret"] == second_secret  # a retry
    shown = (await http.get(f"/webhooks/{sub_id}", headers=admin)).json()
    assert "secret" not in shown and shown["previous_secret_until"] == rotated.json()["previous_secret_until"]

    async def redelivered(times: int) -> Received:
        log = (await http.get(f"/webhooks/{sub_id}/deliveries", headers=admin)).json()
        mine = next(d for d in log if d["order_id"] == order_id)
        assert (
            await http.post(f"/webhooks/deliveries/{mine['id']}/redeliver", headers=admin)
        ).status_code == 202
        arrived = await eventually(
            lambda: [r for r in receiver.accepted if r.headers["webhook-id"] == mine["webhook_id"]],
            lambda got: len(got) == times,
            what="the redelivery",
        )
        return arrived[-1]

    both = await redelivered(2)
    assert len(both.headers["webhook-signature"].split(" ")) == 2
    for secret in (first_secret, second_secret):  # a receiver still on the old secret, or already on the new
        Webhook(secret).verify(both.body, both.headers)

    status, out = await cli(settings, "webhooks", "rotate-secret", sub_id, "--keep-old-for", "0")
    assert status == 0, out
    third_secret = re.search(r"secret: (whsec_\S+)", out)
    assert third_secret is not None
    newest = await redelivered(3)
    assert len(newest.headers["webhook-signature"].split(" ")) == 1
    Webhook(third_secret.group(1)).verify(newest.body, newest.headers)
    for old in (first_secret, second_secret):
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(newest.body, newest.headers)
    assert (await cli(settings, "webhooks", "rotate-secret", sub_id, "--keep-old-for", "-5"))[0] == 2
    assert (await cli(settings, "webhooks", "rotate-secret", "wh_nosuch"))[0] == 1
    assert (await http.delete(f"/webhooks/{sub_id}", headers=admin)).status_code == 204


async def test_the_console_page_is_an_admins_and_shows_the_secret_once(api: ApiServer, api_keys):
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as support:
        await sign_in(support, api_keys[Role.support])
        assert (await support.get("/console/webhooks")).status_code == 403
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as browser:
        await sign_in(browser, api_keys[Role.admin])
        page = await browser.get("/console/webhooks")
        assert page.status_code == 200 and "Subscribe a URL" in page.text
        url = f"http://127.0.0.1:{free_port()}/console-hooks"
        form = {"csrf": csrf_of(page), "url": url, "events": ["order.created", "refund.issued"]}
        created = await browser.post("/console/webhooks", data=form)
        assert created.status_code == 201, created.text
        secret = re.search(r'<code id="secret">(whsec_[^<]+)</code>', created.text)
        assert secret is not None
        again = await browser.get("/console/webhooks")
        assert url in again.text and secret.group(1) not in again.text
        bad = await browser.post("/console/webhooks", data={**form, "events": ["order.teleported"]})
        assert bad.status_code == 422 and "order.teleported" in bad.text
        sub_id = re.search(r'action="/console/webhooks/(wh_[0-9a-f]+)/remove"', again.text)
        assert sub_id is not None
        rotated = await browser.post(
            f"/console/webhooks/{sub_id.group(1)}/rotate-secret",
            data={"csrf": csrf_of(again), "stop_old_now": "yes"},
        )
        new_secret = re.search(r'<code id="secret">(whsec_[^<]+)</code>', rotated.text)
        assert (
            rotated.status_code == 200 and new_secret is not None and new_secret.group(1) != secret.group(1)
        )
        assert "the old one no longer signs" in rotated.text
        assert new_secret.group(1) not in (await browser.get("/console/webhooks")).text
        removed = await browser.post(
            f"/console/webhooks/{sub_id.group(1)}/remove", data={"csrf": csrf_of(again)}
        )
        assert removed.status_code == 303
        assert url not in (await browser.get("/console/webhooks")).text


def _event(seq: int, kind: str, status: str, order_id: str = "W-1") -> EventRecord:
    at = datetime(2026, 12, 6, 12, 0, seq, tzinfo=UTC)
    return EventRecord(
        order_id=order_id, seq=seq, at=at, type=kind, detail="", status=status, payment_status="pending"
    )


def test_order_events_map_to_webhook_types_by_type_and_by_status_transition():
    batch = [
        _event(1, "order_received", "received"),
        _event(2, "payment_authorized", "received"),
        _event(3, "order_backordered", "backordered"),
        _event(4, "stock_reserved", "confirmed"),  # the backorder's stock arrived: confirmed all the same
        _event(5, "order_confirmed", "confirmed"),  # already confirmed: no second order.confirmed
        _event(6, "shipment_shipped", "shipped"),
        _event(7, "refund_issued", "delivery_exception"),
    ]
    found = [(e.seq, kind.value) for e, kind in webhook_types(batch, "received")]
    assert found == [
        (1, "order.created"),
        (4, "order.confirmed"),
        (6, "order.shipped"),
        (7, "refund.issued"),
        (7, "order.delivery_exception"),
    ]
    # a batch starting where the orders row already is adds no transition
    assert webhook_types([_event(8, "support_note", "delivery_exception")], "delivery_exception") == []


def test_a_repeated_batch_writes_no_second_webhook_and_nobody_listening_writes_none(
    sessions: SessionFactory,
):
    order_id = unique("W")
    batch = [_event(1, "order_received", "received", order_id)]
    with sessions.begin() as session:
        listening = bool(subscribers(session))
    if not listening:  # nobody subscribed: nothing is kept
        with sessions.begin() as session:
            assert put_order_events(session, batch, None) == 0
    new = NewSubscription("http://127.0.0.1:9/x", [WebhookEventType.order_created], None, "test")
    created, _ = create(sessions, new, datetime.now(UTC))
    try:
        with sessions.begin() as session:
            assert put_order_events(session, batch, None) == 1
        with sessions.begin() as session:
            assert put_order_events(session, batch, None) == 0  # the retried step's batch
    finally:
        remove(sessions, created.id, datetime.now(UTC))


def test_the_body_leaves_out_free_text_that_may_quote_the_customer():
    view = OrderView.model_validate(
        {
            "order_id": "W-1",
            "status": "on_hold",
            "payment_status": "authorized",
            "channel": "web",
            "customer_id": "C-7",
            "currency": "EUR",
            "placed_at": "2026-12-06T12:00:00Z",
            "hold_reason": "customer e-mail ada@example.com is on the blocklist",
            "events": [{"at": "2026-12-06T12:00:00Z", "type": "support_note", "detail": "Ada called"}],
            "feedback": {"score": 2, "comment": "Ada says no"},
        }
    )
    body = json.dumps(redacted_view(view))
    assert "ada@" not in body and "Ada" not in body
    assert json.loads(body)["events"] == [
        {"at": "2026-12-06T12:00:00Z", "type": "support_note", "reason_code": None}
    ]


async def test_an_order_without_a_live_view_is_announced_with_a_null_view(
    sessions: SessionFactory, worker, receiver: Receiver
):
    receiver.failing = receiver.slow = 0
    order_id = unique("GONE")  # no workflow: as an order past Temporal's retention
    new = NewSubscription(receiver.url, [WebhookEventType.order_created], None, "test")
    created, _ = create(sessions, new, datetime.now(UTC))
    try:
        with sessions.begin() as session:
            put_order_events(session, [_event(1, "order_received", "received", order_id)], None)
        got = await eventually(
            lambda: [r.message for r in receiver.accepted if r.message["data"]["order_id"] == order_id],
            bool,
            what="the message",
        )
        assert got[0]["type"] == "order.created" and got[0]["data"]["order"] is None
        Webhook(created.secret).verify(receiver.accepted[0].body, receiver.accepted[0].headers)
    finally:
        remove(sessions, created.id, datetime.now(UTC))


@pytest.mark.parametrize("name", ["webhook_timeout", "webhook_retry_base", "webhook_retry_cap"])
def test_a_webhook_wait_of_zero_is_refused_by_name(name: str):
    with pytest.raises(ValueError, match=f"OMS_{name.upper()} must be longer than 0"):
        Settings(**{name: "0s"})
