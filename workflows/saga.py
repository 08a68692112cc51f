"""Saga compensation: undos registered as steps succeed, run in reverse when the order cannot go on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import search_attributes as sa
    from workflows.context import OrderContext

Undo = Callable[[RetryPolicy], Awaitable[object]]


class Saga:
    def __init__(self, ctx: OrderContext) -> None:
        self._ctx = ctx
        self._undos: list[tuple[str, Undo]] = []

    def push(self, what: str, undo: Undo) -> None:
        self._undos.append((what, undo))

    async def compensate(self) -> None:
        """Run the undos in reverse. Each retries with backoff; one that still fails is an incident."""
        retry = RetryPolicy(
            initial_interval=timedelta(milliseconds=500),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=self._ctx.policy.compensation_attempts,
        )
        while self._undos:
            what, undo = self._undos.pop()
            try:
                await undo(retry)
            except ActivityError as err:
                await self._incident(what, err)
                continue
            await self._ctx.event("compensated", what)

    async def _incident(self, what: str, err: ActivityError) -> None:
        error = str(err.cause or err)
        await self._ctx.event("compensation_failed", f"{what}: {error}")
        workflow.upsert_search_attributes([sa.NEEDS_ATTENTION.value_set(True)])
        await self._ctx.notify(
            "compensation_failed", f"incident:{what}", to_support=True, what=what, error=error
        )
