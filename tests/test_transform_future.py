"""katcp.wire.util.transform_future: one way to chain a future of any kind."""

import asyncio
import concurrent.futures
import gc

import pytest

from katcp.wire.util import transform_future


def test_concurrent_future_resolved_later_is_transformed():
    source = concurrent.futures.Future()
    chained = transform_future(lambda value: value * 2, source)
    assert isinstance(chained, concurrent.futures.Future)
    assert not chained.done()
    source.set_result(21)
    assert chained.result(timeout=0) == 42


def test_already_done_future_gives_a_done_future_at_once():
    source = concurrent.futures.Future()
    source.set_result("x")
    assert transform_future(str.upper, source).result(timeout=0) == "X"


def test_errors_of_the_source_and_of_the_transformation_are_passed_on():
    failed = concurrent.futures.Future()
    failed.set_exception(KeyError("gone"))
    with pytest.raises(KeyError):
        transform_future(str, failed).result(timeout=0)
    fine = concurrent.futures.Future()
    fine.set_result(0)
    with pytest.raises(ZeroDivisionError):
        transform_future(lambda value: 1 / value, fine).result(timeout=0)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, asyncio.CancelledError])
@pytest.mark.parametrize("later", [False, True], ids=["done", "later"])
@pytest.mark.parametrize("kind", ["concurrent", "asyncio"])
def test_a_failure_that_is_no_exception_is_passed_on_too(kind, later, failure):
    # A BaseException (asyncio's CancelledError, KeyboardInterrupt) of the source fails
    # the new future as any failure does: it is neither raised where the outcome is
    # copied nor left pending for ever (IOLoopManager.stop's callback raising it).
    loop = asyncio.new_event_loop()
    try:
        source = concurrent.futures.Future() if kind == "concurrent" else loop.create_future()
        if later:
            chained = transform_future(str, source)
            source.set_exception(failure())
        else:
            source.set_exception(failure())
            chained = transform_future(str, source)
        loop.run_until_complete(asyncio.sleep(0))  # an asyncio future's done callbacks
        assert chained.done() and isinstance(chained.exception(), failure)
        assert isinstance(source.exception(), failure)
    finally:
        loop.close()


def test_cancellation_is_passed_on():
    source = concurrent.futures.Future()
    chained = transform_future(str, source)
    source.cancel()
    assert chained.cancelled()


def test_a_concurrent_future_being_resolved_can_no_longer_be_cancelled():
    # Its holder, in another thread, cancels it while the source's outcome is copied:
    # the transformation stands for that moment.
    source = concurrent.futures.Future()
    cancelled_meanwhile = []

    def transformation(value):
        cancelled_meanwhile.append(chained.cancel())
        return value + 1

    chained = transform_future(transformation, source)
    source.set_result(1)
    assert cancelled_meanwhile == [False]
    assert chained.result(timeout=0) == 2


def test_asyncio_future_gives_a_future_on_the_same_loop():
    async def main():
        loop = asyncio.get_running_loop()
        source = loop.create_future()
        chained = transform_future(lambda value: value + 1, source)
        assert chained.get_loop() is loop
        loop.call_soon(source.set_result, 1)
        return await asyncio.wait_for(chained, 5)

    assert asyncio.run(main()) == 2


@pytest.mark.parametrize("outcome", ["result", "exception", "cancel"])
def test_a_future_its_holder_cancelled_ignores_the_outcome_that_comes_later(outcome):
    # A task waiting on the new future is cancelled (a program stopping mid-request);
    # the request's outcome then arrives on the loop, where an error would be logged.
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        source = loop.create_future()
        chained = transform_future(lambda value: value + 1, source)
        chained.cancel()
        if outcome == "result":
            source.set_result(1)
        elif outcome == "exception":
            source.set_exception(KeyError("late"))
            source.exception()
        else:
            source.cancel()
        await asyncio.sleep(0)  # the source's done callbacks run on this turn
        await asyncio.sleep(0)
        return chained.cancelled(), errors

    assert asyncio.run(main()) == (True, [])


def test_a_failure_given_up_on_is_not_logged_as_never_retrieved(caplog):
    loop = asyncio.new_event_loop()
    try:
        source = loop.create_future()
        given_up = transform_future(lambda value: value, source)
        given_up.cancel()
        source.set_exception(ValueError("nobody waits for this"))
        loop.run_until_complete(asyncio.sleep(0))  # the copy runs
        del source, given_up
        gc.collect()
    finally:
        loop.close()
    assert "never retrieved" not in caplog.text


def test_an_async_transformation_is_refused():
    # The new future resolved with its coroutine, never run.
    async def transformation(value):
        return value * 2

    class Transformation:
        async def __call__(self, value):
            return value * 2

    source = concurrent.futures.Future()
    for async_transformation in (transformation, Transformation()):
        with pytest.raises(TypeError, match="transformation .* is an async function"):
            transform_future(async_transformation, source)
    assert not source._done_callbacks
