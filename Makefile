# The two commands: `make run` (the system on the embedded default) and `make test` (the whole suite).
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)

.PHONY: install run test test-fast test-fast-cov lint worker analytics-worker api clean histories bench bench-quick bench-api bench-codec bench-cli chaos

install: .venv/.installed

# Everything: the dev tools and the `analytics` extra (the forecast's and the report charts' libraries,
# which the order worker's image leaves out: docs/operations.md).
.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra analytics --python $(PYTHON)
	@touch $@

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

run: install
	.venv/bin/python devstack.py

worker: install
	.venv/bin/python worker.py

# The demand forecast's worker (docs/analytics.md): the one process that needs the `analytics` extra.
analytics-worker: install
	.venv/bin/python worker.py --role analytics

api: install
	.venv/bin/python -m api

# The whole suite in TEST_WORKERS processes (pytest-xdist), each with its own dev server, database and
# API; a module's tests run in one process, in order (they share module fixtures). Much of a test is
# waiting on Temporal: on two cores one process keeps 1.2 of them busy, three keep 1.6.
TEST_WORKERS ?= 3

test: install lint
	.venv/bin/pytest -n $(TEST_WORKERS) --dist loadscope

# The fast tier alone: the real workflows on a time-skipping dev server, activities faked (tests/fast).
test-fast: install
	.venv/bin/pytest tests/fast -q

# The same, with the branch coverage of workflows/ it reaches.
test-fast-cov: install
	.venv/bin/coverage run --branch --source=workflows -m pytest tests/fast -q
	.venv/bin/coverage report

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

clean:
	rm -rf .venv .tools .data .pytest_cache .ruff_cache .mypy_cache

# Issue 12's figures: baselines, OMS placed -> shipped, latency, hot SKU, two workers, scale (python -m
# bench.throughput --help); bench-quick is the same in a couple of minutes (20 orders, scale 500).
bench: install
	.venv/bin/python -m bench.throughput

bench-quick: install
	.venv/bin/python -m bench.throughput --quick

# What the payload codec costs per payload and what compression saves (python -m bench.codec --help).
bench-codec: install
	.venv/bin/python -m bench.codec

# How long the command line takes to answer: `starter.py --help` and `status ID` as whole processes,
# against a dev server and worker it starts itself (python -m bench.cli_startup --help: --compare DIR
# times another checkout in turn, --breakdown shows what `status` imports).
bench-cli: install
	.venv/bin/python -m bench.cli_startup

# The HTTP API under open-loop load (python -m bench.api_load --help for options).
bench-api: install
	.venv/bin/python -m bench.api_load

# Fault injection: orders down every compensation path, through the client layer and the HTTP API,
# while workers, the dev server and (on PostgreSQL, via OMS_TEST_DATABASE_URL) the database fail; every
# API door fuzzed; planted bugs that must be caught. Exits 1 on any violation or a plant not caught
# (python -m chaos --help; --short for the quick version).
chaos: install
	.venv/bin/python -m chaos

# The recorded workflow histories tests/test_replay.py replays: the fast tier's tests marked `history`
# write them (docs/versioning.md says when to record them again).
histories: install
	OMS_RECORD_HISTORIES=1 .venv/bin/pytest tests/fast -q -m history
