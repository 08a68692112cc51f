"""The notification outbox: messages written with the order's events, sent by the worker's dispatcher."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from adapters.mailer import MailDeferred, MailFailure, MailRefused, OutgoingMessage
from db import SessionFactory
from domain.outbox import (
    GIVE_UP_AFTER,
    Delivery,
    NotGivenUp,
    dispatch_pending,
    failed_messages,
    order_messages,
    send_again,
)
from models import tables as t
from tests.helpers import (
    add_products,
    eventually,
    fresh_database,
    notifications,
    order_doc,
    place,
    unique,
    wait_status,
)


class RecordingMailer:
    """A mailer that takes messages (keeping them) or refuses them while `down`."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.down = False

    def send(self, message: OutgoingMessage) -> None:
        if self.down:
            raise ConnectionError("mail service unreachable")
        self.sent.append(message)


def add_message(sessions: SessionFactory, order_id: str, kind: str, to: str = "someone@example.com") -> int:
    with sessions.begin() as session:
        row = t.Notification(
            order_id=order_id,
            kind=kind,
            recipient=to,
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


def attempts(sessions: SessionFactory, ids: list[int]) -> list[int]:
    with sessions() as session:
        rows = dict(
            session.execute(
                select(t.Notification.id, t.Notification.attempts).where(t.Notification.id.in_(ids))
            ).all()
        )
    return [rows[i] for i in ids]


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
    # the round stopped at the first message: an outage costs one attempt per round
    assert attempts(sessions, ids) == [1, 0]

    mailer.down = False
    assert dispatch_pending(sessions, mailer) == 1  # the first waits its turn, the second goes
    assert [m.id for m in mailer.sent] == ids[1:]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert dispatch_pending(sessions, mailer, now=later) == 1  # its wait is over
    assert [m.id for m in mailer.sent] == [ids[1], ids[0]]
    assert all(sent_at(sessions, ids))
    assert dispatch_pending(sessions, mailer, now=later) == 0  # sent once
    assert len(mailer.sent) == 2


class AnsweringMailer:
    """A mailer that answers each recipient as told: taken, deferred (4xx) or refused (5xx)."""

    def __init__(self, answers: dict[str, Exception]) -> None:
        self.answers = answers
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> None:
        if message.recipient in self.answers:
            raise self.answers[message.recipient]
        self.sent.append(message)


def test_a_refused_message_is_given_up_and_a_deferred_one_waits_while_the_rest_go(sessions):
    order_id = unique("OUTBOX")
    refused, deferred, fine = (
        add_message(sessions, order_id, "order_shipped", to)
        for to in ("no@x.example", "later@x.example", "ok@x.example")
    )
    hold_back_the_rest(sessions, [refused, deferred, fine])
    mailer = AnsweringMailer(
        {
            "no@x.example": MailRefused(MailFailure.recipient_refused, "no@x.example: 550 no such user"),
            "later@x.example": MailDeferred("451 try again later"),
        }
    )
    assert dispatch_pending(sessions, mailer) == 1
    assert [m.id for m in mailer.sent] == [fine]
    with sessions() as session:
        rows = {
            r.id: r
            for r in session.scalars(select(t.Notification).where(t.Notification.order_id == order_id))
        }
    assert (rows[refused].failure_code, rows[refused].failed_at is not None) == ("recipient_refused", True)
    assert "550 no such user" in (rows[refused].last_error or "")
    assert (rows[deferred].attempts, rows[deferred].failed_at) == (1, None)
    assert rows[deferred].next_attempt_at is not None

    del mailer.answers["later@x.example"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert dispatch_pending(sessions, mailer, now=later) == 1  # the deferred one; the refused never again
    assert [m.id for m in mailer.sent] == [fine, deferred]
    with sessions() as session:
        assert [(m.recipient, m.failure_code) for m in failed_messages(session, order_id)] == [
            ("no@x.example", "recipient_refused")
        ]


def test_a_message_failing_for_days_is_given_up(sessions):
    order_id = unique("OUTBOX")
    (old,) = [add_message(sessions, order_id, "order_shipped")]
    hold_back_the_rest(sessions, [old])
    with sessions.begin() as session:
        session.execute(
            update(t.Notification)
            .where(t.Notification.id == old)
            .values(created_at=datetime.now(UTC) - GIVE_UP_AFTER - timedelta(minutes=1))
        )
    assert dispatch_pending(sessions, AnsweringMailer({"someone@example.com": MailDeferred("452 full")})) == 0
    with sessions() as session:
        row = session.get(t.Notification, old)
        assert (
            row is not None
            and row.failure_code == "retries_exhausted"
            and "452 full" in (row.last_error or "")
        )


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


class MeetingMailer:
    """Takes messages from two dispatchers at once: each first send waits (a bounded while) until both
    dispatchers are inside one, so the second really runs while the first holds a row."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.lock = threading.Lock()
        self.senders: set[int] = set()
        self.both_inside = threading.Event()

    def send(self, message: OutgoingMessage) -> None:
        with self.lock:
            self.senders.add(threading.get_ident())
            if len(self.senders) == 2:
                self.both_inside.set()
        self.both_inside.wait(timeout=10)
        with self.lock:
            self.sent.append(message.id)


def test_two_dispatchers_at_once_send_each_message_once(tmp_path):
    with fresh_database(tmp_path, "outbox") as (url, sessions):
        if make_url(url).get_backend_name() == "sqlite":
            pytest.skip("SQLite has no row locks: one dispatching process only (docs/operations.md)")
        order_id = unique("OUTBOX")
        ids = [add_message(sessions, order_id, "order_shipped") for _ in range(20)]
        mailer = MeetingMailer()
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda _: dispatch_pending(sessions, mailer), range(2)))
        assert mailer.both_inside.is_set()  # they did overlap
        assert sorted(mailer.sent) == ids and sum(counts) == len(ids)
        assert all(sent_at(sessions, ids))


def test_a_message_given_up_is_sent_again_to_a_corrected_address(sessions):
    """Support sends a refused message again (domain/outbox.py `send_again`): to the address given, as a
    new message would go; only a message given up, and only one of that order."""
    order_id = unique("OUTBOX")
    refused = add_message(sessions, order_id, "order_shipped", "no@x.example")
    fine = add_message(sessions, order_id, "order_delivered", "ok@x.example")
    hold_back_the_rest(sessions, [refused, fine])
    mailer = AnsweringMailer({"no@x.example": MailRefused(MailFailure.recipient_refused, "550 no such user")})
    assert dispatch_pending(sessions, mailer) == 1
    with sessions() as session:
        assert [m.id for m in failed_messages(session, order_id)] == [refused]

    for message, order, problem in (
        (fine, order_id, NotGivenUp),  # sent
        (refused, unique("OTHER"), LookupError),  # not that order's
        (10**9, order_id, LookupError),
    ):
        with pytest.raises(problem), sessions.begin() as session:
            send_again(session, order, message, "agent-7", "yes@x.example")
    with sessions.begin() as session:
        state = send_again(session, order_id, refused, "agent-7", "yes@x.example")
    assert (state.delivery, state.recipient, state.attempts, state.failure_code) == (
        Delivery.waiting,
        "yes@x.example",
        0,
        None,
    )
    with pytest.raises(NotGivenUp, match="is still being tried"), sessions.begin() as session:
        send_again(session, order_id, refused, "agent-7")  # twice: it waits already

    assert dispatch_pending(sessions, mailer) == 1
    assert [(m.id, m.recipient) for m in mailer.sent] == [(fine, "ok@x.example"), (refused, "yes@x.example")]
    with sessions() as session:
        (first, _) = order_messages(session, order_id)
    assert (first.delivery, first.resent_by) == (Delivery.sent, "agent-7")


def test_a_message_sent_again_gets_a_new_give_up_window(sessions):
    """Written days ago and given up; sent again, a passing failure makes it wait, not give up at once."""
    order_id = unique("OUTBOX")
    old = add_message(sessions, order_id, "order_shipped", "full@x.example")
    hold_back_the_rest(sessions, [old])
    with sessions.begin() as session:
        session.execute(
            update(t.Notification)
            .where(t.Notification.id == old)
            .values(
                created_at=datetime.now(UTC) - GIVE_UP_AFTER - timedelta(days=1),
                failed_at=datetime.now(UTC) - timedelta(days=1),
                failure_code=MailFailure.retries_exhausted.value,
            )
        )
        send_again(session, order_id, old, "agent-7")
    assert dispatch_pending(sessions, AnsweringMailer({"full@x.example": MailDeferred("452 full")})) == 0
    with sessions() as session:
        row = session.get(t.Notification, old)
        assert row is not None and (row.failed_at, row.attempts) == (None, 1)
