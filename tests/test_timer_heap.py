"""katcp.loop.timer_heap: when and how a heap of deadlines with lazy deletion is compacted."""

import heapq

from katcp.loop.timer_heap import MIN_COMPACT_SIZE, compact


def test_compacting_keeps_the_live_entries_as_a_heap_in_the_same_list():
    heap = []
    for when in (5, 3, 9, 1, 7, 2, 8, 4):
        heapq.heappush(heap, (when, when % 2 == 1))  # the odd ones are live
    same = heap
    compact(heap, lambda entry: entry[1])
    # The same list: a caller popping it meanwhile pops the compacted heap.
    assert heap is same
    assert [heapq.heappop(heap)[0] for _ in range(len(heap))] == [1, 3, 5, 7, 9]


def test_a_heap_is_compacted_again_at_twice_its_live_entries_and_never_below_1024():
    assert MIN_COMPACT_SIZE == 1024
    heap = [0] * 5000 + [1, 2, 3]  # 0: dead
    assert compact(heap, bool) == 1024
    assert heap == [1, 2, 3]
    assert compact(list(range(1, 513)), bool) == 1024
    assert compact(list(range(1, 601)), bool) == 1200
