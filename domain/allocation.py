"""Pure allocation planning: which warehouse ships which units of an order."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from itertools import combinations

Plan = dict[str, dict[str, int]]  # warehouse -> sku -> quantity
EXACT_SEARCH_LIMIT = 12  # up to this many candidate warehouses, find the true minimum split


def plan_allocation(
    wanted: Mapping[str, int],
    available: Mapping[tuple[str, str], int],
    warehouses: Sequence[str],
    take_last: Collection[str] = (),
) -> tuple[Plan, dict[str, int]]:
    """Ship from as few warehouses as possible: one that ships everything if there is one, else the
    smallest set that does. `warehouses` is in preference order (priority, then code), which breaks
    ties; `take_last` go to the end of it: a short pick's warehouse, whose shelf count was just found
    wrong, ships again only when no plan of as few warehouses does without it. Returns the plan and the shortage per sku; the
    plan is only usable when the shortage is empty.
    """
    warehouses = [w for w in warehouses if w not in take_last] + [w for w in warehouses if w in take_last]
    wanted = {sku: qty for sku, qty in wanted.items() if qty > 0}
    useful = [w for w in warehouses if any(available.get((sku, w), 0) > 0 for sku in wanted)]
    enough = all(sum(available.get((sku, w), 0) for w in useful) >= qty for sku, qty in wanted.items())
    if enough and len(useful) <= EXACT_SEARCH_LIMIT:
        for size in range(1, len(useful) + 1):
            for chosen in combinations(useful, size):  # in preference order: the first fit is the best
                plan, short = _fill(wanted, available, chosen)
                if not short:
                    return plan, short
    return _greedy(wanted, available, useful)


def _fill(
    wanted: Mapping[str, int], available: Mapping[tuple[str, str], int], chosen: Sequence[str]
) -> tuple[Plan, dict[str, int]]:
    """Take each sku from the chosen warehouses in preference order."""
    plan: Plan = {}
    short: dict[str, int] = {}
    for sku, qty in wanted.items():
        for warehouse in chosen:
            take = min(available.get((sku, warehouse), 0), qty)
            if take:
                plan.setdefault(warehouse, {})[sku] = take
                qty -= take
        if qty:
            short[sku] = qty
    return plan, short


def _greedy(
    wanted: Mapping[str, int], available: Mapping[tuple[str, str], int], warehouses: Sequence[str]
) -> tuple[Plan, dict[str, int]]:
    """Many warehouses: repeatedly take the one that covers most of what remains."""
    remaining = dict(wanted)
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
