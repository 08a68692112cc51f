"""Commands beside a running `make run` act on its system: they adopt the settings it gave its worker
(database, server, release delay) where their own environment sets none, and say so on stderr. A stack
that has stopped, or was killed and left its pid file behind, is ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.dev_stack import STACK_FILE, adopt, runs, shared_settings
from tests.helpers import add_products, fresh_database

PROJECT_DIR = Path(__file__).parent.parent


@pytest.fixture
def runner() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing for `make run`'s runner: the pid file names it by pid and command line."""
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    process = subprocess.Popen(argv)
    # until the child has exec'd, /proc shows the parent's command line, and no pid file would match it
    deadline = time.monotonic() + 30
    while not runs(process.pid, argv) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def write_stack_file(folder: Path, runner: subprocess.Popen[bytes], settings: dict[str, str]) -> None:
    argv = [str(a) for a in runner.args]  # type: ignore[union-attr]
    doc = {"devstack": {"pid": runner.pid, "argv": argv}, "children": [], "settings": settings}
    (folder / STACK_FILE).write_text(json.dumps(doc))


def test_only_settings_that_are_not_secrets_are_shared() -> None:
    env = {
        "OMS_RELEASE_DELAY": "20s",
        "OMS_CODEC_KEYS": "k1:secret",
        "OMS_CODEC_KEY_FILE": "/data/codec-keys",
        "OMS_SESSION_SECRET": "s",
        "OMS_SMTP_PASSWORD": "p",
        "OMS_METRICS_TOKEN": "t",
        "OMS_DEV_PORT": "7233",
        "PATH": "/usr/bin",
    }
    assert shared_settings(env) == {"OMS_CODEC_KEY_FILE": "/data/codec-keys", "OMS_RELEASE_DELAY": "20s"}


def test_a_command_adopts_what_it_does_not_set_and_only_while_the_stack_runs(
    tmp_path: Path, runner: subprocess.Popen[bytes]
) -> None:
    url = "postgresql+psycopg2://oms:hunter2@db:5432/oms"
    write_stack_file(
        tmp_path,
        runner,
        {"OMS_RELEASE_DELAY": "20s", "OMS_TEMPORAL_ADDRESS": "127.0.0.1:7299", "OMS_DATABASE_URL": url},
    )
    environ = {"OMS_DEV_DATA_DIR": str(tmp_path), "OMS_TEMPORAL_ADDRESS": "mine:7233"}
    note = adopt(environ)
    assert environ["OMS_RELEASE_DELAY"] == "20s" and environ["OMS_TEMPORAL_ADDRESS"] == "mine:7233"
    assert note is not None and f"pid {runner.pid}" in note and "OMS_RELEASE_DELAY=20s" in note
    assert "OMS_TEMPORAL_ADDRESS" not in note  # its own setting wins, and is not reported as adopted
    assert environ["OMS_DATABASE_URL"] == url and "hunter2" not in note and "oms:***@db" in note

    runner.kill()
    runner.wait()
    environ = {"OMS_DEV_DATA_DIR": str(tmp_path)}
    assert adopt(environ) is None and "OMS_RELEASE_DELAY" not in environ  # a leftover file: ignored


def test_stock_beside_make_run_reads_its_database(tmp_path: Path, runner: subprocess.Popen[bytes]) -> None:
    with fresh_database(tmp_path, "devstack_cli") as (url, sessions):
        sku = add_products(sessions, {"MUG": 7})["MUG"]
        write_stack_file(tmp_path, runner, {"OMS_DATABASE_URL": url})
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
        done = subprocess.run(
            [sys.executable, "starter.py", "stock", "--sku", sku],
            cwd=PROJECT_DIR,
            env=env | {"OMS_DEV_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert sku in done.stdout and " 7 " in done.stdout
    assert (
        done.stderr.startswith(f"note: using the settings of `make run` (pid {runner.pid}")
        and "OMS_DATABASE_URL" in done.stderr
    )
    assert done.stderr.count("\n") == 1
