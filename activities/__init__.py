"""Activities: one class per concern, built with injected dependencies. Every activity is idempotent."""

from temporalio.exceptions import ApplicationError


def refuse(error_type: str, message: str, *details: object) -> ApplicationError:
    """A business refusal: non-retryable, with a typed `type` the workflow can branch on."""
    return ApplicationError(message, *details, type=error_type, non_retryable=True)
