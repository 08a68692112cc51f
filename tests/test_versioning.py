"""Worker Versioning (docs/versioning.md) on the real dev server with real workers: an order finishes on
the build that started it while new orders start on the current build, `versions` shows each build's
open orders until the old one drains, `set-current-version` moves new orders, and the settings refuse
a build id nobody could read or type."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import VersioningBehavior
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

import worker as worker_module
from cli.render import render_versions
from config import Settings
from db import SessionFactory
from models.versions import DeploymentVersions, VersionCount, VersionStatus
from services import versions
from services.orders import handle
from tests.conftest import TEST_CONVERTER
from tests.helpers import add_products, cli, eventually, order_doc, place, timers, unique, wait_status
from tests.incompatible_order import EXTRA_TIMER, OrderWorkflowThatWaitsFirst
from worker import WORKFLOWS, build_worker, workflow_runner

HELD = {"review_above": Decimal("500")}  # a 900.00 order waits on hold for `release`
StartBuild = Callable[..., Awaitable[Settings]]


@pytest.fixture
async def builds(client: Client, sessions: SessionFactory, settings: Settings) -> AsyncIterator[StartBuild]:
    """Starts versioned workers, one build each, on a task queue and a worker deployment of this test's
    own (the session's unversioned worker never sees its orders); stops them all at the end."""
    own = settings.model_copy(
        update={"task_queue": unique("orders-versioned"), "worker_deployment": unique("oms-test")}
    )
    async with AsyncExitStack() as stack:

        async def start(build_id: str, order_workflow: type = worker_module.OrderWorkflow) -> Settings:
            build = own.model_copy(update={"worker_build_id": build_id})
            with pytest.MonkeyPatch.context() as patch:  # this build's code: build_worker reads the list
                patch.setattr(
                    worker_module, "ORDER_WORKFLOWS", [order_workflow, *worker_module.ORDER_WORKFLOWS[1:]]
                )
                workers = build_worker(client, sessions, build)
            await stack.enter_async_context(workers)
            # the version exists once its worker has polled: only then can it be made current
            await eventually(lambda: _deployment(client, build), lambda d: _build(d, build_id) is not None)
            return build

        yield start


async def _deployment(client: Client, settings: Settings) -> DeploymentVersions:
    return await versions.deployment_versions(client, settings.worker_deployment)


def _build(found: DeploymentVersions, build_id: str | None) -> VersionCount | None:
    return next((v for v in found.versions if v.build_id == build_id), None)


def _open(found: DeploymentVersions) -> dict[str | None, int]:
    return {v.build_id: v.open_orders for v in found.versions if v.build_id is not None}


async def _pinned_to(client: Client, order_id: str) -> tuple[str, VersioningBehavior]:
    """The build an order's run is pinned to, and its versioning behavior, as the server routes it."""
    info = (await handle(client, order_id).describe()).raw_description.workflow_execution_info
    return info.versioning_info.deployment_version.build_id, VersioningBehavior(info.versioning_info.behavior)


async def make_current(settings: Settings, build_id: str) -> tuple[int, str]:
    """`set-current-version`, asked again while the server has not yet seen every queue of the build
    poll (a build's two workers register one after the other): a refusal changes nothing."""
    return await eventually(lambda: cli(settings, "set-current-version", build_id), lambda r: r[0] == 0)


async def test_a_running_order_finishes_on_its_build_while_new_ones_start_on_the_current(
    client, sessions, builds, capsys
):
    skus = add_products(sessions, {"TV": 5}, price="900.00")
    a = await builds("build-a")
    assert await make_current(a, "build-a") == (
        0,
        f"{a.worker_deployment}:build-a is current (before: unversioned workers); new orders start on it\n",
    )
    # placed on A, and held for review: it waits on A while the deployment moves on
    old = await place(client, a, order_doc([(skus["TV"], 1)]), return_window=timedelta(seconds=1), **HELD)
    await wait_status(client, old, "on_hold")
    assert await _pinned_to(client, old) == ("build-a", VersioningBehavior.PINNED)
    found = await eventually(lambda: _deployment(client, a), lambda d: _open(d) == {"build-a": 1})
    assert found.current_build_id == "build-a"

    # build B changes the order's commands (a timer first): it could not replay the held order
    b = await builds("build-b", OrderWorkflowThatWaitsFirst)
    status, said = await make_current(b, "build-b")
    # "before: build build-b" only when an earlier attempt was applied but answered too late for the
    # command (an RPC deadline on a loaded machine), so that the retry found it done
    assert status == 0 and said in {
        f"{b.worker_deployment}:build-b is current (before: build {before}); new orders start on it\n"
        for before in ("build-a", "build-b")
    }, said
    new = await place(client, b, order_doc([(skus["TV"], 1)]), **HELD)
    await wait_status(client, new, "on_hold")
    assert (await _pinned_to(client, new))[0] == "build-b"
    assert (await timers(client, new)).get(EXTRA_TIMER) == "fired"  # B's code ran it
    found = await eventually(
        lambda: _deployment(client, b), lambda d: _open(d) == {"build-b": 1, "build-a": 1}
    )
    assert [(v.build_id, v.status) for v in found.versions[:2]] == [
        ("build-b", VersionStatus.current),
        ("build-a", VersionStatus.draining),
    ]

    # released, delivered, its return window over: the old order completes on A, never touching B
    assert (await cli(b, "release", old))[0] == 0
    await wait_status(client, old, "shipped")
    assert (await cli(b, "deliver", old))[0] == 0
    await wait_status(client, old, "completed")
    await handle(client, old).result()
    assert (await _pinned_to(client, old))[0] == "build-a"
    history = await handle(client, old).fetch_history()
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert EXTRA_TIMER not in await timers(client, old)
    await _replays_on_its_own_build_only(client, a)

    # A has drained: `versions` says its workers may stop; B keeps the new order
    found = await eventually(
        lambda: _deployment(client, b), lambda d: _open(d) == {"build-b": 1, "build-a": 0}
    )
    drained = _build(found, "build-a")
    assert drained is not None and drained.drained and drained.open_other == 0
    status, out = await cli(b, "versions")
    assert status == 0
    assert out.startswith(f"worker deployment {b.worker_deployment}: build build-b is current\n")
    rows = [line.split() for line in out.splitlines()[2:6]]
    assert rows[0] == ["BUILD", "STATUS", "OPEN", "ORDERS", "OTHER", "OPEN"]
    assert rows[2][:3] == ["build-b", "current", "1"]
    build, state, open_orders, open_other = rows[3]
    assert (build, open_orders, open_other) == ("build-a", "0", "0")
    assert state in {"draining", "drained"}  # the server's own check runs on its own schedule
    assert "nothing open on build-a: those workers may stop" in out

    # leave nothing running on the test's queue once its workers stop
    assert (await cli(b, "cancel", new, "--reason", "test over"))[0] == 0
    await wait_status(client, new, "cancelled")


async def _replays_on_its_own_build_only(client: Client, build: Settings) -> None:
    """Build A's runs, fetched by their version the way docs/versioning.md replays a build's orders
    before a fix ships to its line, replay on A's code and fail on B's: what pinning spared them."""
    version = f"{build.worker_deployment}:{build.worker_build_id}"
    query = f"{versions.VERSION_ATTRIBUTE} = '{version}' AND WorkflowType = 'OrderWorkflow'"
    on_a = Replayer(workflows=WORKFLOWS, data_converter=TEST_CONVERTER, workflow_runner=workflow_runner())
    results = await on_a.replay_workflows(
        client.list_workflows(query).map_histories(), raise_on_replay_failure=False
    )
    assert dict(results.replay_failures) == {}
    on_b = Replayer(workflows=[OrderWorkflowThatWaitsFirst], data_converter=TEST_CONVERTER)
    results = await on_b.replay_workflows(
        client.list_workflows(query).map_histories(), raise_on_replay_failure=False
    )
    assert len(results.replay_failures) == 1
    assert all(isinstance(e, NondeterminismError) for e in results.replay_failures.values())


@pytest.mark.usefixtures("worker")
async def test_versions_counts_orders_of_unversioned_workers(client, settings, sessions):
    """Dev and tests run unversioned (no build id): their orders carry no version and `versions`
    counts them on the unversioned row; a deployment no worker has polled for has no builds."""
    skus = add_products(sessions, {"TV": 2}, price="900.00")
    order_id = await place(client, settings, order_doc([(skus["TV"], 1)]), **HELD)
    await wait_status(client, order_id, "on_hold")
    assert await _pinned_to(client, order_id) == ("", VersioningBehavior.UNSPECIFIED)
    nobody = settings.model_copy(update={"worker_deployment": unique("oms-nobody")})
    found = await eventually(lambda: _deployment(client, nobody), lambda d: _build(d, None).open_orders >= 1)
    assert found.current_build_id is None and [v.build_id for v in found.versions] == [None]
    status, out = await cli(nobody, "versions", "--json")
    assert status == 0
    listed = json.loads(out)
    assert listed["versions"][0]["status"] == "unversioned" and listed["versions"][0]["open_orders"] >= 1
    status, out = await cli(nobody, "versions")
    assert out.startswith(f"no versioned worker of deployment {nobody.worker_deployment} has polled yet\n")
    assert (await cli(settings, "cancel", order_id, "--reason", "test over"))[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["set-current-version", "bad\x07id"],
            "invalid build id 'bad\\x07id': it contains a control character",
        ),
        (["set-current-version", " "], "invalid build id: it is blank"),
        (["set-current-version", "x" * 256], "invalid build id: 256 characters, at most 255"),
        (["set-current-version", "b1", "--deployment", "oms.eu"], "must not contain a dot"),
        (["versions", "--deployment", "o\x1bms"], "contains a control character"),
    ],
)
async def test_invalid_versioning_input_exits_2(settings, capsys, argv, message):
    assert await cli(settings, *argv) == (2, "")
    assert message in capsys.readouterr().err


async def test_a_build_no_worker_has_polled_cannot_be_made_current(settings, capsys):
    nobody = settings.model_copy(update={"worker_deployment": unique("oms-nobody")})
    assert await cli(nobody, "set-current-version", "build-x") == (1, "")
    err = capsys.readouterr().err
    assert f"error: {nobody.worker_deployment}:build-x cannot be made current: " in err
    assert "no Worker Deployment found" in err


def test_only_old_builds_are_offered_for_retirement():
    """A build just deployed and not yet current has nothing open either: its workers must not stop."""
    found = DeploymentVersions(
        deployment="oms",
        current_build_id="b2",
        versions=[
            VersionCount(build_id="b3", status=VersionStatus.inactive, open_orders=0, open_other=0),
            VersionCount(build_id="b2", status=VersionStatus.current, open_orders=0, open_other=0),
            VersionCount(build_id="b1", status=VersionStatus.drained, open_orders=0, open_other=0),
            VersionCount(build_id="b0", status=VersionStatus.draining, open_orders=0, open_other=1),
            VersionCount(build_id=None, status=VersionStatus.unversioned, open_orders=0, open_other=0),
        ],
    )
    assert render_versions(found).splitlines()[-1] == "nothing open on b1: those workers may stop"


def test_without_a_build_id_the_worker_is_unversioned(monkeypatch):
    monkeypatch.delenv("OMS_WORKER_BUILD_ID", raising=False)
    assert Settings().worker_build_id is None and versions.deployment_config(Settings()) is None
    monkeypatch.setenv("OMS_WORKER_BUILD_ID", "")  # `${OMS_WORKER_BUILD_ID:-}` in a compose file
    assert Settings().worker_build_id is None


def test_a_build_id_makes_the_worker_a_pinned_version_of_the_deployment(monkeypatch):
    monkeypatch.setenv("OMS_WORKER_DEPLOYMENT", "oms-eu")
    monkeypatch.setenv("OMS_WORKER_BUILD_ID", "2026.05.1-ab12cd")
    config = versions.deployment_config(Settings())
    assert config is not None and config.use_worker_versioning
    assert (config.version.deployment_name, config.version.build_id) == ("oms-eu", "2026.05.1-ab12cd")
    assert config.default_versioning_behavior == VersioningBehavior.PINNED


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OMS_WORKER_BUILD_ID", "  ", "invalid build id: it is blank"),
        ("OMS_WORKER_BUILD_ID", "b1\tb2", "contains a control character"),
        ("OMS_WORKER_BUILD_ID", " b1", "starts or ends with a blank"),
        ("OMS_WORKER_BUILD_ID", "b" * 300, "300 characters, at most 255"),
        ("OMS_WORKER_DEPLOYMENT", "oms.eu", "must not contain a dot"),
        ("OMS_WORKER_DEPLOYMENT", "", "invalid deployment name: it is empty"),
    ],
)
def test_settings_refuse_a_build_id_or_deployment_nobody_could_use(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        Settings()
