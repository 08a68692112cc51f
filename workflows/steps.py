"""Running one step of an order: a local or a regular activity, retried in two phases, with a stuck
step marked (the NeedsAttention search attribute, `step_stuck` / `step_recovered` events)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError, FailureError, RetryState
from temporalio.exceptions import TimeoutError as StepTimedOut
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.fulfilment import FulfilmentActivities
    from activities.notifications import NotificationActivities
    from activities.payments import PaymentActivities
    from models import search_attributes as sa
    from models.events import OrderEventType
    from models.orders import OrderStatus
    from models.steps import PaymentResult
    from workflows.failures import OrderFailed, as_activity_error, business_refusal, error_text, refusal_code
    from workflows.journal import Journal
    from workflows.options import (
        LOCAL_STEP_TIMEOUT,
        RETRY_FOREVER,
        STEP_TIMEOUT,
        first_phase,
        step_attention_attempts,
    )

# Database-only steps are local activities (Steps._activity). Calls to outside parties stay regular
# activities, with their own task queue slots, timeouts and retries: the payment gateway, the
# warehouse, the carrier and the e-mail.
OUTSIDE_PARTY_STEPS: frozenset[Callable[..., Any]] = frozenset(
    {
        PaymentActivities.authorize_payment,
        PaymentActivities.capture_payment,
        PaymentActivities.void_payment,
        PaymentActivities.refund_payment,
        PaymentActivities.refund_goodwill,
        PaymentActivities.increment_authorization,
        PaymentActivities.void_part,
        FulfilmentActivities.release_shipment,
        FulfilmentActivities.book_carrier,
        FulfilmentActivities.cancel_carrier_booking,
        FulfilmentActivities.change_address,
        FulfilmentActivities.relabel_shipment,
        FulfilmentActivities.ship_shipment,
        NotificationActivities.send_notification,
    }
)


def _out_of_tries(err: ActivityError) -> bool:
    """Whether a step's bounded first phase ended by running out of tries, not by a business refusal
    or a cancellation: its attempts ran out, or (a local step) its last attempt ran past
    LOCAL_STEP_TIMEOUT, which the SDK reports as cancelled with a timeout as the cause. That one
    happens when the database stalls, so it must not end the order: it is stuck, and retried on."""
    return err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED or isinstance(err.cause, StepTimedOut)


class Steps:
    """Runs the order's steps; records in `journal` which are running locally and which are stuck.
    `on_stuck` is called once a step is found stuck (the order may have been stopped meanwhile)."""

    def __init__(self, journal: Journal, on_stuck: Callable[[], None]) -> None:
        self._journal = journal
        self._in_flight = journal.steps
        self._on_stuck = on_stuck
        # NeedsAttention: steps stuck right now, and whether a compensation gave up (never cleared)
        self.incident = False
        self._flagged = False

    async def run(
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
            if not _out_of_tries(err):
                raise  # a business refusal, or a cancellation
            error = error_text(err)
        self._in_flight.stuck.append(summary)
        self._sync_attention()
        await self._journal.event(
            OrderEventType.step_stuck,
            f"{summary}: failed {attempts} attempts, still retrying; last error: {error}",
        )
        self._on_stuck()
        try:
            result = await self._activity(activity, arg, summary, RETRY_FOREVER)
        except ActivityError as err:
            self._unstuck(summary)
            if (reason := business_refusal(err)) is not None:
                await self._journal.event(
                    OrderEventType.step_recovered, f"{summary}: no longer retried, refused: {reason}"
                )
            raise
        except BaseException:
            self._unstuck(summary)
            raise
        self._unstuck(summary)
        await self._journal.event(OrderEventType.step_recovered, f"{summary}: succeeded after being stuck")
        return _counting_first_phase(result, attempts)

    async def run_or_fail(
        self, activity: Callable[..., Any], arg: Any, summary: str, status: OrderStatus
    ) -> Any:
        """A step whose business refusal ends the order (or the exchange) with `status`."""
        try:
            return await self.run(activity, arg, summary)
        except ActivityError as err:
            if (reason := business_refusal(err)) is not None:
                raise OrderFailed(status, reason, code=refusal_code(err)) from err
            raise

    def mark_incident(self) -> None:
        """A compensation gave up: the caller sets NeedsAttention (as it always has)."""
        self.incident = self._flagged = True

    async def _activity(
        self, activity: Callable[..., Any], arg: Any, summary: str, retry: RetryPolicy
    ) -> Any:
        # A step interrupted by Temporal's cancellation runs to its end first, so the order knows whether
        # it happened (OrderWorkflow.run turns that cancellation into a compensated stop).
        cancellation = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        if activity not in OUTSIDE_PARTY_STEPS:
            self._in_flight.local += 1
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
                raise as_activity_error(exc, activity) from exc
            finally:
                self._in_flight.local -= 1
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=retry,
            summary=summary,
            cancellation_type=cancellation,
        )

    def _unstuck(self, summary: str) -> None:
        self._in_flight.stuck.remove(summary)
        self._sync_attention()

    def _sync_attention(self) -> None:
        """The NeedsAttention search attribute: set while a step is stuck; cleared when none is,
        unless a compensation gave up (an incident stays until a person settles it)."""
        wanted = bool(self._in_flight.stuck) or self.incident
        if wanted != self._flagged:
            self._flagged = wanted
            self._journal.upsert(sa.NEEDS_ATTENTION.value_set(wanted))


def _counting_first_phase(result: Any, attempts: int) -> Any:
    """The second phase is a new activity execution whose attempts start again at 1: an answer that
    says which attempt got it (a payment's, told in its event) counts the first phase's too."""
    if isinstance(result, PaymentResult):
        return result.model_copy(update={"attempt": result.attempt + attempts})
    return result
