"""A local SMTP server that keeps what it receives in a development mailbox (sandbox/mailbox.py):
`make run` starts one for its worker to send to, and the e-mail tests talk to it as to any server.
aiosmtpd's `Controller` runs it on a thread of its own.

`refuse` names recipients it answers 550 at RCPT TO, as a server does for an address it does not
have: how the tests make one message fail for good."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from sandbox.mailbox import Mailbox

HOST = "127.0.0.1"


class _Handler:
    def __init__(self, mailbox: Mailbox, refuse: Iterable[str]) -> None:
        self.mailbox = mailbox
        self.refuse = {address.lower() for address in refuse}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        self.mailbox.store(str(envelope.mail_from), list(envelope.rcpt_tos), content)
        return "250 Message accepted for delivery"


class MailCatcher:
    """The catcher on `port` (a free one when 0), storing into `folder`; `start` and `stop` it, as
    often as needed (the tests take it away and bring it back on the same port)."""

    def __init__(self, folder: Path, port: int = 0, refuse: Iterable[str] = ()) -> None:
        self.mailbox = Mailbox(folder)
        self.port = port or free_port()
        self._handler = _Handler(self.mailbox, refuse)
        self._controller: Controller | None = None

    def start(self) -> MailCatcher:
        kwargs: dict[str, Any] = {"decode_data": False}
        self._controller = Controller(self._handler, hostname=HOST, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port
