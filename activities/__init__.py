"""Activities: one class per concern, built with injected dependencies. Every activity is idempotent."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DataError, IntegrityError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from models.steps import ErrorType

P = ParamSpec("P")
R = TypeVar("R")

# SQLSTATE 23505 (PostgreSQL) and SQLite's extended codes: a unique key another attempt wrote first.
_UNIQUE_VIOLATIONS = {"23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}


def refuse(error_type: str, message: str, *details: object, benign: bool = True) -> ApplicationError:
    """A business refusal: non-retryable, with a typed `type` the workflow can branch on. Benign (an
    expected outcome such as a declined card): the worker logs it as one line, without a traceback;
    `benign=False` for refusals that point at a bug and deserve the warning with its traceback."""
    category = ApplicationErrorCategory.BENIGN if benign else ApplicationErrorCategory.UNSPECIFIED
    return ApplicationError(message, *details, type=error_type, non_retryable=True, category=category)


def refuses_bad_data(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a database error that no retry can fix into a business refusal (`ErrorType.invalid_data`).

    Refused: `DataError` (a number out of range, a string too long, a malformed value), an
    `IntegrityError` other than a unique-key race (NOT NULL, CHECK, foreign key), and what the drivers
    raise before the statement reaches the database: a NUL in a string (psycopg2), a lone surrogate, an
    integer beyond 64 bits (sqlite3). Retried as before: a unique-key violation (a concurrent attempt
    wrote the row first; the retry finds it) and everything else, such as `OperationalError`
    (connection lost, serialization failure, deadlock). Put it under `@activity.defn`."""

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise
            raise _bad_data(_first_line(exc.orig)) from exc
        except DataError as exc:
            raise _bad_data(_first_line(exc.orig)) from exc
        except (OverflowError, UnicodeEncodeError) as exc:
            raise _bad_data(_first_line(exc)) from exc
        except ValueError as exc:
            # psycopg2: "A string literal cannot contain NUL (0x00) characters."
            if "NUL (0x00)" not in str(exc):
                raise
            raise _bad_data(_first_line(exc)) from exc

    return guarded


def _is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return bool({getattr(orig, "pgcode", None), getattr(orig, "sqlite_errorname", None)} & _UNIQUE_VIOLATIONS)


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _bad_data(reason: str) -> ApplicationError:
    # not benign: a hole in the doors' validation, logged by the worker with its traceback
    return refuse(ErrorType.invalid_data, f"the data cannot be stored: {reason}", benign=False)
