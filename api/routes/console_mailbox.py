"""The console's development mailbox: what `make run`'s SMTP catcher received (sandbox/mailbox.py), so a
developer sees what each customer was sent: recipient, subject, time, the text and the HTML part.

There only when OMS_DEV_MAILBOX names the catcher's folder (`make run` sets it); otherwise every page
is 404, as if it did not exist. Support and admin sessions, like the other console pages. A message's
HTML part is served alone under a CSP sandbox (no script, nothing fetched), linked from its page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api import console_session
from api.routes.console import PAGE_HEADERS, State, render_page
from sandbox.mailbox import Mail, Mailbox, UnknownMail

router = APIRouter(prefix="/console/mailbox", include_in_schema=False)

SHOWN = 200  # newest messages listed
HTML_PART_HEADERS = {
    **PAGE_HEADERS,
    # the e-mail's HTML as a customer's mail program would show it: styles inline, no script, no fetch
    "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
}


def _not_here() -> Response:
    return Response(
        "no development mailbox (OMS_DEV_MAILBOX is not set)", status_code=404, headers=PAGE_HEADERS
    )


def _mailbox(state: State) -> Mailbox | None:
    folder = state.settings.dev_mailbox
    return Mailbox(folder) if folder is not None else None


@router.get("")
async def mailbox_page(request: Request, state: State) -> Response:
    who = await console_session.viewer(request, state)
    mailbox = _mailbox(state)
    if mailbox is None:
        return _not_here()
    mails: list[Mail] = await run_in_threadpool(mailbox.messages)
    newest = list(reversed(mails))[:SHOWN]
    context = {"who": who, "mails": newest, "total": len(mails), "folder": str(mailbox.folder)}
    return render_page(request, "console/mailbox.html", context, 200)


@router.get("/{name}")
async def mail_page(request: Request, state: State, name: str) -> Response:
    who = await console_session.viewer(request, state)
    mailbox = _mailbox(state)
    if mailbox is None:
        return _not_here()
    try:
        mail = await run_in_threadpool(mailbox.read, name)
    except UnknownMail:
        return render_page(request, "console/mail.html", {"who": who, "mail": None, "name": name}, 404)
    return render_page(request, "console/mail.html", {"who": who, "mail": mail}, 200)


@router.get("/{name}/html")
async def mail_html(request: Request, state: State, name: str) -> Response:
    await console_session.viewer(request, state)
    mailbox = _mailbox(state)
    if mailbox is None:
        return _not_here()
    try:
        mail = await run_in_threadpool(mailbox.read, name)
    except UnknownMail:
        return Response("no such message", status_code=404, headers=PAGE_HEADERS)
    if mail.html is None:
        return Response("this message has no HTML part", status_code=404, headers=PAGE_HEADERS)
    return Response(mail.html, media_type="text/html", headers=HTML_PART_HEADERS)
