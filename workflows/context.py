"""The state of one order inside its workflow, and the bookkeeping every part of it shares."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError, RetryState
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.fulfilment import FulfilmentActivities
    from activities.notifications import NotificationActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.replenishment import ReplenishmentActivities
    from models import search_attributes as sa
    from models.orders import EventView, OrderStatus, OrderView, PaymentStatus, PlaceOrder
    from models.steps import ErrorType, EventBatch, EventRecord, NotificationRequest, PaymentResult
    from models.workflow_names import step_key
    from workflows.options import (
        LOCAL_STEP_TIMEOUT,
        RETRY_FOREVER,
        STEP_TIMEOUT,
        first_phase,
        step_attention_attempts,
    )

_BUSINESS_ERRORS = frozenset(v for k, v in vars(ErrorType).items() if not k.startswith("_"))

# Database-only steps are local activities (OrderContext._activity). Calls to outside parties stay
# regular activities, with their own task queue slots, timeouts and retries: the payment gateway, the
# warehouse, the carrier and the e-mail.
OUTSIDE_PARTY_STEPS: frozenset[Callable[..., Any]] = frozenset(
    {
        PaymentActivities.authorize_payment,
        PaymentActivities.capture_payment,
        PaymentActivities.void_payment,
        PaymentActivities.refund_payment,
        FulfilmentActivities.release_shipment,
        FulfilmentActivities.book_carrier,
        FulfilmentActivities.cancel_carrier_booking,
        FulfilmentActivities.ship_shipment,
        NotificationActivities.send_notification,
    }
)


class OrderFailed(Exception):
    """A business refusal or a cancellation: the order ends with `status` after compensation."""

    def __init__(
        self, status: OrderStatus, reason: str, by: str | None = None, from_temporal: bool = False
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.by = status, reason, by  # by: who asked, for a cancellation
        # a cancellation requested from Temporal itself (Web UI, `temporal workflow cancel`): parcels
        # already handed to the carrier are kept rather than undone (see OrderWorkflow._end)
        self.from_temporal = from_temporal


def business_refusal(err: ActivityError) -> str | None:
    """The message of a non-retryable business refusal behind an activity failure, else None."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type in _BUSINESS_ERRORS:
        return cause.message
    return None


def invalid_data(err: ActivityError) -> str | None:
    """Why the database refused a step's data for good (`ErrorType.invalid_data`), else None."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == ErrorType.invalid_data:
        return cause.message
    return None


class OrderContext:
    def __init__(self, request: PlaceOrder) -> None:
        order = request.order
        self.request = request
        self.policy = request.policy
        self.view = OrderView(
            order_id=request.order_id,
            status=OrderStatus.received,
            payment_status=PaymentStatus.pending,
            channel=order.channel,
            customer_id=order.customer.id,
            currency=order.currency,
            placed_at=request.placed_at,
        )
        self.stop: OrderFailed | None = None  # set by a cancellation or a failed sibling shipment
        self.voided = False
        self._seq = 0
        # NeedsAttention: steps stuck right now, and whether a compensation gave up (never cleared)
        self.incident = False
        self._stuck: list[str] = []
        self._flagged = False
        # set by the run: interrupts the order's main flow (when it may be) once it is stopping
        self.interrupt: Callable[[], None] | None = None
        # Events, messages and search attributes wait for the flow to pause, then go in one write (one
        # local activity) and one upsert: a workflow task costs one marker, not one per event.
        self._pending = EventBatch()
        self._pending_attributes: dict[str, Any] = {}
        self._upsert_due = False  # a pending attribute that must not wait (a status, a flag)
        self._writer: asyncio.Task[None] | None = None
        self._local_steps = 0  # local steps in flight: the writer waits for a run of them to end
        self._held = False  # writes_held(): the writer waits for the block to end

    @property
    def order_id(self) -> str:
        return self.view.order_id

    def key(self, step: str) -> str:
        """Idempotency key for an outside-world request: the workflow id plus the step."""
        return step_key(workflow.info().workflow_id, step)

    def checkpoint(self) -> None:
        """Between steps: stop here if the order was cancelled or a sibling failed."""
        if self.stop is not None:
            raise self.stop

    async def step(
        self, activity: Callable[..., Any], arg: Any, summary: str, retry: RetryPolicy = RETRY_FOREVER
    ) -> Any:
        """Run one activity. With the default policy a step retries for ever, in two phases: after
        OMS_STEP_ATTENTION_ATTEMPTS failed attempts (a non-business error: business refusals are
        non-retryable and raise at once) the order is marked NeedsAttention with a `step_stuck` event,
        and the step goes on retrying; when it succeeds a `step_recovered` event clears the mark.

        Replay: a recorded step that failed `attempts` times can only come from this code (the
        forever policy never reports a retryable failure), so histories recorded before replay as
        they were. Compensations pass their own bounded policy and become incidents instead."""
        if retry is not RETRY_FOREVER:
            return await self._activity(activity, arg, summary, retry)
        attempts = step_attention_attempts()
        try:
            return await self._activity(activity, arg, summary, first_phase(attempts))
        except ActivityError as err:
            if err.retry_state != RetryState.MAXIMUM_ATTEMPTS_REACHED:
                raise  # a business refusal, or a cancellation
            error = _error_text(err)
        self._stuck.append(summary)
        self._sync_attention()
        await self.event(
            "step_stuck", f"{summary}: failed {attempts} attempts, still retrying; last error: {error}"
        )
        if self.stop is not None and self.stop.from_temporal and self.interrupt is not None:
            self.interrupt()  # stopped from Temporal meanwhile: do not wait for this step for ever
        try:
            result = await self._activity(activity, arg, summary, RETRY_FOREVER)
        except ActivityError as err:
            self._unstuck(summary)
            if (reason := business_refusal(err)) is not None:
                await self.event("step_recovered", f"{summary}: no longer retried, refused: {reason}")
            raise
        except BaseException:
            self._unstuck(summary)
            raise
        self._unstuck(summary)
        await self.event("step_recovered", f"{summary}: succeeded after being stuck")
        return result

    async def _activity(
        self, activity: Callable[..., Any], arg: Any, summary: str, retry: RetryPolicy
    ) -> Any:
        # A step interrupted by Temporal's cancellation runs to its end first, so the order knows whether
        # it happened (OrderWorkflow.run turns that cancellation into a compensated stop).
        cancellation = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        if activity not in OUTSIDE_PARTY_STEPS:
            self._local_steps += 1
            try:
                return await workflow.execute_local_activity_method(
                    activity,
                    arg,
                    start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                    retry_policy=retry,
                    summary=summary,
                    cancellation_type=cancellation,
                )
            except (CancelledError, ActivityError):
                raise
            except FailureError as exc:
                raise _as_activity_error(exc, activity) from exc
            finally:
                self._local_steps -= 1
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=retry,
            summary=summary,
            cancellation_type=cancellation,
        )

    def _unstuck(self, summary: str) -> None:
        self._stuck.remove(summary)
        self._sync_attention()

    def _sync_attention(self) -> None:
        """The NeedsAttention search attribute: set while a step is stuck; cleared when none is,
        unless a compensation gave up (an incident stays until a person settles it)."""
        wanted = bool(self._stuck) or self.incident
        if wanted != self._flagged:
            self._flagged = wanted
            self.upsert(sa.NEEDS_ATTENTION.value_set(wanted))

    def mark_incident(self) -> None:
        """A compensation gave up: the caller sets NeedsAttention (as it always has)."""
        self.incident = self._flagged = True

    async def ask_for_backordered_stock(self, skus: list[str]) -> None:
        """Make sure what a backorder waits for is on order: the purchase order it saw may have been
        received and offered before it was waiting, and nothing else would order again for it
        (replenishments are one per pair, so asking again starts nothing new)."""
        await self.step(
            ReplenishmentActivities.replenish_for_backorders,
            sorted(set(skus)),
            "make sure the backordered stock is on order",
        )

    async def step_or_fail(
        self, activity: Callable[..., Any], arg: Any, summary: str, status: OrderStatus
    ) -> Any:
        """A step whose business refusal ends the order (or the exchange) with `status`."""
        try:
            return await self.step(activity, arg, summary)
        except ActivityError as err:
            if (reason := business_refusal(err)) is not None:
                raise OrderFailed(status, reason) from err
            raise

    async def event(self, event_type: str, detail: str = "") -> None:
        """Append to the live view and the audit trail, and mirror the status on the orders row."""
        self._seq += 1
        at = workflow.now()
        self.view.events.append(EventView(at=at, type=event_type, detail=detail))
        workflow.set_current_details(self._details())
        record = EventRecord(
            order_id=self.order_id,
            seq=self._seq,
            at=at,
            type=event_type,
            detail=detail,
            status=self.view.status,
            payment_status=self.view.payment_status,
            total=self.view.total,
        )
        self._pending.events.append(record)
        self._write_soon()

    async def set_status(self, status: OrderStatus, event_type: str, detail: str = "") -> None:
        if status != self.view.status:
            self.view.status = status
            self.upsert(sa.ORDER_STATUS.value_set(status.value))
        await self.event(event_type, detail)

    def upsert(self, update: Any, with_next_status: bool = False) -> None:
        """Set a search attribute with this workflow task's other changes, in one upsert (the last value
        of each attribute wins). `with_next_status`: a figure that may wait to go along with the next
        status change (one upsert, one action less)."""
        self._pending_attributes[update.key.name] = update
        if not with_next_status:
            self._upsert_due = True
            self._write_soon()

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
        return (self._local_steps == 0 and not self._held) or bool(self._stuck)

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

    async def notify(self, kind: str, key: str, to_support: bool = False, **context: str) -> None:
        request = NotificationRequest(
            order_id=self.order_id,
            kind=kind,
            idempotency_key=self.key(f"notify:{key}"),
            context=context,
            to_support=to_support,
        )
        # the outbox row is written with the events that cause it; the worker's dispatcher sends it
        self._pending.notifications.append(request)
        self._write_soon()

    def book_payment(self, result: PaymentResult | None) -> None:
        """Keep the payment totals and the derived payment status in step with the ledger."""
        totals = self.view.payment
        if result is None:
            pass
        elif result.kind == "authorization":
            totals.authorized += result.amount
        elif result.kind == "capture":
            totals.captured += result.amount
        elif result.kind == "refund":
            totals.refunded += result.amount
        elif result.kind == "void":
            self.voided = True
        self.view.payment_status = _payment_status(
            totals.authorized, totals.captured, totals.refunded, self.voided
        )

    def _details(self) -> str:
        v = self.view
        total = f"{v.total} {v.currency}" if v.total is not None else "not priced yet"
        lines = [f"**{v.status.value}** · payment {v.payment_status.value} · {total}"]
        if self._stuck:
            lines.append("needs attention: stuck at " + ", ".join(self._stuck) + " (still retrying)")
        lines += [
            f"- {s.id} ({s.warehouse}): {s.status.value}"
            + (f", {s.carrier} {s.tracking_number}" if s.tracking_number else "")
            for s in v.shipments
        ]
        lines += [f"- return {r.rma}: {r.status.value}" for r in v.returns]
        if v.events:  # the type only: a detail may quote the customer (a support note, an address)
            lines.append(f"last: {v.events[-1].type}")
        return "\n".join(lines)


def _payment_status(authorized: Decimal, captured: Decimal, refunded: Decimal, voided: bool) -> PaymentStatus:
    if captured > 0:
        if refunded >= captured:
            return PaymentStatus.refunded
        return PaymentStatus.partially_refunded if refunded > 0 else PaymentStatus.captured
    if voided:
        return PaymentStatus.voided
    return PaymentStatus.authorized if authorized > 0 else PaymentStatus.pending


def _as_activity_error(exc: FailureError, activity: Callable[..., Any]) -> ActivityError:
    """A local activity's failure reaches the workflow as the activity's own error; the order's steps
    read every failure as a regular activity's (ActivityError, its cause and why retrying stopped)."""
    retry_state = (
        RetryState.NON_RETRYABLE_FAILURE
        if isinstance(exc, ApplicationError) and exc.non_retryable
        else RetryState.MAXIMUM_ATTEMPTS_REACHED
    )
    return ActivityError(
        f"local activity {activity.__name__} failed",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type=activity.__name__,
        activity_id="",
        retry_state=retry_state,
    )


def _error_text(err: ActivityError) -> str:
    """The last error of a failed step, as support reads it."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return f"{cause.type}: {cause.message}"
    return str(cause or err)


def by_whom(by: str | None) -> str:
    """The suffix of an event detail that says who asked for it."""
    return f" (by {by})" if by else ""


def money(amount: Decimal, currency: str) -> str:
    return f"{amount:.2f} {currency}"


def shortage(err: ActivityError) -> dict:  # type: ignore[type-arg]
    """What an OutOfStock refusal says is short, and how much of it is on order (its first detail)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == ErrorType.out_of_stock and cause.details:
        return dict(cause.details[0])
    return {}
