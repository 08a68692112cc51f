"""`make run` (devstack.py) as a process: every way of stopping it stops all of its children.

Each run brings up its own Temporal dev server, worker and HTTP API in its own OMS_DEV_DATA_DIR on free
ports. OMS_DEV_DEMO=0 skips the demo orders: what is tested (stopping after "The OMS is running") is the
same, in less time. Still, a run up to "The OMS is running" takes 30-60 s on a busy machine (about half
of it the Python start-ups of the CLI commands that create the demo keys), so `make test` brings the
stack all the way up once (Ctrl-C with the output pipe gone) and tests SIGHUP while it starts; with
OMS_SLOW_TESTS=1 it also runs SIGHUP after "The OMS is running" and Ctrl-C after the whole demo.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

import devstack
from config import Settings, WorkerRole

PROJECT = Path(__file__).resolve().parent.parent
RUNNING = b"The OMS is running"
UP_TIMEOUT = 180.0  # dev server, migrations, worker, API and keys on a busy machine (85 s seen)
DEMO_UP_TIMEOUT = 600.0  # ... and the demo (200 s seen)
STOP_TIMEOUT = 60.0  # the children get 10-15 s each to stop cleanly
CHILDREN = {"Temporal server", "worker", "analytics worker", "HTTP API"}

slow = pytest.mark.skipif(
    not os.environ.get("OMS_SLOW_TESTS"), reason="a minute or more: run with OMS_SLOW_TESTS=1"
)


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def devstack_env(data_dir: Path, demo: bool) -> dict[str, str]:
    # Nothing of the suite's settings (database, Temporal address): the run is a copy of its own.
    env = {key: value for key, value in os.environ.items() if not key.startswith("OMS_")}
    port, ui_port, api_port, smtp_port = free_ports(4)
    return env | {
        "OMS_DEV_DATA_DIR": str(data_dir),
        "OMS_DEV_PORT": str(port),
        "OMS_DEV_UI_PORT": str(ui_port),
        "OMS_API_PORT": str(api_port),
        "OMS_DEV_SMTP_PORT": str(smtp_port),
        "OMS_DEV_DEMO": "1" if demo else "0",
    }


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


class Run:
    def __init__(self, data_dir: Path, demo: bool) -> None:
        self.data_dir = data_dir
        self.output = bytearray()
        self.children: dict[str, int] = {}
        self.process = subprocess.Popen(
            [sys.executable, "devstack.py"],
            cwd=PROJECT,
            env=devstack_env(data_dir, demo),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our signals only, as from its terminal
        )

    def read(self, timeout: float, until: bytes | None = None) -> None:
        """Read its output until `until` appears, or else to its end; fail after `timeout` seconds."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while until is None or until not in self.output:
                left = deadline - time.monotonic()
                assert left > 0, f"not {until or 'ended'!r} within {timeout:.0f}s:\n{self.text()}"
                if selector.select(min(left, 1.0)):
                    if not (chunk := os.read(fd, 65536)):
                        break  # the end of its output
                    self.output += chunk
        assert until is None or until in self.output, f"it ended without {until!r}:\n{self.text()}"

    def recorded(self) -> dict[str, int]:
        """The children in its pid file (kept, to check and to clean up)."""
        doc = json.loads((self.data_dir / devstack.STACK_FILE).read_text())
        assert doc["devstack"]["pid"] == self.process.pid
        self.children = {child["name"]: child["pid"] for child in doc["children"]}
        return self.children

    def up(self, timeout: float) -> dict[str, int]:
        """Wait for "The OMS is running"; returns its children's pids from its pid file."""
        self.read(timeout, until=RUNNING)
        children = self.recorded()
        assert set(children) == CHILDREN
        assert all(alive(pid) for pid in children.values())
        return children

    def stopped(self) -> int:
        """Its exit status, once it and every child it recorded are gone (bounded)."""
        status = self.process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + 10  # an orphan would stay; a child just reaped is gone at once
        while any(alive(pid) for pid in self.children.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {name: pid for name, pid in self.children.items() if alive(pid)}
        assert left == {}, f"left running: {left}\n{self.text()}"
        assert not (self.data_dir / devstack.STACK_FILE).exists()  # all stopped: nothing to report next time
        return status

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def kill_leftovers(self) -> None:
        """Whatever happened in the test, nothing of this run outlives it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.children.values():
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)  # each child leads a process group of its own
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()


@contextmanager
def running(tmp_path: Path, demo: bool = False) -> Iterator[Run]:
    run = Run(tmp_path / "data", demo)
    try:
        yield run
    finally:
        run.kill_leftovers()


@slow
def test_sighup_stops_every_child(tmp_path: Path):
    """The terminal closed."""
    with running(tmp_path) as run:
        run.up(UP_TIMEOUT)
        started = time.monotonic()
        assert "starting the mail catcher on 127.0.0.1:" in run.text()
        assert "/console/mailbox" in run.text()

        run.process.send_signal(signal.SIGHUP)

        assert run.stopped() == 0
        run.read(STOP_TIMEOUT)
        assert "shutting down (SIGHUP)" in run.text() and run.text().rstrip().endswith("stopped.")
        assert time.monotonic() - started < STOP_TIMEOUT


@pytest.mark.parametrize(
    "demo", [False, pytest.param(True, marks=[slow, pytest.mark.timeout(900)], id="with-the-demo")]
)
def test_ctrl_c_after_the_output_pipe_is_gone_stops_every_child(tmp_path: Path, demo: bool):
    """`make run | tee log`, and Ctrl-C reaches tee first: our prints fail, the cleanup must not."""
    with running(tmp_path, demo) as run:
        run.up(DEMO_UP_TIMEOUT if demo else UP_TIMEOUT)
        if demo:
            assert "rejected: payment declined: card_declined" in run.text()  # the declined card
            assert "(exit status 1)" in run.text()  # place --wait says so
            # the demo customers' mails reached the local SMTP catcher's mailbox
            assert list((tmp_path / "data" / "mailbox").glob("*.eml"))

        assert run.process.stdout is not None
        run.process.stdout.close()  # the pipe's reader is gone
        run.process.send_signal(signal.SIGINT)

        assert run.stopped() == 0


@pytest.mark.parametrize(
    "sig", [signal.SIGHUP, pytest.param(signal.SIGTERM, marks=slow)], ids=["SIGHUP", "SIGTERM"]
)
def test_a_stop_signal_while_starting_stops_what_has_started(tmp_path: Path, sig: signal.Signals):
    """The terminal closed (or a kill) before it is up: the children started so far are stopped too."""
    with running(tmp_path) as run:
        run.read(UP_TIMEOUT, until=b"starting the worker")  # the server is up, the worker starting
        assert "Temporal server" in run.recorded()

        run.process.send_signal(sig)

        assert run.stopped() == 0
        run.read(STOP_TIMEOUT)
        assert f"shutting down ({sig.name})" in run.text() and "stopping the Temporal server" in run.text()


def test_a_child_left_by_an_earlier_run_is_named_with_its_pid(tmp_path: Path):
    """`make run` was killed with -9: its Temporal server still runs. The next run says so (and which
    pid to kill) before it starts anything."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    no_such_pid = 2**22 + 1  # above Linux's highest pid: the earlier devstack is gone
    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (data_dir / devstack.STACK_FILE).write_text(
            json.dumps(
                {
                    "devstack": {"pid": no_such_pid, "argv": [sys.executable, "devstack.py"]},
                    "children": [
                        {"name": "Temporal server", "pid": leftover.pid, "argv": ["sleep", "300"]},
                        {"name": "worker", "pid": no_such_pid, "argv": [sys.executable, "worker.py"]},
                    ],
                }
            )
        )
        result = subprocess.run(
            [sys.executable, "devstack.py"],
            cwd=PROJECT,
            env=devstack_env(data_dir, demo=False),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert (
            f"error: a Temporal server from an earlier `make run` is still running as pid {leftover.pid}: "
            f"stop it with `kill {leftover.pid}`"
        ) in result.stderr
        assert not (data_dir / "temporal.log").exists()  # nothing was started
        assert alive(leftover.pid)  # named, not killed: it may be someone's
    finally:
        leftover.kill()
        leftover.wait()


def test_a_recorded_pid_now_running_another_program_is_not_reported(tmp_path: Path):
    """Pids are reused: only a process still running the recorded command line counts."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (data_dir / devstack.STACK_FILE).write_text(
            json.dumps(
                {
                    "devstack": {"pid": 2**22 + 1, "argv": [sys.executable, "devstack.py"]},
                    "children": [{"name": "worker", "pid": other.pid, "argv": [sys.executable, "worker.py"]}],
                }
            )
        )
        cfg = devstack.DevConfig(
            data_dir=data_dir,
            port=1,
            ui_port=2,
            namespace="default",
            task_queues={role: Settings().worker_task_queue(role) for role in WorkerRole},
            api_host="127.0.0.1",
            api_port=3,
            api_wait_timeout=1.0,
        )
        devstack.check_leftovers(cfg)  # no error
        assert not (data_dir / devstack.STACK_FILE).exists()
    finally:
        other.kill()
        other.wait()


def test_output_to_a_closed_pipe_never_raises():
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        output = devstack.Output(stream)
        assert not output.lost()
        os.close(read_end)
        assert output.lost()  # seen without writing
        print("x" * 100_000, file=output, flush=True)  # dropped
        output.flush()


async def test_the_demo_goes_on_when_the_carrier_delivered_first(
    client, sessions, gated_worker, api, api_keys, capsys
) -> None:
    """`make run` on a slow machine: the sandbox carrier may finish its journey before the demo confirms
    the delivery through the carrier webhook. The demo says so and goes on (it used to stop with "has no
    shipment on its way", leaving no order on hold or travelling)."""
    import asyncio

    from domain.api_keys import Role
    from services.orders import confirm_delivery
    from tests.helpers import add_products, order_doc, place, wait_status
    from tests.test_parties import hand_over, manual_worker

    settings = await manual_worker(gated_worker)
    sku = add_products(sessions, {"KETTLE": 2})["KETTLE"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    await hand_over(client, shipment.id)
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)  # the carrier, first
    await wait_status(client, order_id, "delivered")

    demo_api = devstack.Api(
        api.url, {"support": api_keys[Role.support], "carrier": api_keys[Role.carrier]}, 30.0
    )
    await asyncio.to_thread(devstack.deliver_via_api, demo_api, order_id)  # no DemoError

    out = capsys.readouterr().out
    assert f"the sandbox carrier has delivered {order_id} already" in out
    assert "POST /carrier/events" not in out  # nothing sent twice


def test_make_run_gives_the_carrier_a_journey_longer_than_the_demo() -> None:
    cfg = devstack.DevConfig.from_env()
    env = devstack.child_env(cfg)
    assert env["OMS_SANDBOX_TRANSIT_TIME"] == os.environ.get("OMS_SANDBOX_TRANSIT_TIME", "3m")
