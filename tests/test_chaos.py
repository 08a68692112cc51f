"""The short fault-injection run (`python -m chaos --short`; the full one is `make chaos`): 40 orders per
scenario through a system of its own (dev server on a file, worker subprocesses, the HTTP API) while
workers are killed with SIGKILL, the dev server is killed and restarted, and (on PostgreSQL) the
database is cut off the workers and the API; every order must end as its role says and the ledgers
must agree, and every role's path (cancellations after reserve, pick and pack, returns, lost parcels,
backorders, short picks, split shipments) must have been taken. Meanwhile the fuzz sends every door of
the API a few hundred generated cases (no 5xx, hang, traceback or stuck order), and a planted bug (a
release that keeps the stock reserved) must be caught. The scenarios run at once, each on its own
system; the fuzz and the plant start once the others are under way.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url

from chaos import bad_inputs
from chaos.fuzz import FuzzResult, door_table, run_fuzz, summary
from chaos.orders import Role, load_orders, plan_orders
from chaos.run import (
    NO_CONNECTION_TO_CUT,
    SHORT,
    Result,
    details,
    outage_table,
    paths_table,
    plant_table,
    run,
    run_plants,
    table,
)

ADMIN_URL = os.environ.get("OMS_TEST_DATABASE_URL") or None
ON_POSTGRES = ADMIN_URL is not None and make_url(ADMIN_URL).get_backend_name() == "postgresql"
PLANT = "release-keeps-stock"
T = TypeVar("T")
# the run is bounded by its deadline (SHORT.deadline), which reports a stuck order as a violation: the
# suite's 300 s per test would cut it short on a loaded machine without saying which order was stuck
pytestmark = pytest.mark.timeout(SHORT.deadline + 240)


async def _later(seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """Start `work` once the fault scenarios have their systems up and their orders placed."""
    await asyncio.sleep(seconds)
    return await work


@pytest.fixture(scope="module")
async def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    names = ["worker-kills", "server-restart"] + (["database-outage"] if ON_POSTGRES else [])
    base = tmp_path_factory.mktemp("chaos")
    source = load_orders(SHORT.orders)
    scenarios, fuzz, plants = await asyncio.gather(
        run(names, SHORT, source, ADMIN_URL, base, seed=1, parallel=True),
        _later(15, run_fuzz(SHORT.fuzz_cases, ADMIN_URL, base / "fuzz", seed=1)),
        _later(20, run_plants([PLANT], SHORT, source, ADMIN_URL, base, seed=1)),
        return_exceptions=True,  # each part reported by its own test
    )
    return {
        "scenarios": scenarios
        if isinstance(scenarios, BaseException)
        else {r.scenario: r for r in scenarios},
        "fuzz": fuzz,
        "plant": plants if isinstance(plants, BaseException) else plants[0],
    }


def _part(runs: dict[str, Any], name: str) -> Any:
    part = runs[name]
    if isinstance(part, BaseException):
        raise part
    return part


def _check(runs: dict[str, Any], scenario: str, capsys: pytest.CaptureFixture[str]) -> Result:
    result: Result = _part(runs, "scenarios")[scenario]
    with capsys.disabled():
        print(f"\n{table([result])}\n{details([result])}")
    assert result.ok, details([result])
    assert result.orders == SHORT.orders
    assert sum(result.outcomes.values()) == result.orders
    return result


async def test_orders_end_right_while_workers_are_killed(runs, capsys):
    result = _check(runs, "worker-kills", capsys)
    assert result.worker_kills == SHORT.kills


async def test_orders_end_right_across_a_dev_server_restart(runs, capsys):
    result = _check(runs, "server-restart", capsys)
    assert result.server_restarts == SHORT.restarts


@pytest.mark.skipif(not ON_POSTGRES, reason=NO_CONNECTION_TO_CUT)
async def test_orders_end_right_across_a_database_outage_and_the_api_answers_503(runs, capsys):
    result = _check(runs, "database-outage", capsys)
    with capsys.disabled():
        print(outage_table([result]))
    assert result.outage_seconds >= SHORT.outage_seconds * SHORT.outages
    answers = result.api_during_outage
    assert answers.get("503", 0) > 0, answers  # the API was asked while the database was away, and said so
    assert not any(k.startswith("5") and k != "503" for k in answers), answers


async def test_every_compensation_path_is_taken(runs, capsys):
    """Each role's path was taken, and found right, by at least one order of the scenarios."""
    results = list(_part(runs, "scenarios").values())
    with capsys.disabled():
        print(f"\n{paths_table(results)}")
    missed = [role.value for role in Role if not any(r.paths.get(role.value, (0, 0))[0] for r in results)]
    assert not missed, f"no order took these paths: {missed}"
    assert all(r.http_orders for r in results)  # and a share of them through the HTTP API


async def test_fuzzing_every_door_finds_no_5xx_hang_traceback_or_stuck_order(runs, capsys):
    fuzz: FuzzResult = _part(runs, "fuzz")
    with capsys.disabled():
        print(f"\n{door_table(fuzz)}\n{summary(fuzz)}")
    assert fuzz.cases >= 300
    assert len(fuzz.doors) >= 12
    assert fuzz.ok, summary(fuzz)


async def test_a_planted_release_that_keeps_the_stock_is_caught(runs, capsys):
    plant: Result = _part(runs, "plant")
    with capsys.disabled():
        print(f"\n{plant_table([plant])}")
    caught = plant.caught_by
    assert plant.violations, "the planted bug went unnoticed"
    assert caught["nothing-reserved"] and caught["stock-ledger"], caught


def test_the_short_run_plans_an_order_for_every_role():
    """SHORT.orders is kept small for `make test`: small enough, not smaller."""
    plan = plan_orders(load_orders(SHORT.orders), "X", random.Random(1))
    planned = {p.role for p in plan.orders}
    assert [role.value for role in Role if role not in planned] == []


@pytest.mark.parametrize("case", list(bad_inputs.BAD_INPUTS))
def test_inputs_a_fault_injection_run_got_through_are_refused_at_the_door(case):
    assert bad_inputs.refusal(bad_inputs.BAD_INPUTS[case]) is not None, f"parse_order let through: {case}"
