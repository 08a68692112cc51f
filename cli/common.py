"""What every command group shares: exit statuses, CommandError, who acts, reading input, the database.

Light at import time, like every module of the package: what a helper needs from the heavy layers
(SQLAlchemy, pydantic, services/) it imports when it is called, by a command that needs it anyway.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar

if TYPE_CHECKING:
    from pydantic import ValidationError

    from config import Settings
    from db import SessionFactory

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_REFUSED, EXIT_INVALID = 1, 2
# Temporal cannot be reached as configured (connection.TemporalUnavailable): like a refusal, nothing was
# done and the same command may work later, or with the setting the message names corrected
EXIT_UNAVAILABLE = EXIT_REFUSED
CLI_ACTOR = f"cli:{getpass.getuser()}"  # who did it, in the order's event log
T = TypeVar("T")


class CommandError(Exception):
    """A command's refusal (exit 1) or invalid input (exit 2): `error: <message>` on stderr."""

    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def database(settings: Settings) -> Iterator[SessionFactory]:
    from db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


async def order_call(call: Awaitable[T]) -> T:
    """Await a call on one order; an unknown order or a refusal becomes a clear message and exit 1."""
    from services import orders

    try:
        return await call
    except (orders.UnknownOrder, orders.Refused) as exc:
        raise CommandError(str(exc)) from None


def read_input(file: str) -> bytes:
    """The bytes of FILE, or of stdin for `-`; a file that cannot be read exits 2."""
    if file == "-":
        buffer = getattr(sys.stdin, "buffer", None)  # a text-only stdin (as in tests) is read as text
        return buffer.read() if buffer is not None else sys.stdin.read().encode()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}", EXIT_INVALID) from None


def first_problem(exc: ValidationError) -> str:
    from models.validation import field_problems

    return field_problems(exc, whole="input")[0]
