"""What waits and test cases leave behind: counted in the process, whatever made them."""

import asyncio
import gc
import io
import unittest
import warnings


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


def run_case_for_leftovers(case_class):
    """Run the tests of unittest TestCase `case_class` (a tornado AsyncTestCase, say).

    Returns
    -------
    result : unittest.TestResult
    resource_warnings : list of str
        The ResourceWarnings (sockets, transports left open) raised meanwhile.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = unittest.TextTestRunner(stream=io.StringIO()).run(
            unittest.defaultTestLoader.loadTestsFromTestCase(case_class))
        gc.collect()
    return result, [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
