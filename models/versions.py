"""Worker Versioning as `starter.py versions` shows it (docs/versioning.md): the builds of the worker
deployment and the open workflows pinned to each, from Temporal visibility."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, computed_field


class VersionStatus(StrEnum):
    """What the server says of a build (WorkerDeploymentVersionStatus); `unversioned` is our row for
    runs that carry no version: started on an unversioned worker, or not yet picked up by any."""

    current = "current"  # new orders start here
    ramping = "ramping"  # a share of new orders start here
    draining = "draining"  # no new orders; pinned ones still open (the server's periodic check)
    drained = "drained"  # the server found none open on its last check
    inactive = "inactive"  # has polled, was never current
    unversioned = "unversioned"
    unknown = "unknown"  # a status this code does not know yet (a newer server)


class VersionCount(BaseModel):
    """One build of the deployment (or the unversioned row, build_id None) and its open runs."""

    build_id: str | None
    status: VersionStatus
    open_orders: int  # running OrderWorkflows pinned to this build
    open_other: int  # other running workflows on it (replenishment, forecast, sandbox parties)

    @computed_field  # type: ignore[prop-decorator]  # in --json too, for scripts that retire builds
    @property
    def drained(self) -> bool:
        """Nothing open runs on this build: once not current, its workers may stop."""
        return self.open_orders == 0 and self.open_other == 0


class DeploymentVersions(BaseModel):
    deployment: str
    current_build_id: str | None  # None: no build is current; new runs go to unversioned workers
    ramping_build_id: str | None = None
    versions: list[VersionCount]  # the deployment's builds, newest first, then the unversioned row
