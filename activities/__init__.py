"""Activities: one class per concern, built with injected dependencies. Every activity is idempotent."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from models.steps import ErrorType

# SQLSTATE 23505 (PostgreSQL) and SQLite's extended codes: a unique key another attempt wrote first.
_UNIQUE_VIOLATIONS = {"23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def refuse(error_type: str, message: str, *details: object, benign: bool = True) -> ApplicationError:
    """A business refusal: non-retryable, with a typed `type` the workflow can branch on. Benign (an
    expected outcome such as a declined card): the worker logs it as one line, without a traceback;
    `benign=False` for refusals that point at a bug and deserve the warning with its traceback."""
    category = ApplicationErrorCategory.BENIGN if benign else ApplicationErrorCategory.UNSPECIFIED
    return ApplicationError(message, *details, type=error_type, non_retryable=True, category=category)


def bad_data_refusal(exc: BaseException) -> ApplicationError | None:
    """The business refusal (`ErrorType.invalid_data`) for a database error that no retry can fix, else
    None: such a step would otherwise retry for ever and wedge its order.

    Refused: `DataError` (a number out of range, a string too long, a malformed value), an
    `IntegrityError` other than a unique-key race (NOT NULL, CHECK, foreign key), and what the drivers
    raise before the statement reaches the database: a NUL in a string (psycopg2), a lone surrogate, an
    integer beyond 64 bits (sqlite3), a time that overflows on conversion to UTC. Retried as before: a
    unique-key violation (a concurrent attempt wrote the row first; the retry finds it) and everything
    else, such as `OperationalError` (connection lost, serialization failure, deadlock)."""
    if isinstance(exc, IntegrityError):
        return None if _is_unique_violation(exc) else _bad_data(_first_line(exc.orig))
    if isinstance(exc, DataError):
        return _bad_data(_first_line(exc.orig))
    if isinstance(exc, StatementError) and exc.orig is not None and not isinstance(exc, DBAPIError):
        return bad_data_refusal(exc.orig)  # raised while binding the parameters, before the database
    if isinstance(exc, OverflowError | UnicodeEncodeError):
        return _bad_data(_first_line(exc))
    if isinstance(exc, ValueError) and "NUL (0x00)" in str(exc):  # psycopg2
        return _bad_data(_first_line(exc))
    return None


class RefuseBadData(Interceptor):
    """Every activity of the worker (regular and local): `bad_data_refusal` turns what the database can
    never store into a non-retryable refusal, whichever step it happens in."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RefuseBadDataInbound(next)


class _RefuseBadDataInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            refusal = bad_data_refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc


def _is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return bool({getattr(orig, "pgcode", None), getattr(orig, "sqlite_errorname", None)} & _UNIQUE_VIOLATIONS)


def _first_line(error: object) -> str:
    """The error's first line with its quoted values left out: a value the database refused may be a
    customer's name or address, and the refusal travels to logs and the order's story."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else type(error).__name__
    return _QUOTED.sub(lambda m: m.group(1) + "…" + m.group(1), first)


_QUOTED = re.compile(r"(\"|')(?:(?!\1).)*\1")


def _bad_data(reason: str) -> ApplicationError:
    # not benign: a hole in the doors' validation, logged by the worker with its traceback
    return refuse(ErrorType.invalid_data, f"the data cannot be stored: {reason}", benign=False)
