"""Orders through the real system, timed from the database the workflows write: placed at once until
each has shipped, placed open-loop at a given rate until each has settled, and the percentiles of it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.percentiles import nearest_rank
from models import tables as t
from models.orders import OrderInput, OrderStatus
from services.orders import SETTLING_EVENTS, place_order, policy_from

SHIPPED_OR_BEYOND = frozenset(
    {
        OrderStatus.shipped,
        OrderStatus.delivered,
        OrderStatus.partially_returned,
        OrderStatus.returned,
        OrderStatus.completed,
    }
)
# States an order does not leave without someone acting: the benchmark stops waiting for these.
STUCK = frozenset({OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.on_hold, OrderStatus.backordered})
SETTLED_FOR_BENCH = SHIPPED_OR_BEYOND | STUCK
POLL_INTERVAL = 0.25  # seconds between two looks at the database
ID_CHUNK = 500  # order ids per IN (...) list: portable, and far below any database's limit


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50 / p90 / p99 (nearest rank) / max of durations in seconds, in milliseconds; all 0 when there
    are none (a phase in which nothing was answered still gets a row in the report)."""
    values = sorted(seconds)
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    return {f"p{p}": round(nearest_rank(values, p) * 1000, 1) for p in (50, 90, 99)} | {
        "max": round(values[-1] * 1000, 1)
    }


def chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), ID_CHUNK):
        yield ids[start : start + ID_CHUNK]


def status_counts(sessions: SessionFactory, ids: list[str]) -> Counter[str]:
    """Orders per status; orders not recorded yet count as `unrecorded`."""
    counts: Counter[str] = Counter()
    with sessions() as session:
        for part in chunks(ids):
            rows = session.execute(
                select(t.Order.status, func.count()).where(t.Order.id.in_(part)).group_by(t.Order.status)
            ).all()
            counts.update({status: int(n) for status, n in rows})
    counts["unrecorded"] = len(ids) - sum(counts.values())
    return +counts  # drop zero counts


async def wait_until(
    sessions: SessionFactory, ids: list[str], done: frozenset[OrderStatus], deadline: float
) -> Counter[str]:
    """Poll the orders table (grouped counts) until every order is in one of `done`."""
    while True:
        statuses = await asyncio.to_thread(status_counts, sessions, ids)
        if sum(n for s, n in statuses.items() if s in done) == len(ids):
            return statuses
        if time.perf_counter() > deadline:
            raise TimeoutError(f"orders still on their way at the deadline: {dict(statuses)}")
        await asyncio.sleep(POLL_INTERVAL)


async def run_to_shipped(
    client: Client, settings: Settings, sessions: SessionFactory, orders: list[OrderInput], timeout: float
) -> tuple[float, Counter[str]]:
    """Seconds to place every order at once until each has shipped (or stopped); final status counts."""
    policy = policy_from(settings)
    ids = [o.order_id for o in orders if o.order_id is not None]
    started = time.perf_counter()
    placed = await asyncio.gather(*(place_order(client, settings, o, policy) for o in orders))
    if not all(p.created for p in placed):
        raise RuntimeError("some order ids were placed before: the database is not fresh")
    statuses = await wait_until(sessions, ids, SETTLED_FOR_BENCH, started + timeout)
    return time.perf_counter() - started, statuses


def as_utc(at: datetime) -> datetime:
    """The database's timestamps are UTC; SQLite hands them back without a zone."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class Settled:
    event: str  # the first settling event: order_confirmed, order_rejected, order_backordered...
    at: datetime


def settling_events(sessions: SessionFactory, ids: list[str]) -> dict[str, Settled]:
    """Each order's first settling event so far (orders not settled yet are absent)."""
    found: dict[str, Settled] = {}
    with sessions() as session:
        for part in chunks(ids):
            rows = session.execute(
                select(t.OrderEvent.order_id, t.OrderEvent.type, t.OrderEvent.at)
                .where(t.OrderEvent.order_id.in_(part), t.OrderEvent.type.in_(list(SETTLING_EVENTS)))
                .order_by(t.OrderEvent.order_id, t.OrderEvent.seq)
            ).all()
            for order_id, kind, at in rows:
                found.setdefault(order_id, Settled(kind, as_utc(at)))
    return found


async def wait_settled(sessions: SessionFactory, ids: list[str], deadline: float) -> dict[str, Settled]:
    """Poll the event log until every order has settled."""
    while True:
        found = await asyncio.to_thread(settling_events, sessions, ids)
        if len(found) == len(ids):
            return found
        if time.perf_counter() > deadline:
            waiting = [i for i in ids if i not in found]
            statuses = await asyncio.to_thread(status_counts, sessions, waiting)
            raise TimeoutError(
                f"{len(waiting)} of {len(ids)} orders not settled at the deadline: {dict(statuses)}"
            )
        await asyncio.sleep(POLL_INTERVAL)


async def place_open_loop(
    client: Client, settings: Settings, orders: list[OrderInput], rate: float
) -> dict[str, datetime]:
    """Place order i at start + i / rate whatever the earlier calls are doing (open loop: a slow
    placement does not delay the next); the wall-clock moment each call was made, by order id."""
    policy = policy_from(settings)
    called: dict[str, datetime] = {}
    start = time.perf_counter()

    async def place(order: OrderInput, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        assert order.order_id is not None
        called[order.order_id] = datetime.now(UTC)  # the server stamps events with the same clock
        await place_order(client, settings, order, policy)

    await asyncio.gather(*(place(o, start + i / rate) for i, o in enumerate(orders)))
    return called


@dataclass(frozen=True)
class LatencyRun:
    rate: float
    orders: int
    settled: dict[str, int]  # first settling event -> orders
    confirmed_ms: dict[str, float]  # placed -> confirmed, of the confirmed ones


async def latency_to_confirmed(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    orders: list[OrderInput],
    rate: float,
    timeout: float,
) -> LatencyRun:
    """Placed -> confirmed per order (its `order_confirmed` event's time minus the call's time)."""
    called = await asyncio.wait_for(place_open_loop(client, settings, orders, rate), timeout)
    found = await wait_settled(sessions, list(called), time.perf_counter() + timeout)
    latencies = [
        (s.at - called[order_id]).total_seconds()
        for order_id, s in found.items()
        if s.event == "order_confirmed"
    ]
    return LatencyRun(
        rate=round(rate, 2),
        orders=len(orders),
        settled=dict(Counter(s.event for s in found.values())),
        confirmed_ms=summary_ms(latencies),
    )
