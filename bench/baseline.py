"""The bare-engine baselines: workflows of `steps` no-op steps, one after the other, either regular
activities or local activities, run N at once on the benchmark's own server.

An order's throughput only means something next to what the same engine does with the same number of
steps and no business in them: the ratio OMS orders/s ÷ baseline workflows/s (higher is better) cancels
out the machine and its load, which on a shared 2-core machine move every absolute figure.
"""

from __future__ import annotations

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import asyncio
    import time
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import dataclass
    from enum import StrEnum

    from temporalio.client import Client
    from temporalio.worker import Worker

    from worker import workflow_runner
    from workflows.options import LOCAL_STEP_TIMEOUT, RETRY_FOREVER, STEP_TIMEOUT


class StepKind(StrEnum):
    regular = "regular"
    local = "local"


@activity.defn
def noop_step(n: int) -> int:
    """Sync, like the OMS activities: it runs on the worker's thread pool."""
    return n


@workflow.defn
class RegularStepsWorkflow:
    @workflow.run
    async def run(self, steps: int) -> int:
        for n in range(steps):
            await workflow.execute_activity(
                noop_step, n, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY_FOREVER
            )
        return steps


@workflow.defn
class LocalStepsWorkflow:
    @workflow.run
    async def run(self, steps: int) -> int:
        for n in range(steps):
            await workflow.execute_local_activity(
                noop_step, n, start_to_close_timeout=LOCAL_STEP_TIMEOUT, retry_policy=RETRY_FOREVER
            )
        return steps


WORKFLOW_OF = {StepKind.regular: RegularStepsWorkflow, StepKind.local: LocalStepsWorkflow}


def baseline_worker(client: Client, task_queue: str, threads: int) -> Worker:
    """Built like the OMS worker: same workflow runner, same sync-activity thread pool."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RegularStepsWorkflow, LocalStepsWorkflow],
        activities=[noop_step],
        activity_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-activity"),
        max_concurrent_activities=threads,
        workflow_runner=workflow_runner(),
    )


@dataclass(frozen=True)
class BaselineRun:
    kind: StepKind
    steps: int
    workflows: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.workflows / self.seconds if self.seconds else 0.0


async def run_baseline(
    client: Client, task_queue: str, kind: StepKind, steps: int, count: int, prefix: str | None = None
) -> BaselineRun:
    """Start `count` workflows of `steps` no-op steps at once (ids `prefix-0`...); seconds until every
    result is back."""
    prefix = prefix or f"bench-{kind.value}-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    await asyncio.gather(
        *(
            client.execute_workflow(WORKFLOW_OF[kind].run, steps, id=f"{prefix}-{n}", task_queue=task_queue)
            for n in range(count)
        )
    )
    return BaselineRun(kind, steps, count, time.perf_counter() - started)
