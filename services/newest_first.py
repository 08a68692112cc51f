"""Workflows newest first by start time, running and closed alike, from Temporal visibility.

Temporal's SQL visibility (the dev server's, and PostgreSQL's or MySQL's in production) refuses
`ORDER BY` and lists every running workflow before every closed one, the closed ones by close time:
an order placed a minute ago and already rejected came after one placed last month and still on its
way. So a page asks twice, for the running and for the closed ones, and merges them by start time
(the order's placement), then workflow id; the page token is the position of its last order.

- Running ones come newest start first: the first `want` after the position are the newest.
- Closed ones come by close time, newest first, and a workflow closes after it starts: once the close
  time of the next one is before the start of the `want`-th newest seen so far, nothing further down
  can be newer. So the scan reads the orders closed since that start (recent cancellations and
  rejections, orders completed lately), not the whole history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowExecution

# how many closed workflows one visibility call returns while scanning for the newest
_CLOSED_SCAN_PAGE = 200


class BadPosition(ValueError):
    """A page position that does not read as one (the page token names it)."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a page ended: its last workflow's start time and id (the order of the list)."""

    started_at: datetime
    workflow_id: str

    def encode(self) -> bytes:
        return f"{self.started_at.isoformat()}|{self.workflow_id}".encode()

    @classmethod
    def decode(cls, raw: bytes) -> Position:
        try:
            when, workflow_id = raw.decode().split("|", 1)
            started_at = datetime.fromisoformat(when)
        except ValueError:
            raise BadPosition() from None
        if started_at.tzinfo is None or not workflow_id:
            raise BadPosition()
        return cls(started_at, workflow_id)


def position_of(execution: WorkflowExecution) -> Position:
    return Position(execution.start_time, execution.id)


async def newest_first_page(
    client: Client, query: str, page_size: int, after: Position | None = None
) -> tuple[list[WorkflowExecution], Position | None]:
    """The `page_size` newest workflows matching `query` that come after `after` (None: from the
    newest), and the position to ask for the next page from (None on the last page)."""
    want = page_size + 1  # one more than the page: is there a next one?
    narrowed = query
    if after is not None:
        # Temporal keeps nanoseconds, Python microseconds: bound one microsecond later, then compare
        # positions here (ties on the start time go by workflow id).
        narrowed += f" AND StartTime < '{_rfc3339(after.started_at + timedelta(microseconds=1))}'"
    running = await _newest_running(client, f"{narrowed} AND ExecutionStatus = 'Running'", want, after)
    closed = await _newest_closed(client, f"{narrowed} AND ExecutionStatus != 'Running'", want, after)
    # an order that closed between the two calls may be in both
    merged = sorted({e.id: e for e in [*closed, *running]}.values(), key=position_of, reverse=True)
    page = merged[:page_size]
    return page, position_of(page[-1]) if len(merged) > page_size else None


async def newest_first(client: Client, query: str) -> list[WorkflowExecution]:
    """Every workflow matching `query`, newest start first."""
    return sorted([e async for e in client.list_workflows(query)], key=position_of, reverse=True)


async def _newest_running(
    client: Client, query: str, want: int, after: Position | None
) -> list[WorkflowExecution]:
    kept: list[WorkflowExecution] = []
    async for execution in _after(client.list_workflows(query, page_size=want), after):
        # listed newest start first: past the `want`-th, only ties on its start time can still count
        if len(kept) >= want and execution.start_time < kept[want - 1].start_time:
            break
        kept.append(execution)
    return kept


async def _newest_closed(
    client: Client, query: str, want: int, after: Position | None
) -> list[WorkflowExecution]:
    kept: list[WorkflowExecution] = []
    async for execution in _after(client.list_workflows(query, page_size=_CLOSED_SCAN_PAGE), after):
        closed_at = execution.close_time or execution.start_time
        if len(kept) >= want and closed_at < kept[want - 1].start_time:
            break  # listed by close time, newest first: every one from here started before that
        kept.append(execution)
        kept.sort(key=position_of, reverse=True)
        del kept[want:]
    return kept


async def _after(
    executions: AsyncIterator[WorkflowExecution], after: Position | None
) -> AsyncIterator[WorkflowExecution]:
    async for execution in executions:
        if after is None or position_of(execution) < after:
            yield execution


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
