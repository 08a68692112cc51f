"""Drives every order of a scenario to its end through the client layer, as sources, support staff and
the carrier would (`services.orders`): place it, cancel it, release its hold, confirm its delivery.

Faults make calls fail (the server is away, no worker answers a query or an update): every call is
retried until the scenario's deadline. States are read from the orders table by one poller for all
orders (the workers mirror each status change there), never by sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from chaos.faults import log
from chaos.orders import PlannedOrder, Role
from chaos.stack import Stack
from config import Settings
from models import tables as t
from models.orders import OrderPolicy, OrderStatus, OrderView, ShipmentStatus
from services.orders import (
    Refused,
    cancel_order,
    confirm_delivery,
    handle,
    order_view,
    place_order,
    release_order,
)

T = TypeVar("T")
ENDED = frozenset({OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.completed})
ON_THE_WAY = frozenset({OrderStatus.shipped, OrderStatus.delivered})
POLL_INTERVAL = 0.3
ATTEMPT_TIMEOUT = 30.0  # seconds one call may take before it is abandoned and tried again
RETRY_PAUSE = 0.5
CONFIRM_AGAIN_AFTER = 30.0  # seconds a shipped order may take to show its confirmed delivery
TRANSIENT = (RPCError, TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError)


class Stuck(Exception):
    """An order did not get where it should before the deadline."""


class StatusBoard:
    """The status of every order of the scenario, read from the orders table in one query per poll."""

    def __init__(self, stack: Stack, order_ids: Iterable[str]) -> None:
        self._stack, self._ids = stack, list(order_ids)
        self.status: dict[str, str] = {}
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        while True:
            rows = await asyncio.to_thread(self._read)
            async with self._changed:
                self.status = rows
                self._changed.notify_all()
            await asyncio.sleep(POLL_INTERVAL)

    def _read(self) -> dict[str, str]:
        with self._stack.sessions() as session:
            return dict(
                session.execute(select(t.Order.id, t.Order.status).where(t.Order.id.in_(self._ids))).all()
            )

    async def wait(self, order_id: str, statuses: Iterable[str], deadline: float) -> str | None:
        """The order's status once it is one of `statuses`; None if it is not by `deadline`."""
        wanted = set(statuses)
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.status.get(order_id) in wanted),
                    max(0.0, deadline - time.monotonic()),
                )
            except TimeoutError:
                return None
            return self.status[order_id]

    async def until(self, order_id: str, statuses: Iterable[str], deadline: float) -> str:
        """As `wait`, but not getting there by `deadline` is Stuck."""
        wanted = set(statuses)
        if (status := await self.wait(order_id, wanted, deadline)) is None:
            raise Stuck(
                f"order {order_id} is {self.status.get(order_id, 'not recorded')}, "
                f"never reached {' or '.join(sorted(wanted))}"
            )
        return status


@dataclass
class DriverFigures:
    placed_again: int = 0  # a placement retried after a fault: must find the same order, never start another
    retries: int = 0  # client calls retried after a fault
    retry_causes: Counter[str] = field(default_factory=Counter)  # "<call>: <error>" -> retries
    # a call abandoned (a fault, or no answer within ATTEMPT_TIMEOUT) that had in fact taken effect:
    # its retry is refused ("already cancelled", "not on hold", "closed")
    took_effect_before: int = 0
    cancels_too_late: int = 0  # the order had packed before the cancellation arrived: it ships instead
    asked_again: int = 0  # refused although the orders table showed the status: asked again (_ask_again)
    errors: list[str] = field(default_factory=list)  # what the system answered that it never should
    placing_seconds: float = 0.0
    drained_at: float = 0.0  # monotonic time the last order ended and its workflow closed


class Driver:
    def __init__(
        self, stack: Stack, orders: list[PlannedOrder], policy: OrderPolicy, deadline: float
    ) -> None:
        self.stack, self.orders, self.policy, self.deadline = stack, orders, policy, deadline
        self.board = StatusBoard(stack, (o.order_id for o in orders))
        self.figures = DriverFigures()
        self.settings = stack_settings(stack)

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
                await self._drive(order)

            results = await asyncio.gather(
                *(one(n, o) for n, o in enumerate(self.orders)), return_exceptions=True
            )
            for order, result in zip(self.orders, results, strict=True):
                if isinstance(result, BaseException):
                    self.figures.errors.append(f"{order.order_id} ({order.role}): {_describe(result)}")
            await self._closed()
            self.figures.drained_at = time.monotonic()
        finally:
            poller.cancel()

    # ---- one order ----

    async def _place(self, order: PlannedOrder) -> None:
        attempts = [0]

        async def place():  # type: ignore[no-untyped-def]
            attempts[0] += 1
            return await place_order(self.stack.client, self.settings, order.order, self.policy)

        placement = await self._call(f"place {order.order_id}", place)
        if attempts[0] > 1 and not placement.created:
            self.figures.placed_again += 1  # the first attempt had started it before the fault
        elif not placement.created:
            raise AssertionError("the order id was placed before: the database is not fresh")
        if not placement.same_order:
            raise AssertionError("placing it again found another order under its id")

    async def _drive(self, order: PlannedOrder) -> None:
        oid, until = order.order_id, self.board.until
        if order.role == Role.cancel:
            await self._cancel(order)
        elif order.role in (Role.hold_release, Role.hold_cancel):
            if await until(oid, {OrderStatus.on_hold, *ENDED}, self.deadline) != OrderStatus.on_hold:
                return  # ended without being held: the final check reports it
            if order.role == Role.hold_cancel:
                await self._cancel(order)
            else:
                await self._release(order)
        if order.expected == OrderStatus.completed:
            while await until(oid, {*ON_THE_WAY, *ENDED}, self.deadline) == OrderStatus.shipped:
                await self._confirm_delivery(order)
                # a confirmation the workflow could not take (it had not durably shipped) is sent again
                repeat_at = min(self.deadline, time.monotonic() + CONFIRM_AGAIN_AFTER)
                await self.board.wait(oid, {OrderStatus.delivered, *ENDED}, repeat_at)
        await until(oid, ENDED, self.deadline)

    async def _cancel(self, order: PlannedOrder) -> None:
        try:
            await self._call(
                f"cancel {order.order_id}",
                lambda: cancel_order(
                    self.stack.client, order.order_id, "chaos: the customer changed their mind", by="chaos"
                ),
            )
        except Refused as refused:
            if "can no longer be cancelled" in str(refused):
                order.expected = OrderStatus.completed  # it had packed: it ships and completes instead
                self.figures.cancels_too_late += 1
            else:
                self._got_through_before(refused, "is already", "is closed")

    async def _release(self, order: PlannedOrder) -> None:
        while True:
            try:
                await self._call(
                    f"release {order.order_id}",
                    lambda: release_order(self.stack.client, order.order_id, by="chaos"),
                )
                return
            except Refused as refused:
                view = await self._view(order)
                log(f"{order.order_id}: release refused ({refused}); the workflow says {view.status}")
                if view.status not in (OrderStatus.received, OrderStatus.on_hold):
                    self.figures.took_effect_before += 1  # released by an attempt we gave up on (or ended)
                    return
                # Not released yet, although the table said on_hold (asking again after a release that
                # did go through is harmless: on hold, the workflow accepts it again).
                await self._ask_again()

    async def _confirm_delivery(self, order: PlannedOrder) -> None:
        while True:
            try:
                await self._call(
                    f"confirm delivery of {order.order_id}",
                    lambda: confirm_delivery(self.stack.client, order.order_id, by="chaos-carrier"),
                )
                return
            except Refused as refused:
                view = await self._view(order)
                log(
                    f"{order.order_id}: delivery confirmation refused ({refused}); the workflow says {view.status}"
                )
                if view.status in ENDED or (
                    view.shipments and all(s.status == ShipmentStatus.delivered for s in view.shipments)
                ):
                    self.figures.took_effect_before += 1  # confirmed by an attempt we gave up on
                    return
                await self._ask_again()  # not shipped yet for the workflow, although the table said so

    async def _view(self, order: PlannedOrder) -> OrderView:
        return await self._call(
            f"view {order.order_id}", lambda: order_view(self.stack.client, order.order_id)
        )

    async def _ask_again(self) -> None:
        """The workflow refused a call that the orders table said it was ready for (on hold, shipped).
        Seen around a worker's death: the table is written by the workflow task's local activity, and
        that task may not have completed (the worker died; it runs again), or the call was validated
        against the state before the task's news. A second later the workflow is there: ask again."""
        self.figures.asked_again += 1
        if time.monotonic() > self.deadline:
            raise Stuck("the workflow never reached the status the orders table showed")
        await asyncio.sleep(1.0)

    def _got_through_before(self, refused: Refused, *answers: str) -> None:
        """A retried cancellation refused as "already cancelled" or "closed": an attempt we gave up on
        had taken effect. The final check sees whether it did."""
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

        results = await asyncio.gather(*(closed(o) for o in self.orders), return_exceptions=True)
        for order, result in zip(self.orders, results, strict=True):
            if isinstance(result, BaseException):
                self.figures.errors.append(f"{order.order_id} ({order.role}): {_describe(result)}")

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
                cause = (
                    f"{exc.status.name} {exc.message[:60]!r}"
                    if isinstance(exc, RPCError)
                    else type(exc).__name__
                )
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
