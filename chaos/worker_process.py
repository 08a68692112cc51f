"""`python -m chaos.worker_process`: `python worker.py` as the fault-injection run starts it.

The same main, with two changes made before it starts, both set in the environment by the run:

- CHAOS_MANUAL_WAREHOUSES (codes, comma-separated): shipments released to these warehouses wait for a
  person (the run, over the client layer or the HTTP API), as with OMS_SANDBOX_WAREHOUSE=manual; the
  others go to the sandbox warehouse, as with `auto`. The worker's setting is for every warehouse: the
  run needs both at once. The two adapters are the product's own.
- CHAOS_PLANT (a name of chaos.planted.PLANTS): a bug planted for the run to catch.
"""

from __future__ import annotations

import os


def route_warehouses(manual: frozenset[str]) -> None:
    import sandbox.warehouse as warehouses

    def warehouse_for(settings, client):  # type: ignore[no-untyped-def]
        sandbox, person = warehouses.SandboxWarehouse(client, settings), warehouses.ManualWarehouse()

        class Routed:
            async def release(self, request):  # type: ignore[no-untyped-def]
                party = person if request.warehouse in manual else sandbox
                return await party.release(request)

        return Routed()

    warehouses.warehouse_for = warehouse_for


def main() -> None:
    manual = frozenset(w for w in os.environ.get("CHAOS_MANUAL_WAREHOUSES", "").split(",") if w)
    if manual:
        route_warehouses(manual)
    if plant := os.environ.get("CHAOS_PLANT"):
        from chaos import planted

        planted.install(plant)
        print(f"[chaos] planted bug {plant}: {planted.PLANTS[plant].what}", flush=True)
    import worker

    worker.main()


if __name__ == "__main__":
    main()
