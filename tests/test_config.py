"""Durations in settings: '30d', '6h', '500ms' and friends, the OMS_ environment variables, and the
worker's capacities."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client

from config import SandboxMode, Settings, parse_duration
from db import SessionFactory
from worker import build_worker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("6h", timedelta(hours=6)),
        ("15m", timedelta(minutes=15)),
        ("45s", timedelta(seconds=45)),
        ("500ms", timedelta(milliseconds=500)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 10 s ", timedelta(seconds=10)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (timedelta(days=1), timedelta(days=1)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["abc", "10x", "", "6 hours"])
def test_invalid_duration_says_how_to_write_one(text):
    with pytest.raises(ValueError, match=r"invalid duration .*30d, 6h, 15m, 45s or 500ms"):
        parse_duration(text)


def test_settings_read_durations_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMS_DELIVERY_SLA", "3s")
    monkeypatch.setenv("OMS_RETURN_WINDOW", "2w")
    settings = Settings()
    assert settings.delivery_sla == timedelta(seconds=3)
    assert settings.return_window == timedelta(weeks=2)
    assert settings.hold_timeout == timedelta(days=3)  # untouched default


def test_settings_refuse_an_invalid_duration(monkeypatch):
    monkeypatch.setenv("OMS_DELIVERY_SLA", "soon")
    with pytest.raises(ValueError, match="invalid duration 'soon'"):
        Settings()


def test_a_negative_bare_number_is_refused_like_minus_5s():
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("-5")


@pytest.mark.parametrize("text", ["inf", "1e400"])
def test_an_infinite_duration_is_refused_with_the_helpful_message(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# ---- the sandbox parties (OMS_SANDBOX_PARTIES) ----


def test_the_sandbox_parties_play_by_default(monkeypatch):
    for name in ("OMS_SANDBOX_PARTIES", "OMS_SANDBOX_WAREHOUSE", "OMS_SANDBOX_CARRIER"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.sandbox_parties is True
    assert (settings.sandbox_warehouse, settings.sandbox_carrier) == (SandboxMode.auto, SandboxMode.auto)


def test_without_the_sandbox_parties_the_warehouse_and_carrier_are_manual(monkeypatch):
    monkeypatch.delenv("OMS_SANDBOX_WAREHOUSE", raising=False)
    monkeypatch.setenv("OMS_SANDBOX_PARTIES", "false")
    monkeypatch.setenv("OMS_SANDBOX_CARRIER", "manual")
    settings = Settings()
    assert settings.sandbox_parties is False
    assert (settings.sandbox_warehouse, settings.sandbox_carrier) == (SandboxMode.manual, SandboxMode.manual)


@pytest.mark.parametrize("variable", ["OMS_SANDBOX_WAREHOUSE", "OMS_SANDBOX_CARRIER"])
def test_a_sandbox_party_set_to_auto_without_the_parties_is_refused(monkeypatch, variable):
    """Nothing would play it: its workflows would wait on a task queue no worker polls."""
    monkeypatch.setenv("OMS_SANDBOX_PARTIES", "false")
    monkeypatch.setenv(variable, "auto")
    with pytest.raises(ValueError, match="`auto` needs the sandbox parties, which OMS_SANDBOX_PARTIES=false"):
        Settings()


# ---- the worker's capacities (OMS_WORKER_*) ----

WORKER_CAPACITIES = [
    "OMS_WORKER_ACTIVITY_THREADS",
    "OMS_WORKER_ACTIVITIES",
    "OMS_WORKER_LOCAL_ACTIVITIES",
    "OMS_WORKER_WORKFLOW_TASKS",
    "OMS_WORKER_WORKFLOW_POLLS",
    "OMS_WORKER_ACTIVITY_POLLS",
]


@pytest.mark.parametrize("variable", WORKER_CAPACITIES)
@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_worker_capacity_below_its_least_is_refused_by_name(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be at least [12], not {value}"):
        Settings()


def test_one_workflow_task_slot_is_refused():
    """The SDK caches workflows (sticky queues): one slot would stall it, so 2 is the least."""
    with pytest.raises(ValueError, match="OMS_WORKER_WORKFLOW_TASKS must be at least 2, not 1"):
        Settings(worker_workflow_tasks=1)


async def test_the_worker_defaults_are_the_slots_it_always_had(
    client: Client, sessions: SessionFactory, settings: Settings
):
    """The SDK's 100 workflow task and local activity slots, one activity slot per thread; and no
    max_concurrent_workflow_tasks, which would resize the SDK's workflow thread pool (500 without it)."""
    # a queue of its own: the SDK refuses a second worker on a queue a running one polls
    own = settings.model_copy(update={"task_queue": f"{settings.task_queue}-defaults"})
    orders = build_worker(client, sessions, own).orders
    config = orders.config()
    assert config.get("max_concurrent_workflow_tasks") is None
    tuner = config["tuner"]
    assert tuner is not None
    slots = (
        tuner._get_workflow_task_slot_supplier(),
        tuner._get_activity_task_slot_supplier(),
        tuner._get_local_activity_task_slot_supplier(),
    )
    assert [s.num_slots for s in slots] == [100, settings.worker_activity_threads, 100]


def test_the_worker_activity_slots_can_outnumber_its_threads():
    """Async steps need no thread: more of them can be in flight than there are threads."""
    assert Settings(worker_activity_threads=8, worker_activities=64).worker_activity_slots == 64
    assert Settings(worker_activity_threads=8).worker_activity_slots == 8
