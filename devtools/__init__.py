"""Tooling for running the system outside production: `make run` (devstack.py), the benchmarks (bench/),
the fault-injection run (chaos/) and the tests. `processes.py` starts and stops child processes;
`scratch_database.py` makes a throwaway database and drops it afterwards. Nothing that runs in
production (the worker, the API, the CLI and what they import) imports this package.
"""
