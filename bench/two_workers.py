"""The scale-out path: the same orders through two `python worker.py` processes polling one task queue
of the benchmark's server, as N workers would on a Temporal cluster. Each process is started, known and
stopped by its pid (chaos/processes.py), with the benchmark's server, database, codec key and settings.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client

from chaos.processes import Workers, polling_pids, wait_until
from config import Settings
from encryption.keys import KeyRing, format_keys


def worker_env(settings: Settings, keys: KeyRing) -> dict[str, str]:
    """`python worker.py`'s environment: ours without any OMS_* of the caller's, plus the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    return env | {
        "OMS_TEMPORAL_ADDRESS": settings.temporal_address,
        "OMS_DATABASE_URL": settings.database_url,
        "OMS_TASK_QUEUE": settings.task_queue,
        "OMS_CODEC_KEYS": format_keys(keys),
        "OMS_RELEASE_DELAY": "0s",
        "OMS_SANDBOX_PICK_TIME": "0s",
        "OMS_SANDBOX_PACK_TIME": "0s",
        "OMS_SANDBOX_CARRIER": settings.sandbox_carrier.value,
        "OMS_WORKER_ACTIVITY_THREADS": str(settings.worker_activity_threads),
        "PYTHONUNBUFFERED": "1",
    }


@asynccontextmanager
async def worker_processes(
    client: Client, settings: Settings, keys: KeyRing, count: int, timeout: float
) -> AsyncIterator[list[int]]:
    """`count` worker processes on settings.task_queue, polling when this yields (their pids)."""
    with tempfile.TemporaryDirectory(prefix="oms-bench-workers-") as folder:
        workers = Workers(Path(folder), worker_env(settings, keys), count)
        workers.start()
        try:
            pids = {p.pid for p in workers.running}

            async def all_polling() -> bool:
                dead = [p for p in workers.running if not p.alive()]
                if dead:
                    raise RuntimeError(f"a worker exited at start-up:\n{dead[0].tail()}")
                return pids <= await polling_pids(client, settings.task_queue)

            await wait_until(all_polling, f"{count} workers polling {settings.task_queue}", timeout)
            yield sorted(pids)
        finally:
            workers.stop()  # SIGTERM each by pid, SIGKILL any still there after the grace period
