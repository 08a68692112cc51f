"""The notification outbox: messages written with the order's events, sent by the worker's dispatcher."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from adapters.mailer import OutgoingMessage
from db import SessionFactory
from domain.outbox import dispatch_pending
from models import tables as t
from tests.helpers import add_products, eventually, notifications, order_doc, place, unique, wait_status


class RecordingMailer:
    """A mailer that takes messages (keeping them) or refuses them while `down`."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.down = False

    def send(self, message: OutgoingMessage) -> None:
        if self.down:
            raise ConnectionError("mail service unreachable")
        self.sent.append(message)


def add_message(sessions: SessionFactory, order_id: str, kind: str) -> int:
    with sessions.begin() as session:
        row = t.Notification(
            order_id=order_id,
            kind=kind,
            recipient="someone@example.com",
            subject=f"{kind} for {order_id}",
            body="hello",
            idempotency_key=unique("key"),
        )
        session.add(row)
        session.flush()
        return row.id


def hold_back_the_rest(sessions: SessionFactory, mine: list[int]) -> None:
    """Other tests' messages (the shared database) are marked sent so this test sees only its own."""
    with sessions.begin() as session:
        session.execute(
            update(t.Notification)
            .where(t.Notification.sent_at.is_(None), t.Notification.id.not_in(mine))
            .values(sent_at=datetime.now(UTC))
        )


def sent_at(sessions: SessionFactory, ids: list[int]) -> list[datetime | None]:
    with sessions() as session:
        rows = dict(
            session.execute(
                select(t.Notification.id, t.Notification.sent_at).where(t.Notification.id.in_(ids))
            ).all()
        )
    return [rows[i] for i in ids]


def test_a_mail_outage_keeps_messages_until_it_is_over_and_sends_each_once_in_order(sessions):
    order_id = unique("OUTBOX")
    ids = [add_message(sessions, order_id, kind) for kind in ("order_confirmed", "order_shipped")]
    hold_back_the_rest(sessions, ids)
    mailer = RecordingMailer()

    mailer.down = True
    assert dispatch_pending(sessions, mailer) == 0
    assert sent_at(sessions, ids) == [None, None]  # nothing lost, nothing marked

    mailer.down = False
    assert dispatch_pending(sessions, mailer) == 2
    assert [m.id for m in mailer.sent] == ids  # oldest first
    assert all(sent_at(sessions, ids))
    assert dispatch_pending(sessions, mailer) == 0  # sent once
    assert len(mailer.sent) == 2


@pytest.mark.usefixtures("worker")
async def test_the_worker_sends_an_orders_messages(client, settings, sessions):
    skus = add_products(sessions, {"MUG": 3})
    order_id = await place(client, settings, order_doc([(skus["MUG"], 1)]))
    await wait_status(client, order_id, "shipped")

    async def messages() -> list[t.Notification]:
        return notifications(sessions, order_id)

    rows = await eventually(messages, lambda rows: bool(rows) and all(r.sent_at is not None for r in rows))
    kinds = [n.kind for n in rows]
    assert kinds[:2] == ["order_confirmed", "order_shipped"]
