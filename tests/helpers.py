"""Helpers for tests: unique catalog rows, order documents, placing orders, waiting for states."""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from config import Settings
from db import SessionFactory, make_engine, make_session_factory
from devtools.scratch_database import scratch_database
from domain.api_keys import Role
from domain.catalog import load_catalog
from models import tables as t
from models.catalog import CatalogFile
from models.orders import OrderInput, OrderPolicy, OrderStatus, OrderView
from services.orders import handle, order_view, place_order, policy_from

T = TypeVar("T")

# The real order data beside the project (../shared/data, read-only; see its README)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RETAIL_YEAR = SHARED_DATA / "online-retail" / "online_retail_top300.csv.gz"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def add_products(
    sessions: SessionFactory,
    stock: dict[str, int],
    price: str = "10.00",
    warehouse: str = "W1",
    weight_g: int = 250,
    **product: Any,
) -> dict[str, str]:
    """Create products with unique SKUs (name -> sku) and their stock in one warehouse."""
    skus = {name: unique(name) for name in stock}
    catalog = CatalogFile.model_validate(
        {
            "warehouses": [{"code": warehouse, "name": f"Warehouse {warehouse}"}],
            "products": [
                {
                    "sku": sku,
                    "name": f"Product {name}",
                    "price": price,
                    "currency": "EUR",
                    "weight_g": weight_g,
                    **product,
                }
                for name, sku in skus.items()
            ],
            "stock": [
                {"sku": skus[name], "warehouse": warehouse, "on_hand": qty} for name, qty in stock.items()
            ],
        }
    )
    load_catalog(sessions, catalog)
    return skus


def order_doc(lines: list[tuple[str, int]], token: str = "tok_visa", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "order_id": unique("T"),
        "channel": "web",
        "customer": {
            "id": "C-7",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+44 20 7946 0000",
        },
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 St James's Sq",
            "line2": None,
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": "GB",
        },
        "lines": [{"sku": sku, "quantity": qty} for sku, qty in lines],
        "currency": "EUR",
        "payment": {"method": "card", "token": token},
        "delivery_instructions": "Leave with the concierge",
    }
    doc.update(overrides)
    return doc


async def place(client: Client, settings: Settings, doc: dict[str, Any], **policy: timedelta) -> str:
    base = policy_from(settings)
    placement = await place_order(
        client,
        settings,
        OrderInput.model_validate(doc),
        OrderPolicy.model_validate({**base.model_dump(), **policy}),
    )
    return placement.order_id


async def eventually(
    probe: Callable[[], Awaitable[T] | T],
    check: Callable[[T], bool],
    timeout: float = 30.0,
    what: str = "condition",
    every: float = 0.1,
) -> T:
    """Poll `probe` (a query, or a plain read of in-memory state) every `every` seconds until `check`
    accepts its value; fail with the last value seen."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = probe()
        value: T = await answer if inspect.isawaitable(answer) else answer  # type: ignore[assignment]
        if check(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(every)


async def scheduled_activities(client: Client, order_id: str) -> list[str]:
    """The activities the order's run has scheduled, in order (local activities are not among them)."""
    history = await handle(client, order_id).fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def update_accepted(client: Client, order_id: str) -> bool:
    """Whether the order's run has accepted an update (one waiting for the order to act is accepted)."""
    history = await handle(client, order_id).fetch_history()
    return any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED for e in history.events
    )


async def timers(client: Client, order_id: str) -> dict[str, str]:
    """The order's timers by their summary ("return window", "delivery SLA for X-S1"), each with how it
    ended so far: `started`, `fired` or `canceled`. What a test waits for instead of sleeping past one."""
    history = await handle(client, order_id).fetch_history()
    started: dict[int, str] = {}
    ended: dict[str, str] = {}
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            (summary,) = await client.data_converter.decode([e.user_metadata.summary], [str])
            started[e.event_id] = summary
            ended[summary] = "started"
        elif e.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            ended[started[e.timer_fired_event_attributes.started_event_id]] = "fired"
        elif e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
            ended[started[e.timer_canceled_event_attributes.started_event_id]] = "canceled"
    return ended


def as_(keys: dict[Role, str], role: Role) -> dict[str, str]:
    """The Authorization header of the API key of `role` (the `api_keys` fixture)."""
    return {"Authorization": f"Bearer {keys[role]}"}


async def wait_status(client: Client, order_id: str, *statuses: str, timeout: float = 30.0) -> OrderView:
    return await eventually(lambda: order_view(client, order_id), lambda v: v.status in statuses, timeout)


def stock_of(sessions: SessionFactory, sku: str, warehouse: str = "W1") -> tuple[int, int]:
    """(on_hand, reserved)."""
    with sessions() as session:
        row = session.get(t.Stock, (sku, warehouse))
        assert row is not None
        return row.on_hand, row.reserved


def ledger(sessions: SessionFactory, order_id: str) -> dict[str, Decimal]:
    """Approved money movements of an order by kind."""
    with sessions() as session:
        rows = session.execute(
            select(t.Payment.kind, func.sum(t.Payment.amount))
            .where(t.Payment.order_id == order_id, t.Payment.status == "approved")
            .group_by(t.Payment.kind)
        ).all()
    return {kind: Decimal(total) for kind, total in rows}


def notifications(sessions: SessionFactory, order_id: str) -> list[t.Notification]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.Notification).where(t.Notification.order_id == order_id).order_by(t.Notification.id)
            )
        )


def events(sessions: SessionFactory, order_id: str) -> list[t.OrderEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.OrderEvent).where(t.OrderEvent.order_id == order_id).order_by(t.OrderEvent.seq)
            )
        )


Gate = str | tuple[str, Callable[[Any], bool]]  # an activity name, or a name and which calls to hold


def gate_activities(
    activities: list[Any], gated: Sequence[Gate]
) -> tuple[list[Any], dict[str, threading.Event]]:
    """Wrap the named activities so their calls (all, or those the predicate picks) first wait for the
    activity's gate (a threading.Event) to open. Returns the activities and the gates by name."""
    holds = dict(g if isinstance(g, tuple) else (g, lambda _arg: True) for g in gated)
    gates = {name: threading.Event() for name in holds}
    wrapped = [
        _gated(fn, gates[fn.__name__], holds[fn.__name__]) if fn.__name__ in holds else fn
        for fn in activities
    ]
    return wrapped, gates


def _gated(fn: Callable[..., Any], gate: threading.Event, hold: Callable[[Any], bool]) -> Callable[..., Any]:
    def wait(arg: Any) -> None:
        while hold(arg) and not gate.wait(timeout=0.5):
            if not activity.info().is_local:  # local activities cannot heartbeat
                activity.heartbeat()

    if inspect.iscoroutinefunction(fn):  # an async activity (a call to a party) waits off the event loop

        @functools.wraps(fn, updated=())
        async def wait_then_await(arg: Any) -> Any:
            while hold(arg) and not await asyncio.to_thread(gate.wait, 0.5):
                activity.heartbeat()
            return await fn(arg)

        return activity.defn(name=fn.__name__)(wait_then_await)

    @functools.wraps(fn, updated=())  # not __dict__: it holds the original activity definition
    def wait_then_run(arg: Any) -> Any:
        wait(arg)
        return fn(arg)

    return activity.defn(name=fn.__name__)(wait_then_run)


def assert_ledger_invariants(sessions: SessionFactory, order_id: str) -> Any:
    """The payments ledger of an order, checked after every step in the order the rows were written:
    captured + voided <= authorized (its increments too: a capture takes only what is still held; a void
    may release a part), refunded <= captured. Returns its LedgerTotals."""
    from domain.payment_ledger import ledger_totals

    with sessions() as session:
        totals = ledger_totals(session, order_id)
        rows = session.scalars(
            select(t.Payment)
            .where(t.Payment.order_id == order_id, t.Payment.status == "approved")
            .order_by(t.Payment.created_at, t.Payment.id)
        ).all()
    same = {"goodwill_refund": "refund", "increment": "authorization"}  # counted with
    running = dict.fromkeys(("authorization", "capture", "refund", "void"), Decimal(0))
    for row in rows:
        kind = same.get(row.kind, row.kind)
        running[kind] += Decimal(row.amount)
        assert running["capture"] + running["void"] <= running["authorization"], (
            f"captured + voided > authorized at {row.reference}: {[(r.kind, r.amount) for r in rows]}"
        )
        assert running["refund"] <= running["capture"], f"refunded > captured at {row.reference}"
    assert (totals.authorized, totals.captured, totals.refunded, totals.voided) == (
        running["authorization"],
        running["capture"],
        running["refund"],
        running["void"],
    )
    return totals


def stock_movements(sessions: SessionFactory, order_id: str) -> list[t.StockMovement]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.StockMovement)
                .where(t.StockMovement.order_id == order_id)
                .order_by(t.StockMovement.id)
            )
        )


def add_warehouse(sessions: SessionFactory, priority: int = 100, prefix: str = "WH") -> str:
    """A new warehouse with a unique code (warehouse rows are global: priorities of others never interfere)."""
    code = f"{prefix}{uuid.uuid4().hex[:6].upper()}"
    load_catalog(
        sessions,
        CatalogFile.model_validate(
            {"warehouses": [{"code": code, "name": f"Warehouse {code}", "priority": priority}]}
        ),
    )
    return code


def add_order_row(
    session: Session,
    order_id: str,
    customer_id: str,
    *,
    status: str,
    payment_status: str,
    placed_at: datetime,
    channel: str = "web",
    total: Decimal | None = None,
    **columns: Any,
) -> None:
    """An orders row written directly, for fixtures that need one without a workflow (its customer
    too, if not there yet); flushed, so rows that refer to it may follow in the same transaction."""
    if session.get(t.Customer, customer_id) is None:
        session.add(t.Customer(id=customer_id, name="Fixture Customer", email="fixture@example.com"))
        session.flush()
    # a Core insert of the columns given only: tests that migrate down to an older schema write rows
    # with it too, and an ORM insert names every column of today's model (issue 26's money among them)
    session.execute(
        insert(t.Order).values(
            id=order_id,
            channel=channel,
            customer_id=customer_id,
            status=status,
            payment_status=payment_status,
            currency=columns.pop("currency", "EUR"),
            total=total,
            shipping_address={"name": "x", "line1": "x", "city": "x", "postal_code": "x", "country": "GB"},
            payment_method="card",
            placed_at=placed_at,
            **columns,
        )
    )
    session.flush()


def set_stock(
    sessions: SessionFactory,
    sku: str,
    warehouse: str,
    on_hand: int,
    reorder_point: int | None = None,
    reorder_qty: int | None = None,
) -> None:
    """Set one stock row (and its reorder point) the way a catalog load does."""
    row = {"sku": sku, "warehouse": warehouse, "on_hand": on_hand}
    row |= {"reorder_point": reorder_point, "reorder_qty": reorder_qty}
    load_catalog(sessions, CatalogFile.model_validate({"stock": [row]}))


async def cli(settings: Settings, *argv: str) -> tuple[int, str]:
    """Run a command line as a person would; returns the exit status and what it printed."""
    from cli import dispatch

    out = io.StringIO()
    status = await dispatch(list(argv), settings, out)
    return status, out.getvalue()


def notification_kinds(sessions: SessionFactory, order_id: str) -> list[str]:
    """Kinds of the order's notifications, oldest first."""
    return [n.kind for n in notifications(sessions, order_id)]


async def outbox(sessions: SessionFactory, order_id: str) -> list[str]:
    """notification_kinds, awaitable, to poll with `eventually`."""
    return notification_kinds(sessions, order_id)


async def rejection(client: Client, order_id: str) -> OrderView:
    """The final view of an order that must end rejected; fails fast if it settles any other way."""
    view = await wait_status(client, order_id, *(s for s in OrderStatus if s != OrderStatus.received))
    assert view.status == OrderStatus.rejected, view.events
    return await asyncio.wait_for(handle(client, order_id).result(), timeout=30)


async def assert_stock_check_clean(settings: Settings, *skus: str) -> None:
    """`stock check` finds nothing about these SKUs. It checks the whole database, so when run after
    other test modules it may report their leftovers: then at least none of its lines are ours."""
    status, out = await cli(settings, "stock", "check")
    assert [line for line in out.splitlines() if any(sku in line for sku in skus)] == []
    if status == 0:
        assert "stock ledger check passed" in out


def suite_database(folder: Path, name: str) -> AbstractContextManager[str]:
    """A scratch database of the suite's kind (devtools/scratch_database.py): a PostgreSQL database of
    its own next to OMS_TEST_DATABASE_URL, on whatever server that names (a compose service's too), else
    the SQLite file `folder/<name>.db`; migrated, and dropped afterwards."""
    return scratch_database(os.environ.get("OMS_TEST_DATABASE_URL"), folder, name, loopback_only=False)


@contextmanager
def fresh_database(folder: Path, prefix: str) -> Iterator[tuple[str, SessionFactory]]:
    """A freshly migrated, empty database of the suite's kind, dropped afterwards: its url and sessions."""
    with suite_database(folder, f"oms_test_{prefix}") as url:
        engine = make_engine(url)
        try:
            yield url, make_session_factory(engine)
        finally:
            engine.dispose()


def money_order_doc(mug: str, lamp: str) -> dict[str, Any]:
    """An order with the whole of its money (issue 26): 3 mugs at 10.00 less a 3.00 discount, 5.40 VAT
    (32.40), a lamp at 10.00 with 2.00 VAT (12.00), shipping 5.00 with 1.00 VAT: 50.40 in all."""
    doc = order_doc([])
    doc.update(
        lines=[
            {
                "sku": mug,
                "quantity": 3,
                "unit_price": "10.00",
                "tax_lines": [{"title": "VAT", "rate": "0.2", "price": "5.40"}],
                "discount_allocations": [{"amount": "3.00"}],
            },
            {
                "sku": lamp,
                "quantity": 1,
                "unit_price": "10.00",
                "tax_lines": [{"title": "VAT", "rate": "0.2", "price": "2.00"}],
            },
        ],
        shipping_lines=[
            {
                "title": "Standard",
                "price": "5.00",
                "tax_lines": [{"title": "VAT", "rate": "0.2", "price": "1.00"}],
            }
        ],
        discount_codes=[{"code": "THREE", "amount": "3.00"}],
        total_price="50.40",
    )
    return doc
