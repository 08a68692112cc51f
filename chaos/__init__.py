"""Fault injection: real orders through the real system while its parts are killed, every door fuzzed,
bugs planted to prove the checks catch them; then the ledgers checked.

Each scenario starts a system of its own on 127.0.0.1 (a Temporal dev server on a database file, an
application database, worker subprocesses, the HTTP API with a key per role) and places a mix of
orders, each with a role that decides its path and how it must end: approved, flaky and declined
cards; holds released or cancelled; cancellations right away, inside the release window (stock
reserved), after the pick and after the pack (the manual warehouse MN, played by the run); split
shipments; short picks re-allocated, backordered or cancelled; backorders filled by a receipt or timed
out; returns received good (restocked) or damaged (written off); parcels lost and reshipped, lost and
refunded, returned to sender and refunded by the exception timeout. A third of the orders use the HTTP
API as their door (placement, support, warehouse reports, carrier events, receipts, returns), the rest
the client layer. Meanwhile one kind of fault:

  no-faults        none: the same orders undisturbed, the yardstick for the others' times
  worker-kills     kill -9 a worker (one that is polling) every few seconds, start a new one each time
  server-restart   kill -9 the dev server mid-flight, restart it on the same database file
  database-outage  cut the workers and the API off PostgreSQL through a TCP proxy for ~10 s, then
                   restore it; the API must answer 503, never 500 (PostgreSQL only)

Then every order must have ended as its role says with its workflow completed, have taken its path,
and left what its path leaves: stock conserved per SKU (loaded + booked in - units delivered, lost,
reshipped or counted out, + good returns and parcels back), nothing reserved, the stock ledger clean,
captured and refunded exactly what the path charges and refunds, authorizations voided, carrier
bookings standing for parcels that left and cancelled for the others, claims for lost parcels, returns
closed with their refund.

The `fuzz` scenario sends every door of the API generated inputs (chaos/fuzz.py); the plants
(chaos/planted.py) run short scenarios with a bug in the workers, which must be caught.

  python -m chaos            everything (300 orders per scenario, 300 fuzz cases a door, every plant)
  python -m chaos --short    the short version (tests/test_chaos.py runs a part of it)
  python -m chaos --plant release-keeps-stock    one planted bug: reports its violations, exits 1

Modules: processes (dev server, workers, API), proxy (the TCP proxy), stack (one scenario's system),
worker_process (the workers as the run starts them), orders (roles, catalog), doors (client layer and
HTTP API), driver (placing and driving orders), faults, invariants, fuzz, planted, bad_inputs, run.
"""
