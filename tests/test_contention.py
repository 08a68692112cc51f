"""Many concurrent orders for scarce stock, through the real worker: never oversold, nothing left behind."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlalchemy import select
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.stock import check_stock
from models import tables as t
from tests.helpers import add_products, order_doc, place, stock_of

pytestmark = pytest.mark.usefixtures("worker")

ORDERS = 200
SETTLED = ("rejected", "shipped")


async def _place_all(client: Client, settings: Settings, docs: list[dict]) -> list[str]:
    return list(await asyncio.gather(*(place(client, settings, doc) for doc in docs)))


async def _settle(sessions: SessionFactory, order_ids: list[str], timeout: float = 240) -> Counter[str]:
    """Wait until every order is rejected or shipped (the winners then wait for their delivery)."""
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as session:
            statuses = Counter(session.scalars(select(t.Order.status).where(t.Order.id.in_(order_ids))))
        if sum(statuses[s] for s in SETTLED) == len(order_ids):
            return statuses
        assert time.monotonic() < deadline, f"orders did not settle in {timeout}s: {dict(statuses)}"
        await asyncio.sleep(0.5)


def _assert_nothing_left_behind(sessions: SessionFactory, order_ids: list[str], skus: list[str]) -> None:
    # only this test's SKUs: the suite's database also holds ledgers other tests break on purpose
    assert [line for line in check_stock(sessions) if line.split("@")[0] in skus] == []
    with sessions() as session:
        active = session.scalars(
            select(t.Reservation).where(
                t.Reservation.order_id.in_(order_ids), t.Reservation.status == "active"
            )
        ).all()
        assert active == []  # winners picked theirs, losers never held any
        captured = session.scalar(
            select(t.Payment.order_id)
            .join(t.Order, t.Order.id == t.Payment.order_id)
            .where(t.Payment.kind == "capture", t.Order.status == "rejected", t.Order.id.in_(order_ids))
        )
        assert captured is None  # no money taken from an order that lost the race


async def test_concurrent_orders_never_oversell(client, settings, sessions):
    units = 25
    skus = add_products(sessions, {"HOT": units}, price="9.99")
    started = time.monotonic()
    order_ids = await _place_all(client, settings, [order_doc([(skus["HOT"], 1)]) for _ in range(ORDERS)])
    statuses = await _settle(sessions, order_ids)
    elapsed = time.monotonic() - started

    assert statuses["shipped"] == units, statuses
    assert statuses["rejected"] == ORDERS - units
    assert stock_of(sessions, skus["HOT"]) == (0, 0)  # every unit shipped exactly once, none negative
    _assert_nothing_left_behind(sessions, order_ids, [skus["HOT"]])
    print(f"\n{ORDERS} concurrent orders for {units} units settled in {elapsed:.1f}s")


async def test_orders_locking_skus_in_opposite_orders_do_not_deadlock(client, settings, sessions):
    units = 30
    skus = add_products(sessions, {"LEFT": units, "RIGHT": units}, price="5.00")
    left, right = skus["LEFT"], skus["RIGHT"]
    docs = [order_doc([(left, 1), (right, 1)] if n % 2 else [(right, 1), (left, 1)]) for n in range(ORDERS)]
    order_ids = await _place_all(client, settings, docs)
    statuses = await _settle(sessions, order_ids)

    assert statuses["shipped"] == units, statuses
    assert stock_of(sessions, left) == stock_of(sessions, right) == (0, 0)
    _assert_nothing_left_behind(sessions, order_ids, [left, right])
