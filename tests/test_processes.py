"""devtools/processes.py: how `make run`, bench-api and chaos stop their children. A child that ignores
SIGTERM is killed after its grace period; a signal reaches what the child started too; every stop
reaps; a restarted child's log can keep what the first start wrote."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from devtools.processes import ChildProcess

IGNORES_SIGTERM = "; ".join(
    [
        "import signal, time",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
        "print('up', flush=True)",
        "time.sleep(300)",
    ]
)


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for_line(log_path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not (text := log_path.read_text()).strip():
        assert time.monotonic() < deadline, f"nothing in {log_path} after {timeout:.0f}s"
        time.sleep(0.05)
    return text


def test_a_child_that_ignores_sigterm_is_killed_after_its_grace_period(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", IGNORES_SIGTERM]
    child = ChildProcess.start("stubborn child", argv, tmp_path / "c.log", dict(os.environ), stop_timeout=1.0)
    wait_for_line(child.log_path)  # its handler is in place
    said: list[str] = []

    child.stop(say=said.append)

    assert said == ["the stubborn child did not stop within 1s; killing it"]
    assert child.process.returncode == -9 and not child.alive()


def test_stop_reaches_what_the_child_started(tmp_path: Path) -> None:
    child = ChildProcess.start(
        "shell",
        ["sh", "-c", "sleep 300 & echo $!; wait"],
        tmp_path / "sh.log",
        dict(os.environ),
        stop_timeout=10,
    )
    grandchild = int(wait_for_line(child.log_path))
    assert running(grandchild)

    child.stop()

    assert child.process.returncode == -15  # SIGTERM was enough: no kill
    deadline = time.monotonic() + 10  # the orphan is reaped by init, not by us
    while running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(grandchild)


def test_kill_is_sigkill_and_reaps(tmp_path: Path) -> None:
    child = ChildProcess.start(
        "sleeper", ["sleep", "300"], tmp_path / "s.log", dict(os.environ), stop_timeout=10
    )

    child.kill()

    assert child.process.returncode == -9
    child.kill()  # reaped already: nothing is signalled (its pid may be someone else's by now)
    child.stop()


def test_a_restart_appends_to_the_log_or_starts_it_afresh(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"

    def run(word: str, append: bool) -> None:
        child = ChildProcess.start(
            "echo", ["echo", word], log_path, dict(os.environ), stop_timeout=10, append_log=append
        )
        child.process.wait(timeout=30)

    run("first", append=True)
    run("second", append=True)
    assert log_path.read_text().split() == ["first", "second"]
    run("third", append=False)
    assert log_path.read_text().split() == ["third"]
