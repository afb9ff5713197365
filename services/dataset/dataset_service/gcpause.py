"""Pause CPython's cyclic garbage collector while a step builds many small objects.

The collector runs after every few hundred new container objects and, as the heap grows, its
older generations are walked again and again: building the 120,000 entries of the archive's
central directory, or the writer's 4,000 items of a shard, spends most of its time there. The
objects built are plain tuples and strings without reference cycles, so nothing is left for the
collector to find; it is enabled again afterwards (if it was enabled before).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
