"""Sampling strategies: the parameter rules, error texts, cancellation and clock edges.

Driven by a virtual clock (``TimewarpAsyncTestCase``): times are exact, nothing waits.
Written against the mutants that survived the older tests (see docs/mutation.rst).
"""

import asyncio
import collections
import gc
import logging
import threading
import time
import weakref
from decimal import Decimal
from unittest import mock

import pytest
import tornado.gen
import tornado.ioloop
import tornado.testing

from katcp import Sensor, sampling
from katcp.core import Reading
from katcp.sampling import SamplePeriod, SampleStrategy, _PeriodicScheduler, wire_strategy
from katcp.transport.framing import WriteBatcher

from test_sampling import Recorder, StrategyTestCase, make_sensor

pytestmark = pytest.mark.timeout(30)

gen_test = tornado.testing.gen_test(timeout=10)


def _nothing(sensor, reading):
    pass


def _make(name, *params, sensor=None, **kwargs):
    return SampleStrategy.get_strategy(name, _nothing, sensor or make_sensor(), *params,
                                       **kwargs)


class TestParameters:

    @pytest.mark.parametrize("name, params, message", [
        ("bogus", [], "Unknown strategy name: bogus."),
        ("period", [], "The 'period' strategy takes 1 parameter, 0 given."),
        ("auto", ["1", "2"], "The 'auto' strategy takes 0 parameters, 2 given."),
        ("event", ["1"], "The 'event' strategy takes 0 parameters, 1 given."),
        ("period", ["x"], "Invalid period 'x': not a number."),
        ("period", [b"\xff"], "Invalid period '\ufffd': not a number."),
        ("period", ["-1"], "Invalid period '-1': must be a finite number >= 0."),
        ("period", ["inf"], "Invalid period 'inf': must be a finite number >= 0."),
        ("period", ["nan"], "Invalid period 'nan': must be a finite number >= 0."),
        ("period", ["0"], "The sampling period must be > 0, not '0'."),
        ("event-rate", ["x", "1"], "Invalid shortest period 'x': not a number."),
        ("event-rate", ["1", "x"], "Invalid longest period 'x': not a number."),
        ("event-rate", ["2", "1"],
         "The shortest period (2) must not exceed the longest (1)."),
        ("differential-rate", ["1", "3", "2"],
         "The shortest period (3) must not exceed the longest (2)."),
        ("differential", ["-1"], "Differential threshold must be positive, not '-1'."),
        ("differential", ["1.5"],
         "Invalid differential threshold '1.5' for integer sensor 'test.sensor'."),
    ])
    def test_refusals_say_what_is_wrong(self, name, params, message):
        with pytest.raises(ValueError) as error:
            _make(name, *params)
        assert str(error.value) == message

    def test_a_whole_number_period_too_large_for_a_float_is_refused_as_infinite(self):
        with pytest.raises(ValueError) as error:
            _make("period", 10 ** 400)
        assert str(error.value).endswith("must be a finite number >= 0.")

    def test_differential_refuses_other_sensor_types_by_name(self):
        sensor = make_sensor(Sensor.BOOLEAN, value=True)
        with pytest.raises(ValueError) as error:
            _make("differential", "1", sensor=sensor)
        assert str(error.value) == (
            "Differential strategies only apply to integer, float and timestamp "
            "sensors, not boolean sensor 'test.sensor'.")

    @pytest.mark.parametrize("stype, threshold, expected", [
        (Sensor.INTEGER, "3", 3), (Sensor.FLOAT, "0.5", 0.5), (Sensor.TIMESTAMP, "0.25", 0.25)])
    def test_differential_thresholds_by_sensor_type(self, stype, threshold, expected):
        for name, params in (("differential", [threshold]),
                             ("differential-rate", [threshold, "0", "1"])):
            strategy = _make(name, *params, sensor=make_sensor(stype, value=0))
            assert strategy._threshold == expected
            assert type(strategy._threshold) is type(expected)

    def test_equal_shortest_and_longest_periods_are_allowed(self):
        strategy = _make("event-rate", "1", "1")
        assert (strategy._shortest, strategy._longest) == (1.0, 1.0)
        strategy = _make("differential-rate", "2", "0.5", "1.5")
        assert (strategy._shortest, strategy._longest) == (0.5, 1.5)

    @pytest.mark.parametrize("params, formatted", [
        ((0.5,), [b"0.5"]), ((2,), [b"2"]), ((b"1.25",), [b"1.25"]), (("3",), [b"3"])])
    def test_parameters_are_kept_as_given(self, params, formatted):
        assert _make("period", *params).get_sampling_formatted() == (b"period", formatted)

    @pytest.mark.parametrize("name, params", [
        ("none", ()), ("auto", ()), ("event", ()), ("period", ("1",)),
        ("differential", ("1",)), ("event-rate", ("0", "1")),
        ("differential-rate", ("1", "0", "1"))])
    def test_every_strategy_uses_the_loop_it_is_given(self, name, params):
        loop = tornado.ioloop.IOLoop(make_current=False)
        try:
            assert _make(name, *params, ioloop=loop).ioloop is loop
        finally:
            loop.close()

    def test_one_periodic_scheduler_per_loop(self):
        loop = tornado.ioloop.IOLoop(make_current=False)
        other = tornado.ioloop.IOLoop(make_current=False)
        try:
            scheduler = _PeriodicScheduler.for_ioloop(loop)
            assert _PeriodicScheduler.for_ioloop(loop) is scheduler
            assert _PeriodicScheduler.for_ioloop(other) is not scheduler
        finally:
            loop.close()
            other.close()

    @pytest.mark.parametrize("cancel", [True, False], ids=["cancelled", "left running"])
    def test_a_closed_loop_that_ran_periodic_samples_is_freed(self, cancel):
        # Test suites make a loop per test and programs restart servers: each loop's
        # periodic scheduler must go with it, not keep it (and its samplers) for ever.
        def run_and_close():
            loop = tornado.ioloop.IOLoop(make_current=False)
            sent = []

            async def sample():
                strategy = SampleStrategy.get_strategy(
                    "period", lambda s, r: sent.append(r), make_sensor(), "0.01", ioloop=loop)
                strategy.start()
                if cancel:
                    strategy.cancel()

            loop.run_sync(sample)
            loop.close(all_fds=True)
            assert sent
            return weakref.ref(loop), weakref.ref(loop.asyncio_loop)

        refs = [run_and_close() for _ in range(3)]
        gc.collect()
        assert [(loop(), asyncio_loop()) for loop, asyncio_loop in refs] == [(None, None)] * 3

    def test_cancelling_an_unstarted_strategy_is_harmless(self):
        for name, params in (("period", ("1",)), ("event-rate", ("1", "2")), ("auto", ())):
            strategy = _make(name, *params)
            strategy.cancel()
            strategy.cancel()


class TestClockAndCancellation(StrategyTestCase):

    @gen_test
    def test_an_event_rate_change_sent_while_the_loop_was_late_leaves_none_held(self):
        sensor = make_sensor(value=0)
        start = self.io_loop.time()
        _, recorder = self.start("event-rate", sensor, "1", "10")
        sensor.set_value(2)          # held, with a timer for start + 1
        self.set_ioloop_time(start + 1)
        sensor.set_value(4)          # before the loop runs that timer: sent at once
        for offset in (1, 2, 3):
            self.set_ioloop_time(start + offset)
            yield self.settle()
        assert recorder.values == [0, 4]

    @gen_test
    def test_informs_carry_the_sensor(self):
        sensor = make_sensor(value=3)
        seen = []
        strategy = SampleStrategy.get_strategy(
            "auto", lambda s, r: seen.append((s, r.value)), sensor, ioloop=self.io_loop)
        strategy.start()
        sensor.set_value(4)
        strategy.cancel()
        assert seen == [(sensor, 3), (sensor, 4)]

    @gen_test
    def test_a_single_update_from_another_thread_is_delivered(self):
        sensor = make_sensor(value=0)
        _, recorder = self.start("event", sensor)
        thread = threading.Thread(target=sensor.set_value, args=(7,))
        thread.start()
        thread.join(10)
        yield recorder.until_count(2)
        assert recorder.values == [0, 7]

    @gen_test
    def test_an_update_queued_from_another_thread_is_dropped_after_cancel(self):
        sensor = make_sensor(value=0)
        strategy, recorder = self.start("auto", sensor)
        # Queued for the loop (this test holds the loop), then cancelled before it runs.
        thread = threading.Thread(target=sensor.set_value, args=(7,))
        thread.start()
        thread.join(10)
        strategy.cancel()
        yield self.settle()
        assert recorder.values == [0]

    @gen_test
    def test_period_reports_the_current_reading(self):
        sensor = make_sensor(value=1)
        start = self.io_loop.time()
        _, recorder = self.start("period", sensor, "1")
        sensor.set_value(2, Sensor.WARN)
        self.set_ioloop_time(start + 1)
        yield recorder.until_count(2)
        assert recorder.informs[1] == (start + 1, sensor.read())

    @gen_test
    def test_a_late_period_skips_missed_samples_instead_of_bursting(self):
        sensor = make_sensor(value=1)
        start = self.io_loop.time()
        _, recorder = self.start("period", sensor, "1")
        self.set_ioloop_time(start + 3.5)
        yield recorder.until_count(2)
        yield self.settle()
        assert [t - start for t, _ in recorder.informs] == [0, 3.5]
        self.set_ioloop_time(start + 4.5)
        yield recorder.until_count(3)
        yield self.settle()
        assert [t - start for t, _ in recorder.informs] == [0, 3.5, 4.5]

    @gen_test
    def test_a_period_exactly_one_period_late_sends_one_sample(self):
        sensor = make_sensor(value=1)
        start = self.io_loop.time()
        _, recorder = self.start("period", sensor, "1")
        self.set_ioloop_time(start + 2)
        yield recorder.until_count(2)
        yield self.settle()
        assert [t - start for t, _ in recorder.informs] == [0, 2]
        self.set_ioloop_time(start + 3)
        yield recorder.until_count(3)
        yield self.settle()
        assert [t - start for t, _ in recorder.informs] == [0, 2, 3]

    @gen_test
    def test_a_slightly_late_period_keeps_its_schedule(self):
        sensor = make_sensor(value=1)
        start = self.io_loop.time()
        _, recorder = self.start("period", sensor, "1")
        self.set_ioloop_time(start + 1.5)     # late, but by less than a period
        yield recorder.until_count(2)
        self.set_ioloop_time(start + 2)       # the next sample is still due at 2, not 2.5
        yield recorder.until_count(3)
        assert [t - start for t, _ in recorder.informs] == [0, 1.5, 2]

    @gen_test
    def test_cancelling_one_period_leaves_the_others_running(self):
        sensors = [make_sensor(value=i) for i in range(3)]
        start = self.io_loop.time()
        started = [self.start("period", sensor, "1") for sensor in sensors]
        started[0][0].cancel()
        started[1][0].cancel()
        for i in range(1, 4):
            self.set_ioloop_time(start + i)
            yield started[2][1].until_count(i + 1)
        yield self.settle()
        assert [len(recorder.informs) for _, recorder in started] == [1, 1, 4]

    @gen_test
    def test_a_cancelled_sample_due_before_the_next_live_one_is_dropped(self):
        # After the samples due run, the earliest entry left is a cancelled one (at 1.5):
        # the scheduler drops it and arms its timer for the live sample at 2, without
        # an error in the loop's callback.
        errors = []
        handler = logging.Handler(logging.ERROR)
        handler.emit = errors.append
        logging.getLogger().addHandler(handler)  # tornado logs callbacks' exceptions
        self.addCleanup(logging.getLogger().removeHandler, handler)
        start = self.io_loop.time()
        _, fast = self.start("period", make_sensor(value=1), "1")
        slow, slow_recorder = self.start("period", make_sensor(value=2), "1.5")
        slow.cancel()
        for i in range(1, 4):
            self.set_ioloop_time(start + i)
            yield fast.until_count(i + 1)
        yield self.settle()
        assert [t - start for t, _ in fast.informs] == [0, 1, 2, 3]
        assert len(slow_recorder.informs) == 1
        assert errors == []

    @gen_test
    def test_periods_of_different_lengths_interleave(self):
        start = self.io_loop.time()
        _, fast = self.start("period", make_sensor(value=1), "1")
        _, slow = self.start("period", make_sensor(value=2), "3")
        for i in range(1, 7):
            self.set_ioloop_time(start + i)
            yield fast.until_count(i + 1)
        yield slow.until_count(3)
        yield self.settle()
        assert [t - start for t, _ in fast.informs] == [0, 1, 2, 3, 4, 5, 6]
        assert [t - start for t, _ in slow.informs] == [0, 3, 6]

    @gen_test
    def test_a_strategy_cancelled_by_its_own_inform_callback_stops(self):
        start = self.io_loop.time()
        for name, params in (("period", ("1",)), ("event-rate", ("0", "1"))):
            informs = []

            def cancel_on_second(sensor, reading):
                informs.append(reading)
                if len(informs) == 2:
                    strategy.cancel()

            strategy = SampleStrategy.get_strategy(name, cancel_on_second, make_sensor(),
                                                   *params, ioloop=self.io_loop)
            strategy.start()
            for i in range(1, 5):
                self.set_ioloop_time(start + i)
                yield self.settle()
            start += 4
            assert len(informs) == 2, name

    @gen_test
    def test_event_rate_longest_period_repeats_on_schedule(self):
        sensor = make_sensor(value=5)
        start = self.io_loop.time()
        _, recorder = self.start("event-rate", sensor, "0", "2")
        for i in range(1, 4):
            self.set_ioloop_time(start + 2 * i)
            yield recorder.until_count(i + 1)
        yield self.settle()
        assert [(t - start, r.value) for t, r in recorder.informs] == [
            (0, 5), (2, 5), (4, 5), (6, 5)]

    @gen_test
    def test_differential_rate_longest_period_repeats_on_schedule(self):
        sensor = make_sensor(value=5)
        start = self.io_loop.time()
        _, recorder = self.start("differential-rate", sensor, "10", "1", "3")
        sensor.set_value(30)          # within the shortest period: held
        self.set_ioloop_time(start + 1)
        yield recorder.until_count(2)
        self.set_ioloop_time(start + 4)
        yield recorder.until_count(3)
        yield self.settle()
        assert [(t - start, r.value) for t, r in recorder.informs] == [
            (0, 5), (1, 30), (4, 30)]

    @gen_test
    def test_a_held_change_that_is_undone_is_not_sent(self):
        sensor = make_sensor(value=0)
        start = self.io_loop.time()
        _, recorder = self.start("event-rate", sensor, "1", "0")
        sensor.set_value(1)           # held for the shortest period
        sensor.set_value(0)           # back to what was last sent
        self.set_ioloop_time(start + 2)
        yield self.settle()
        assert recorder.values == [0]
        sensor.set_value(3)
        assert recorder.values == [0, 3]

    @gen_test
    def test_a_held_change_is_dropped_on_cancel(self):
        sensor = make_sensor(value=0)
        start = self.io_loop.time()
        strategy, recorder = self.start("differential-rate", sensor, "1", "1", "5")
        sensor.set_value(5)           # held
        strategy.cancel()
        strategy.cancel()
        self.set_ioloop_time(start + 10)
        yield self.settle()
        assert recorder.values == [0]

    @gen_test
    def test_repeated_changes_during_the_shortest_period_send_the_newest_once(self):
        sensor = make_sensor(value=0)
        start = self.io_loop.time()
        _, recorder = self.start("event-rate", sensor, "1", "0")
        for value in (1, 2, 3):
            sensor.set_value(value)
        self.set_ioloop_time(start + 1)
        yield recorder.until_count(2)
        self.set_ioloop_time(start + 3)
        yield self.settle()
        assert [(t - start, r.value) for t, r in recorder.informs] == [(0, 0), (1, 3)]


class TestPlainTupleReadings(StrategyTestCase):
    """The docs give a reading as a (timestamp, status, value) tuple: strategies take
    plain tuples from update() and from a sensor's read(), not only Reading objects."""

    class PlainTupleSensor(Sensor):
        def read(self):
            return tuple(super().read())

    @tornado.gen.coroutine
    def check_plain_tuples_are_sent(self, name, *params):
        sensor = self.PlainTupleSensor(Sensor.INTEGER, "plain", "", "", default=3,
                                       initial_status=Sensor.NOMINAL)
        strategy, recorder = self.start(name, sensor, *params)
        strategy.update(sensor, (1.0, Sensor.WARN, 5))
        sensor.set_value(9)
        yield recorder.until_count(3)
        assert recorder.values == [3, 5, 9]

    @gen_test
    def test_event(self):
        yield self.check_plain_tuples_are_sent("event")

    @gen_test
    def test_differential(self):
        yield self.check_plain_tuples_are_sent("differential", "1")

    @gen_test
    def test_event_rate(self):
        yield self.check_plain_tuples_are_sent("event-rate", "0", "9")

    @gen_test
    def test_differential_rate(self):
        yield self.check_plain_tuples_are_sent("differential-rate", "1", "0", "9")

    @gen_test
    def test_event_rate_longest_period_reads_a_plain_tuple(self):
        sensor = self.PlainTupleSensor(Sensor.INTEGER, "plain", "", "", default=3,
                                       initial_status=Sensor.NOMINAL)
        start = self.io_loop.time()
        _, recorder = self.start("event-rate", sensor, "0", "2")
        self.set_ioloop_time(start + 2)
        yield recorder.until_count(2)  # the periodic report, of what read() gave
        sensor.set_value(9)
        yield recorder.until_count(3)
        assert [(t - start, r.value) for t, r in recorder.informs] == [(0, 3), (2, 3), (2, 9)]


class FlakySensor(Sensor):
    """A sensor whose read() fails as often as told, as one that polls hardware may."""

    failing_reads = 0

    def read(self):
        if self.failing_reads:
            self.failing_reads -= 1
            raise OSError("no answer from the hardware")
        return super().read()


class FlakyRecorder(Recorder):
    """A recorder whose callback raises once when told to (after recording the inform)."""

    fail_next = False

    def __call__(self, sensor, reading):
        super().__call__(sensor, reading)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the inform callback failed")


class TestFailingSamples(StrategyTestCase):
    """A timed sample whose read() or callback raises is logged; no sampling stops."""

    def start_flaky(self, name, *params):
        sensor = FlakySensor(Sensor.INTEGER, "flaky", "", "", None, default=7,
                             initial_status=Sensor.NOMINAL)
        _, recorder = self.start(name, sensor, *params, recorder=FlakyRecorder(self.io_loop))
        return sensor, recorder

    def fail_next(self, what, sensor, recorder):
        if what == "read":
            sensor.failing_reads = 1
        else:
            recorder.fail_next = True

    def period_goes_on(self, what, sent):
        start = self.io_loop.time()
        # Started first, so its sample is the first due at each tick.
        sensor, flaky = self.start_flaky("period", "1")
        _, other = self.start("period", make_sensor(value=1), "1")
        self.fail_next(what, sensor, flaky)
        with self.assertLogs("katcp.sampling", logging.ERROR) as logs:
            for i in range(1, 4):
                self.set_ioloop_time(start + i)
                yield other.until_count(i + 1)
            yield flaky.until_count(len(sent))
        yield self.settle()
        assert [t - start for t, _ in other.informs] == [0, 1, 2, 3]
        assert [t - start for t, _ in flaky.informs] == sent
        assert [line.splitlines()[0] for line in logs.output] == [
            "ERROR:katcp.sampling:Error sampling sensor 'flaky' with the SamplePeriod strategy "
            "(until a sample succeeds, further errors are logged at debug level)"]

    @gen_test
    def test_a_period_sample_whose_read_raises_stops_no_sampling(self):
        yield from self.period_goes_on("read", [0, 2, 3])

    @gen_test
    def test_a_period_sample_whose_callback_raises_stops_no_sampling(self):
        yield from self.period_goes_on("callback", [0, 1, 2, 3])

    @gen_test
    def test_failures_in_a_row_are_one_error_until_a_sample_succeeds(self):
        start = self.io_loop.time()
        sensor, flaky = self.start_flaky("period", "1")
        sensor.failing_reads = 3
        with self.assertLogs("katcp.sampling", logging.DEBUG) as logs:
            for i in range(1, 4):
                self.set_ioloop_time(start + i)
                yield self.settle()
            self.set_ioloop_time(start + 4)
            yield flaky.until_count(2)
            sensor.failing_reads = 1
            self.set_ioloop_time(start + 5)
            yield self.settle()
        assert [r.levelname for r in logs.records] == ["ERROR", "DEBUG", "DEBUG", "INFO", "ERROR"]
        assert logs.records[3].getMessage() == (
            "Sampling sensor 'flaky' with the SamplePeriod strategy succeeded again")
        assert [t - start for t, _ in flaky.informs] == [0, 4]

    @gen_test
    def test_an_event_rate_failure_in_a_row_is_logged_at_debug_with_its_traceback(self):
        start = self.io_loop.time()
        sensor, flaky = self.start_flaky("event-rate", "0", "2")
        sensor.failing_reads = 2
        with self.assertLogs("katcp.sampling", logging.DEBUG) as logs:
            for i in (1, 2):
                self.set_ioloop_time(start + 2 * i)
                yield self.settle()
            self.set_ioloop_time(start + 6)
            yield flaky.until_count(2)
        assert [r.levelname for r in logs.records] == ["ERROR", "DEBUG", "INFO"]
        assert logs.records[1].getMessage() == (
            "Sampling sensor 'flaky' with the SampleEventRate strategy failed again")
        assert logs.records[1].exc_info[0] is OSError
        assert logs.records[2].getMessage() == (
            "Sampling sensor 'flaky' with the SampleEventRate strategy succeeded again")

    def first_read_fails(self, strategy, start_strategy):
        # A sensor that fails its first read when the strategy starts: the strategy is
        # in effect all the same (the failure logged once), and sends the next change.
        sensor = FlakySensor(Sensor.INTEGER, "flaky", "", "", None, default=7,
                             initial_status=Sensor.NOMINAL)
        sensor.failing_reads = 2  # a read of its own by a fan-out, if any, fails too
        with self.assertLogs("katcp.sampling", logging.ERROR) as logs:
            sent = start_strategy(sensor)
        assert [line.splitlines()[0] for line in logs.output] == [
            "ERROR:katcp.sampling:Error sampling sensor 'flaky' with the %s strategy "
            "(until a sample succeeds, further errors are logged at debug level)" % strategy]
        assert sent == []
        sensor.failing_reads = 0
        sensor.set_value(8)
        assert len(sent) == 1

    def test_a_strategy_whose_first_read_fails_goes_on_observing(self):
        for name, params, strategy in [
                ("auto", (), "SampleAuto"), ("event", (), "SampleEvent"),
                ("differential", ("1",), "SampleDifferential"),
                ("event-rate", ("0", "0"), "SampleEventRate"),
                ("differential-rate", ("1", "0", "0"), "SampleDifferentialRate")]:
            with self.subTest(name):
                self.first_read_fails(strategy, lambda sensor: self.start(
                    name, sensor, *params, recorder=FlakyRecorder(self.io_loop))[1].informs)

    def test_a_servers_event_strategy_whose_first_read_fails_goes_on_observing(self):
        def start(sensor):
            lines = []
            self.start_wire(lines, sensor)
            return lines
        self.first_read_fails("_WireSampleEvent", start)

    @gen_test
    def test_an_event_rate_first_read_that_fails_is_retried_a_longest_period_on(self):
        start = self.io_loop.time()
        sensor = FlakySensor(Sensor.INTEGER, "flaky", "", "", None, default=7,
                             initial_status=Sensor.NOMINAL)
        sensor.failing_reads = 1
        with self.assertLogs("katcp.sampling", logging.ERROR):
            _, recorder = self.start("event-rate", sensor, "0", "2")
        self.set_ioloop_time(start + 2)
        yield recorder.until_count(1)
        assert [(t - start, r.value) for t, r in recorder.informs] == [(2, 7)]

    @gen_test
    def test_an_event_rate_change_held_is_sent_as_it_was_set_without_reading_again(self):
        start = self.io_loop.time()
        sensor, flaky = self.start_flaky("event-rate", "1", "10")
        sensor.set_value(8)  # held for the shortest period
        sensor.failing_reads = 1
        self.set_ioloop_time(start + 1)
        yield flaky.until_count(2)
        assert flaky.values == [7, 8] and sensor.failing_reads == 1

    @gen_test
    def test_an_event_rate_change_whose_callback_raises_is_not_sent_again(self):
        # Without a longest period there is nothing to send again, though the callback
        # failed; the error is logged.
        start = self.io_loop.time()
        sensor, flaky = self.start_flaky("event-rate", "1", "0")
        sensor.set_value(8)
        flaky.fail_next = True
        with self.assertLogs("katcp.sampling", logging.ERROR):
            self.set_ioloop_time(start + 1)
            yield flaky.until_count(2)
        self.set_ioloop_time(start + 5)
        yield self.settle()
        assert flaky.values == [7, 8]

    def longest_period_goes_on(self, what, sent, name, *params):
        start = self.io_loop.time()
        sensor, flaky = self.start_flaky(name, *params)
        self.fail_next(what, sensor, flaky)
        with self.assertLogs("katcp.sampling", logging.ERROR) as logs:
            self.set_ioloop_time(start + 2)
            yield self.settle()
            for i in range(2, 4):
                self.set_ioloop_time(start + 2 * i)
                yield flaky.until_count(len(sent) - 3 + i)
        yield self.settle()
        assert [t - start for t, _ in flaky.informs] == sent
        assert len(logs.output) == 1 and "sensor 'flaky'" in logs.output[0]

    @gen_test
    def test_an_event_rate_update_whose_read_raises_stops_no_updates(self):
        yield from self.longest_period_goes_on("read", [0, 4, 6], "event-rate", "0", "2")

    @gen_test
    def test_an_event_rate_update_whose_callback_raises_stops_no_updates(self):
        yield from self.longest_period_goes_on("callback", [0, 2, 4, 6], "event-rate", "0", "2")

    @gen_test
    def test_a_differential_rate_update_whose_read_raises_stops_no_updates(self):
        yield from self.longest_period_goes_on(
            "read", [0, 4, 6], "differential-rate", "1", "0", "2")

    @gen_test
    def test_a_differential_rate_update_whose_callback_raises_stops_no_updates(self):
        yield from self.longest_period_goes_on(
            "callback", [0, 2, 4, 6], "differential-rate", "1", "0", "2")

    @gen_test
    def test_a_held_change_whose_callback_raises_stops_no_updates(self):
        start = self.io_loop.time()
        sensor, flaky = self.start_flaky("event-rate", "1", "3")
        sensor.set_value(8)           # held for the shortest period
        flaky.fail_next = True
        with self.assertLogs("katcp.sampling", logging.ERROR):
            self.set_ioloop_time(start + 1)
            yield flaky.until_count(2)
        self.set_ioloop_time(start + 4)
        yield flaky.until_count(3)
        assert [(t - start, r.value) for t, r in flaky.informs] == [(0, 7), (1, 8), (4, 8)]


def test_a_scheduled_call_that_raises_leaves_the_shared_timer_running(caplog):
    loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        scheduler = _PeriodicScheduler.for_ioloop(loop)
        ran = []

        def fail(when):
            raise RuntimeError("a sampler's bug")

        async def run():
            # Deadlines are times of the asyncio loop's monotonic clock.
            now = loop.asyncio_loop.time()
            scheduler.schedule(now, fail)
            scheduler.schedule(now, ran.append)       # due in the same run, after fail
            scheduler.schedule(now + 0.01, ran.append)
            while len(ran) < 2:
                await tornado.gen.sleep(0.005)

        with caplog.at_level(logging.ERROR):
            loop.run_sync(run, timeout=10)
        assert "a sampler's bug" in caplog.text   # the loop reports it
    finally:
        loop.close()


def test_a_run_of_the_shared_timer_arms_it_once_for_all_the_samplers_it_served():
    loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        scheduler = _PeriodicScheduler.for_ioloop(loop)
        armed = []
        arm = scheduler._arm
        scheduler._arm = lambda when: (armed.append(when), arm(when))
        due = loop.asyncio_loop.time() - 1
        for period in (30, 10, 20):
            # As a period sampler does: its next deadline, scheduled from its callback.
            scheduler.schedule(due, lambda when, period=period: scheduler.schedule(
                when + period, lambda when: None))
        del armed[:]
        scheduler._run()
        assert armed == [due + 10]
        # Nothing left once those are served: the next deadline scheduled arms it again.
        scheduler._heap[:] = []
        scheduler._run()
        scheduler.schedule(due + 40, lambda when: None)
        assert armed == [due + 10, due + 40]
    finally:
        loop.close()


def test_cancelled_samples_far_ahead_do_not_pile_up_in_the_shared_heap():
    loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        sensor = make_sensor(value=1)
        scheduler = _PeriodicScheduler.for_ioloop(loop)
        kept = [_make("period", "3600", sensor=sensor, ioloop=loop) for _ in range(3)]
        for strategy in kept:
            strategy.start()

        def set_and_clear(cycles):
            # Each leaves a deadline an hour ahead.
            for _ in range(cycles):
                strategy = _make("period", "3600", sensor=sensor, ioloop=loop)
                strategy.start()
                strategy.cancel()
                assert len(scheduler._heap) <= 1024

        set_and_clear(1024 - 3)
        assert len(scheduler._heap) == 1024
        set_and_clear(1)  # past 1024 entries: compacted to the live ones
        assert len(scheduler._heap) == 3
        set_and_clear(10 * 1024)
        live = [entry for entry in scheduler._heap if entry[2] is not None]
        assert sorted(map(id, live)) == sorted(id(strategy._timeout) for strategy in kept)
        for strategy in kept:
            strategy.cancel()
    finally:
        loop.close()


def test_a_compaction_while_due_samples_are_sent_serves_each_once():
    loop = tornado.ioloop.IOLoop(make_current=False)
    try:
        scheduler = _PeriodicScheduler.for_ioloop(loop)
        served = []
        far = loop.asyncio_loop.time() + 3600

        def churn(when):
            # A callback that fills the heap with cancelled entries past its compaction.
            served.append("churn")
            for _ in range(2 * 1024):
                scheduler.cancel(scheduler.schedule(far, served.append))

        due = loop.asyncio_loop.time() - 1
        scheduler.schedule(due, churn)
        scheduler.schedule(due + 0.5, lambda when: served.append("after"))
        scheduler._run()
        assert served == ["churn", "after"]
        scheduler._run()
        assert served == ["churn", "after"]
        assert all(entry[2] is None for entry in scheduler._heap)
    finally:
        loop.close()


class TestDifferentialNaN(StrategyTestCase):
    """A change between NaN and a number is reported; NaN to NaN is no change."""

    def check(self, name, *params):
        sensor = make_sensor(Sensor.FLOAT, value=float("nan"))
        _, recorder = self.start(name, sensor, *params)
        for value in (5.0, 5.5, float("nan"), float("nan"), 5.0, float("inf"),
                      float("inf"), 5.0):
            sensor.set_value(value)
        assert [repr(value) for value in recorder.values] == [
            "nan", "5.0", "nan", "5.0", "inf", "5.0"]

    def test_differential(self):
        self.check("differential", "1")

    def test_differential_rate(self):
        self.check("differential-rate", "1", "0", "0")


class TestDifferentialDecimals(StrategyTestCase):
    """Float and timestamp sensors take Decimals, mixed with floats and NaN ones."""

    def check(self, name, *params):
        sensor = make_sensor(Sensor.FLOAT, value=0.0)
        _, recorder = self.start(name, sensor, *params)
        for value in (Decimal("0.5"), Decimal("1.5"), 1.75, Decimal("2.75"), Decimal("NaN"),
                      Decimal("NaN"), 2.5, float("nan"), Decimal("NaN"), Decimal("5")):
            sensor.set_value(value)
        assert [str(value) for value in recorder.values] == [
            "0.0", "1.5", "2.75", "NaN", "2.5", "nan", "5"]

    def test_differential(self):
        self.check("differential", "1")

    def test_differential_rate(self):
        self.check("differential-rate", "1", "0", "0")


class ParamsAsIn093(SampleStrategy):
    """A custom strategy written to the 0.9.3 subclass API: it checks its own parameters."""

    OBSERVE_UPDATES = True

    def __init__(self, inform_callback, sensor, *params, **kwargs):
        SampleStrategy.__init__(self, inform_callback, sensor, *params, **kwargs)
        if len(params) != 1:
            raise ValueError("one limit, please")
        self._limit = float(params[0])

    def get_sampling(self):
        return SampleStrategy.AUTO

    def update(self, sensor, reading):
        if reading.value > self._limit:
            self.inform(reading)


class TestCustomStrategies(StrategyTestCase):

    @gen_test
    def test_a_subclass_that_declares_no_parameter_count_takes_its_own(self):
        sensor = make_sensor(value=0)
        recorder = Recorder(self.io_loop)
        strategy = ParamsAsIn093(recorder, sensor, 5, ioloop=self.io_loop)
        strategy.start()
        self.addCleanup(strategy.cancel)
        for value in (3, 7, 9):
            sensor.set_value(value)
        assert recorder.values == [7, 9]
        assert strategy.get_sampling_formatted() == (b"auto", [b"5"])
        with pytest.raises(ValueError, match="one limit"):
            ParamsAsIn093(recorder, sensor, ioloop=self.io_loop)

    def test_the_base_class_takes_any_parameters(self):
        strategy = SampleStrategy(_nothing, make_sensor(), 1, b"2", ioloop=self.io_loop)
        assert strategy._params == [b"1", b"2"]
        with pytest.raises(NotImplementedError):
            strategy.get_sampling()


def test_period_strategy_constructor_keeps_its_parameters():
    strategy = SamplePeriod(_nothing, make_sensor(), "0.25")
    assert strategy._period == 0.25
    assert strategy.get_sampling() == SampleStrategy.PERIOD


@pytest.mark.parametrize("param", [b"0.5", bytearray(b"0.5"), "0.5", 0.5])
def test_parameters_are_kept_as_bytes(param):
    strategy = SamplePeriod(_nothing, make_sensor(), param)
    assert strategy.get_sampling_formatted() == (b"period", [b"0.5"])


def test_the_documented_constants_and_kinship_of_the_strategies():
    assert sampling.AGE_OF_UNIVERSE == 4.32329886e+17
    assert SampleStrategy.SAMPLING_LOOKUP_REV == {
        "none": 0, "auto": 1, "period": 2, "event": 3, "differential": 4, "event-rate": 5,
        "differential-rate": 6}
    # Only the strategies that send on updates observe their sensor.
    observers = {cls.__name__ for cls in (
        SampleStrategy, sampling.SampleNone, sampling.SampleAuto, SamplePeriod,
        sampling.SampleEvent, sampling.SampleDifferential, sampling.SampleEventRate,
        sampling.SampleDifferentialRate) if cls.OBSERVE_UPDATES}
    assert observers == {"SampleAuto", "SampleEvent", "SampleDifferential",
                         "SampleEventRate", "SampleDifferentialRate"}
    assert issubclass(sampling.SampleEvent, sampling.SampleEventRate)
    assert issubclass(sampling.SampleDifferentialRate, sampling.SampleEventRate)


class TestStartRecordsTheLoopThread(StrategyTestCase):

    @gen_test
    def test_start_records_the_thread_that_update_in_ioloop_compares_with(self):
        strategy, recorder = self.start("none", make_sensor())
        assert strategy._ioloop_thread_id == threading.get_ident()
        assert recorder.values == []


def test_each_strategy_names_its_constant_and_the_base_names_none():
    ioloop = tornado.ioloop.IOLoop(make_current=False)
    try:
        for name, params in [("none", ()), ("auto", ()), ("period", (1,)), ("event", ()),
                             ("differential", (1,)), ("event-rate", (1, 2)),
                             ("differential-rate", (1, 1, 2))]:
            strategy = _make(name, *params, ioloop=ioloop)
            assert SampleStrategy.SAMPLING_LOOKUP[strategy.get_sampling()] == name
        with pytest.raises(NotImplementedError, match=r"^SampleStrategy sets no _SAMPLING$"):
            SampleStrategy(_nothing, make_sensor(), ioloop=ioloop).get_sampling()
    finally:
        ioloop.close()


def test_periodic_sampling_with_cancellations_logs_no_errors(caplog):
    loop = tornado.ioloop.IOLoop(make_current=False)
    counts = [[], [], []]
    try:
        # Periods that make a cancelled sample the next one due after a tick.
        strategies = [
            SampleStrategy.get_strategy("period", lambda s, r, n=n: counts[n].append(r),
                                        make_sensor(value=n), period, ioloop=loop)
            for n, period in enumerate(["0.015", "0.013", "0.01"])]

        async def run():
            for strategy in strategies:
                strategy.start()
            strategies[0].cancel()
            while len(counts[2]) < 5:
                await tornado.gen.sleep(0.01)
            strategies[1].cancel()
            before = len(counts[1])
            while len(counts[2]) < 10:
                await tornado.gen.sleep(0.01)
            strategies[2].cancel()
            return before

        with caplog.at_level(logging.ERROR):
            before = loop.run_sync(run, timeout=10)
        assert len(counts[0]) == 1 and len(counts[1]) == before
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        loop.close()


class TestWallClockSteps:
    """Periods run on the asyncio loop's monotonic clock: a step of the wall clock (an NTP
    step, a VM resumed; here ``time.time`` patched) neither stops nor holds up sampling.

    On a real loop: the virtual clock of the other tests replaces both clocks at once.
    """

    WAIT = 5.0

    @staticmethod
    def _run(body):
        loop = tornado.ioloop.IOLoop(make_current=False)
        try:
            loop.run_sync(body, timeout=30)
        finally:
            loop.close()

    @staticmethod
    def _stepped(step):
        real = time.time
        return mock.patch.object(time, "time", lambda: real() + step)

    async def _sent(self, recorder, count):
        await asyncio.wait_for(recorder.until_count(count), self.WAIT)

    def test_period_sampling_goes_on_through_steps_back_and_forward(self):
        sensor = make_sensor(value=1)

        async def body():
            recorder = Recorder(tornado.ioloop.IOLoop.current())
            strategy = SampleStrategy.get_strategy("period", recorder, sensor, "0.01")
            strategy.start()
            try:
                await self._sent(recorder, 2)
                with self._stepped(-3600.0):
                    await self._sent(recorder, 5)
                with self._stepped(3600.0):
                    await self._sent(recorder, 8)
                # The forward step corrected: a deadline reckoned during it is not an hour on.
                await self._sent(recorder, 11)
            finally:
                strategy.cancel()

        self._run(body)

    @pytest.mark.parametrize("name, params", [("event-rate", ("0.05", "0")),
                                              ("differential-rate", ("0.5", "0.05", "0"))])
    def test_a_change_within_the_shortest_period_is_sent_through_steps(self, name, params):
        sensor = make_sensor(Sensor.FLOAT, value=1.0)
        recorders = []

        async def body():
            recorder = Recorder(tornado.ioloop.IOLoop.current())
            recorders.append(recorder)
            strategy = SampleStrategy.get_strategy(name, recorder, sensor, *params)
            strategy.start()
            try:
                await self._sent(recorder, 1)
                with self._stepped(-3600.0):
                    # Within the shortest period of the first inform: held, then sent.
                    sensor.set_value(2)
                    await self._sent(recorder, 2)
                with self._stepped(3600.0):
                    sensor.set_value(3)
                    await self._sent(recorder, 3)
                # After the correction, within the shortest period of the one sent in the
                # step (by the wall clock, an hour before it).
                sensor.set_value(4)
                await self._sent(recorder, 4)
            finally:
                strategy.cancel()

        self._run(body)
        # The readings keep the wall-clock timestamps they were set with.
        now = time.time()
        assert [(r.value, round((r.timestamp - now) / 3600.0)) for _, r in
                recorders[0].informs[1:]] == [(2, -1), (3, 1), (4, 0)]


class TestWireStrategies:
    """wire_strategy(): the strategies of a server's clients, sending inform bytes."""

    @pytest.mark.parametrize("name, params", [("event", ()), ("auto", ()), ("period", ("1",))])
    def test_a_wire_strategy_uses_the_loop_it_is_given(self, name, params):
        loop = tornado.ioloop.IOLoop(make_current=False)
        try:
            strategy = wire_strategy(name, [].append, 5, make_sensor(), *params, ioloop=loop)
            assert strategy.ioloop is loop
        finally:
            loop.close()

    def test_cancelling_a_wire_event_strategy_twice_or_unstarted_is_harmless(self):
        loop = tornado.ioloop.IOLoop(make_current=False)
        try:
            sensor = make_sensor(value=1)
            wire_strategy("event", [].append, 5, sensor, ioloop=loop).cancel()
            strategy = wire_strategy("event", [].append, 5, sensor, ioloop=loop)
            strategy.start()
            strategy.cancel()
            strategy.cancel()
            assert not sensor._observers
        finally:
            loop.close()

    @pytest.mark.parametrize("major, stamps", [
        (4, (b"1000250", b"2000250", b"3000250", b"4000250")),
        (5, (b"1000.250000", b"2000.250000", b"3000.250000", b"4000.250000"))])
    def test_event_informs_of_every_change_carry_the_versions_timestamps(self, major, stamps):
        loop = tornado.ioloop.IOLoop(make_current=False)
        try:
            sensor = Sensor.integer("n", params=[0, 10])
            sensor.set_value(1, timestamp=1000.25)
            sent = [], []
            for send in sent:
                wire_strategy("event", send.append, major, sensor, ioloop=loop).start()
            sensor.set_value(2, timestamp=2000.25)
            sensor.set_value(2, timestamp=2500.25)  # no change: not sent
            sensor.set_value(3, timestamp=3000.25)
            sensor.set_value(4, timestamp=4000.25)  # once the fan-out's targets are made
            expected = [b"#sensor-status %s 1 n nominal %d\n" % (stamp, value)
                        for stamp, value in zip(stamps, (1, 2, 3, 4))]
            assert sent == (expected, expected)
        finally:
            loop.close()

    @pytest.mark.parametrize("replaced_on", ["subclass", "sensor"])
    def test_event_informs_are_made_by_a_status_line_of_the_sensors_own(self, replaced_on):
        # Every line an event strategy sends, its first and those the fan-out shares, is
        # what the sensor's status_line() makes (as for the other strategies): a
        # subclass's, or one set on the sensor (mock.patch.object(sensor, ...)) before the
        # strategies are.
        class Tagged(Sensor):
            def status_line(self, reading, major=5):
                return super().status_line(reading, major) + b" tagged"

        loop = tornado.ioloop.IOLoop(make_current=False)
        try:
            if replaced_on == "subclass":
                sensor = Tagged(Sensor.INTEGER, "n", "", "", [0, 10])
            else:
                sensor = Sensor(Sensor.INTEGER, "n", "", "", [0, 10])
                own = sensor.status_line
                sensor.status_line = lambda reading, major=5: own(reading, major) + b" tagged"
            sensor.set_value(1, timestamp=1000.25)
            sent = [], []
            for send in sent:
                wire_strategy("event", send.append, 5, sensor, ioloop=loop).start()
            sensor.set_value(2, timestamp=2000.25)
            sensor.set_value(3, timestamp=3000.25)
            sensor.set_value(4, timestamp=4000.25)  # once the fan-out's targets are made
            expected = [b"#sensor-status %d000.250000 1 n nominal %d tagged\n" % (value, value)
                        for value in (1, 2, 3, 4)]
            assert sent == (expected, expected)
        finally:
            loop.close()


class _Batcher(WriteBatcher):
    """A write batcher whose loop turn never ends: what it is sent stays in its batch."""

    def __init__(self):
        super().__init__(None, lambda flush: None, 1 << 20)

    def values(self):
        return [int(line.split()[-1]) for line in self._chunks]


class _OwnSend(_Batcher):
    """A batcher class with a send() of its own: never sent to through a group sender."""

    def send(self, data):
        super().send(data)


class TestEventFanOut:
    """The event strategies of one sensor's clients, sharing each change's work."""

    @pytest.fixture
    def loop(self):
        loop = tornado.ioloop.IOLoop(make_current=False)
        yield loop
        loop.close()

    def test_joining_and_leaving_cost_the_same_for_any_number_of_members(
            self, loop, monkeypatch):
        counts = collections.Counter()
        group_sender_of = sampling._group_sender_of
        retarget = sampling._EventFanOut._retarget
        inform = sampling._EventFanOut.inform

        def counted_group_sender_of(send):
            counts["classified"] += 1
            return group_sender_of(send)

        def counted_retarget(fan):
            counts["rebuilt"] += 1
            return retarget(fan)

        def counted_inform(fan, reading):
            counts["informed"] += 1
            return inform(fan, reading)

        class Member(sampling._WireSampleEvent):
            __hash__ = object.__hash__

            def __eq__(self, other):
                counts["compared"] += 1
                return self is other

        monkeypatch.setattr(sampling, "_group_sender_of", counted_group_sender_of)
        monkeypatch.setattr(sampling._EventFanOut, "_retarget", counted_retarget)
        monkeypatch.setattr(sampling._EventFanOut, "inform", counted_inform)
        sensor = make_sensor(value=0)
        many = 300
        for changes in ([], [1, 2, 3]):
            batchers = [_Batcher() for _ in range(many)]
            members = [Member(batcher.send, 5, sensor, ioloop=loop) for batcher in batchers]
            for member in members:
                member.start()
            # Each sender is classified once, when it joins; nothing else is per member.
            assert counts == {"classified": many}
            for value in changes:
                sensor.set_value(value)
            # The targets are made once, for the first change sent by them (the first
            # after the joins is the members' own test); later ones take the short way.
            made = {"rebuilt": 1, "informed": 2} if changes else {}
            assert counts == dict(classified=many, **made)
            for member in members:
                member.cancel()
            assert counts == dict(classified=many, **made)
            assert [batcher.values() for batcher in batchers] == [[0] + changes] * many
            assert not sensor._observers
            counts.clear()

    def test_batchers_of_one_class_share_a_target_and_other_senders_have_their_own(
            self, loop):
        sensor = make_sensor(value=0)
        grouped = [_Batcher() for _ in range(3)]
        alone = _OwnSend()
        plain = []
        sends = [batcher.send for batcher in grouped] + [alone.send, plain.append]
        members = [wire_strategy("event", send, 5, sensor, ioloop=loop) for send in sends]
        for member in members:
            member.start()
        fan = members[0]._fan_out
        for value in (1, 2):
            sensor.set_value(value)
        # The other senders, then one group sender for the three batchers.
        assert len(fan._targets) == 3
        assert fan._targets[:2] == (alone.send, plain.append)
        assert fan._targets[2] not in [batcher.send for batcher in grouped]
        for member in members[:2]:
            member.cancel()
        sensor.set_value(3)
        # A batcher left alone in its group is sent to directly.
        assert fan._targets == (alone.send, plain.append, grouped[2].send)
        assert [batcher.values() for batcher in grouped] == [[0, 1, 2]] * 2 + [[0, 1, 2, 3]]
        assert alone.values() == [0, 1, 2, 3]
        assert [int(line.split()[-1]) for line in plain] == [0, 1, 2, 3]
        for member in members[2:]:
            member.cancel()
        assert not sensor._observers

    def test_a_member_that_leaves_is_sent_nothing_more_and_the_others_everything(
            self, loop):
        sensor = make_sensor(value=0)
        stays, goes, brief = _Batcher(), _Batcher(), _Batcher()
        member_stays, member_goes = (wire_strategy("event", batcher.send, 5, sensor, ioloop=loop)
                                     for batcher in (stays, goes))
        member_stays.start()
        member_goes.start()
        sensor.set_value(1)
        sensor.set_value(2)
        member_goes.cancel()           # after the targets were made
        sensor.set_value(3)
        # One that leaves before any change since it joined (still fresh).
        member_brief = wire_strategy("event", brief.send, 5, sensor, ioloop=loop)
        member_brief.start()
        member_brief.cancel()
        sensor.set_value(4)
        sensor.set_value(5)
        assert stays.values() == [0, 1, 2, 3, 4, 5]
        assert goes.values() == [0, 1, 2]
        assert brief.values() == [3]
        member_stays.cancel()
        assert not sensor._observers

    def test_a_member_that_joins_is_sent_each_change_once(self, loop):
        sensor = make_sensor(value=0)
        first, late = _Batcher(), _Batcher()
        wire_strategy("event", first.send, 5, sensor, ioloop=loop).start()
        sensor.set_value(1)
        sensor.set_value(2)
        wire_strategy("event", late.send, 5, sensor, ioloop=loop).start()
        sensor.set_value(2, Sensor.WARN)
        sensor.set_value(3, Sensor.WARN)
        assert first.values() == [0, 1, 2, 2, 3]
        assert late.values() == [2, 2, 3]

    def test_a_change_from_another_thread_goes_to_the_members_of_its_time(self, monkeypatch):
        rebuilt = []
        retarget = sampling._EventFanOut._retarget

        def counted_retarget(fan):
            rebuilt.append(fan)
            return retarget(fan)

        monkeypatch.setattr(sampling._EventFanOut, "_retarget", counted_retarget)
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            ioloop = tornado.ioloop.IOLoop.current()
            sensor = make_sensor(value=0)
            stays, goes = _Batcher(), _Batcher()
            members = [wire_strategy("event", batcher.send, 5, sensor, ioloop=ioloop)
                       for batcher in (stays, goes)]
            for member in members:
                member.start()

            def set_from_another_thread(value):
                setter = threading.Thread(target=sensor.set_value, args=(value,))
                setter.start()
                setter.join(10)
                # The hop to the loop was queued before this: it runs first.
                loop.run_until_complete(asyncio.sleep(0))

            sensor.set_value(1)
            sensor.set_value(2)
            assert len(rebuilt) == 1
            members[1].cancel()
            set_from_another_thread(3)   # the targets are made anew, without the leaver
            set_from_another_thread(4)   # and not again
            sensor.set_value(5)
            assert len(rebuilt) == 2
            assert stays.values() == [0, 1, 2, 3, 4, 5]
            assert goes.values() == [0, 1, 2]
            members[0].cancel()
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _readings_one_after_another():
    """Readings to take in turn: repeats, changes of the timestamp alone, of the status
    and of the value (within and beyond a threshold of 1, NaN, equal values of other
    types)."""
    readings = []
    timestamp = 1000.0
    for value in (0.0, 0.0, 0.5, 2.0, 2, Decimal("2"), float("nan"), float("nan"),
                  float("inf"), 2.25):
        for status in (Sensor.NOMINAL, Sensor.WARN, Sensor.NOMINAL):
            for _ in range(2):
                timestamp += 1.0
                readings.append(Reading(timestamp, status, value))
    return readings


class TestInlinedNewsTests:
    """The copies of _SampleChanges._is_news inlined for speed decide as it does."""

    @pytest.fixture
    def loop(self):
        loop = tornado.ioloop.IOLoop(make_current=False)
        yield loop
        loop.close()

    @staticmethod
    def _sent_as_news(is_news, take, sent, readings):
        decisions = []
        for reading in readings:
            news = is_news(reading)
            before = len(sent)
            take(reading)
            assert len(sent) - before == news, reading
            decisions.append(news)
        assert True in decisions and False in decisions
        return decisions

    @pytest.mark.parametrize("name, params", [("event", ()), ("differential", ("1",))])
    def test_observe_sends_what_is_news(self, loop, name, params):
        sent = []
        strategy = SampleStrategy.get_strategy(
            name, lambda sensor, reading: sent.append(reading),
            make_sensor(Sensor.FLOAT, value=-1.0), *params, ioloop=loop)
        # The inlined copy is what these strategies observe with.
        assert type(strategy).observe is sampling._SampleChanges.observe
        self._sent_as_news(strategy._is_news, strategy.observe, sent,
                           _readings_one_after_another())

    def test_the_event_fan_out_sends_what_is_news(self, loop):
        sensor = make_sensor(Sensor.FLOAT, value=-1.0)
        lines = []
        member = wire_strategy("event", lines.append, 5, sensor, ioloop=loop)
        member.start()
        lines.clear()
        fan = member._fan_out
        self._sent_as_news(fan._is_news, lambda reading: fan.update(sensor, reading), lines,
                           _readings_one_after_another())
        member.cancel()
