"""What waits leave behind: counted in the process, whatever the code that made them."""

import asyncio
import gc


def pending_waits():
    """The pending asyncio futures alive in the process plus the callbacks on them.

    A wait that is over (timed out, lost an ``until_any`` race, cancelled) but still
    registered shows up here as a pending future or as a callback on one; a loop of such
    waits that leaves nothing behind keeps the count where it was.
    """
    gc.collect()
    pending = [obj for obj in gc.get_objects()
               if isinstance(obj, asyncio.Future) and not obj.done()]
    return len(pending) + sum(len(future._callbacks or ()) for future in pending)
