"""Every sampling strategy as a client meets it: ``?sensor-sampling`` over a real socket.

The device sets its sensors in a coroutine request handler (``?put``), which runs on the
server's loop: a strategy sees each update at once (no coalescing of updates handed over
from another thread) and writes its ``#sensor-status`` informs before the ``!put`` reply.
So the informs read before that reply are exactly those the update caused, and "no
inform" is an outcome we can assert without waiting for time to pass.
"""

import re

import pytest

from katcp import Sensor
from katcp.core import ProtocolFlags
from katcp.server import DeviceServer

from log_helpers import recording_logger
from server_line_client import LineClient

WAIT = 10.0


class FlakySensor(Sensor):
    """A sensor whose read() fails once when told to, as one that polls hardware may."""

    fail_next_read = False

    def read(self):
        if self.fail_next_read:
            self.fail_next_read = False
            raise OSError("no answer from the hardware")
        return super().read()


class StrategyDevice(DeviceServer):
    """A device whose sensors a client can set: ``?put NAME VALUE [STATUS [TIMESTAMP]]``."""

    VERSION_INFO = ("strategy-test", 1, 0)
    BUILD_INFO = ("strategy-test", 1, 0, "")

    def setup_sensors(self):
        self.add_sensor(Sensor.integer("level", "An integer", "", default=10,
                                       initial_status=Sensor.NOMINAL))
        self.add_sensor(Sensor.float("temp", "A float", "degC", default=10.0,
                                     initial_status=Sensor.NOMINAL))
        self.add_sensor(Sensor.timestamp("stamp", "A timestamp", "", default=10.0,
                                         initial_status=Sensor.NOMINAL))
        self.add_sensor(Sensor.string("label", "A string", "", default="a",
                                      initial_status=Sensor.NOMINAL))
        self.add_sensor(FlakySensor(Sensor.INTEGER, "flaky", "Fails to read when told", "",
                                    None, default=1, initial_status=Sensor.NOMINAL))

    async def request_put(self, req, msg):
        """Set a sensor (on the loop): NAME VALUE [STATUS [TIMESTAMP]]."""
        name, raw_value = msg.arguments[:2]
        sensor = self.get_sensor(name.decode("utf-8"))
        status = Sensor.NOMINAL
        if len(msg.arguments) > 2:
            status = Sensor.STATUS_NAMES[msg.arguments[2].decode("ascii")]
        timestamp = float(msg.arguments[3]) if len(msg.arguments) > 3 else None
        sensor.set_value(sensor.parse_value(raw_value), status, timestamp)
        return req.make_reply("ok")

    async def request_fail_next_read(self, req, msg):
        """Make the next read() of the flaky sensor fail (on the loop)."""
        self.get_sensor("flaky").fail_next_read = True
        return req.make_reply("ok")

    def request_count(self, req, msg):
        """Set the integer sensor NAME to 1, 2, ... COUNT (on the handler thread)."""
        name, count = msg.arguments
        sensor = self.get_sensor(name.decode("utf-8"))
        for value in range(1, int(count) + 1):
            sensor.set_value(value)
        return req.make_reply("ok")


class StrategyDeviceV4(StrategyDevice):
    PROTOCOL_INFO = ProtocolFlags(4, 0, {ProtocolFlags.MULTI_CLIENT})


def _serve(device_class):
    device = device_class("127.0.0.1", 0)
    device.start(timeout=WAIT)
    assert device.wait_running(WAIT)
    return device


@pytest.fixture(scope="module")
def device():
    device = _serve(StrategyDevice)
    yield device
    device.stop()
    device.join(WAIT)


@pytest.fixture(scope="module")
def device_v4():
    device = _serve(StrategyDeviceV4)
    yield device
    device.stop()
    device.join(WAIT)


STATUS_LINE = re.compile(r"^#sensor-status (\S+) 1 (\S+) (\S+) (\S+)$")


class Session:
    """One client connection; a fresh one per test, so strategies never leak between tests."""

    def __init__(self, device, greeting_lines):
        self.line = LineClient(device.bind_address[1], timeout=WAIT)
        self.line.greeting(greeting_lines)

    def request(self, text):
        """Send a request; return (informs as text, reply as text)."""
        return self.line.request(text)

    def statuses(self, informs):
        """(timestamp, name, status, value) of each #sensor-status among `informs`."""
        found = []
        for inform in informs:
            match = STATUS_LINE.match(inform)
            assert match, "unexpected line %r" % (inform,)
            found.append(match.groups())
        return found

    def sample(self, name, strategy, *params):
        """Set a strategy; return the informs it sent at once (as status tuples)."""
        informs, reply = self.request(" ".join(
            ["?sensor-sampling", name, strategy] + [str(p) for p in params]))
        assert reply == " ".join(["!sensor-sampling ok", name, strategy]
                                 + [str(p) for p in params])
        return self.statuses(informs)

    def put(self, name, value, status="nominal", timestamp=None):
        """Set a sensor; return the (status, value) of each inform the update caused."""
        request = "?put %s %s %s" % (name, value, status)
        if timestamp is not None:
            request += " %r" % (timestamp,)
        informs, reply = self.request(request)
        assert reply == "!put ok"
        return [(status_name, raw) for _, _, status_name, raw in self.statuses(informs)]

    def close(self):
        self.line.close()


@pytest.fixture
def session(device):
    session = Session(device, 3)
    # Every test starts from the same reading.
    for name, value in (("level", "10"), ("temp", "10.0"), ("stamp", "10.0")):
        session.put(name, value)
    yield session
    session.close()


# One walk through rising, falling and equal values (and a status change) from 10, with
# a difference threshold of 2 for the differential strategies. True: an inform is due.
STEPS = [
    (11, "nominal"),   # up by 1: within the threshold
    (12, "nominal"),   # up by 2 in all: equal to the threshold, not more
    (13, "nominal"),   # up by 3: beyond it
    (11, "nominal"),   # down by 2: equal to the threshold
    (10, "nominal"),   # down by 3: beyond it
    (10, "nominal"),   # the same value again
    (10, "warn"),      # same value, new status
    (10, "warn"),      # nothing changed
    (7, "warn"),       # falling far
    (7, "nominal"),    # status back
]
EXPECTED = {
    "auto": [True] * 10,
    "event": [True, True, True, True, True, False, True, False, True, True],
    "differential": [False, False, True, False, True, False, True, False, True, True],
    "none": [False] * 10,
}
EXPECTED["event-rate"] = EXPECTED["event"]
EXPECTED["differential-rate"] = EXPECTED["differential"]

# Parameters of each strategy for the walk: no rate limit, and a longest period far
# beyond the test, so only changes cause informs.
PARAMS = {
    "none": (),
    "auto": (),
    "event": (),
    "differential": (2,),
    "event-rate": (0, 3600),
    "differential-rate": (2, 0, 3600),
}
NUMERIC = {"level": str, "temp": lambda v: repr(float(v)), "stamp": lambda v: "%.6f" % v}


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
@pytest.mark.parametrize("sensor", sorted(NUMERIC))
def test_strategy_reports_exactly_the_due_changes(session, strategy, sensor):
    fmt = NUMERIC[sensor]
    params = PARAMS[strategy]
    if sensor == "temp" and strategy.startswith("differential"):
        params = (2.0,) + params[1:]
    initial = session.sample(sensor, strategy, *params)
    if strategy == "none":
        assert initial == []
    else:
        assert [(status, raw) for _, name, status, raw in initial] == [
            ("nominal", fmt(10))]
        assert initial[0][1] == sensor
    for (value, status), due in zip(STEPS, EXPECTED[strategy]):
        sent = session.put(sensor, fmt(value), status)
        assert sent == ([(status, fmt(value))] if due else []), (value, status)


@pytest.mark.parametrize("strategy, params", [
    ("event", ()), ("event-rate", (0, 3600)), ("auto", ())])
def test_non_numeric_sensors_report_changes(session, strategy, params):
    session.put("label", "a")
    session.sample("label", strategy, *params)
    assert session.put("label", "b") == [("nominal", "b")]
    assert session.put("label", "a") == [("nominal", "a")]
    expected_repeat = [("nominal", "a")] if strategy == "auto" else []
    assert session.put("label", "a") == expected_repeat
    assert session.put("label", "a", "error") == [("error", "a")]


@pytest.mark.parametrize("strategy, params", [
    ("differential", (1,)), ("differential-rate", (1, 0, 3600))])
def test_differential_strategies_refuse_non_numeric_sensors(session, strategy, params):
    informs, reply = session.request(" ".join(
        ["?sensor-sampling label", strategy] + [str(p) for p in params]))
    assert informs == []
    assert reply.startswith("!sensor-sampling fail ")
    assert "label" in reply


def test_replacing_a_strategy_stops_the_old_one(session):
    session.sample("level", "auto")
    session.sample("level", "differential", 5)
    assert session.put("level", 12) == []
    informs, reply = session.request("?sensor-sampling level none")
    assert informs == [] and reply == "!sensor-sampling ok level none"
    assert session.put("level", 30) == []
    assert session.request("?sensor-sampling level") == (
        [], "!sensor-sampling ok level none")


def test_query_returns_the_strategy_and_parameters_as_given(session):
    for strategy, params in (("event", ()), ("differential", (3,)),
                             ("event-rate", (0.5, 2.5)),
                             ("differential-rate", (3, 0.5, 2.5)), ("period", (2.5,))):
        session.sample("level", strategy, *params)
        assert session.request("?sensor-sampling level") == (
            [], " ".join(["!sensor-sampling ok level", strategy] + [str(p) for p in params]))


def test_period_strategy_samples_the_current_value_repeatedly(session):
    session.sample("level", "period", 0.05)
    # A periodic strategy reports on its clock, not on changes.
    assert session.put("level", 42) == []
    seen = []
    while len(seen) < 3:
        line = session.line.readline().decode("utf-8")
        (_, name, status, raw), = session.statuses([line])
        assert name == "level"
        if raw == "42":
            seen.append(status)
    assert seen == ["nominal"] * 3


def test_a_period_sample_that_fails_to_read_stops_no_sampling(session):
    session.sample("flaky", "period", 0.05)
    session.sample("level", "period", 0.05)
    session.line.send("?fail-next-read")
    session.line.read_until(lambda line: line == b"!fail-next-read ok")
    # Both sensors go on being sampled after the one failed read (a bounded wait).
    after = {"flaky": 0, "level": 0}
    while min(after.values()) < 3:
        (_, name, _, _), = session.statuses([session.line.readline().decode("utf-8")])
        after[name] += 1


@pytest.mark.parametrize("strategy, params", [
    ("auto", ()), ("differential", (1,)), ("event-rate", (0, 3600))])
def test_a_strategy_whose_first_read_fails_is_set_and_sends_the_next_change(
        session, strategy, params):
    # The sensor's failure, logged; the request succeeds, as the strategy is in effect.
    session.line.send("?fail-next-read")
    session.line.read_until(lambda line: line == b"!fail-next-read ok")
    with recording_logger("katcp.sampling") as (_, handler):
        assert session.sample("flaky", strategy, *params) == []
    assert [record.levelname for record in handler.records] == ["ERROR"]
    assert session.request("?sensor-sampling flaky")[1] == " ".join(
        ["!sensor-sampling ok flaky", strategy] + [str(p) for p in params])
    assert session.put("flaky", 5) == [("nominal", "5")]


def test_differential_reports_changes_to_and_from_nan(session):
    session.sample("temp", "differential", 2.0)
    assert session.put("temp", "nan") == [("nominal", "nan")]
    assert session.put("temp", "nan") == []
    assert session.put("temp", "10.5") == [("nominal", "10.5")]
    assert session.put("temp", "11.5") == []


def test_event_rate_longest_period_repeats_an_unchanged_value(session):
    session.sample("level", "event-rate", 0, 0.05)
    repeats = session.statuses([session.line.readline().decode("utf-8") for _ in range(3)])
    assert [(name, raw) for _, name, _, raw in repeats] == [("level", "10")] * 3


@pytest.mark.parametrize("params", [("-1",), ("x",), ()])
def test_bad_differential_parameters_are_refused(session, params):
    informs, reply = session.request(" ".join(
        ["?sensor-sampling level differential"] + list(params)))
    assert informs == [] and reply.startswith("!sensor-sampling fail ")


@pytest.mark.parametrize("strategy, params", [
    ("period", ("0",)), ("period", ("-1",)), ("period", ("inf",)), ("period", ("x",)),
    ("event-rate", ("2", "1")), ("event-rate", ("1",)), ("bogus", ()),
    ("event", ("1",)), ("differential-rate", ("-1", "0", "1"))])
def test_bad_strategy_requests_are_refused(session, strategy, params):
    informs, reply = session.request(" ".join(
        ["?sensor-sampling level", strategy] + list(params)))
    assert informs == [] and reply.startswith("!sensor-sampling fail ")
    # A refused request leaves no strategy behind.
    assert session.request("?sensor-sampling level") == (
        [], "!sensor-sampling ok level none")


# -- KATCP v4: strategy time parameters in milliseconds ------------------------------------

@pytest.fixture
def session_v4(device_v4):
    session = Session(device_v4, 2)
    session.put("level", "10")
    yield session
    session.close()


def test_v4_period_is_in_milliseconds(session_v4):
    session_v4.sample("level", "period", 250)
    # 250 ms, not 250 s: further samples come while we wait (a bounded wait).
    later = session_v4.statuses([session_v4.line.readline().decode("utf-8")
                                 for _ in range(2)])
    assert [(name, raw) for _, name, _, raw in later] == [("level", "10")] * 2


@pytest.mark.parametrize("period", ["250", "1000", "60000", "2500.5", "6e4", "060000",
                                    "60000.0000001"])
def test_v4_period_query_answers_in_milliseconds(session_v4, period):
    # As the client gave the period: no conversion back from seconds.
    session_v4.sample("level", "period", period)
    assert session_v4.request("?sensor-sampling level") == (
        [], "!sensor-sampling ok level period %s" % period)


@pytest.mark.parametrize("period, message", [
    ("-1", "Invalid period '-1': must be a finite number >= 0."),
    ("-0.5", "Invalid period '-0.5': must be a finite number >= 0."),
    ("inf", "Invalid period 'inf': must be a finite number >= 0."),
    ("0", "The sampling period must be > 0, not '0'."),
    ("0.000", "The sampling period must be > 0, not '0.000'."),
    ("x", "Invalid time parameter 'x'."),
])
def test_v4_period_errors_quote_the_milliseconds_the_client_sent(session_v4, period, message):
    informs, reply = session_v4.request("?sensor-sampling level period " + period)
    assert informs == []
    assert reply == "!sensor-sampling fail " + message.replace(" ", "\\_")
    assert session_v4.request("?sensor-sampling level") == (
        [], "!sensor-sampling ok level none")


@pytest.mark.parametrize("timestamp, wire", [
    (1234567.0, "1234567000"), (1234567.125, "1234567125"), (2.5, "2500")])
def test_v4_inform_and_value_timestamps_are_in_milliseconds(session_v4, timestamp, wire):
    session_v4.sample("level", "event")
    assert session_v4.statuses([]) == []
    informs, reply = session_v4.request("?put level 11 nominal %r" % (timestamp,))
    assert reply == "!put ok"
    assert session_v4.statuses(informs)[0][0] == wire
    informs, reply = session_v4.request("?sensor-value level")
    assert reply == "!sensor-value ok 1"
    assert informs == ["#sensor-value %s 1 level nominal 11" % wire]


@pytest.mark.parametrize("timestamp, wire", [
    (1234567.0, "1234567.000000"), (1234567.125, "1234567.125000")])
def test_v5_timestamps_are_in_seconds(session, timestamp, wire):
    session.sample("level", "event")
    informs, reply = session.request("?put level 11 nominal %r" % (timestamp,))
    assert session.statuses(informs)[0][0] == wire
    informs, _ = session.request("?sensor-value level")
    assert informs == ["#sensor-value %s 1 level nominal 11" % wire]


@pytest.mark.parametrize("strategy", ["auto", "event", "event-rate 0 0"])
def test_every_update_made_on_the_handler_thread_is_sent(session, strategy):
    # A plain handler runs on DeviceServer's handler thread, not the loop: its updates
    # cross to the loop in batches, and each of them still reaches the client.
    session.sample("level", *strategy.split())
    session.line.send("?count level 300")
    lines = session.line.read_until(lambda line: line.startswith(b"#sensor-status")
                                    and line.endswith(b" 300"))
    values = [int(status[3]) for status in session.statuses(
        [line.decode("utf-8") for line in lines if line.startswith(b"#sensor-status")])]
    assert values == list(range(1, 301))
