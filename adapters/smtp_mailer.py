"""The SMTP mailer (a `Mailer`, adapters/mailer.py) on the standard library's smtplib: each outbox
message as a multipart text + HTML e-mail, one short conversation per message.

SMTP answers decide what the dispatcher does: a 5xx for the recipient or the message gives the
message up (`MailRefused`); a 4xx defers it (`MailDeferred`); a refused connection, a timeout, a
refused login or sender (our configuration: every message would fail alike) mean the service is
away, and everything waits."""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from adapters.mailer import MailDeferred, MailFailure, MailRefused, OutgoingMessage
from config import Settings, SmtpSecurity

# what a Message-ID's left part may hold of an idempotency key (RFC 5322 dot-atom, kept simple)
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]+")


def message_id(message: OutgoingMessage, domain: str) -> str:
    """The same for every attempt at the same outbox row, so a message sent twice (at least once: a
    crash between handing it over and marking it sent) is recognisably one message."""
    key = _NOT_IN_ID.sub("-", message.idempotency_key).strip("-")
    return f"<oms-{message.id}-{key}@{domain}>"


def compose(message: OutgoingMessage, sender: str) -> EmailMessage:
    """The e-mail of an outbox message: text, and HTML as its alternative when the row has one."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = message_id(message, domain)
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the shop's robot
    email.set_content(message.body)
    if message.html_body is not None:
        email.add_alternative(message.html_body, subtype="html")
    return email


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        security: SmtpSecurity,
        sender: str,
        timeout: float,
        login: tuple[str, str] | None = None,
    ) -> None:
        self._host, self._port, self._security = host, port, security
        self._sender, self._timeout, self._login = sender, timeout, login

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        assert settings.smtp_host is not None, "adapters.mailer() builds this only with OMS_SMTP_HOST"
        login = None
        if settings.smtp_username is not None and settings.smtp_password is not None:
            login = (settings.smtp_username, settings.smtp_password.get_secret_value())
        return cls(
            settings.smtp_host,
            settings.smtp_port_or_default,
            settings.smtp_security,
            settings.smtp_from,
            settings.smtp_timeout.total_seconds(),
            login,
        )

    def send(self, message: OutgoingMessage) -> None:
        try:
            email = compose(message, self._sender)
        except ValueError as exc:  # e.g. a line break in a header: it would fail the same way every time
            raise MailRefused(MailFailure.message_refused, f"cannot be written as an e-mail: {exc}") from None
        try:
            with self._connect() as smtp:
                if self._login is not None:
                    smtp.login(*self._login)
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:  # our one recipient, refused at RCPT TO
            code, text = next(iter(exc.recipients.values()))
            _raise_for(code, MailFailure.recipient_refused, f"{message.recipient}: {code} {_text(text)}")
        except smtplib.SMTPDataError as exc:  # the message itself, refused after DATA
            _raise_for(exc.smtp_code, MailFailure.message_refused, f"{exc.smtp_code} {_text(exc.smtp_error)}")
        # SMTPSenderRefused, SMTPAuthenticationError, a connection refused or lost, a timeout: not this
        # message's fault, so they propagate as they are and the dispatcher waits for the service

    def _connect(self) -> smtplib.SMTP:
        if self._security == SmtpSecurity.tls:
            return smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        if self._security == SmtpSecurity.starttls:
            try:
                smtp.starttls(context=ssl.create_default_context())
            except BaseException:
                smtp.close()
                raise
        return smtp


def _raise_for(code: int, failure: MailFailure, reason: str) -> None:
    """5xx: permanent; anything else (4xx): try again later."""
    if 500 <= code < 600:
        raise MailRefused(failure, reason)
    raise MailDeferred(reason)


def _text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else answer
