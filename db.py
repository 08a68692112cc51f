"""Database engine, sessions and migrations (SQLite embedded default, PostgreSQL in production)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from config import PROJECT_DIR
from observability.tracing import instrument_engine

# Alembic (with its templates and every dialect's DDL) costs about as much to import as SQLAlchemy
# itself: it is imported by the two functions that migrate, not by every process that opens a session.
if TYPE_CHECKING:
    from alembic.config import Config

# SQLite stores Numeric as text-backed decimals; the warning is about precision we keep by quantizing.
warnings.filterwarnings("ignore", category=sa_exc.SAWarning, message=r".*does \*not\* support Decimal.*")

SessionFactory = sessionmaker[Session]


def make_engine(url: str, read_only: bool = False, pool_size: int = 20) -> Engine:
    """The engine of the database at `url`. `read_only` (for SQLite) skips taking the write lock up
    front, so reads proceed next to writers (WAL) instead of queueing behind them. `pool_size`: the
    connections a process keeps (PostgreSQL), as many again when busy; a worker's is
    OMS_DATABASE_POOL_SIZE, sized to its activity threads (see docs/operations.md, scaling)."""
    # hide_parameters: a database error's text carries no bound values (customers' names, e-mails,
    # addresses), so no log line and no error message quotes them
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url, connect_args={"timeout": 60, "check_same_thread": False}, hide_parameters=True
        )
        _serialize_sqlite_writers(engine, take_write_lock=not read_only)
    else:
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
        )
    instrument_engine(engine)  # a span per statement when tracing (observability/tracing.py)
    return engine


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(url: str) -> None:
    """Apply all Alembic migrations (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(PROJECT_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _serialize_sqlite_writers(engine: Engine, take_write_lock: bool = True) -> None:
    """pysqlite defers BEGIN; take the write lock up front so concurrent writers queue instead of deadlocking."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # a DB-API connection: untyped
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    if not take_write_lock:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (SQLAlchemy types `Session.execute` as a plain
    `Result`; for those statements it is a cursor's, with its row count)."""
    return cast(CursorResult[Any], result).rowcount
