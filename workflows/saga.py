"""Saga compensation: undos registered as steps succeed, run in reverse when the order cannot go on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import search_attributes as sa
    from models.events import OrderEventType
    from models.steps import NotificationKind
    from workflows.context import OrderContext

Undo = Callable[[RetryPolicy], Awaitable[object]]


class Saga:
    def __init__(self, ctx: OrderContext) -> None:
        self._ctx = ctx
        self._undos: list[tuple[str, Undo, str | None, bool]] = []

    def push(self, what: str, undo: Undo, shipment: str | None = None) -> None:
        """Register the undo of a step that succeeded; `shipment`: the shipment it belongs to."""
        self._undos.append((what, undo, shipment, False))

    def push_safety_net(self, what: str, undo: Undo) -> None:
        """Register an undo that runs after every other one and usually finds nothing to do: it is in
        the order's events only when it returns something (units returned, say)."""
        self._undos.insert(0, (what, undo, None, True))

    async def compensate(self, keep: frozenset[str] = frozenset()) -> None:
        """Run the undos in reverse, except those of the shipments in `keep` (parcels that stay with the
        carrier or the customer). Each retries with backoff; one that still fails is an incident."""
        retry = RetryPolicy(
            initial_interval=timedelta(milliseconds=500),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=self._ctx.policy.compensation_attempts,
        )
        while self._undos:
            what, undo, shipment, quiet_if_nothing = self._undos.pop()
            if shipment is not None and shipment in keep:
                continue
            try:
                done = await undo(retry)
            except ActivityError as err:
                await self._incident(what, err)
                continue
            if done or not quiet_if_nothing:
                await self._ctx.event(OrderEventType.compensated, what)

    async def _incident(self, what: str, err: ActivityError) -> None:
        error = str(err.cause or err)
        await self._ctx.event(OrderEventType.compensation_failed, f"{what}: {error}")
        self._ctx.mark_incident()
        self._ctx.upsert(sa.NEEDS_ATTENTION.value_set(True))
        await self._ctx.notify(
            NotificationKind.compensation_failed, f"incident:{what}", to_support=True, what=what, error=error
        )
