"""The development mailbox: a folder of the e-mails the local SMTP catcher received (`make run`,
devtools/mail_catcher.py), one `.eml` file each, as the customers' inboxes would hold them. The
catcher writes it; the console's mailbox page reads it (api/routes/console_mailbox.py)."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

# <received, UTC, to the microsecond>-<random>.eml: names sort in the order messages arrived
_NAME = re.compile(r"^\d{8}T\d{12}-[0-9a-f]{8}\.eml$")


class UnknownMail(LookupError):
    """No message of that name in the mailbox."""


@dataclass(frozen=True)
class Mail:
    name: str  # the file's name, the message's handle in the console
    received_at: datetime
    recipients: list[str]  # the envelope's (RCPT TO)
    sender: str
    subject: str
    message_id: str
    sent_at: datetime | None  # its Date header
    text: str | None
    html: str | None


class Mailbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def store(self, sender: str, recipients: list[str], content: bytes) -> str:
        """Keep one received message (with its envelope, as `X-Envelope-*` headers in front); written
        to a temporary name and renamed, so a reader never sees half a file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
        envelope = f"X-Envelope-From: {sender}\r\nX-Envelope-To: {', '.join(recipients)}\r\n".encode()
        partial = self.folder / f".{name}.part"
        partial.write_bytes(envelope + content)
        os.replace(partial, self.folder / name)
        return name

    def names(self) -> list[str]:
        """Every message's name, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if _NAME.match(p.name))

    def read(self, name: str) -> Mail:
        if not _NAME.match(name) or not (self.folder / name).is_file():  # never a path of the caller's
            raise UnknownMail(name)
        parsed = BytesParser(policy=policy.default).parsebytes((self.folder / name).read_bytes())
        assert isinstance(parsed, EmailMessage)
        return Mail(
            name=name,
            received_at=datetime.strptime(name[:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC),
            recipients=[r.strip() for r in str(parsed["X-Envelope-To"] or "").split(",") if r.strip()],
            sender=str(parsed["From"] or ""),
            subject=str(parsed["Subject"] or ""),
            message_id=str(parsed["Message-ID"] or "").strip(),  # a long one comes folded
            sent_at=parsedate_to_datetime(str(parsed["Date"])) if parsed["Date"] else None,
            text=_part(parsed, "plain"),
            html=_part(parsed, "html"),
        )

    def messages(self) -> list[Mail]:
        """Every message, oldest first."""
        return [self.read(name) for name in self.names()]


def _part(message: EmailMessage, subtype: str) -> str | None:
    body = message.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_subtype() != subtype:
        return None
    content: str = body.get_content()
    return content.replace("\r\n", "\n")  # as written, not as SMTP carried it
