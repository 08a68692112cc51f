"""Pauses of Python's cyclic garbage collector while a phase runs. In the benchmark the worker shares
the process, and a collection stops every order it is handling at that moment: a long full collection
is a step in the latency tail that no query or index explains."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

FULL = 2  # the oldest generation: a full collection walks every tracked object not frozen


@dataclass
class GcPauses:
    seconds: list[tuple[int, float]] = field(default_factory=list)  # (generation, pause)

    def summary(self) -> dict[str, Any]:
        full = [s for generation, s in self.seconds if generation == FULL]
        return {
            "collections": len(self.seconds),
            "total_ms": round(sum(s for _, s in self.seconds) * 1000, 1),
            "full_collections": len(full),
            "full_max_ms": round(max(full, default=0.0) * 1000, 1),
        }


@contextmanager
def gc_pauses() -> Iterator[GcPauses]:
    """Record each collection's generation and duration until the block ends."""
    record = GcPauses()
    started: list[float] = []

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            record.seconds.append((info["generation"], time.perf_counter() - started.pop()))

    gc.callbacks.append(on_collection)
    try:
        yield record
    finally:
        gc.callbacks.remove(on_collection)
