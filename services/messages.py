"""An order's customer messages as support handles them (the console, the HTTP API and the command
line): the outbox's rows (domain/outbox.py), and sending again one the mail server gave up on."""

from __future__ import annotations

import asyncio

from db import SessionFactory
from domain import outbox
from domain.outbox import MessageState
from models import tables as t
from services.orders import Refused, UnknownOrder


class UnknownMessage(LookupError):
    """The order has no message of that id."""


async def order_messages(sessions: SessionFactory, order_id: str) -> list[MessageState]:
    """The order's messages, oldest first. UnknownOrder: no such order."""

    def read() -> list[MessageState]:
        with sessions() as session:
            found = outbox.order_messages(session, order_id)
            if not found and session.get(t.Order, order_id) is None:
                raise UnknownOrder(order_id)
            return found

    return await asyncio.to_thread(read)


async def send_again(
    sessions: SessionFactory, order_id: str, message_id: int, by: str, to: str | None = None
) -> MessageState:
    """A message given up, sent once more (to `to` if given). Refused: it was sent, or is still being
    tried; UnknownMessage: the order has no such message."""

    def write() -> MessageState:
        with sessions.begin() as session:
            return outbox.send_again(session, order_id, message_id, by, to)

    try:
        return await asyncio.to_thread(write)
    except outbox.NotGivenUp as exc:
        raise Refused(str(exc)) from None
    except LookupError as exc:
        raise UnknownMessage(str(exc)) from None
