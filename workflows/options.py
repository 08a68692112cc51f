"""Retry policies and timeouts shared by the workflows."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# The outside world fails transiently: retry with backoff, forever; business refusals are
# non-retryable ApplicationErrors and stop the retries at once.
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
STEP_TIMEOUT = timedelta(seconds=30)
LOCAL_STEP_TIMEOUT = timedelta(seconds=10)
