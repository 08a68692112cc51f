"""A deliberately incompatible build of the order workflow, for tests/test_versioning.py: the real
OrderWorkflow under the same workflow name, with one timer before its first step. Any order started
on the real code and replayed on this one fails with a nondeterminism error, so only pinning keeps
such orders alive across a deployment. A module of its own: the workflow sandbox imports it afresh."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue

from models.orders import OrderView
from models.workflow_names import ORDER_WORKFLOW
from workflows.order import OrderWorkflow

EXTRA_TIMER = "build B waits first"  # the timer's summary: how a test tells which build ran an order


@workflow.defn(name=ORDER_WORKFLOW)
class OrderWorkflowThatWaitsFirst(OrderWorkflow):
    @workflow.run
    async def run(self, request: RawValue) -> OrderView:
        await workflow.sleep(timedelta(milliseconds=10), summary=EXTRA_TIMER)
        return await super().run(request)
