"""What a running `make run` tells the commands beside it: its pid file (`<data dir>/devstack.pids`, the
runner's and its children's pids, and the settings it gave them) and how a command adopts those settings.

Why: `make run` starts its worker with development settings (a 20 s release delay, its own database
file, its own server's address), and a `starter.py` command typed in another terminal would otherwise
read the production defaults (a 10-minute release delay, the default database) and act on another
system than the one the person is watching. A command adopts the stack's settings where its own
environment sets none, and says so on stderr; secrets are never written to the file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from config import PROJECT_DIR

STACK_FILE = "devstack.pids"  # in the data dir: this run's pid and its children's, for the next run to check
# settings never written to the file (the data dir is not a secret store): a child reads them from the
# environment `make run` was started in, or from their files (OMS_CODEC_KEY_FILE, OMS_SESSION_SECRET_FILE)
_SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "CODEC_KEYS", "API_KEY")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)[^@]*@")  # a database URL's password, never shown


def data_dir(environ: Mapping[str, str]) -> Path:
    """Where `make run` keeps its state: OMS_DEV_DATA_DIR, else the project's .data."""
    given = environ.get("OMS_DEV_DATA_DIR")
    return Path(given).resolve() if given else PROJECT_DIR / ".data"


def shared_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The OMS_* settings of a child's environment that a command beside it may adopt."""
    return {
        name: value
        for name, value in sorted(env.items())
        if name.startswith("OMS_")
        and not name.startswith("OMS_DEV_")
        and (name.endswith("_FILE") or not any(word in name for word in _SECRET_WORDS))
    }


@dataclass(frozen=True)
class RunningStack:
    pid: int
    settings: dict[str, str]
    path: Path


def running_stack(folder: Path) -> RunningStack | None:
    """The `make run` whose pid file is in `folder`, if it still runs; None otherwise (no file, an
    unreadable one, or one a stopped or killed run left behind)."""
    path = folder / STACK_FILE
    try:
        doc = json.loads(path.read_text())
        runner = doc["devstack"]
        pid, argv = int(runner["pid"]), list(runner["argv"])
        settings = {str(k): str(v) for k, v in dict(doc.get("settings", {})).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return RunningStack(pid, settings, path) if runs(pid, argv) else None


def adopt(environ: MutableMapping[str, str]) -> str | None:
    """Give `environ` the running stack's settings it does not set itself; returns the line to tell the
    person (None when no stack runs or it has nothing to add)."""
    stack = running_stack(data_dir(environ))
    if stack is None:
        return None
    added = {name: value for name, value in stack.settings.items() if name not in environ}
    if not added:
        return None
    environ.update(added)
    shown = ", ".join(f"{name}={_shown(value)}" for name, value in added.items())
    return f"note: using the settings of `make run` (pid {stack.pid}, {stack.path}): {shown}"


def _shown(value: str) -> str:
    return _PASSWORD_IN_URL.sub(r"\1***@", value)


def runs(pid: int, argv: list[str]) -> bool:
    """Whether process `pid` is alive and still runs `argv` (pids are reused)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's: its command line tells
    cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():  # Linux
        try:
            return cmdline.read_bytes().split(b"\0")[:-1] == [os.fsencode(arg) for arg in argv]
        except OSError:
            return False
    try:  # macOS and other Unixes
        shown = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return True  # cannot tell: better named than missed
    return shown == " ".join(argv)
