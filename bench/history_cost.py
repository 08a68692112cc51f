"""What one workflow run costs Temporal, read from its history: events, workflow tasks, steps, and the
actions Temporal Cloud would bill (https://docs.temporal.io/cloud/actions).

For an order the count stops at the first point the order reached a status (by default `shipped`): the
first UPSERT_WORKFLOW_SEARCH_ATTRIBUTES event that sets OrderStatus to it, included. A run that never
upserts that status is counted whole (a bare benchmark workflow, for instance).

Billable actions, as Temporal Cloud counts them:
- the workflow started: 1;
- every activity scheduled: 1, and every retry of it: attempt - 1 (read on ACTIVITY_TASK_STARTED);
- local activities: 1 per workflow task that recorded any local-activity marker (all the markers of one
  workflow task are one action, however many local activities ran in it);
- every search-attribute upsert, timer started, signal received, update accepted, child workflow
  started and external signal sent: 1.
Patch (version) markers, `core_patch`, are events but not actions; nor are workflow tasks themselves,
nor the upsert of `TemporalChangeVersion` alone that the SDK writes with a patch (Temporal Cloud
exempts it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from models import search_attributes as sa

LOCAL_ACTIVITY_MARKER = "core_local_activity"
PATCH_MARKER = "core_patch"
VERSION_ATTRIBUTE = "TemporalChangeVersion"

# Events that are one billable action each (activities and local activities are counted apart).
_ONE_ACTION_EACH = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "started",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "upserts",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates_accepted",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "children_started",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signals_sent",
}


@dataclass
class HistoryCost:
    events: int = 0
    workflow_tasks: int = 0  # WORKFLOW_TASK_COMPLETED events (speculative tasks dropped leave none)
    activities: int = 0  # ACTIVITY_TASK_SCHEDULED
    activity_retries: int = 0  # sum of attempt - 1 over ACTIVITY_TASK_STARTED
    local_activities: int = 0  # `core_local_activity` markers
    local_activity_tasks: int = 0  # workflow tasks that recorded at least one of them
    other_markers: int = 0  # patch markers and any other: events, not actions
    upserts: int = 0
    version_upserts: int = 0  # upserts of TemporalChangeVersion alone (with a patch): events, not actions
    updates_accepted: int = 0
    signals: int = 0
    timers: int = 0
    children_started: int = 0
    signals_sent: int = 0
    started: int = 0
    reached: bool = False  # the status was reached (else the whole history was counted)
    _local_tasks: set[int] = field(default_factory=set, repr=False)

    @property
    def steps(self) -> int:
        """What the bare baselines copy: one no-op step per activity and per local activity."""
        return self.activities + self.local_activities

    @property
    def actions(self) -> int:
        """Temporal Cloud's billable actions (see the module's docstring)."""
        return (
            self.started
            + self.activities
            + self.activity_retries
            + self.local_activity_tasks
            + self.upserts
            + self.timers
            + self.signals
            + self.updates_accepted
            + self.children_started
            + self.signals_sent
        )

    def as_dict(self) -> dict[str, int | bool]:
        counted = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return counted | {"steps": self.steps, "actions": self.actions}


def upserted_status(event: HistoryEvent) -> str | None:
    """The OrderStatus an upsert sets (search attributes are plain JSON payloads), else None."""
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    if sa.ORDER_STATUS.name not in fields:
        return None
    value = json.loads(fields[sa.ORDER_STATUS.name].data or b"null")
    return value if isinstance(value, str) else None


def _version_only(event: HistoryEvent) -> bool:
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    return set(fields) == {VERSION_ATTRIBUTE}


def history_cost(events: Iterable[HistoryEvent], until_status: str | None = "shipped") -> HistoryCost:
    """Count the history's events up to (and including) the upsert that first sets `until_status`."""
    cost = HistoryCost()
    for event in events:
        cost.events += 1
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            cost.workflow_tasks += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            cost.activities += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            cost.activity_retries += max(0, event.activity_task_started_event_attributes.attempt - 1)
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                cost.local_activities += 1
                cost._local_tasks.add(marker.workflow_task_completed_event_id)
            else:
                cost.other_markers += 1
        if kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES and _version_only(event):
            cost.version_upserts += 1
        elif kind in _ONE_ACTION_EACH:
            name = _ONE_ACTION_EACH[kind]
            setattr(cost, name, getattr(cost, name) + 1)
        if (
            until_status is not None
            and kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
            and upserted_status(event) == until_status
        ):
            cost.reached = True
            break
    cost.local_activity_tasks = len(cost._local_tasks)
    return cost
