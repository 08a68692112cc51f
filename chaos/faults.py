"""The faults, each an async loop that runs while orders flow and stops when told (or after its count):
kill -9 a worker (and start a new one), kill -9 the Temporal dev server (and restart it on the same
database file), cut the workers' connection to PostgreSQL (and restore it). Each records what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from temporalio.service import RPCError

from chaos.processes import polling_pids
from chaos.stack import Stack


def log(message: str) -> None:
    print(f"[chaos] {message}", file=sys.stderr, flush=True)


@dataclass
class FaultLog:
    worker_kills: int = 0
    server_restarts: int = 0
    outage_seconds: float = 0.0
    last_fault_ended: float = 0.0  # monotonic
    events: list[str] = field(default_factory=list)
    # the API while the database is cut: what a prober asked (an order, a SKU) and what it answered
    probe_order: str = ""
    probe_sku: str = ""
    api_outage: Counter[str] = field(default_factory=Counter)  # "<status> <what>" -> answers
    api_outage_wrong: list[str] = field(default_factory=list)  # 5xx but 503, hangs, non-JSON: violations

    def note(self, started: float, what: str) -> None:
        self.last_fault_ended = time.monotonic()
        self.events.append(f"+{self.last_fault_ended - started:5.1f}s {what}")


async def _pause(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, or return True at once when told to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def keep_workers_up(stack: Stack, stop: asyncio.Event) -> None:
    """Replace any worker that exited by itself (counted apart from the kills)."""
    while not await _pause(stop, 1.0):
        stack.workers.keep_up()


async def kill_workers(
    stack: Stack,
    faults: FaultLog,
    stop: asyncio.Event,
    started: float,
    first: float,
    every: float,
    count: int,
) -> None:
    if await _pause(stop, first):
        return
    for n in range(count):
        while (victim := stack.workers.kill_one(await _at_work(stack))) is None:
            if await _pause(stop, 0.5):
                return
        faults.worker_kills += 1
        faults.note(
            started, f"kill -9 {victim.name} (pid {victim.pid}); started worker {stack.workers.started}"
        )
        log(f"{stack.name}: killed {victim.name} (pid {victim.pid}) with SIGKILL, started a new one")
        jitter = stack.rng.uniform(-0.25, 0.25) * every
        if n + 1 < count and await _pause(stop, every + jitter):
            return


async def _at_work(stack: Stack) -> set[int]:
    try:
        return await polling_pids(stack.client, stack.task_queue)
    except RPCError:
        return set()


async def restart_server(
    stack: Stack,
    faults: FaultLog,
    stop: asyncio.Event,
    started: float,
    first: float,
    every: float,
    count: int,
    down_for: float = 2.0,
) -> None:
    if await _pause(stop, first):
        return
    for n in range(count):
        pid = stack.server.process.pid if stack.server.process else None
        stack.server.kill()
        log(f"{stack.name}: killed the Temporal dev server (pid {pid}) with SIGKILL")
        await asyncio.sleep(down_for)
        await stack.server.start()  # same database file, same port
        faults.server_restarts += 1
        faults.note(
            started, f"kill -9 dev server (pid {pid}), restarted after {down_for:.0f}s on the same file"
        )
        log(f"{stack.name}: dev server back on {stack.server.address} (start #{stack.server.starts})")
        if n + 1 < count and await _pause(stop, every):
            return


async def cut_database(
    stack: Stack,
    faults: FaultLog,
    stop: asyncio.Event,
    started: float,
    first: float,
    every: float,
    count: int,
    outage: float = 10.0,
) -> None:
    assert stack.proxy is not None, "the database outage needs the workers behind the proxy"
    if await _pause(stop, first):
        return
    for n in range(count):
        stack.proxy.cut()
        stack.outage.set()
        cut_at = time.monotonic()
        log(
            f"{stack.name}: cut the workers and the API off PostgreSQL (proxy :{stack.proxy.port}) for {outage:.0f}s"
        )
        prober = asyncio.create_task(probe_api(stack, faults)) if stack.api is not None else None
        await asyncio.sleep(outage)  # not cut short by `stop`: the outage always ends restored
        if prober is not None:
            prober.cancel()
            await asyncio.gather(prober, return_exceptions=True)
        stack.outage.clear()
        stack.proxy.restore()
        faults.outage_seconds += time.monotonic() - cut_at
        faults.note(started, f"database cut for {time.monotonic() - cut_at:.1f}s, restored")
        log(f"{stack.name}: PostgreSQL reachable again")
        if n + 1 < count and await _pause(stop, every):
            return


PROBE_EVERY = 0.25  # seconds between the prober's requests
PROBE_TIMEOUT = 15.0


async def probe_api(stack: Stack, faults: FaultLog) -> None:
    """While the database is cut, ask the API what its users would (reads and writes that need the
    database, and some that need only Temporal) and record every answer: a 503 with a JSON body (or a
    200 for what needs no database) is right; a 500, a hang or a body that is not JSON is a violation."""
    assert stack.api is not None and stack.api_keys is not None
    from domain.api_keys import Role as KeyRole

    keys = stack.api_keys
    requests = [
        ("GET", "/readyz", None, None),
        ("GET", f"/stock?sku={faults.probe_sku}", KeyRole.warehouse, None),
        ("GET", "/warehouses/MN/queue", KeyRole.warehouse, None),
        ("GET", f"/orders/{faults.probe_order}", KeyRole.support, None),
        ("GET", "/orders?page_size=5", KeyRole.support, None),
        ("GET", "/imports/IMP-000000000000", KeyRole.source, None),
        ("POST", "/carrier/events", KeyRole.carrier, {"tracking_number": "NOPE-1", "type": "in_transit", "event_id": "e1"}),
        ("POST", "/stock/receipts", KeyRole.warehouse, {"sku": faults.probe_sku, "warehouse": "ZZ", "quantity": 1}),
        ("POST", f"/orders/{faults.probe_order}-NOPE/cancel", KeyRole.support, {"reason": "probe"}),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=PROBE_TIMEOUT) as http:
        n = 0
        while True:
            method, path, role, body = requests[n % len(requests)]
            n += 1
            what = f"{method} {path.split('?')[0]}"
            headers = {"Authorization": f"Bearer {keys[role]}"} if role else {}
            try:
                answer = await http.request(method, path, json=body, headers=headers)
            except httpx.TimeoutException:
                faults.api_outage["hang"] += 1
                faults.api_outage_wrong.append(f"{what}: no answer within {PROBE_TIMEOUT:.0f} s")
                continue
            except httpx.TransportError as exc:
                faults.api_outage[f"no connection ({type(exc).__name__})"] += 1
                continue
            faults.api_outage[str(answer.status_code)] += 1
            try:
                answer.json()
                is_json = True
            except ValueError:
                is_json = False
            if (answer.status_code >= 500 and answer.status_code != 503) or not is_json:
                faults.api_outage_wrong.append(f"{what}: {answer.status_code} {answer.text[:200]!r}")
            await asyncio.sleep(PROBE_EVERY)
