"""Pure allocation planning: which warehouse ships which units of an order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Plan = dict[str, dict[str, int]]  # warehouse -> sku -> quantity


def plan_allocation(
    wanted: Mapping[str, int],
    available: Mapping[tuple[str, str], int],
    warehouses: Sequence[str],
) -> tuple[Plan, dict[str, int]]:
    """Prefer one warehouse that ships everything; else split greedily across the fewest warehouses.

    `warehouses` is in preference order (priority, then code), which breaks ties. Returns the plan
    and the shortage per sku; the plan is only usable when the shortage is empty.
    """
    for warehouse in warehouses:
        if all(available.get((sku, warehouse), 0) >= qty for sku, qty in wanted.items()):
            return {warehouse: dict(wanted)}, {}
    remaining = {sku: qty for sku, qty in wanted.items() if qty > 0}
    plan: Plan = {}
    while remaining:
        coverage = {w: _coverage(remaining, available, w) for w in warehouses if w not in plan}
        candidates = [w for w in warehouses if coverage.get(w, 0) > 0]
        if not candidates:
            break
        best = max(candidates, key=coverage.__getitem__)  # max keeps the first (most preferred) among equals
        part = {sku: min(available.get((sku, best), 0), qty) for sku, qty in remaining.items()}
        plan[best] = {sku: qty for sku, qty in part.items() if qty > 0}
        remaining = {sku: qty - part[sku] for sku, qty in remaining.items() if qty - part[sku] > 0}
    return plan, remaining


def _coverage(remaining: Mapping[str, int], available: Mapping[tuple[str, str], int], warehouse: str) -> int:
    """How many of the remaining units this warehouse can ship."""
    return sum(min(available.get((sku, warehouse), 0), qty) for sku, qty in remaining.items())
