"""The short fault-injection run (`python -m chaos --short`, the full one is `make chaos`): 30 orders per
scenario through a system of its own (dev server on a file, worker subprocesses) while workers are
killed with SIGKILL, the dev server is killed and restarted, and (on PostgreSQL) the database is cut
off; then every order must have ended as expected and the ledgers must agree. The scenarios run at
once, each on its own system, to keep the suite short.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

from chaos import bad_inputs
from chaos.orders import load_orders
from chaos.run import NO_CONNECTION_TO_CUT, SHORT, Result, details, run, table

ADMIN_URL = os.environ.get("OMS_TEST_DATABASE_URL") or None
ON_POSTGRES = ADMIN_URL is not None and make_url(ADMIN_URL).get_backend_name() == "postgresql"


@pytest.fixture(scope="module")
async def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    names = ["worker-kills", "server-restart"] + (["database-outage"] if ON_POSTGRES else [])
    done = await run(
        names,
        SHORT,
        load_orders(SHORT.orders),
        ADMIN_URL,
        tmp_path_factory.mktemp("chaos"),
        seed=1,
        parallel=True,
    )
    return {r.scenario: r for r in done}


def _check(results: dict[str, Result], scenario: str, capsys: pytest.CaptureFixture[str]) -> Result:
    result = results[scenario]
    with capsys.disabled():
        print(f"\n{table([result])}\n{details([result])}")
    assert result.ok, details([result])
    assert result.orders == SHORT.orders
    assert sum(result.outcomes.values()) == result.orders
    return result


async def test_orders_end_right_while_workers_are_killed(results, capsys):
    result = _check(results, "worker-kills", capsys)
    assert result.worker_kills == SHORT.kills


async def test_orders_end_right_across_a_dev_server_restart(results, capsys):
    result = _check(results, "server-restart", capsys)
    assert result.server_restarts == SHORT.restarts


@pytest.mark.skipif(not ON_POSTGRES, reason=NO_CONNECTION_TO_CUT)
async def test_orders_end_right_across_a_database_outage(results, capsys):
    result = _check(results, "database-outage", capsys)
    assert result.outage_seconds >= SHORT.outage_seconds * SHORT.outages


@pytest.mark.parametrize("case", list(bad_inputs.BAD_INPUTS))
def test_inputs_a_fault_injection_run_got_through_are_refused_at_the_door(case):
    assert bad_inputs.refusal(bad_inputs.BAD_INPUTS[case]) is not None, f"parse_order let through: {case}"
