"""The worker's step latency: a worker interceptor timing every attempt of every activity, local ones
included, into `oms_step_duration_seconds` (observability/metrics.py) by step and outcome.

An interceptor, not code in each activity: one place, every step, and nothing in the workflows (whose
commands must not change). The workflow's side of a step (schedule-to-start, retries' backoff) is the
SDK's metrics' (`temporal_activity_schedule_to_start_latency_seconds`, ...)."""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from observability.metrics import STEP_DURATION, StepOutcome


class StepTimings(Interceptor):
    """First in the worker's interceptors, so that it sees a refusal as the others made it."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepTimingsInbound(next)


class _StepTimingsInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        began = time.perf_counter()
        outcome = StepOutcome.failed
        try:
            result = await super().execute_activity(input)
            outcome = StepOutcome.completed
            return result
        except ApplicationError as err:
            if err.category == ApplicationErrorCategory.BENIGN:  # activities.refuse: a business answer
                outcome = StepOutcome.refused
            raise
        finally:
            step = activity.info().activity_type
            STEP_DURATION.labels(step, outcome.value).observe(time.perf_counter() - began)
