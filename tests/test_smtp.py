"""E-mail over SMTP: the real worker (in-process, or `worker.py` killed and started again) sends every
customer message to a real SMTP server on 127.0.0.1 (devtools/mail_catcher.py, aiosmtpd), which keeps
what it receives; the tests read that mailbox. Each test has a database of its own, so the suite's
worker (whose mailer is the sandbox's) never takes these messages."""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from temporalio.client import Client

from adapters.mailer import MailFailure, MailRefused, OutgoingMessage
from adapters.smtp_mailer import SmtpMailer, compose, message_id
from config import SandboxMode, Settings, SmtpSecurity
from db import SessionFactory
from devtools.mail_catcher import MailCatcher
from devtools.processes import ChildProcess
from domain.api_keys import Role, create_key
from domain.customer_mail import OrderSummary, SummaryLine, render_html
from domain.dashboard import needing_attention
from domain.tracking_links import TrackingLinks
from models import tables as t
from models.orders import ReturnIn, ReturnReceipt
from sandbox.mailbox import Mail
from services.forecast import ensure_schedule
from services.orders import confirm_delivery, receive_return, request_return
from tests.api_server import running_api
from tests.helpers import add_products, eventually, fresh_database, order_doc, place, unique, wait_status
from tests.test_console_session import sign_in
from tests.test_parties import hand_over, shipment_status
from tests.worker_process import start_worker
from worker import build_worker

pytestmark = pytest.mark.timeout(240)

SENDER = "Shop <orders@shop.example>"
REFUSED = "nobody@refused.example"  # the catcher answers 550 for this address
POLL = timedelta(milliseconds=200)
CUSTOMER_KINDS = ["order_confirmed", "order_shipped", "order_delivered", "refund_issued"]


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[MailCatcher]:
    server = MailCatcher(tmp_path / "mailbox", refuse=[REFUSED]).start()
    yield server
    server.stop()


@pytest.fixture
def mail_db(tmp_path: Path) -> Iterator[tuple[str, SessionFactory]]:
    with fresh_database(tmp_path, "smtp") as pair:
        yield pair


@pytest.fixture
def mail_settings(settings: Settings, mail_db: tuple[str, SessionFactory], catcher: MailCatcher) -> Settings:
    """The suite's settings on this test's database and task queue, mailing the catcher."""
    return settings.model_copy(
        update={
            "database_url": mail_db[0],
            "task_queue": f"{settings.task_queue}-smtp-{uuid.uuid4().hex[:6]}",
            "smtp_host": "127.0.0.1",
            "smtp_port": catcher.port,
            "smtp_from": SENDER,
            "outbox_poll": POLL,
            "sandbox_carrier": SandboxMode.manual,
        }
    )


@asynccontextmanager
async def in_process_worker(
    client: Client, sessions: SessionFactory, settings: Settings
) -> AsyncIterator[None]:
    async with build_worker(client, sessions, settings):
        yield


def worker_env(settings: Settings) -> dict[str, str]:
    """What a `worker.py` process needs beyond tests/api_server.process_env to act as `settings`."""
    return {
        "OMS_SMTP_HOST": "127.0.0.1",
        "OMS_SMTP_PORT": str(settings.smtp_port),
        "OMS_SMTP_FROM": SENDER,
        "OMS_OUTBOX_POLL": f"{POLL.total_seconds() * 1000:.0f}ms",
        # the tests play the warehouse and the carrier: a kill never leaves a sandbox step in flight
        "OMS_SANDBOX_WAREHOUSE": "manual",
        "OMS_SANDBOX_CARRIER": "manual",
    }


def mails(catcher: MailCatcher, order_id: str) -> list[Mail]:
    """What the order's customer (or support) received about it: every subject names the order."""
    return [m for m in catcher.mailbox.messages() if order_id in m.subject]


def rows(sessions: SessionFactory, order_id: str) -> list[t.Notification]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.Notification).where(t.Notification.order_id == order_id).order_by(t.Notification.id)
            )
        )


def kind_of(row_by_subject: dict[str, t.Notification], mail: Mail) -> str:
    return row_by_subject[mail.subject].kind


async def arrived(catcher: MailCatcher, sessions: SessionFactory, order_id: str, kinds: list[str]) -> None:
    """Poll until a mail of each kind arrived and the outbox marked every one of the order's rows sent."""

    def done() -> bool:
        subjects = {r.subject: r for r in rows(sessions, order_id)}
        got = {kind_of(subjects, m) for m in mails(catcher, order_id) if m.subject in subjects}
        return set(kinds) <= got and all(r.sent_at is not None for r in subjects.values())

    await eventually(done, bool, timeout=60, what=f"{kinds} mailed for {order_id}")


def assert_once_each(catcher: MailCatcher, sessions: SessionFactory, order_id: str, kinds: list[str]) -> None:
    by_subject = {r.subject: r for r in rows(sessions, order_id)}
    received = [kind_of(by_subject, m) for m in mails(catcher, order_id)]
    assert sorted(received) == sorted(kinds), received


def assert_mail_shows_the_order(
    mail: Mail, row: t.Notification, order_id: str, lines: list[tuple[str, str, int]], total: str, link: str
) -> None:
    """Text and HTML both carry the order id, its lines, its total and the tracking link; the
    Message-ID is the outbox row's."""
    assert mail.recipients == [row.recipient]
    assert mail.message_id == message_id(
        OutgoingMessage(row.id, row.idempotency_key, row.recipient, row.subject, row.body), "shop.example"
    )
    assert mail.message_id.startswith(f"<oms-{row.id}-")
    assert mail.text is not None and mail.html is not None, mail
    for part in (mail.text, mail.html):
        assert order_id in part
        for name, sku, _ in lines:
            assert name in part and sku in part
        assert total in part and link in part
    for name, sku, quantity in lines:
        assert f"{quantity} x {name} ({sku}) at " in mail.text
        assert re.search(rf"<td[^>]*>{re.escape(sku)}</td>\s*<td[^>]*>{quantity}</td>", mail.html), mail.html
    assert f"Total: {total} EUR" in mail.text
    assert f'href="{link}"' in mail.html


# ---- every customer mail once, with the order, across a worker killed mid-way ----


async def test_each_customer_mail_arrives_once_with_the_order_across_a_killed_worker(
    client, settings, mail_settings, mail_db, catcher, tmp_path
):
    _, sessions = mail_db
    skus = add_products(sessions, {"MUG": 5, "TEA": 5}, price="12.50")
    lines = [(skus["MUG"], 2), (skus["TEA"], 1)]
    log = tmp_path / "worker.log"
    env = worker_env(mail_settings)
    first: ChildProcess | None = await start_worker(mail_settings, log, **env)
    second: ChildProcess | None = None
    try:
        order_id = await place(client, mail_settings, order_doc(lines), return_window=timedelta(minutes=5))
        shipment = f"{order_id}-S1"
        await arrived(catcher, sessions, order_id, ["order_confirmed"])
        # the order waits for the warehouse (manual here): no step in flight that the kill would leave
        # to its timeout
        await shipment_status(client, order_id, shipment, "released")
        assert first is not None
        first.kill()  # SIGKILL: what a crash looks like; the order goes on on the next worker
        first = None
        second = await start_worker(mail_settings, log, **env)

        await hand_over(client, shipment)
        await wait_status(client, order_id, "shipped", timeout=60)
        await arrived(catcher, sessions, order_id, ["order_confirmed", "order_shipped"])
        await confirm_delivery(client, order_id)
        await arrived(catcher, sessions, order_id, ["order_confirmed", "order_shipped", "order_delivered"])
        ret = await request_return(
            client, order_id, ReturnIn(sku=skus["TEA"], quantity=1, reason="too strong")
        )
        await receive_return(client, order_id, ReturnReceipt(rma=ret.rma, by="test"))
        await arrived(catcher, sessions, order_id, CUSTOMER_KINDS)
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        await ensure_schedule(client, settings)  # a worker start pointed it at its own task queue

    assert_once_each(catcher, sessions, order_id, CUSTOMER_KINDS + ["return_authorized"])
    link = TrackingLinks.from_settings(mail_settings).url(order_id)
    by_subject = {r.subject: r for r in rows(sessions, order_id)}
    named = [(f"Product {name}", skus[name], qty) for name, qty in (("MUG", 2), ("TEA", 1))]
    for mail in mails(catcher, order_id):
        row = by_subject[mail.subject]
        assert_mail_shows_the_order(mail, row, order_id, named, "37.50", link)
    refund = next(m for m in mails(catcher, order_id) if by_subject[m.subject].kind == "refund_issued")
    assert refund.text is not None and "refunded 12.50 EUR" in refund.text


# ---- an outage: the messages wait, then go, once each ----


async def test_an_smtp_outage_holds_the_mail_until_the_server_is_back_then_sends_each_once(
    client, mail_settings, mail_db, catcher
):
    _, sessions = mail_db
    skus = add_products(sessions, {"LAMP": 5}, price="30.00")
    async with in_process_worker(client, sessions, mail_settings):
        catcher.stop()
        order_id = await place(client, mail_settings, order_doc([(skus["LAMP"], 1)]))
        await wait_status(client, order_id, "shipped", timeout=60)

        def confirmation() -> t.Notification:
            return next(r for r in rows(sessions, order_id) if r.kind == "order_confirmed")

        waiting = await eventually(confirmation, lambda r: r.attempts >= 2, what="two failed attempts")
        assert waiting.sent_at is None and waiting.failed_at is None
        assert "ConnectionRefusedError" in (waiting.last_error or "")
        assert mails(catcher, order_id) == []

        catcher.start()
        await arrived(catcher, sessions, order_id, ["order_confirmed", "order_shipped"])
        await confirm_delivery(client, order_id)
        # a later message going out means every round since the outage ran: nothing came twice
        await arrived(catcher, sessions, order_id, ["order_confirmed", "order_shipped", "order_delivered"])
    assert_once_each(catcher, sessions, order_id, ["order_confirmed", "order_shipped", "order_delivered"])


# ---- a refused recipient: that message fails, support sees it, the others go ----


async def test_a_refused_recipient_fails_its_messages_for_support_to_see_and_the_others_go(
    client, mail_settings, mail_db, catcher, tmp_path
):
    _, sessions = mail_db
    skus = add_products(sessions, {"BOOK": 5})
    refused_doc = order_doc(
        [(skus["BOOK"], 1)], customer={"id": unique("C"), "name": "No One", "email": REFUSED, "phone": None}
    )
    async with in_process_worker(client, sessions, mail_settings):  # the console's order page asks it
        refused = await place(client, mail_settings, refused_doc)
        fine = await place(client, mail_settings, order_doc([(skus["BOOK"], 1)]))
        await arrived(catcher, sessions, fine, ["order_confirmed", "order_shipped"])

        def failed() -> list[t.Notification]:
            return [r for r in rows(sessions, refused) if r.failed_at is not None]

        given_up = await eventually(failed, lambda r: len(r) >= 2, what="the refused order's mails given up")
        assert {r.kind for r in given_up} == {"order_confirmed", "order_shipped"}
        assert all(r.failure_code == "recipient_refused" and r.sent_at is None for r in given_up)
        assert all(r.attempts == 0 for r in given_up)  # refused at the first try, never retried
        assert all(f"{REFUSED}: 550" in (r.last_error or "") for r in given_up)
        assert mails(catcher, refused) == []
        assert_once_each(catcher, sessions, fine, ["order_confirmed", "order_shipped"])

        with sessions() as session:
            attention = {line.order_id: line.why for line in needing_attention(session)}
        assert attention.get(refused) == "message not delivered" and fine not in attention

        # the console: the order's story says so, the dashboard lists it, the mailbox shows what went out
        key = create_key(sessions, "smtp-support", Role.support).key
        with running_api(mail_settings, tmp_path, OMS_DEV_MAILBOX=str(catcher.mailbox.folder)) as api:
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as browser:
                assert (await sign_in(browser, key)).status_code == 303
                page = (await browser.get(f"/console/orders/{refused}")).text
                assert "notification_failed" in page and "recipient_refused" in page and REFUSED in page
                dashboard = (await browser.get("/console/dashboard")).text
                assert refused in dashboard and "message not delivered" in dashboard
                box = await browser.get("/console/mailbox")
                assert box.status_code == 200 and f"Your order {fine} is confirmed" in box.text
                assert refused not in box.text
                (confirmed,) = [m for m in mails(catcher, fine) if "confirmed" in m.subject]
                one = await browser.get(f"/console/mailbox/{confirmed.name}")
                assert one.status_code == 200 and "Track your order" in one.text
                html = await browser.get(f"/console/mailbox/{confirmed.name}/html")
                assert html.status_code == 200 and "sandbox" in html.headers["content-security-policy"]
                assert (await browser.get("/console/mailbox/..%2Fsecret")).status_code == 404


async def test_the_mailbox_pages_are_not_there_without_a_dev_mailbox_and_need_a_console_session(
    mail_settings, mail_db, tmp_path
):
    _, sessions = mail_db
    key = create_key(sessions, "smtp-support", Role.support).key
    with running_api(mail_settings, tmp_path) as api:
        async with httpx.AsyncClient(base_url=api.url) as browser:
            signed_out = await browser.get("/console/mailbox")
            assert signed_out.status_code == 303 and "/console/sign-in" in signed_out.headers["location"]
            assert (await sign_in(browser, key)).status_code == 303
            assert (await browser.get("/console/mailbox")).status_code == 404


# ---- the e-mail itself ----


def test_a_message_without_html_is_plain_text_and_its_message_id_is_the_rows():
    support = OutgoingMessage(
        41, "order-A:notify:compensation/void", "support@oms.example", "[support] A", "x\n"
    )
    email = compose(support, SENDER)
    assert email.get_content_type() == "text/plain" and not email.is_multipart()
    assert email["Message-ID"] == "<oms-41-order-A-notify-compensation-void@shop.example>"
    assert email["From"] == SENDER and email["To"] == "support@oms.example"
    customer = compose(OutgoingMessage(42, "k", "ada@example.com", "Hi", "text\n", "<p>html</p>"), SENDER)
    assert customer.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in customer.iter_parts()] == ["text/plain", "text/html"]


def test_the_html_part_shows_markup_in_customer_data_as_text():
    summary = OrderSummary(
        "A-1", [SummaryLine("SKU-1", "<b>Mug</b>", 2, Decimal("4.50"))], Decimal("9.00"), "EUR", None
    )
    html = render_html("Hi", "Hello <script>alert(1)</script>,\n\nthanks.\n", summary)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;Mug&lt;/b&gt;" in html and "9.00 EUR" in html
    assert "Track your order" not in html  # no link without OMS_PUBLIC_URL's signer
    assert summary.text() == "  2 x <b>Mug</b> (SKU-1) at 4.50\nTotal: 9.00 EUR\n"


def test_a_message_that_cannot_be_an_e_mail_is_refused_for_good_without_a_connection():
    mailer = SmtpMailer("127.0.0.1", 9, SmtpSecurity.none, SENDER, 1.0)  # the discard port: never reached
    broken = OutgoingMessage(43, "k", "ada@example.com", "two\nlines", "text\n")
    with pytest.raises(MailRefused) as refused:
        mailer.send(broken)
    assert refused.value.failure == MailFailure.message_refused


# ---- settings ----


def test_a_bad_smtp_security_or_from_is_refused_naming_the_setting():
    with pytest.raises(ValidationError, match=r"smtp_security\s+Input should be 'none', 'starttls' or 'tls'"):
        Settings(smtp_security="bogus")
    with pytest.raises(ValidationError, match="OMS_SMTP_FROM must be an e-mail address"):
        Settings(smtp_from="orders")
    with pytest.raises(ValidationError, match="OMS_SMTP_USERNAME and OMS_SMTP_PASSWORD go together"):
        Settings(smtp_host="mail.example", smtp_username="shop")
    with pytest.raises(ValidationError, match="OMS_SMTP_TIMEOUT must be more than 0"):
        Settings(smtp_timeout="0s")
    assert Settings(smtp_host="mail.example", smtp_security="starttls").smtp_port_or_default == 587


def test_the_worker_refuses_to_start_on_a_bad_smtp_security(tmp_path):
    worker = ChildProcess.start(
        "worker",
        [sys.executable, "worker.py"],
        tmp_path / "worker.log",
        {**os.environ, "OMS_SMTP_HOST": "127.0.0.1", "OMS_SMTP_SECURITY": "bogus"},
        stop_timeout=5,
    )
    assert worker.process.wait(timeout=60) != 0
    assert "smtp_security" in worker.tail(40).lower()
