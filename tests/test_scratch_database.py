"""devtools/scratch_database.py: the throwaway database of the tests, the benchmarks and chaos is
migrated, is its own, and is gone afterwards (on PostgreSQL when OMS_TEST_DATABASE_URL names one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from devtools.scratch_database import ScratchDatabaseError, admin_url_problem, scratch_database

POSTGRES = os.environ.get("OMS_TEST_DATABASE_URL", "")


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_sqlite_file_in_the_folder_given_stays_with_it(tmp_path: Path) -> None:
    with scratch_database(None, tmp_path, "oms_example") as url:
        assert url == f"sqlite:///{tmp_path / 'oms_example.db'}"
        assert {"orders", "alembic_version"} <= tables(url)
    assert (tmp_path / "oms_example.db").exists()  # next to a failed run's logs


def test_without_a_folder_the_sqlite_file_goes_with_its_temporary_folder() -> None:
    with scratch_database(None, None, "oms_example", migrated=False) as url:
        path = Path(make_url(url).database or "")
        assert path.name == "oms_example.db" and path.parent.is_dir()
        assert tables(url) == set()  # not migrated: the caller does it
    assert not path.parent.exists()


@pytest.mark.skipif(
    make_url(POSTGRES or "sqlite://").get_backend_name() != "postgresql", reason="PostgreSQL only"
)
def test_a_postgresql_database_of_its_own_is_dropped_even_while_connected() -> None:
    with scratch_database(POSTGRES, None, "oms_test_scratch", loopback_only=False) as url:
        name = make_url(url).database
        assert (
            name is not None and name.startswith("oms_test_scratch_") and name != make_url(POSTGRES).database
        )
        assert "orders" in tables(url)
        held = create_engine(url).connect()  # a connection left open, as a killed child's would be
    held.invalidate()
    admin = create_engine(POSTGRES)
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
    finally:
        admin.dispose()
    assert exists is None


def test_only_a_postgresql_server_on_this_machine_is_used() -> None:
    assert admin_url_problem("postgresql+psycopg2://postgres@127.0.0.1:5432/test") is None
    assert "names a PostgreSQL server" in (admin_url_problem("sqlite:///x.db") or "")
    elsewhere = "postgresql+psycopg2://postgres:secret@db.example.org/test"
    assert "only one on this machine" in (admin_url_problem(elsewhere) or "")
    assert admin_url_problem(elsewhere, loopback_only=False) is None
    with pytest.raises(ScratchDatabaseError) as refused, scratch_database(elsewhere, None, "oms_x"):
        pass
    assert "secret" not in str(refused.value)
