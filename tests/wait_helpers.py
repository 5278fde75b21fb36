"""What waits and test cases leave behind: counted in the process, whatever made them."""

import asyncio
import concurrent.futures
import contextlib
import gc
import io
import sys
import threading
import unittest
import warnings


def pending_waits(loop=None):
    """The pending asyncio futures alive in the process plus the callbacks on them.

    A wait that is over (timed out, lost an ``until_any`` race, cancelled) but still
    registered shows up here as a pending future or as a callback on one; a loop of such
    waits that leaves nothing behind keeps the count where it was. Given a `loop`, only
    that loop's futures count: what earlier tests left to other loops and threads (and
    the collector) does not come and go in the count.
    """
    gc.collect()
    pending = [obj for obj in gc.get_objects()
               if isinstance(obj, asyncio.Future) and not obj.done()
               and (loop is None or obj.get_loop() is loop)]
    return len(pending) + sum(len(future._callbacks or ()) for future in pending)


async def waits_left_by(round_, rounds=20, loop=None):
    """How many pending waits `rounds` rounds of ``await round_()`` leave behind (on
    `loop` alone, if given: see :func:`pending_waits`).

    A first round runs before the count, so that what it sets up once is not counted.

    Returns
    -------
    left : int
        :func:`pending_waits` after the rounds less before them: 0 or less when the
        rounds leave nothing behind.
    """
    await round_()
    before = pending_waits(loop)
    for _ in range(rounds):
        await round_()
    return pending_waits(loop) - before


def outcome_in_thread(fn, *args):
    """Run ``fn(*args)`` in a new (daemon) thread.

    Returns
    -------
    outcome : :class:`concurrent.futures.Future`
        Of what `fn` returns or raises: wait on it with a timeout.
    """
    outcome = concurrent.futures.Future()

    def run():
        try:
            outcome.set_result(fn(*args))
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return outcome


@contextlib.contextmanager
def racing(step):
    """Call ``step()`` over and over in another thread while the block runs, the threads
    switching as often as Python allows (so that they interleave at many points); then
    raise what `step` raised, if anything."""
    done = threading.Event()
    errors = []

    def race():
        try:
            while not done.is_set():
                step()
        except BaseException as exc:  # reported below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    racer = threading.Thread(target=race)
    racer.start()
    try:
        yield
    finally:
        done.set()
        racer.join(10)
        sys.setswitchinterval(interval)
    if errors:
        raise errors[0]


def announced_joins(thread):
    """An event set each time someone calls ``thread.join`` (patched on `thread`): the
    caller has come to wait for that thread to end."""
    joining = threading.Event()
    join = thread.join

    def announced_join(timeout=None):
        joining.set()
        return join(timeout)

    thread.join = announced_join
    return joining


def as_if_given_the_ident_of(monkeypatch, ended):
    """Make the calling thread, for katcp's "am I on the loop thread?" checks
    (:func:`katcp.loop.crossing.on_thread`), a thread given the ident of thread `ended`.

    Thread idents are reused: a thread started after another has ended often gets its
    ident, but not always; this makes it so for the rest of the test.
    """
    from katcp.loop import crossing

    assert not ended.is_alive()
    real_get_ident = crossing._get_ident
    this_thread = real_get_ident()
    monkeypatch.setattr(crossing, "_get_ident", lambda: (
        ended.ident if real_get_ident() == this_thread else real_get_ident()))


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
