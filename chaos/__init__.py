"""Fault injection: real orders through the real system while its parts are killed, then the ledgers checked.

Each scenario starts a system of its own on 127.0.0.1 (a Temporal dev server on a database file, an
application database, `python worker.py` subprocesses), places a mix of orders through
`services.orders` (approved, flaky and declined cards, cancellations, holds over the review limit that
support releases or cancels), drives each to its end as sources, support and the carrier would, and
meanwhile injects one kind of fault:

  no-faults        none: the same orders undisturbed, the yardstick for the others' times
  worker-kills     kill -9 a worker (one that is polling) every few seconds, start a new one each time
  server-restart   kill -9 the dev server mid-flight, restart it on the same database file
  database-outage  cut the workers off PostgreSQL through a TCP proxy for ~10 s, then restore it
                   (PostgreSQL only: on SQLite there is no connection to cut)

Then every order must have ended as its role says (completed, rejected or cancelled) with its workflow
completed, and the ledgers must agree: `check_stock` clean, stock conserved, one capture per shipped
shipment and one refund per capture, captured <= authorized and refunded <= captured, what stays
charged matches the outcome, one carrier booking per shipment, no reservation left behind.

  python -m chaos            the full run (300 orders per scenario; `make chaos`)
  python -m chaos --short    the short version `make test` runs (tests/test_chaos.py)

Modules: processes (dev server, workers), proxy (the TCP proxy), stack (one scenario's system),
orders (the order mix), driver (placing and driving orders), faults, invariants, bad_inputs, run.
"""
