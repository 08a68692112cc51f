"""The order's journal: its events, the status mirrored on the orders row, its outbox messages and its
search attributes, recorded as the flow goes and written in batches.

Events, messages and search attributes wait for the flow to pause, then go in one write (one local
activity) and one upsert: a workflow task costs one marker, not one per event. The steps
(workflows/steps.py) tell the journal when a run of local steps is under way (the write waits for it
to end) and which steps are stuck retrying (the write goes at once; the details name them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities
    from models import search_attributes as sa
    from models.events import OrderEventType, ReasonCode
    from models.orders import EventView, GoodwillReason, OrderStatus, OrderView
    from models.steps import EventBatch, EventRecord, NotificationKind, NotificationRequest
    from models.workflow_names import step_key
    from workflows.options import LOCAL_STEP_TIMEOUT, RETRY_FOREVER


@dataclass
class StepsInFlight:
    """What the journal needs to know of the order's steps (workflows/steps.py keeps it)."""

    local: int = 0  # local steps in flight: the writer waits for a run of them to end
    stuck: list[str] = field(default_factory=list)  # steps stuck retrying right now


class Journal:
    def __init__(self, view: OrderView) -> None:
        self._view = view
        self.steps = StepsInFlight()
        self._seq = 0
        self._pending = EventBatch()
        self._pending_attributes: dict[str, Any] = {}
        self._upsert_due = False  # a pending attribute that must not wait (a status, a flag)
        self._writer: asyncio.Task[None] | None = None
        self._held = False  # writes_held(): the writer waits for the block to end

    async def event(
        self,
        event_type: OrderEventType,
        detail: str = "",
        reason_code: ReasonCode | GoodwillReason | None = None,
    ) -> None:
        """Append to the live view and the audit trail, and mirror the status on the orders row."""
        self._seq += 1
        at = workflow.now()
        view = self._view
        view.events.append(EventView(at=at, type=event_type, detail=detail, reason_code=reason_code))
        workflow.set_current_details(self._details())
        record = EventRecord(
            order_id=view.order_id,
            seq=self._seq,
            at=at,
            type=event_type,
            detail=detail,
            status=view.status,
            payment_status=view.payment_status,
            total=view.total,
            reason_code=reason_code,
        )
        self._pending.events.append(record)
        self._write_soon()

    async def set_status(
        self,
        status: OrderStatus,
        event_type: OrderEventType,
        detail: str = "",
        reason_code: ReasonCode | None = None,
    ) -> None:
        if status != self._view.status:
            self._view.status = status
            self.upsert(sa.ORDER_STATUS.value_set(status.value))
        await self.event(event_type, detail, reason_code)

    def upsert(self, update: Any, with_next_status: bool = False) -> None:
        """Set a search attribute with this workflow task's other changes, in one upsert (the last value
        of each attribute wins). `with_next_status`: a figure that may wait to go along with the next
        status change (one upsert, one action less)."""
        self._pending_attributes[update.key.name] = update
        if not with_next_status:
            self._upsert_due = True
            self._write_soon()

    async def notify(
        self, kind: NotificationKind, key: str, to_support: bool = False, **context: str
    ) -> None:
        request = NotificationRequest(
            order_id=self._view.order_id,
            kind=kind,
            idempotency_key=step_key(workflow.info().workflow_id, f"notify:{key}"),
            context=context,
            to_support=to_support,
        )
        # the outbox row is written with the events that cause it; the worker's dispatcher sends it
        self._pending.notifications.append(request)
        self._write_soon()

    @contextlib.contextmanager
    def writes_held(self) -> Iterator[None]:
        """What is recorded before and during the block is written once it ends, with what follows."""
        self._held = True
        try:
            yield
        finally:
            self._held = False

    async def written(self) -> None:
        """Until everything recorded so far is in the database (an answer, the end of the run)."""
        await workflow.wait_condition(lambda: self._writer is None or self._writer.done())

    def _write_soon(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        """Once the flow pauses (it awaits a step, a report, a timer), write what it recorded meanwhile:
        one upsert and one local activity. Runs in its own task, so nothing that interrupts the flow
        (a cancellation) stops a write; writes never overlap, so the orders row ends on the last status."""
        await asyncio.sleep(0)  # a bare yield, no timer: the flow runs on to its next wait first
        # and past a run of local steps (their events join this write) and a held block, unless a step
        # is stuck retrying
        while True:
            await workflow.wait_condition(self._may_write)
            # The flow may have woken in the same pass (a report already in): one more yield lets it
            # start its next local step, whose events then join this write (a pick and a pack confirmed
            # by one report made two writes in one workflow task)
            await asyncio.sleep(0)
            if self._may_write():
                break
        while self._upsert_due or self._pending.events or self._pending.notifications:
            if self._upsert_due:
                workflow.upsert_search_attributes(list(self._pending_attributes.values()))
                self._pending_attributes, self._upsert_due = {}, False
            if not (self._pending.events or self._pending.notifications):
                continue
            batch, self._pending = self._pending, EventBatch()
            await workflow.execute_local_activity_method(
                OrderActivities.record_events,
                batch,
                start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                retry_policy=RETRY_FOREVER,
                summary=", ".join(e.type for e in batch.events) or "messages",
            )

    def _may_write(self) -> bool:
        return (self.steps.local == 0 and not self._held) or bool(self.steps.stuck)

    def _details(self) -> str:
        """The run's current details (the Web UI): status, payment, total, stuck steps, shipments."""
        v = self._view
        total = f"{v.total} {v.currency}" if v.total is not None else "not priced yet"
        lines = [f"**{v.status.value}** · payment {v.payment_status.value} · {total}"]
        if self.steps.stuck:
            lines.append("needs attention: stuck at " + ", ".join(self.steps.stuck) + " (still retrying)")
        lines += [
            f"- {s.id} ({s.warehouse}): {s.status.value}"
            + (f", {s.carrier} {s.tracking_number}" if s.tracking_number else "")
            for s in v.shipments
        ]
        lines += [f"- return {r.rma}: {r.status.value}" for r in v.returns]
        if v.events:  # the type only: a detail may quote the customer (a support note, an address)
            lines.append(f"last: {v.events[-1].type}")
        return "\n".join(lines)


def by_whom(by: str | None) -> str:
    """The suffix of an event detail that says who asked for it."""
    return f" (by {by})" if by else ""
