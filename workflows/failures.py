"""How an order's steps fail, read once: a business refusal, data the database refuses, a shortage,
and the order's own end (`OrderFailed`). A leaf: it imports only the models."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, RetryState

with workflow.unsafe.imports_passed_through():
    from models.events import REFUSAL_CODES, ReasonCode
    from models.orders import OrderStatus
    from models.steps import ErrorType

_BUSINESS_ERRORS = frozenset(v for k, v in vars(ErrorType).items() if not k.startswith("_"))


class OrderFailed(Exception):
    """A business refusal or a cancellation: the order ends with `status` after compensation."""

    def __init__(
        self,
        status: OrderStatus,
        reason: str,
        by: str | None = None,
        from_temporal: bool = False,
        code: ReasonCode = ReasonCode.invalid_order,
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.by = status, reason, by  # by: who asked, for a cancellation
        self.code = code  # the reason as a code: stored with the event that ends the order
        # a cancellation requested from Temporal itself (Web UI, `temporal workflow cancel`): parcels
        # already handed to the carrier are kept rather than undone (see OrderWorkflow._end)
        self.from_temporal = from_temporal


def business_refusal(err: ActivityError) -> str | None:
    """The message of a non-retryable business refusal behind an activity failure, else None."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type in _BUSINESS_ERRORS:
        return cause.message
    return None


def refusal_code(err: ActivityError) -> ReasonCode:
    """The reason code of a business refusal: its ErrorType's, or the finer one an InvalidOrder refusal
    names in its first detail (`{"reason_code": ...}`: an unknown SKU, a price that differs)."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return ReasonCode.invalid_order
    if cause.type == ErrorType.invalid_order and cause.details and isinstance(cause.details[0], dict):
        with contextlib.suppress(ValueError):
            return ReasonCode(str(cause.details[0].get("reason_code")))
    return REFUSAL_CODES.get(cause.type or "", ReasonCode.invalid_order)


def invalid_data(err: ActivityError) -> str | None:
    """Why the database refused a step's data for good (`ErrorType.invalid_data`), else None."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == ErrorType.invalid_data:
        return cause.message
    return None


def shortage(err: ActivityError) -> dict[str, Any]:
    """What an OutOfStock refusal says is short, and how much of it is on order (its first detail)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == ErrorType.out_of_stock and cause.details:
        return dict(cause.details[0])
    return {}


def as_activity_error(exc: FailureError, activity: Callable[..., Any]) -> ActivityError:
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


def error_text(err: ActivityError) -> str:
    """The last error of a failed step, as support reads it."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return f"{cause.type}: {cause.message}"
    return str(cause or err)
