"""Retry policies and timeouts shared by the workflows."""

from dataclasses import replace
from datetime import timedelta
from functools import lru_cache

from temporalio.common import RetryPolicy

from config import get_settings

# The outside world fails transiently: retry with backoff, forever; business refusals are
# non-retryable ApplicationErrors and stop the retries at once.
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
STEP_TIMEOUT = timedelta(seconds=30)
LOCAL_STEP_TIMEOUT = timedelta(seconds=10)


@lru_cache
def step_attention_attempts() -> int:
    """After how many failed attempts a step marks its order NeedsAttention (OMS_STEP_ATTENTION_ATTEMPTS).

    A setting of the worker process, read once: this module is passed through the workflow sandbox, so
    workflow code never reads the environment. It only bounds the first phase of a step's retries and
    so never changes a workflow's commands on replay (a recorded failure is replayed as recorded)."""
    return get_settings().step_attention_attempts


def first_phase(attempts: int) -> RetryPolicy:
    """RETRY_FOREVER, bounded to `attempts`: the phase of a step before it counts as stuck."""
    return replace(RETRY_FOREVER, maximum_attempts=attempts)
