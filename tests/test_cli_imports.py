"""The command line answers `--help` and usage errors without importing the heavy libraries.

Not a timing test: what the commands import, read in a fresh interpreter, is the same on a busy
machine as on a quiet one. The times themselves are in `make bench-cli` (bench/cli_startup.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).parent.parent
# What made every command, even `--help`, take seconds before the command line became a package.
HEAVY = {"temporalio", "sqlalchemy", "alembic", "pydantic", "pydantic_core", "pydantic_settings", "services"}

# Builds the parser, asks every command and subcommand for its help (which lists its choices) and
# parses one command line of each kind a person types, then prints the packages it imported.
PARSE_EVERYTHING = """
import argparse, contextlib, io, json, sys
import cli

def every_parser(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from every_parser(child)

parser = cli.build_parser()
helped = 0
for each in every_parser(parser):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        each.parse_args(["--help"])
    helped += 1
for argv in json.loads(sys.argv[1]):
    parser.parse_args(argv)
print(json.dumps({"helped": helped, "packages": sorted({name.split(".")[0] for name in sys.modules})}))
"""

COMMAND_LINES = [
    ["status", "A-1", "--json"],
    ["list", "--status", "delivered", "--channel", "web", "--limit", "20"],
    ["place", "order.json", "--wait"],
    ["import", "orders.csv", "--format", "csv"],
    ["import-history", "retail.csv", "--format", "online-retail"],
    ["carrier-event", "TRACK-1", "delivery_failed", "--attempt", "2"],
    ["warehouse", "pack", "A-1-S1", "--parcel", "850", "--line", "MUG-1=2"],
    ["resolve", "A-1", "A-1-S1", "--refund"],
    ["receive-return", "A-1", "RMA-A-1-1", "--condition", "damaged"],
    ["stock", "adjust", "MUG-1", "W1", "-3", "--reason", "cycle count"],
    ["apikey", "create", "--role", "support", "--name", "alice"],
    ["report", "--since", "2025-03-01", "--html", "report.html"],
    ["export", "journal", "--since", "2025-03-01", "--until", "2025-03-31", "journal.csv"],
    ["set-current-version", "build-1"],
]


def run_python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def imported_packages(importtime_report: str) -> set[str]:
    """The top-level packages a `python -X importtime` run imported (its report is on stderr)."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in importtime_report.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_help_imports_no_heavy_library():
    done = run_python("-X", "importtime", "starter.py", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: starter.py")
    imported = imported_packages(done.stderr)
    assert "cli" in imported  # the report was read
    assert imported & HEAVY == set()


def test_a_usage_error_imports_no_heavy_library():
    done = run_python("-X", "importtime", "starter.py", "list", "--limit", "0")
    assert done.returncode == 2
    assert "0 is not between 1 and 500" in done.stderr
    assert imported_packages(done.stderr) & HEAVY == set()


def test_parsing_every_command_imports_no_heavy_library():
    done = run_python("-c", PARSE_EVERYTHING, json.dumps(COMMAND_LINES))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["helped"] > 30  # the top level, every command and every subcommand
    assert set(result["packages"]) & HEAVY == set()


def test_a_command_that_only_reads_the_database_does_not_load_temporal(database_url):
    done = run_python("-X", "importtime", "starter.py", "stock", env={"OMS_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SKU")
    assert imported_packages(done.stderr) & {"temporalio", "alembic"} == set()
