"""The order worker, the API and the command line run without the `analytics` extra: in a real venv of
the runtime image's libraries (`uv sync --frozen --no-dev`, as the Dockerfile's `runtime` target), an
order goes through, the report downloads with its tables, and what needs the extra says so in one line.
Next to it, the cheap guard: in the full venv, starting them imports no analytics library either.

The venv costs a second or two: uv links the packages from its cache, which `make install` filled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from config import PROJECT_DIR, Settings
from db import SessionFactory
from domain.api_keys import Role, create_key
from extras import MODULES, Extra
from tests.api_server import process_env, running_api
from tests.helpers import add_products, order_doc, place, unique, wait_status
from tests.test_console_session import sign_in
from tests.worker_process import running_worker

# the extra's own packages and the big ones they pull in (what the runtime image leaves out)
ANALYTICS_LIBRARIES = {
    *MODULES[Extra.analytics],
    "numpy",
    "numba",
    "llvmlite",
    "pyarrow",
    "scipy",
    "statsmodels",
}

# Builds what each lean process builds at start (the order worker with its activities, the API's app,
# the command line's parser), then prints the top-level packages imported.
START_EVERY_LEAN_PROCESS = """
import asyncio, json, sys
import cli, worker
from api.app import create_app
from config import get_settings
from connection import connect
from db import make_engine, make_session_factory

settings = get_settings()
sessions = make_session_factory(make_engine(settings.database_url))
async def build():
    client = await connect(settings)
    worker.build_worker(client, sessions, settings)
    create_app(settings, client)
asyncio.run(build())
cli.build_parser()
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def uv() -> str:
    """The uv `make install` used: on the PATH, else the Makefile's own in .tools."""
    found = shutil.which("uv") or str(PROJECT_DIR / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is on the PATH or in .tools (make install puts it there)"
    return found


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The interpreter of a venv with the runtime image's libraries: no dev group, no extra."""
    venv = tmp_path_factory.mktemp("lean") / "venv"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON_DOWNLOADS="never")
    subprocess.run(
        [uv(), "sync", "--frozen", "--no-dev", "--quiet", "--python", sys.executable],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
        timeout=300,
    )
    return str(venv / "bin" / "python")


def run(python: str, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, *args],
        cwd=PROJECT_DIR,
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_starting_the_order_worker_the_api_and_the_cli_imports_no_analytics_library(settings: Settings):
    done = run(sys.executable, settings, "-c", START_EVERY_LEAN_PROCESS)
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout))
    assert {"worker", "api", "cli", "temporalio"} <= imported  # the report was read
    assert imported & ANALYTICS_LIBRARIES == set()


def test_the_runtime_venv_holds_none_of_the_analytics_libraries(lean_python: str, settings: Settings):
    done = run(lean_python, settings, "-c", "import extras; print(extras.installed(extras.Extra.analytics))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    site = next(Path(lean_python).parent.parent.glob("lib/python3*/site-packages"))
    assert {p.name for p in site.iterdir()} & ANALYTICS_LIBRARIES == set()


async def test_the_order_worker_runs_an_order_without_the_analytics_libraries(
    lean_python: str, client: Client, settings: Settings, sessions: SessionFactory, tmp_path: Path
):
    async with running_worker(settings, tmp_path / "worker.log", lean_python) as (own, _):
        skus = add_products(sessions, {"LEAN": 3}, price="9.90")
        order_id = await place(client, own, order_doc([(skus["LEAN"], 1)]))
        await wait_status(client, order_id, "confirmed", "picking", "packed", "shipped", timeout=60)
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


def test_the_analytics_worker_refuses_to_start_without_the_extra(lean_python: str, settings: Settings):
    done = run(lean_python, settings, "worker.py", "--role", "analytics")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: the analytics worker needs the `analytics` extra (pandas, statsforecast, matplotlib), not "
        "installed here: `uv sync --extra analytics` (`make install` does), or run it in the `analytics` image"
    ]


def test_the_forecast_command_says_in_one_line_that_it_needs_the_extra(lean_python: str, settings: Settings):
    done = run(lean_python, settings, "starter.py", "forecast")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: the demand forecast needs the `analytics` extra"), line


def test_the_report_is_written_with_its_tables_and_says_where_the_charts_went(
    lean_python: str, settings: Settings, tmp_path: Path
):
    page = tmp_path / "report.html"
    done = run(lean_python, settings, "starter.py", "report", "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"wrote {page}"
    assert done.stderr.startswith("without charts: Drawing the charts needs the `analytics` extra")
    html = page.read_text()
    assert 'id="charts-missing"' in html and 'id="funnel-table"' in html and "<svg" not in html


async def test_the_api_serves_the_console_and_the_report_without_the_extra(
    lean_python: str, settings: Settings, sessions: SessionFactory, tmp_path: Path
):
    with running_api(settings, tmp_path, python=lean_python) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as browser:
            key = create_key(sessions, unique("lean-support"), Role.support).key
            assert (await sign_in(browser, key)).status_code == 303
            assert (await browser.get("/console/dashboard")).status_code == 200
            report = await browser.get("/console/reports")
    assert report.status_code == 200
    assert 'id="charts-missing"' in report.text and 'id="funnel-table"' in report.text
    assert "<svg" not in report.text
