"""A message the mail server gave up on, sent again by support (services/messages.py): through the real
API and the command line, on a real order whose messages the suite's worker sends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from db import SessionFactory
from domain.api_keys import Role
from models import tables as t
from tests.helpers import add_products, as_, cli, eventually, notifications, order_doc, place

pytestmark = pytest.mark.usefixtures("worker")


async def order_with_a_message_given_up(client, settings, sessions: SessionFactory) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """A real order whose first message was sent, then marked as the mail server's refusal would."""
    sku = add_products(sessions, {"KETTLE": 3})["KETTLE"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    sent = await eventually(
        lambda: notifications(sessions, order_id), lambda rows: bool(rows) and rows[0].sent_at is not None
    )
    give_up(sessions, sent[0].id)
    return order_id, sent[0].id


def give_up(sessions: SessionFactory, message_id: int) -> None:
    with sessions.begin() as session:
        session.execute(
            update(t.Notification)
            .where(t.Notification.id == message_id)
            .values(
                sent_at=None,
                failed_at=datetime.now(UTC),
                failure_code="recipient_refused",
                last_error="550 5.1.1 no such user",
            )
        )


def row(sessions: SessionFactory, message_id: int) -> t.Notification:
    with sessions() as session:
        found = session.get(t.Notification, message_id)
        assert found is not None
        return found


async def test_support_sends_a_refused_message_again_over_http(http, api_keys, client, settings, sessions):
    order_id, message = await order_with_a_message_given_up(client, settings, sessions)
    support = as_(api_keys, Role.support)
    url = f"/orders/{order_id}/messages/{message}/resend"

    listed = await http.get(f"/orders/{order_id}/messages", headers=support)
    assert listed.status_code == 200, listed.text
    first = listed.json()[0]
    assert (first["id"], first["delivery"], first["failure_code"]) == (message, "failed", "recipient_refused")

    # refused before anything changes: a role that may not, a bad address, an unknown message or order
    assert (await http.post(url, json={}, headers=as_(api_keys, Role.warehouse))).status_code == 403
    bad = await http.post(url, json={"to": "not an address"}, headers=support)
    assert bad.status_code == 422 and "to" in bad.text, bad.text
    unknown = await http.post(f"/orders/{order_id}/messages/999999999/resend", json={}, headers=support)
    assert unknown.status_code == 404 and "has no message 999999999" in unknown.json()["detail"]
    assert (await http.get("/orders/NO-SUCH-ORDER-9/messages", headers=support)).status_code == 404
    assert row(sessions, message).failed_at is not None

    key = {"Idempotency-Key": str(uuid.uuid4())}
    again = await http.post(url, json={"to": "right@example.com"}, headers=support | key)
    assert again.status_code == 200, again.text
    assert (again.json()["recipient"], again.json()["delivery"]) == ("right@example.com", "waiting")
    replayed = await http.post(url, json={"to": "right@example.com"}, headers=support | key)
    assert replayed.json() == again.json() and replayed.headers["idempotent-replayed"] == "true"

    # the worker's dispatcher sends it to the corrected address
    sent = await eventually(lambda: row(sessions, message), lambda r: r.sent_at is not None)
    assert (sent.recipient, sent.failed_at) == ("right@example.com", None)
    assert (sent.resent_by or "").startswith("test-support")  # the support key's name
    refused = await http.post(url, json={}, headers=support)  # sent now: nothing to send again
    assert refused.status_code == 409 and "was sent" in refused.json()["detail"], refused.text


async def test_the_command_line_lists_and_sends_again(client, settings, sessions, capsys):
    order_id, message = await order_with_a_message_given_up(client, settings, sessions)

    status, listed = await cli(settings, "messages", order_id)
    assert status == 0 and str(message) in listed and "recipient_refused: 550 5.1.1 no such user" in listed
    assert (await cli(settings, "resend", order_id, str(message), "--to", "nope"))[0] == 2
    assert "invalid address" in capsys.readouterr().err
    assert (await cli(settings, "resend", order_id, "999999999"))[0] == 1
    assert "has no message 999999999" in capsys.readouterr().err
    assert row(sessions, message).failed_at is not None

    status, said = await cli(settings, "resend", order_id, str(message), "--to", "fixed@example.com")
    assert status == 0 and "to fixed@example.com waits to be sent again" in said, said
    sent = await eventually(lambda: row(sessions, message), lambda r: r.sent_at is not None)
    assert sent.recipient == "fixed@example.com" and (sent.resent_by or "").startswith("cli:")
    assert (await cli(settings, "resend", order_id, str(message)))[0] == 1
    assert "was sent" in capsys.readouterr().err
