"""`starter.py catalog load FILE --if-empty`: `make run` loads the demo catalog only into a new database,
so that a second run keeps the stock and the stock movements of the first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from config import Settings
from db import SessionFactory
from models import tables as t
from tests.helpers import add_products, cli, fresh_database, stock_of, unique


@pytest.fixture
def empty_database(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, SessionFactory]]:
    """Settings for a freshly migrated database without products (of the suite's kind), and its sessions."""
    with fresh_database(tmp_path, "catalog") as (url, sessions):
        yield settings.model_copy(update={"database_url": url}), sessions


def catalog(sku: str, on_hand: int) -> dict[str, Any]:
    return {
        "warehouses": [{"code": "W1", "name": "Warehouse 1"}],
        "products": [
            {"sku": sku, "name": f"Product {sku}", "price": "9.90", "currency": "EUR", "weight_g": 100}
        ],
        "stock": [{"sku": sku, "warehouse": "W1", "on_hand": on_hand}],
    }


def write(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def movements(sessions: SessionFactory, sku: str) -> list[tuple[str, int]]:
    with sessions() as session:
        rows = session.execute(
            select(t.StockMovement.kind, t.StockMovement.on_hand_delta)
            .where(t.StockMovement.sku == sku)
            .order_by(t.StockMovement.id)
        ).all()
    return [(kind, delta) for kind, delta in rows]


async def test_if_empty_loads_into_a_database_without_products(empty_database, tmp_path):
    settings, sessions = empty_database
    sku = unique("CAT")

    status, out = await cli(
        settings, "catalog", "load", write(tmp_path / "c.json", catalog(sku, 10)), "--if-empty"
    )

    assert status == 0
    assert out.strip() == "loaded 1 warehouses, 1 products, 1 stock rows (1 levels changed)"
    assert stock_of(sessions, sku) == (10, 0)


async def test_if_empty_skips_a_database_that_has_products_and_keeps_its_stock(empty_database, tmp_path):
    """The second `make run`: stock has moved since the first load; --if-empty leaves it alone."""
    settings, sessions = empty_database
    sku = unique("CAT")
    path = write(tmp_path / "c.json", catalog(sku, 10))
    assert (await cli(settings, "catalog", "load", path, "--if-empty"))[0] == 0
    # the first run sold and counted: a cycle count set the level to 7
    assert (await cli(settings, "catalog", "load", write(tmp_path / "count.json", catalog(sku, 7))))[0] == 0
    before = movements(sessions, sku)
    assert before == [("adjust", 10), ("adjust", -3)]

    status, out = await cli(settings, "catalog", "load", path, "--if-empty")

    assert status == 0
    assert out.strip() == (
        f"skipped {path}: the database already has 1 products (--if-empty loads a catalog only into an empty one)"
    )
    assert stock_of(sessions, sku) == (7, 0)
    assert movements(sessions, sku) == before  # nothing written
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(t.Product)) == 1

    # without --if-empty the file is loaded again, as before: the level goes back to the file's
    status, out = await cli(settings, "catalog", "load", path)
    assert (status, out.strip()) == (0, "loaded 1 warehouses, 1 products, 1 stock rows (1 levels changed)")
    assert stock_of(sessions, sku) == (10, 0)


async def test_if_empty_on_the_suite_database_skips(settings, sessions, tmp_path):
    """A database in use (the suite's has products from other tests) is never reloaded."""
    sku = unique("CAT")
    add_products(sessions, {"SEED": 1})
    path = write(tmp_path / "c.json", catalog(sku, 10))

    status, out = await cli(settings, "catalog", "load", path, "--if-empty")

    assert status == 0 and out.startswith(f"skipped {path}: the database already has ")
    with sessions() as session:
        assert session.get(t.Product, sku) is None


async def test_if_empty_still_refuses_an_invalid_file(empty_database, tmp_path, capsys):
    settings, sessions = empty_database
    path = tmp_path / "bad.json"
    path.write_text('{"products": [{"sku": "X"}]}')

    status, out = await cli(settings, "catalog", "load", str(path), "--if-empty")

    assert (status, out) == (2, "")
    assert "invalid catalog file" in capsys.readouterr().err
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(t.Product)) == 0
