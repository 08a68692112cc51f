"""Child processes of the dev tooling (`make run`, bench/api_load.py, chaos/), started and stopped one way.

Each child gets a session of its own, so Ctrl-C in the terminal reaches only the parent, which stops the
children in its own order; and its pid is its process group's id, so a signal to the group also reaches
whatever the child started. Its output goes to a log file. Stopping: SIGTERM to the group, up to the
child's `stop_timeout` to finish cleanly (a worker drains its activities, uvicorn its requests), then
SIGKILL, and the child is reaped.

Why not a library: subprocess does the starting and the reaping; what is left is os.killpg and a wait.
psutil (terminate, wait_procs) adds a compiled dependency for the same few lines, and the process
managers (honcho, circus) own their children's output and signals, which `make run` must keep: it holds
stop signals while a child starts, and prints on a pipe that may be gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config import PROJECT_DIR

# Seconds to reap a child after SIGKILL: at once, unless it is stuck in the kernel (then the caller
# hears of it by subprocess.TimeoutExpired rather than hanging).
KILL_WAIT = 10.0

# Linux: with die_with_parent the child gets SIGKILL when its parent dies without stopping it (even by
# SIGKILL itself). setpriv (util-linux) sets that and execs the command, so the pid stays the child's own.
SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None


@dataclass
class ChildProcess:
    name: str  # for messages: "the <name> did not stop ..."
    argv: list[str]  # as given (without setpriv): what /proc/<pid>/cmdline shows once it runs
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout: float  # seconds between SIGTERM and SIGKILL

    @classmethod
    def start(
        cls,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str],
        *,
        stop_timeout: float,
        append_log: bool = False,
        die_with_parent: bool = False,
    ) -> ChildProcess:
        """Start `argv` in the project's folder. `append_log` keeps what an earlier start of the same
        child wrote (a server restarted on its state); `die_with_parent`: see SETPRIV."""
        command = [SETPRIV, "--pdeathsig", "KILL", *argv] if die_with_parent and SETPRIV else argv
        with log_path.open("ab" if append_log else "wb") as log:  # the child keeps its own copy of it
            process = subprocess.Popen(
                command,
                cwd=PROJECT_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(name, list(argv), process, log_path, stop_timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM to its process group: a graceful stop begins; stop() waits for it."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to its process group, and reap it: no clean-up, no goodbye, exactly what a crash or
        an OOM kill looks like."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=KILL_WAIT)

    def stop(self, say: Callable[[str], None] | None = None) -> None:
        """terminate(), up to `stop_timeout` for it to exit, then kill(); `say` hears about a kill."""
        if not self.alive():
            return
        self.terminate()
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            if say is not None:
                say(f"the {self.name} did not stop within {self.stop_timeout:.0f}s; killing it")
            self.kill()

    def tail(self, lines: int = 15) -> str:
        """The last lines of its log, indented, for an error message."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is not None:  # reaped: its pid (and group id) may be someone else's now
            return
        with contextlib.suppress(ProcessLookupError):  # exited since
            os.killpg(self.process.pid, sig)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now, for a child to listen on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
