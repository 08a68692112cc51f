"""Percentiles by nearest rank: the report's cycle times (domain/reports.py) and the benchmarks' latencies
(bench/) use this one definition, so a p99 means the same thing in both.

Nearest rank: the p-th percentile is the smallest value with at least p % of the values at or below it.
It is always one of the values measured (never an interpolation between two of them), which is what
a report saying "99 % of the orders shipped within N hours" needs. `statistics.quantiles` interpolates
(and has no nearest-rank method), so it is not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) of `sorted_values`, which must be ascending and not empty."""
    if not sorted_values:
        raise ValueError("no values: an empty sample has no percentile")
    if not 0 < p <= 100:
        raise ValueError(f"a percentile is more than 0 and at most 100, not {p}")
    # p * n before dividing: for whole p it is exact (0.07 * 100 is 7.000000000000001, 7 * 100 / 100 is 7)
    rank = max(1, math.ceil(p * len(sorted_values) / 100))
    return sorted_values[rank - 1]
