"""Drives every order of a scenario to its end as its outside parties would, each through its door (the
client layer or the HTTP API, chaos.doors): the order source places it; support cancels it, releases
its hold, adds a note, resolves a lost parcel, authorizes a return; the manual warehouse MN reports
picks (some short), packs and handovers and books goods in; the carrier reports deliveries, losses and
parcels returned to sender; the customer gives feedback.

Faults make calls fail (the server is away, no worker answers a query or an update, the API answers
503): every call is retried until the scenario's deadline. States are read from the orders and
shipments tables by one poller for all orders (the workers mirror each change there), never by
sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from chaos.doors import ClientDoor, HttpDoor, HttpTransient, HttpWrong
from chaos.faults import log
from chaos.orders import (
    AUTO,
    BACKORDER_ROLES,
    LOST_ROLES,
    MANUAL,
    MANUAL_ROLES,
    RETURN_ROLES,
    SHORT_ROLES,
    Door,
    Plan,
    PlannedOrder,
    Role,
    policy_for,
)
from chaos.stack import Stack
from config import Settings
from models import tables as t
from models.fulfilment import PickedLine, WarehouseStep
from models.orders import OrderStatus, ReturnCondition
from models.shipping import CarrierEventType, Resolution
from services.fulfilment import ReportTooEarly
from services.orders import Refused, handle

T = TypeVar("T")
ENDED = frozenset({OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.completed})
POLL_INTERVAL = 0.3
ATTEMPT_TIMEOUT = 30.0  # seconds one call may take before it is abandoned and tried again
RETRY_PAUSE = 0.5
CONFIRM_AGAIN_AFTER = 30.0  # seconds a delivered parcel may take to show as delivered before it is sent again
BACKORDER_OFFER_AGAIN = 20.0  # seconds after booking goods in before they are offered to the order again
TRANSIENT = (RPCError, TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, HttpTransient, HttpWrong)


class Stuck(Exception):
    """An order did not get where it should before the deadline."""


@dataclass(frozen=True)
class ShipmentRow:
    id: str
    warehouse: str
    status: str
    tracking_number: str | None
    label_ref: str | None


class Board:
    """Every order's status and shipments, read from the orders and shipments tables once per poll.
    Waiters look again after each poll (an event per poll: no lock for a cancelled waiter to leave held)."""

    def __init__(self, stack: Stack, order_ids: Iterable[str]) -> None:
        self._stack, self._ids = stack, list(order_ids)
        self.status: dict[str, str] = {}
        self.shipments: dict[str, list[ShipmentRow]] = {}
        self._polled = asyncio.Event()  # set (and replaced) after each poll

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                self.status, self.shipments = await asyncio.to_thread(self._read)
            except Exception as exc:  # a read that failed (the database busy, or away): the next poll again
                failures += 1
                if failures in (1, 10, 100):
                    log(f"reading the orders' statuses failed ({failures}x): {type(exc).__name__}: {exc}")
            polled, self._polled = self._polled, asyncio.Event()
            polled.set()
            await asyncio.sleep(POLL_INTERVAL)

    def _read(self) -> tuple[dict[str, str], dict[str, list[ShipmentRow]]]:
        with self._stack.sessions() as session:
            status = dict(
                session.execute(select(t.Order.id, t.Order.status).where(t.Order.id.in_(self._ids))).all()
            )
            shipments: dict[str, list[ShipmentRow]] = {}
            rows = session.execute(
                select(
                    t.Shipment.order_id, t.Shipment.id, t.Shipment.warehouse, t.Shipment.status,
                    t.Shipment.tracking_number, t.Shipment.label_ref,
                )
                .where(t.Shipment.order_id.in_(self._ids))
                .order_by(t.Shipment.id)
            )  # fmt: skip
            for order_id, *row in rows:
                shipments.setdefault(order_id, []).append(ShipmentRow(*row))
            return status, shipments

    async def wait_for(self, found: Callable[[], T | None], deadline: float, what: Callable[[], str]) -> T:
        """`found()` once it is not None (checked at every poll); Stuck if not by `deadline`."""
        while True:
            polled = self._polled
            if (value := found()) is not None:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise Stuck(what())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(polled.wait(), left)

    async def until(self, order_id: str, statuses: Iterable[str], deadline: float) -> str:
        wanted = set(statuses)
        return await self.wait_for(
            lambda: self.status.get(order_id) if self.status.get(order_id) in wanted else None,
            deadline,
            lambda: (
                f"order {order_id} is {self.status.get(order_id, 'not recorded')}, never reached "
                + " or ".join(sorted(wanted))
            ),
        )

    async def wait(self, order_id: str, statuses: Iterable[str], deadline: float) -> str | None:
        try:
            return await self.until(order_id, statuses, deadline)
        except Stuck:
            return None


@dataclass
class DriverFigures:
    placed_again: int = 0  # a placement retried after a fault: must find the same order, never start another
    retries: int = 0  # client calls retried after a fault
    retry_causes: Counter[str] = field(default_factory=Counter)  # "<call>: <error>" -> retries
    # a call abandoned (a fault, or no answer within ATTEMPT_TIMEOUT) that had in fact taken effect:
    # its retry is refused ("already cancelled", "duplicate", "not on hold", "closed")
    took_effect_before: int = 0
    cancels_too_late: int = 0  # the order had left before the cancellation arrived: it ships instead
    asked_again: int = 0  # refused although the tables showed the order ready: asked again a moment later
    offered_again: int = 0  # goods booked in, the order still backordered: offered to it again
    off_path: int = 0  # orders that could not take their role's path (see PlannedOrder.notes)
    errors: list[str] = field(default_factory=list)  # "driven: ..." what went wrong driving an order
    placing_seconds: float = 0.0
    drained_at: float = 0.0  # monotonic time the last order ended and its workflow closed


class Driver:
    def __init__(self, stack: Stack, plan: Plan, deadline: float, return_window: Any) -> None:
        self.stack, self.plan, self.orders, self.deadline = stack, plan, plan.orders, deadline
        self.return_window = return_window
        self.board = Board(stack, (o.order_id for o in self.orders))
        self.figures = DriverFigures()
        self.settings = stack_settings(stack)
        self.client_door = ClientDoor(stack.client, self.settings, stack.sessions, stack.writes)
        self.http_door: HttpDoor | None = None
        if stack.api is not None and stack.api_keys is not None:
            self.http_door = HttpDoor(stack.api.url, stack.api_keys, stack.outage)

    def door(self, order: PlannedOrder) -> Any:
        return self.http_door if order.door == Door.http and self.http_door else self.client_door

    async def run(self, rate: float) -> None:
        """Place the orders at `rate` per second and drive each to its end; then wait for every workflow
        to close. Problems are collected in `figures.errors`, never raised."""
        poller = asyncio.create_task(self.board.run())
        started = time.monotonic()
        try:
            remaining = [len(self.orders)]

            async def one(n: int, order: PlannedOrder) -> None:
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
                try:
                    await self._place(order)
                finally:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        self.figures.placing_seconds = time.monotonic() - started
                try:
                    await self._drive(order)
                except Exception as exc:  # reported at the end; said now, for whoever watches the run
                    log(f"{order.order_id} ({order.role}) could not be driven: {_describe(exc)}")
                    raise

            results = await asyncio.gather(
                *(one(n, o) for n, o in enumerate(self.orders)), return_exceptions=True
            )
            self._collect(results)
            await self._closed()
            self.figures.drained_at = time.monotonic()
        finally:
            poller.cancel()
            if self.http_door is not None:
                await self.http_door.close()

    def _collect(self, results: list[Any]) -> None:
        for order, result in zip(self.orders, results, strict=True):
            if isinstance(result, BaseException):
                self.figures.errors.append(f"driven: {order.order_id} ({order.role}): {_describe(result)}")
        self.figures.off_path = sum(not o.on_path for o in self.orders)

    # ---- one order ----

    async def _place(self, order: PlannedOrder) -> None:
        attempts = [0]
        door = self.door(order) if order.placed_over_http else self.client_door
        policy = policy_for(order, self.plan.review_above, self.return_window)

        async def place():  # type: ignore[no-untyped-def]
            attempts[0] += 1
            return await door.place(order, policy)

        placement = await self._call(f"place {order.order_id}", place)
        if attempts[0] > 1 and not placement.created:
            self.figures.placed_again += 1  # the first attempt had started it before the fault
        elif not placement.created:
            raise AssertionError("the order id was placed before: the database is not fresh")
        if not placement.same_order:
            raise AssertionError("placing it again found another order under its id")

    async def _drive(self, order: PlannedOrder) -> None:
        oid, role, until = order.order_id, order.role, self.board.until
        if role == Role.cancel:
            await self._cancel(order)
        elif role in (Role.hold_release, Role.hold_cancel):
            if await until(oid, {OrderStatus.on_hold, *ENDED}, self.deadline) == OrderStatus.on_hold:
                await self._note(order)
                await (self._cancel(order) if role == Role.hold_cancel else self._release(order))
        elif role == Role.cancel_in_window:
            settled = {OrderStatus.confirmed, OrderStatus.picking, OrderStatus.shipped, *ENDED}
            if await until(oid, settled, self.deadline) == OrderStatus.confirmed:
                await self._cancel(order)
        elif role in BACKORDER_ROLES:
            if await until(oid, {OrderStatus.backordered, *ENDED}, self.deadline) != OrderStatus.backordered:
                order.off_path("it never backordered")
            elif role == Role.backorder_filled:
                goods = [(x.sku, x.quantity) for x in order.order.lines]
                await self._book_in(
                    order, goods, lambda: self.board.status.get(oid) != OrderStatus.backordered
                )
        parts = [self._carrier(order)]
        if role in MANUAL_ROLES:
            parts.append(self._manual_warehouse(order))
        tasks = [asyncio.create_task(part) for part in parts]
        try:
            await asyncio.gather(*tasks)
        finally:  # one failed: the others stop too (nothing left driving the order behind our back)
            for task in tasks:
                task.cancel()
        await until(oid, ENDED, self.deadline)

    # ---- support ----

    async def _cancel(self, order: PlannedOrder) -> None:
        try:
            await self._call(
                f"cancel {order.order_id}",
                lambda: self.door(order).cancel(order.order_id, "chaos: the customer changed their mind"),
            )
        except Refused as refused:
            if "can no longer be cancelled" in str(refused):
                order.off_path("the cancellation came too late", OrderStatus.completed)  # it ships instead
                self.figures.cancels_too_late += 1
            else:
                self._got_through_before(refused, "is already", "is closed")

    async def _release(self, order: PlannedOrder) -> None:
        while True:
            try:
                await self._call(
                    f"release {order.order_id}", lambda: self.door(order).release(order.order_id)
                )
                return
            except Refused as refused:
                view = await self._view(order)
                log(f"{order.order_id}: release refused ({refused}); the workflow says {view.status}")
                if view.status not in (OrderStatus.received, OrderStatus.on_hold):
                    self.figures.took_effect_before += 1  # released by an attempt we gave up on (or ended)
                    return
                await self._ask_again()  # not released yet, although the table said on_hold

    async def _note(self, order: PlannedOrder) -> None:
        try:
            await self._call(
                f"note {order.order_id}",
                lambda: self.door(order).note(order.order_id, "chaos: called the customer, all fine"),
            )
        except Refused as refused:
            log(f"{order.order_id}: note refused ({refused})")

    async def _resolve(self, order: PlannedOrder, shipment: ShipmentRow) -> None:
        choice = Resolution.reship if order.role == Role.lost_reship else Resolution.refund
        try:
            await self._call(
                f"resolve {shipment.id}",
                lambda: self.door(order).resolve(order.order_id, shipment.id, choice),
            )
        except Refused as refused:
            view = await self._view(order)
            mine = next((s for s in view.shipments if s.id == shipment.id), None)
            if mine is None or mine.status != "resolved":
                raise
            self.figures.took_effect_before += 1
            log(f"{order.order_id}: resolution refused ({refused}); it was resolved before")

    async def _return(self, order: PlannedOrder) -> bool:
        """Feedback, then a return of the first line's units, received as the role says. False: not now
        (the workflow has not seen the delivery yet)."""
        oid, door = order.order_id, self.door(order)
        line = order.order.lines[0]
        try:
            await self._call(
                f"feedback {oid}", lambda: door.feedback(oid, 4, "chaos: fine, but returning one")
            )
        except Refused as refused:
            log(f"{oid}: feedback refused ({refused})")
        try:
            rma = await self._call(
                f"return {oid}",
                lambda: door.request_return(oid, line.sku, line.quantity, "chaos: not as pictured"),
            )
        except Refused as refused:
            text = str(refused)
            view = await self._view(order)
            if view.returns:  # an attempt given up on had got through
                self.figures.took_effect_before += 1
                rma = view.returns[0].rma
            elif "window" in text and "closed" in text:
                order.off_path(f"the return came too late: {text}")
                return True
            elif "only delivered orders" in text:
                await self._ask_again()
                return False
            else:
                raise
        order.returned, order.rma = line.quantity, rma
        condition = ReturnCondition.good if order.role == Role.return_good else ReturnCondition.damaged
        await self._call(f"receipt {rma}", lambda: door.receive_return(oid, rma, condition))
        return True

    # ---- the carrier (every order) ----

    async def _carrier(self, order: PlannedOrder) -> None:
        """Deliver every parcel that left (a `delivered` event over HTTP, the confirmation otherwise); a
        lost role's first parcel is reported lost or returned to sender instead, and resolved as the role
        says; a return role's order is returned once delivered."""
        oid, role = order.order_id, order.role
        acted: dict[str, float] = {}
        lost: str | None = None
        resolved: set[str] = set()
        returned = False

        def todo() -> tuple[str, ShipmentRow | None] | None:
            status = self.board.status.get(oid)
            if status in ENDED:
                return ("end", None)
            for s in self.board.shipments.get(oid, []):
                if s.status == "shipped" and s.tracking_number:
                    if role in LOST_ROLES and order.on_path and lost is None:
                        return ("lose", s)
                    if s.id != lost and time.monotonic() - acted.get(s.id, 0.0) > CONFIRM_AGAIN_AFTER:
                        return ("deliver", s)
                if s.status == "exception" and role != Role.lost_timeout and s.id not in resolved:
                    return ("resolve", s)
            if role in RETURN_ROLES and order.on_path and not returned and status == OrderStatus.delivered:
                return ("return", None)
            return None

        while True:
            what, shipment = await self.board.wait_for(
                todo, self.deadline, lambda: f"order {oid} is {self.board.status.get(oid)}, never ended"
            )
            if what == "end":
                return
            assert what == "return" or shipment is not None
            if what == "lose":
                assert shipment is not None
                await self._lose(order, shipment)
                lost = shipment.id
            elif what == "deliver":
                assert shipment is not None
                acted[shipment.id] = time.monotonic()
                if not await self._deliver(order, shipment):
                    acted[shipment.id] = time.monotonic() - CONFIRM_AGAIN_AFTER + 1.0  # ask again in a second
            elif what == "resolve":
                assert shipment is not None
                await self._resolve(order, shipment)
                resolved.add(shipment.id)
            else:
                returned = await self._return(order)

    async def _deliver(self, order: PlannedOrder, shipment: ShipmentRow) -> bool:
        """False: refused because the workflow has not seen the handover yet (ask again)."""
        try:
            await self._call(
                f"deliver {shipment.id}",
                lambda: self.door(order).deliver(order.order_id, shipment.id, shipment.tracking_number),
            )
            return True
        except Refused:
            view = await self._view(order)
            mine = next((s for s in view.shipments if s.id == shipment.id), None)
            if view.status in ENDED or (mine is not None and mine.status == "delivered"):
                self.figures.took_effect_before += 1  # confirmed by an attempt we gave up on
                return True
            self.figures.asked_again += 1  # the table shows the handover before the workflow does
            return False

    async def _lose(self, order: PlannedOrder, shipment: ShipmentRow) -> None:
        kind = (
            CarrierEventType.returned_to_sender if order.role == Role.lost_timeout else CarrierEventType.lost
        )
        assert shipment.tracking_number is not None
        tracking = shipment.tracking_number
        while True:
            try:
                await self._call(
                    f"{kind.value} {shipment.id}",
                    lambda: self.door(order).carrier_event(
                        tracking, kind, f"chaos-{kind.value}-{shipment.id}"
                    ),
                )
                return
            except ReportTooEarly:
                await self._ask_again()
            except Refused as refused:
                if "duplicate" in str(refused) or "its case is with support" in str(refused):
                    self.figures.took_effect_before += 1
                    return
                if "has not been handed over" not in str(refused):
                    raise
                await self._ask_again()

    # ---- the manual warehouse MN (its roles) ----

    async def _manual_warehouse(self, order: PlannedOrder) -> None:
        """Each of the order's shipments released to MN: the first as the role says, the rest in full."""
        oid = order.order_id
        handled: set[str] = set()

        def todo() -> ShipmentRow | str | None:
            if self.board.status.get(oid) in ENDED:
                return "end"
            for s in self.board.shipments.get(oid, []):
                if s.warehouse == MANUAL and s.status == "released" and s.id not in handled:
                    return s
            return None

        while True:
            shipment = await self.board.wait_for(
                todo, self.deadline, lambda: f"order {oid} is {self.board.status.get(oid)}, never ended"
            )
            if isinstance(shipment, str):
                return
            first = not handled
            handled.add(shipment.id)
            if await self._work(order, shipment, first):
                return  # cancelled

    async def _work(self, order: PlannedOrder, shipment: ShipmentRow, first: bool) -> bool:
        """Pick, pack and hand over one shipment; True when the role cancels the order on the way."""
        role, on_path = order.role, order.on_path
        door = self.door(order)
        await self._listed(order, shipment)
        lines: list[PickedLine] = []
        if first and role in SHORT_ROLES:
            line = order.order.lines[0]
            lines = [PickedLine(sku=line.sku, quantity=line.quantity - 1)]
        units = sum(x.quantity for x in order.order.lines)
        parcels = [min(500 * units, 1_000_000)]
        if role == Role.manual and door is self.client_door:  # one report confirming the pick and the pack
            await self._report(order, shipment, WarehouseStep.packed, lines, parcels)
        else:
            await self._report(order, shipment, WarehouseStep.picked, lines, [])
            if first and on_path and role == Role.cancel_after_pick:
                await self._cancel(order)
                if order.on_path:
                    return True
            if first and on_path and role == Role.short_backorder:
                await self._short_backorder(order)
            await self._report(order, shipment, WarehouseStep.packed, [], parcels)
        if first and order.on_path and role == Role.cancel_after_pack:
            await self._cancel(order)
            if order.on_path:
                return True
        await self._report(order, shipment, WarehouseStep.handed_over, [], [])
        return False

    async def _listed(self, order: PlannedOrder, shipment: ShipmentRow) -> None:
        """The shipment is in MN's queue, as the warehouse's own system would find it."""
        door = self.door(order)
        while shipment.id not in await self._call(f"queue {MANUAL}", lambda: door.queue(MANUAL)):
            await self._ask_again()

    async def _report(
        self,
        order: PlannedOrder,
        shipment: ShipmentRow,
        step: WarehouseStep,
        lines: list[PickedLine],
        parcels: list[int],
    ) -> None:
        door = self.door(order)
        while True:
            try:
                await self._call(
                    f"{step.value} {shipment.id}", lambda: door.report(shipment.id, step, lines, parcels)
                )
                return
            except ReportTooEarly:
                await self._ask_again()
            except Refused as refused:
                text = str(refused)
                if "duplicate" in text:
                    self.figures.took_effect_before += 1
                    return
                if "out of order" in text or "not yet" in text:
                    await self._ask_again()
                    continue
                raise

    async def _short_backorder(self, order: PlannedOrder) -> None:
        """The unit not found is backordered: book one in (SP) once the order shows it; served once a
        shipment from SP joins the order."""
        if await self.board.wait(order.order_id, {OrderStatus.backordered}, time.monotonic() + 30.0) is None:
            order.off_path("the short pick never showed as backordered")
            return
        oid = order.order_id
        await self._book_in(
            order,
            [(order.order.lines[0].sku, 1)],
            lambda: any(s.warehouse == AUTO for s in self.board.shipments.get(oid, [])),
        )

    async def _book_in(
        self, order: PlannedOrder, goods: list[tuple[str, int]], served: Callable[[], bool]
    ) -> None:
        """Goods booked in at SP (no purchase order): offered to the backordered order at once; offered
        again while it is not served (an offer lost to a fault)."""
        door = self.door(order)
        for sku, quantity in goods:
            await self._call(
                f"receipt {sku}", lambda sku=sku, quantity=quantity: door.receive_stock(sku, AUTO, quantity)
            )
        skus = [sku for sku, _ in goods]
        while True:
            try:
                await self.board.wait_for(
                    lambda: True if served() or self.board.status.get(order.order_id) in ENDED else None,
                    min(self.deadline, time.monotonic() + BACKORDER_OFFER_AGAIN),
                    lambda: "not served",
                )
                return
            except Stuck:
                if time.monotonic() > self.deadline:
                    raise Stuck(
                        f"order {order.order_id} was never served the goods booked in for it"
                    ) from None
            self.figures.offered_again += 1
            await self._call(f"offer {order.order_id}", lambda: self.client_door.offer_stock(skus))

    # ---- helpers ----

    async def _view(self, order: PlannedOrder) -> Any:
        return await self._call(f"view {order.order_id}", lambda: self.door(order).view(order.order_id))

    async def _ask_again(self) -> None:
        """The workflow refused a call that the tables said it was ready for (on hold, shipped, released).
        Seen around a worker's death: the table is written by the workflow task's local activity, and
        that task may not have completed (the worker died; it runs again), or the call was validated
        against the state before the task's news. A second later the workflow is there: ask again."""
        self.figures.asked_again += 1
        if time.monotonic() > self.deadline:
            raise Stuck("the workflow never reached the state the tables showed")
        await asyncio.sleep(1.0)

    def _got_through_before(self, refused: Refused, *answers: str) -> None:
        """A retried call refused as "already cancelled" or "closed": an attempt we gave up on had taken
        effect. The final check sees whether it did."""
        if not any(answer in str(refused) for answer in answers):
            raise refused
        self.figures.took_effect_before += 1

    async def _closed(self) -> None:
        """Every workflow has closed, and completed (not failed, terminated or timed out)."""
        limit = asyncio.Semaphore(20)

        async def closed(order: PlannedOrder) -> None:
            async with limit:
                while True:
                    description = await self._call(
                        f"describe {order.order_id}", handle(self.stack.client, order.order_id).describe
                    )
                    if description.status != WorkflowExecutionStatus.RUNNING:
                        break
                    if time.monotonic() > self.deadline:
                        raise Stuck(f"the workflow of {order.order_id} is still running")
                    await asyncio.sleep(1.0)
            if description.status != WorkflowExecutionStatus.COMPLETED:
                name = description.status.name if description.status else "unknown"
                raise AssertionError(f"its workflow closed as {name}")

        failed = {line.split()[1] for line in self.figures.errors}  # "driven: <id> ...": never to close
        waited = [o for o in self.orders if o.order_id not in failed]
        results = await asyncio.gather(*(closed(o) for o in waited), return_exceptions=True)
        for order, result in zip(waited, results, strict=True):
            if isinstance(result, BaseException):
                self.figures.errors.append(f"driven: {order.order_id} ({order.role}): {_describe(result)}")

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Call until it answers; transient failures (faults) are retried until the deadline."""
        while True:
            try:
                async with asyncio.timeout(ATTEMPT_TIMEOUT):
                    return await call()
            except TRANSIENT as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # the SDK turns a cancellation into its error
                    raise asyncio.CancelledError() from exc
                if time.monotonic() > self.deadline:
                    raise Stuck(f"{what}: still failing at the deadline ({_describe(exc)})") from None
                self.figures.retries += 1
                if isinstance(exc, RPCError):
                    cause = f"{exc.status.name} {exc.message[:60]!r}"
                elif isinstance(exc, HttpTransient):
                    cause = f"HTTP {exc.status}"
                else:
                    cause = type(exc).__name__
                self.figures.retry_causes[f"{what.split()[0]}: {cause}"] += 1
                await asyncio.sleep(RETRY_PAUSE)


def stack_settings(stack: Stack) -> Settings:
    return Settings(
        temporal_address=stack.server.address,
        database_url=stack.database_url,
        task_queue=stack.task_queue,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
