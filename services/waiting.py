"""Waiting on Temporal client calls for a bounded time, without leaving unretrieved errors behind.

The SDK turns the cancellation of an RPC into its own error (WorkflowUpdateRPCTimeoutOrCancelledError)
and puts the failure of an update-with-start on the start operation as well. `asyncio.wait_for`,
itself cancelled (a client that hung up, a shutdown), leaves the first unretrieved, and nobody looks
at the second: asyncio then logs "Task/Future exception was never retrieved" with a traceback for
what was an ordinary timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio.client import Client, WithStartWorkflowOperation

T = TypeVar("T")


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # marks it retrieved; the caller has already acted on the outcome


async def within(call: Awaitable[T], seconds: float) -> T:
    """The call's result, or TimeoutError once `seconds` have passed (the call is then cancelled).
    An error of the call itself is raised as it is."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(_retrieve)  # whatever happens to this wait, the call's outcome is looked at
    try:
        await asyncio.wait((task,), timeout=seconds)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait((task,))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.cancelled() or task.exception() is not None:
        raise TimeoutError(f"no answer within {seconds:g}s")
    return task.result()  # it answered as it was being cancelled


async def update_with_start_within(
    client: Client,
    update: str,
    operation: WithStartWorkflowOperation[Any, Any],
    result_type: type[T],
    seconds: float,
) -> T:
    """`within` for an update-with-start; the start's outcome is looked at when the update fails."""
    try:
        return await within(
            client.execute_update_with_start_workflow(
                update, start_workflow_operation=operation, result_type=result_type
            ),
            seconds,
        )
    except BaseException:
        await _see_start(operation)
        raise


async def _see_start(operation: WithStartWorkflowOperation[Any, Any]) -> None:
    """The failure is the update's to report: the start's outcome is only marked seen. It is already
    there, unless the start was never sent: no waiting."""
    seen = asyncio.ensure_future(operation.workflow_handle())
    seen.add_done_callback(_retrieve)
    await asyncio.sleep(0)  # one turn of the loop: enough to read an outcome that is there
    seen.cancel()
