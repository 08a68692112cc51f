"""Status and list as orders accumulate: their times with a few orders in the system and with many.

The many are real order workflows that settle fast: each asks for a SKU the catalog does not have, so
it is recorded and rejected at validation (a real workflow, real rows). What is timed is what the
doors call: `services.orders.order_view` (the live view `starter.py status` prints: one workflow
query), `services.orders.list_orders_page` (one page from Temporal visibility, as the API lists) and
`services.orders.list_orders` (every page: what `starter.py list` reads today).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client

from bench.orders_run import wait_until
from config import Settings
from db import SessionFactory
from models.orders import Address, Channel, CustomerIn, LineIn, OrderInput, OrderStatus, PaymentIn
from services.orders import OrderFilter, list_orders, list_orders_page, order_view, place_order, policy_from

FILL_CONCURRENCY = 64  # placements in flight while filling: bounded, so the server is not flooded
UNKNOWN_SKU = "BENCH-NO-SUCH-SKU"
ALL_ORDERS = OrderFilter()


def filler_orders(start: int, count: int, prefix: str) -> list[OrderInput]:
    return [
        OrderInput(
            order_id=f"{prefix}-{n:06d}",
            channel=Channel.web,
            customer=CustomerIn(id=f"fill-{n % 500:03d}", name="Filler", email="fill@example.com"),
            shipping_address=Address(
                name="Filler", line1="Rua Exemplo 1", city="sao paulo", postal_code="01001-000", country="BR"
            ),
            lines=[LineIn(sku=UNKNOWN_SKU, quantity=1)],
            currency="BRL",
            payment=PaymentIn(token="tok_visa"),
        )
        for n in range(start, start + count)
    ]


async def fill(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    orders: list[OrderInput],
    timeout: float,
) -> float:
    """Place the orders (at most FILL_CONCURRENCY in flight) and wait until each is rejected: seconds."""
    policy = policy_from(settings)
    gate = asyncio.Semaphore(FILL_CONCURRENCY)

    async def place(order: OrderInput) -> None:
        async with gate:
            await place_order(client, settings, order, policy)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(place(o) for o in orders)), timeout)
    ids = [o.order_id for o in orders if o.order_id]
    await wait_until(sessions, ids, frozenset({OrderStatus.rejected}), started + timeout)
    return time.perf_counter() - started


async def p50_ms(call: Callable[[], Awaitable[object]], times: int) -> float:
    """Median wall time of `times` calls one after the other, in milliseconds."""
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds) * 1000, 2)


@dataclass(frozen=True)
class DoorTimes:
    orders_in_system: int
    status_live_ms: float  # order_view of a running (shipped) order
    status_closed_ms: float  # order_view of a closed (rejected) order: the worker replays its history
    list_page_ms: float  # the first page (50) of every order
    list_all_ms: float  # every page
    listed: int  # orders the last full listing returned


async def door_times(client: Client, live_id: str, closed_id: str, in_system: int, calls: int) -> DoorTimes:
    listed: list[object] = []

    async def list_all() -> None:
        listed[:] = await list_orders(client, ALL_ORDERS)

    return DoorTimes(
        orders_in_system=in_system,
        status_live_ms=await p50_ms(lambda: order_view(client, live_id), calls),
        status_closed_ms=await p50_ms(lambda: order_view(client, closed_id), calls),
        list_page_ms=await p50_ms(lambda: list_orders_page(client, ALL_ORDERS, page_size=50), calls),
        list_all_ms=await p50_ms(list_all, max(1, calls // 10)),
        listed=len(listed),
    )


@dataclass(frozen=True)
class ScaleRun:
    small: DoorTimes
    large: DoorTimes
    fill_orders: int
    fill_seconds: float

    @property
    def ratios(self) -> dict[str, float]:
        """large / small for each door (the issue asks for <= 1.5 for status and a list page)."""

        def ratio(name: str) -> float:
            small = getattr(self.small, name)
            return round(getattr(self.large, name) / small, 2) if small else 0.0

        return {n: ratio(n) for n in ("status_live_ms", "status_closed_ms", "list_page_ms", "list_all_ms")}


async def run_scale(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    live_id: str,
    small: int,
    large: int,
    calls: int,
    timeout: float,
) -> ScaleRun:
    """`live_id`: a shipped order already on this server (the only order besides the fillers)."""
    prefix = f"FILL-{time.time_ns() % 10**8:08d}"
    first = filler_orders(0, small - 1, prefix)
    await fill(client, settings, sessions, first, timeout)
    closed_id = first[0].order_id
    assert closed_id is not None
    small_times = await door_times(client, live_id, closed_id, small, calls)
    rest = filler_orders(small - 1, large - small, prefix)
    seconds = await fill(client, settings, sessions, rest, timeout)
    large_times = await door_times(client, live_id, closed_id, large, calls)
    return ScaleRun(small_times, large_times, len(rest), round(seconds, 1))
