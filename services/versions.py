"""Worker Versioning (docs/versioning.md): the worker's deployment config, which build of the worker
deployment is current, and how many open runs each build still has (its drain), from visibility.

The client layer of `starter.py versions` and `starter.py set-current-version`.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.enums.v1 import RoutingConfigUpdateState, WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from config import Settings, check_build_id
from models.versions import DeploymentVersions, VersionCount, VersionStatus
from models.workflow_names import ORDER_WORKFLOW

log = logging.getLogger("oms.versions")

# Temporal's own search attribute: the version a run is pinned to, written `<deployment>:<build id>`
# (a colon here, where the deployment APIs write `<deployment>.<build id>`). Set once the run's first
# workflow task completes on a versioned worker; the dev server cannot GROUP BY it, so we count per build.
VERSION_ATTRIBUTE = "TemporalWorkerDeploymentVersion"
# after a change of the current version, how long (and how often) to wait for the server to pass the
# new routing to its task queues: until it has, a new order may still start on the build before
ROUTING_PROPAGATION_TIMEOUT = 30.0
ROUTING_POLL_S = 0.2

_STATUS = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: VersionStatus.current,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: VersionStatus.ramping,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: VersionStatus.draining,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: VersionStatus.drained,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: VersionStatus.inactive,
    # created ahead of its workers (`temporal worker deployment create-version`): never current either
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED: VersionStatus.inactive,
}


class VersioningRefused(Exception):
    """The server refused a change of the deployment's routing (its message says why)."""


class RoutingPropagationPending(Exception):
    """The change was made, but the server has not yet passed it to every task queue."""


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The worker's versioning: with a build id, that version of the deployment, every workflow PINNED
    (an order finishes on the build that started it, so no change needs a patch marker); without
    one, None: an unversioned worker, as in dev and tests."""
    if settings.worker_build_id is None:
        return None
    version = WorkerDeploymentVersion(settings.worker_deployment, settings.worker_build_id)
    # New runs reach this build only once it is current: say so where the operator looks.
    log.info(
        "worker deployment version %s:%s, workflows pinned; new orders come once it is current "
        "(starter.py set-current-version %s)",
        version.deployment_name,
        version.build_id,
        version.build_id,
    )
    return WorkerDeploymentConfig(
        version=version,
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


async def deployment_versions(client: Client, deployment: str) -> DeploymentVersions:
    """The deployment's builds (newest first) with their open runs, then the runs with no version."""
    info = await _describe(client, deployment)
    summaries = sorted(
        info.version_summaries if info else [],
        key=lambda s: s.create_time.ToDatetime(),
        reverse=True,
    )
    builds = [s.deployment_version.build_id for s in summaries]
    counts = await asyncio.gather(
        *(_open_runs(client, f"{VERSION_ATTRIBUTE} = {_quote(f'{deployment}:{b}')}") for b in builds),
        _open_runs(client, f"{VERSION_ATTRIBUTE} IS NULL"),
    )
    rows = [
        VersionCount(build_id=b, status=_STATUS.get(s.status, VersionStatus.unknown), **c)
        for b, s, c in zip(builds, summaries, counts[:-1], strict=True)
    ]
    rows.append(VersionCount(build_id=None, status=VersionStatus.unversioned, **counts[-1]))
    routing = info.routing_config if info else None
    return DeploymentVersions(
        deployment=deployment,
        current_build_id=(routing.current_deployment_version.build_id or None) if routing else None,
        ramping_build_id=(routing.ramping_deployment_version.build_id or None) if routing else None,
        versions=rows,
    )


async def set_current_version(client: Client, deployment: str, build_id: str, identity: str) -> str | None:
    """Make `build_id` the deployment's current version: new orders start on it, those pinned to
    others stay there. Returns the build that was current before (None: unversioned workers were),
    once the server has passed the change to its task queues (RoutingPropagationPending if that takes
    longer than ROUTING_PROPAGATION_TIMEOUT: until then a new order may still start on the old build).
    The server refuses a build none of whose workers has polled yet (VersioningRefused)."""
    check_build_id(build_id)
    try:
        response = await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace, deployment_name=deployment, build_id=build_id, identity=identity
            )
        )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise VersioningRefused(
                f"{deployment}:{build_id} cannot be made current: {exc.message}"
            ) from None
        raise
    previous = response.previous_deployment_version.build_id or None
    deadline = asyncio.get_running_loop().time() + ROUTING_PROPAGATION_TIMEOUT
    while (info := await _describe(client, deployment)) is None or (
        info.routing_config_update_state != RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED
    ):
        if asyncio.get_running_loop().time() > deadline:
            raise RoutingPropagationPending(
                f"{deployment}:{build_id} is current, but the server has not passed it to every task queue"
                f" within {ROUTING_PROPAGATION_TIMEOUT:.0f} s: new orders may start on the build before"
                f" ({previous or 'unversioned workers'}) for a while longer"
            )
        await asyncio.sleep(ROUTING_POLL_S)
    return previous


async def _describe(client: Client, deployment: str) -> WorkerDeploymentInfo | None:
    """The deployment as the server knows it; None before any versioned worker of it has polled."""
    try:
        response = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return response.worker_deployment_info


async def _open_runs(client: Client, where: str) -> dict[str, int]:
    """Running orders, and other running workflows, matching a visibility condition."""
    running = f"ExecutionStatus = 'Running' AND {where}"
    every, orders = await asyncio.gather(
        client.count_workflows(running),
        client.count_workflows(f"{running} AND WorkflowType = {_quote(ORDER_WORKFLOW)}"),
    )
    # two counts, not one snapshot: a run closing in between must not make `other` negative
    return {"open_orders": orders.count, "open_other": max(every.count - orders.count, 0)}


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
