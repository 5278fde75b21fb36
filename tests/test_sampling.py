"""katcp.sampling: each strategy's semantics, driven by a virtual clock."""

import functools
import threading
from unittest import mock

import pytest
import tornado.gen
import tornado.testing
from tornado.concurrent import Future
from log_helpers import no_logs

from katcp import Sensor
from katcp.loop.call_queue import CallQueue
from katcp.sampling import (SampleAuto, SampleDifferential, SampleDifferentialRate,
                            SampleEvent, SampleEventRate, SampleNone, SamplePeriod,
                            SampleStrategy, check_strategy, format_inform_v4,
                            format_inform_v5, update_in_ioloop, wire_strategy)
from katcp.testutils import TimewarpAsyncTestCase

pytestmark = pytest.mark.timeout(30)

gen_test = tornado.testing.gen_test(timeout=10)


def make_sensor(stype=Sensor.INTEGER, value=0, **kwargs):
    params = {Sensor.DISCRETE: ["a", "b"]}.get(stype)
    sensor = Sensor(stype, "test.sensor", "A test sensor.", "", params, **kwargs)
    sensor.set(1000.0, Sensor.NOMINAL, value)
    return sensor


class Recorder:
    """An inform_callback that keeps (loop time, reading) pairs."""

    def __init__(self, ioloop):
        self.ioloop = ioloop
        self.informs = []
        self._waiters = []

    def __call__(self, sensor, reading):
        self.informs.append((self.ioloop.time(), reading))
        for count, future in list(self._waiters):
            if len(self.informs) >= count and not future.done():
                future.set_result(None)

    def until_count(self, count):
        future = Future()
        if len(self.informs) >= count:
            future.set_result(None)
        else:
            self._waiters.append((count, future))
        return future

    @property
    def values(self):
        return [reading.value for _, reading in self.informs]


def _in_thread(fn):
    """Run `fn` on another thread (as hardware code updating sensors) and wait for it."""
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


def _values(lines):
    """The values of ``#sensor-status`` lines, as ints."""
    return [int(line.split()[-1]) for line in lines]


class TestFactory:

    def test_names_as_str_or_bytes(self):
        sensor = make_sensor()
        for name, cls in [("none", SampleNone), (b"auto", SampleAuto),
                          ("event", SampleEvent), (b"period", SamplePeriod),
                          ("differential", SampleDifferential),
                          ("event-rate", SampleEventRate),
                          (b"differential-rate", SampleDifferentialRate)]:
            params = {SamplePeriod: [b"1"], SampleDifferential: ["2"],
                      SampleEventRate: ["1", "2"],
                      SampleDifferentialRate: [b"1", b"1", b"2"]}.get(cls, [])
            strategy = SampleStrategy.get_strategy(name, lambda s, r: None, sensor, *params)
            assert type(strategy) is cls
            assert strategy.get_sampling_formatted() == (
                name if isinstance(name, bytes) else name.encode(),
                [p if isinstance(p, bytes) else p.encode() for p in params])

    def test_event_is_the_event_rate_strategy_without_periods(self):
        # As documented: isinstance checks against SampleEventRate see event strategies.
        assert issubclass(SampleEvent, SampleEventRate)
        assert SampleStrategy.get_strategy(
            "event", lambda s, r: None, make_sensor()).get_sampling() == SampleStrategy.EVENT

    def test_an_async_def_inform_callback_is_refused(self):
        # Called for each sample, its result unused: the coroutines would never run.
        async def inform_callback(sensor, reading):
            pass

        sensor = make_sensor()
        with pytest.raises(TypeError, match="inform_callback .* is an async function"):
            SampleStrategy.get_strategy("event", inform_callback, sensor)
        assert not sensor._observers

    def test_mocks_of_plain_inform_callbacks_are_taken_and_of_async_def_refused(self):
        # A mock made with a plain function's spec has a mock for its code's flags, which
        # the check took for a number (TypeError: unsupported operand); a MagicMock's
        # answers & with a true MagicMock.
        def plain(sensor, reading):
            pass

        async def asynchronous(sensor, reading):
            pass

        sensor = make_sensor()
        for inform_callback in (mock.Mock(spec=plain), functools.partial(mock.Mock(spec=plain)),
                                mock.MagicMock(spec=plain),
                                functools.partial(mock.MagicMock(spec=plain))):
            strategy = SampleStrategy.get_strategy("event", inform_callback, sensor)
            assert strategy.get_sampling() == SampleStrategy.EVENT
        for inform_callback in (mock.Mock(spec=asynchronous), mock.MagicMock(spec=asynchronous)):
            with pytest.raises(TypeError, match="inform_callback .* is an async function"):
                SampleStrategy.get_strategy("event", inform_callback, sensor)

    @pytest.mark.parametrize("name, params, message", [
        ("bogus", [], "^Unknown strategy name: bogus\\.$"),
        ("none", ["1"], "takes 0 parameters, 1 given"),
        ("event", ["1", "2"], "takes 0 parameters, 2 given"),
        ("period", [], "takes 1 parameter, 0 given"),
        ("period", ["x"], "not a number"),
        ("period", ["0"], "must be > 0"),
        ("period", ["-1"], ">= 0"),
        ("event-rate", ["2", "1"], "must not exceed"),
        ("differential", ["-1"], "must be positive"),
        ("differential", ["0"], "must be positive"),
        ("differential", ["1.5"], "Invalid differential threshold"),
        ("differential", ["inf"], "Invalid differential threshold"),
        ("differential", ["nan"], "Invalid differential threshold"),
    ])
    def test_bad_strategies_raise_value_error(self, name, params, message):
        with pytest.raises(ValueError, match=message):
            SampleStrategy.get_strategy(name, lambda s, r: None, make_sensor(), *params)

    @pytest.mark.parametrize("name, params, message", [
        ("bogus", [], "^Unknown strategy name: bogus\\.$"),
        (b"none", ["1"], "^The 'none' strategy takes 0 parameters, 1 given\\.$"),
        ("period", [], "^The 'period' strategy takes 1 parameter, 0 given\\.$"),
        ("event-rate", ["1"], "takes 2 parameters, 1 given"),
    ])
    def test_check_strategy_refuses_as_get_strategy_does(self, name, params, message):
        # What katcp-web checks its --strategy with, before any device refuses it.
        with pytest.raises(ValueError, match=message):
            check_strategy(name, params)
        with pytest.raises(ValueError, match=message):
            SampleStrategy.get_strategy(name, lambda s, r: None, make_sensor(), *params)

    @pytest.mark.parametrize("name, params", [
        ("event", []), ("period", ["x"]), (b"differential-rate", ["1", "2", "3"])])
    def test_check_strategy_leaves_parameter_values_to_the_strategy(self, name, params):
        check_strategy(name, params)

    @pytest.mark.parametrize("param, threshold", [("2", 2), ("2.0", 2), (b"3.", 3), ("1e2", 100)])
    def test_an_integer_threshold_may_be_written_as_a_whole_float(self, param, threshold):
        # As a resource client sends it ('differential 1' goes out as '1.0').
        strategy = SampleStrategy.get_strategy("differential", lambda s, r: None,
                                               make_sensor(), param)
        assert strategy._threshold == threshold and type(strategy._threshold) is int

    def test_differential_needs_a_numeric_sensor(self):
        with pytest.raises(ValueError, match="only apply to integer, float and timestamp"):
            SampleStrategy.get_strategy("differential", lambda s, r: None,
                                        make_sensor(Sensor.DISCRETE, "a"), "1")

    def test_format_informs(self):
        sensor = make_sensor(value=7)
        reading = sensor.read()
        assert bytes(format_inform_v5(sensor, *reading)) == \
            b"#sensor-status 1000.000000 1 test.sensor nominal 7"
        assert bytes(format_inform_v4(sensor, *reading)) == \
            b"#sensor-status 1000000 1 test.sensor nominal 7"


class StrategyTestCase(TimewarpAsyncTestCase):
    """Starts strategies on the test's virtual-clock loop, recording what they send."""

    def start(self, name, sensor, *params, recorder=None):
        recorder = recorder or Recorder(self.io_loop)
        strategy = SampleStrategy.get_strategy(name, recorder, sensor, *params,
                                               ioloop=self.io_loop)
        strategy.start()
        self.addCleanup(strategy.cancel)
        return strategy, recorder

    def start_wire(self, lines, sensor):
        """Start a server's event strategy (sensors share one), sending lines to `lines`."""
        strategy = wire_strategy("event", lines.append, 5, sensor, ioloop=self.io_loop)
        strategy.start()
        self.addCleanup(strategy.cancel)
        return strategy

    @tornado.gen.coroutine
    def settle(self):
        """Let the loop run what is due and what that schedules in turn."""
        for _ in range(5):
            yield tornado.gen.moment


class TestStrategies(StrategyTestCase):

    def advance(self, seconds):
        self.set_ioloop_time(self.io_loop.time() + seconds)

    @gen_test
    def test_none_sends_nothing(self):
        sensor = make_sensor()
        _, recorder = self.start("none", sensor)
        sensor.set_value(5)
        yield tornado.gen.moment
        assert recorder.informs == []

    @gen_test
    def test_auto_sends_initial_and_every_update(self):
        sensor = make_sensor(value=1)
        _, recorder = self.start("auto", sensor)
        for value in (1, 1, 2):
            sensor.set_value(value)
        assert recorder.values == [1, 1, 1, 2]

    @gen_test
    def test_event_sends_only_value_or_status_changes(self):
        sensor = make_sensor(value=42)
        _, recorder = self.start("event", sensor)
        sensor.set(2000.0, Sensor.NOMINAL, 42)      # new timestamp only: nothing
        sensor.set_value(43)
        sensor.set_value(43, Sensor.WARN)
        sensor.set(3000.0, Sensor.WARN, 43)
        assert [(r.value, r.status) for _, r in recorder.informs] == [
            (42, Sensor.NOMINAL), (43, Sensor.NOMINAL), (43, Sensor.WARN)]

    @gen_test
    def test_differential_is_strictly_greater_and_reports_status(self):
        sensor = make_sensor(value=42)
        _, recorder = self.start("differential", sensor, "5")
        for value, status in [(45, Sensor.NOMINAL), (47, Sensor.NOMINAL),
                              (48, Sensor.NOMINAL), (48, Sensor.ERROR),
                              (42, Sensor.ERROR)]:
            sensor.set_value(value, status)
        assert [(r.value, r.status) for _, r in recorder.informs] == [
            (42, Sensor.NOMINAL), (48, Sensor.NOMINAL), (48, Sensor.ERROR),
            (42, Sensor.ERROR)]

    @gen_test
    def test_period_sends_on_schedule_without_drift(self):
        sensor = make_sensor(value=1)
        start = self.io_loop.time()
        strategy, recorder = self.start("period", sensor, "0.5")
        assert recorder.informs[0][0] == start
        for i in range(1, 201):
            self.set_ioloop_time(start + 0.5 * i)
            yield recorder.until_count(i + 1)
        times = [t - start for t, _ in recorder.informs]
        assert times == [0.5 * i for i in range(201)]
        strategy.cancel()
        self.advance(10)
        yield tornado.gen.moment
        yield tornado.gen.moment
        assert len(recorder.informs) == 201

    @gen_test
    def test_periods_of_many_sensors_share_the_schedule(self):
        sensors = [make_sensor(value=i) for i in range(50)]
        start = self.io_loop.time()
        recorders = [self.start("period", s, "1")[1] for s in sensors]
        self.set_ioloop_time(start + 1)
        for recorder in recorders:
            yield recorder.until_count(2)
        assert all([t - start for t, _ in r.informs] == [0, 1] for r in recorders)

    @gen_test
    def test_event_rate_holds_changes_for_shortest_and_resends_after_longest(self):
        sensor = make_sensor(value=0)
        start = self.io_loop.time()
        _, recorder = self.start("event-rate", sensor, "1", "10")
        sensor.set_value(1)          # within the shortest period: held
        sensor.set_value(2)          # replaces the held reading
        assert recorder.values == [0]
        self.set_ioloop_time(start + 1)
        yield recorder.until_count(2)
        assert recorder.informs[1] == (start + 1, sensor.read())
        assert recorder.values == [0, 2]
        self.set_ioloop_time(start + 5)
        sensor.set_value(3)          # shortest period has passed: sent at once
        assert recorder.values == [0, 2, 3]
        self.set_ioloop_time(start + 15)
        yield recorder.until_count(4)
        assert recorder.informs[3][0] == start + 15
        assert recorder.values == [0, 2, 3, 3]

    @gen_test
    def test_event_rate_change_sent_while_the_loop_was_late_starts_the_shortest_period(self):
        yield self.check_shortest_period_from_a_late_send("event-rate", "1", "10")

    @gen_test
    def test_differential_rate_change_sent_while_the_loop_was_late_starts_the_period(self):
        yield self.check_shortest_period_from_a_late_send("differential-rate", "1", "1", "10")

    @tornado.gen.coroutine
    def check_shortest_period_from_a_late_send(self, name, *params):
        sensor = make_sensor(value=0)
        start = self.io_loop.time()
        _, recorder = self.start(name, sensor, *params)
        sensor.set_value(2)          # held, with a timer for start + 1
        self.set_ioloop_time(start + 1)
        # Before the loop runs that timer: the shortest period has passed, so this is
        # sent at once, and the next change is held a shortest period from it.
        sensor.set_value(4)
        sensor.set_value(6)
        assert recorder.values == [0, 4]
        yield self.settle()
        assert recorder.values == [0, 4]
        self.set_ioloop_time(start + 2)
        yield recorder.until_count(3)
        assert recorder.informs[2] == (start + 2, sensor.read())

    @gen_test
    def test_differential_rate_ignores_small_changes(self):
        sensor = make_sensor(Sensor.FLOAT, value=0.0)
        start = self.io_loop.time()
        _, recorder = self.start("differential-rate", sensor, "1.0", "0", "0")
        sensor.set_value(0.5)
        sensor.set_value(1.5)
        sensor.set_value(1.0)
        sensor.set_value(1.0, Sensor.WARN)
        assert [(r.value, r.status) for _, r in recorder.informs] == [
            (0.0, Sensor.NOMINAL), (1.5, Sensor.NOMINAL), (1.0, Sensor.WARN)]
        assert self.io_loop.time() == start

    @gen_test
    def test_every_update_from_another_thread_is_sent_in_order(self):
        sensor = make_sensor(value=0)
        _, recorder = self.start("event", sensor)
        last = 5000

        def produce():
            for value in range(1, last + 1):
                sensor.set_value(value)

        thread = threading.Thread(target=produce)
        thread.start()
        yield recorder.until_count(last + 1)
        thread.join(5)
        assert recorder.values == list(range(last + 1))

    @gen_test
    def test_a_short_error_set_by_another_thread_reaches_auto_and_event(self):
        sensor = make_sensor(value=0)
        recorders = [self.start(name, sensor)[1] for name in ("auto", "event")]

        def glitch():
            sensor.set_value(0, Sensor.ERROR)
            sensor.set_value(0, Sensor.NOMINAL)

        thread = threading.Thread(target=glitch)
        thread.start()
        thread.join(5)
        for recorder in recorders:
            yield recorder.until_count(3)
            assert [r.status for _, r in recorder.informs] == [
                Sensor.NOMINAL, Sensor.ERROR, Sensor.NOMINAL]

    @gen_test
    def test_a_reading_from_another_thread_is_not_sent_after_a_newer_one(self):
        sensor = make_sensor(value=0)
        recorders = [self.start(name, sensor)[1] for name in ("auto", "event")]
        wire_lines = []
        wire = wire_strategy("event", wire_lines.append, 5, sensor)
        wire.start()
        thread = threading.Thread(target=sensor.set_value, args=(1,))
        thread.start()
        thread.join(5)
        sensor.set_value(2)  # on the loop thread, before it has taken the first reading
        for recorder in recorders:
            yield recorder.until_count(3)
            assert recorder.values == [0, 1, 2]
        assert [line.split()[-1] for line in wire_lines] == [b"0", b"1", b"2"]
        wire.cancel()

    @gen_test
    def test_readings_from_another_thread_keep_their_place_among_its_other_calls(self):
        # A thread's readings of several sensors and the other calls it queues for the
        # loop (informs, replies) are handled in the order it made them.
        sensors = {name: make_sensor(value=0) for name in "ab"}
        handled = []
        for name, sensor in sensors.items():
            strategy = SampleStrategy.get_strategy(
                "auto", lambda s, reading, name=name: handled.append(
                    "%s=%s" % (name, reading.value)), sensor)
            strategy.start()
            self.addCleanup(strategy.cancel)
        a, b = sensors["a"], sensors["b"]
        queue = CallQueue.of(self.io_loop)
        _in_thread(lambda: (a.set_value(1), b.set_value(1), a.set_value(2),
                            queue.call(handled.append, "call"), a.set_value(3),
                            a.set_value(4), b.set_value(2)))
        yield self.settle()
        assert handled == ["a=0", "b=0", "a=1", "b=1", "a=2", "call", "a=3", "a=4", "b=2"]

    @gen_test
    def test_a_strategy_failing_on_a_reading_from_another_thread_stops_no_other(self):
        failing, other = make_sensor(value=0), make_sensor(value=0)
        handled = []

        def inform(sensor, reading):
            if reading.value == 1:
                raise RuntimeError("inform failed")
            handled.append((sensor is failing, reading.value))

        for sensor in (failing, other):
            strategy = SampleStrategy.get_strategy("auto", inform, sensor)
            strategy.start()
            self.addCleanup(strategy.cancel)
        with self.assertLogs("katcp.sampling", "ERROR") as logs:
            _in_thread(lambda: (failing.set_value(1), other.set_value(2),
                                failing.set_value(3)))
            yield self.settle()
        assert handled == [(True, 0), (False, 0), (False, 2), (True, 3)]
        assert logs.output[0].splitlines()[0] == (
            "ERROR:katcp.sampling:Error handling a reading of sensor 'test.sensor' set by "
            "another thread (SampleAuto strategy)")

    @gen_test
    def test_a_burst_of_readings_crosses_to_the_loop_in_one_call(self):
        sensors = [make_sensor(value=0) for _ in range(3)]
        started = [self.start("auto", sensor) for sensor in sensors]
        queue = CallQueue.of(self.io_loop)
        _in_thread(lambda: [sensor.set_value(value) for value in range(1, 101)
                            for sensor in sensors])
        assert len(queue._calls) == 1  # the loop (this test) has not run it yet
        yield self.settle()
        assert all(recorder.values == list(range(101)) for _, recorder in started)
        # Nothing is kept for the next burst.
        assert all(strategy._pending is None for strategy, _ in started)

    @gen_test
    def test_a_loop_update_first_observes_every_pending_batch_once(self):
        sensor = make_sensor(value=0)
        strategy, recorder = self.start("auto", sensor)
        queue = CallQueue.of(self.io_loop)
        calls = []
        _in_thread(lambda: (sensor.set_value(1), queue.call(calls.append, 1),
                            sensor.set_value(2), queue.call(calls.append, 2),
                            sensor.set_value(3)))
        sensor.set_value(4)  # on the loop thread, before it has taken the batches
        assert recorder.values == [0, 1, 2, 3, 4]
        yield self.settle()  # the batches' own calls, which find them observed
        assert recorder.values == [0, 1, 2, 3, 4] and calls == [1, 2]
        _in_thread(lambda: sensor.set_value(5))
        yield recorder.until_count(6)
        assert recorder.values == [0, 1, 2, 3, 4, 5]

    @gen_test
    def test_an_event_client_that_joins_gets_no_reading_older_than_its_first(self):
        # Readings set by another thread and still on their way to the sensor's shared
        # event observer are older than the current one, which a new client gets first.
        sensor = make_sensor(value=0)
        first, late = [], []
        self.start_wire(first, sensor)
        _in_thread(lambda: [sensor.set_value(value) for value in (1, 2, 3)])
        self.start_wire(late, sensor)
        _in_thread(lambda: sensor.set_value(4))
        yield self.settle()
        assert _values(first) == [0, 1, 2, 3, 4]
        assert _values(late) == [3, 4]

    @gen_test
    def test_an_event_client_joining_meanwhile_gets_a_loop_update(self):
        sensor = make_sensor(value=0)
        first, late = [], []
        self.start_wire(first, sensor)
        _in_thread(lambda: [sensor.set_value(value) for value in (1, 2)])
        self.start_wire(late, sensor)
        sensor.set_value(5)  # on the loop thread, while the readings are on their way
        yield self.settle()
        assert _values(first) == [0, 1, 2, 5]
        assert _values(late) == [2, 5]

    @gen_test
    def test_an_event_client_leaving_before_it_joined_is_forgotten(self):
        sensor = make_sensor(value=0)
        first, late = [], []
        first_strategy = self.start_wire(first, sensor)
        _in_thread(lambda: sensor.set_value(1))
        self.start_wire(late, sensor).cancel()
        _in_thread(lambda: sensor.set_value(2))
        yield self.settle()
        assert _values(first) == [0, 1, 2]
        assert _values(late) == [1]
        first_strategy.cancel()
        assert sensor._observers == set()  # the shared observer left with its last member

    @gen_test
    def test_an_event_client_waiting_to_join_stays_when_the_only_member_leaves(self):
        sensor = make_sensor(value=0)
        first, late = [], []
        first_strategy = self.start_wire(first, sensor)
        _in_thread(lambda: sensor.set_value(1))
        self.start_wire(late, sensor)  # in once that reading is observed
        first_strategy.cancel()
        _in_thread(lambda: sensor.set_value(2))
        yield self.settle()
        assert _values(first) == [0]
        assert _values(late) == [1, 2]

    @gen_test
    def test_a_joining_event_client_leaves_earlier_readings_their_place_among_other_calls(self):
        # The client joins once both readings are observed, yet the first is sent to the
        # other client before the call the thread queued after it.
        sensor = make_sensor(value=0)
        first, late = [], []
        self.start_wire(first, sensor)
        queue = CallQueue.of(self.io_loop)
        _in_thread(lambda: (sensor.set_value(1), queue.call(first.append, "call"),
                            sensor.set_value(2)))
        self.start_wire(late, sensor)
        yield self.settle()
        assert [line if line == "call" else int(line.split()[-1]) for line in first] == [
            0, 1, "call", 2]
        assert _values(late) == [2]

    @gen_test
    def test_an_event_client_sending_sets_the_sensor_while_another_waits_to_join(self):
        # Sending reading 1 sets the sensor on the loop, which observes reading 2 first and
        # so lets the waiting client in: nothing goes wrong when the first observation ends.
        sensor = make_sensor(value=0)
        first, late = [], []

        def send(line):
            first.append(line)
            if line.endswith(b" 1\n"):
                sensor.set_value(7)

        strategy = wire_strategy("event", send, 5, sensor, ioloop=self.io_loop)
        strategy.start()
        self.addCleanup(strategy.cancel)
        _in_thread(lambda: (sensor.set_value(1), sensor.set_value(2)))
        self.start_wire(late, sensor)
        with no_logs("katcp"):
            yield self.settle()
        assert _values(first) == [0, 1, 2, 7]
        assert _values(late) == [2, 7]

    @gen_test
    def test_an_event_client_is_sent_a_plain_tuple_reading(self):
        # A sensor subclass may notify its observers of a plain (timestamp, status,
        # value) tuple rather than a Reading.
        sensor = make_sensor(value=0)
        lines = []
        self.start_wire(lines, sensor)
        sensor.notify((1001.0, Sensor.WARN, 5))
        sensor.notify((1002.0, Sensor.WARN, 5))  # neither value nor status changed
        assert lines[1:] == [b"#sensor-status 1001.000000 1 test.sensor warn 5\n"]

    @gen_test
    def test_cancel_detaches_from_the_sensor(self):
        sensor = make_sensor(value=0)
        strategy, recorder = self.start("auto", sensor)
        strategy.cancel()
        sensor.set_value(1)
        assert recorder.values == [0]


def test_update_in_ioloop_hops_to_the_loop_thread():
    from katcp.ioloop_manager import IOLoopManager

    manager = IOLoopManager(managed_default=True)
    ioloop = manager.get_ioloop()
    manager.start()
    try:
        seen = []
        done = threading.Event()

        class Observer:
            def __init__(self):
                self.ioloop = ioloop
                self._ioloop_thread_id = None

            @update_in_ioloop
            def update(self, sensor, reading):
                seen.append((threading.get_ident(), reading))
                done.set()

        observer = Observer()
        ready = threading.Event()
        ioloop.add_callback(lambda: (setattr(observer, "_ioloop_thread_id",
                                             threading.get_ident()), ready.set()))
        assert ready.wait(5)
        observer.update(None, "reading")
        assert done.wait(5)
        assert seen == [(observer._ioloop_thread_id, "reading")]
    finally:
        manager.stop()
        manager.join(timeout=5)
