"""When to compact a heap of deadlines whose cancelled entries stay in it until they are due.

A timer per deadline costs more than one timer for the earliest of a heap of them, and
taking a cancelled deadline out of a heap costs more than leaving it there, marked, until
it comes to the top (lazy deletion). But a deadline far ahead (a long sampling period or
timeout) comes to the top late or never, so cancelled ones could pile up. The owner of such
a heap compacts it with :func:`compact` once it holds more entries than the last compaction
said: twice its live entries then, so that most of what is copied out is dead and the
copying costs O(1) per entry pushed (amortised), and never less than
:data:`MIN_COMPACT_SIZE`, so that a small heap is not copied for a few dead entries.
"""

import heapq
from typing import Any, Callable, List

__all__ = ["MIN_COMPACT_SIZE", "compact"]

#: No heap is compacted at a size below this.
MIN_COMPACT_SIZE = 1024


def compact(heap: List[Any], live: Callable[[Any], bool]) -> int:
    """Drop the entries of `heap` that are no longer `live`, in place.

    In place, so that a caller part-way through popping the heap keeps popping the
    compacted one.

    Parameters
    ----------
    heap : list
        A heap (:mod:`heapq`) of entries.
    live : callable
        ``live(entry)``: whether `entry` is still to be served.

    Returns
    -------
    compact_at : int
        Compact the heap again once it holds more entries than this.

    """
    heap[:] = [entry for entry in heap if live(entry)]
    heapq.heapify(heap)
    return max(MIN_COMPACT_SIZE, 2 * len(heap))
