"""A throwaway database for one run of the tests, a benchmark or the fault-injection run: a fresh
PostgreSQL database next to the one an admin URL names (dropped afterwards), or else a SQLite file;
migrated to the latest revision unless the caller migrates it itself.

Written on SQLAlchemy (a dependency already) rather than taken from a library: sqlalchemy-utils'
create_database/drop_database would replace the two statements below, not the unique name, the SQLite
case or the migration; pytest-postgresql's janitor is for pytest fixtures only (the benchmarks and
chaos are programs) and drives psycopg 3, which the project does not use.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from db import migrate

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class ScratchDatabaseError(ValueError):
    """The admin URL names no server that a scratch database may be made on."""


def admin_url_problem(admin_url: str, *, loopback_only: bool = True) -> str | None:
    """Why no scratch database can be made next to `admin_url` (worded to follow the option's name in
    an error message), or None when one can."""
    url = make_url(admin_url)
    if url.get_backend_name() != "postgresql":
        return "names a PostgreSQL server (SQLite is the default)"
    if loopback_only and url.host not in LOOPBACK:
        # the benchmarks and the fault-injection run load the server hard: never one on another machine
        return (
            f"names a server on {url.host}: only one on this machine ({', '.join(sorted(LOOPBACK))}) is used"
        )
    return None


@contextmanager
def scratch_database(
    admin_url: str | None,
    folder: Path | None,
    name: str,
    *,
    loopback_only: bool = True,
    migrated: bool = True,
) -> Iterator[str]:
    """The URL of a new, empty database, for the duration of the `with` block:

    - with `admin_url` (a PostgreSQL server): the database `<name>_<10 hex digits>` on that server, so
      that runs side by side (CI next to a developer's tests) never meet. It is dropped afterwards WITH
      (FORCE): a connection that a stopped child process or a leaked pool still holds must not keep it.
    - without: the SQLite file `<folder>/<name>.db`, left with the folder's other output (a failed
      run's logs); with no folder, in a temporary folder removed afterwards.

    `migrated=False` leaves the schema to the caller (chaos migrates while its workers start up)."""
    if not admin_url:
        with _folder_or_temporary(folder, name) as where:
            url = f"sqlite:///{where / f'{name}.db'}"
            if migrated:
                migrate(url)
            yield url
        return
    if problem := admin_url_problem(admin_url, loopback_only=loopback_only):
        raise ScratchDatabaseError(f"{make_url(admin_url).render_as_string(hide_password=True)} {problem}")
    admin = make_url(admin_url)
    database = f"{name}_{uuid.uuid4().hex[:10]}"
    # CREATE/DROP DATABASE refuse a transaction; no pool: the admin connection is not kept open for the
    # database's whole life (the suite's scratch databases would hold one each)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        try:
            url = admin.set(database=database).render_as_string(hide_password=False)
            if migrated:
                migrate(url)
            yield url
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextmanager
def _folder_or_temporary(folder: Path | None, name: str) -> Iterator[Path]:
    if folder is not None:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"{name}-", ignore_cleanup_errors=True) as temporary:
        yield Path(temporary)
