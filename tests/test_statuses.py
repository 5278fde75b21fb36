"""Every sensor status through every way of setting a reading, and out over a socket."""

import pytest

from katcp import Sensor

from server_line_client import LineClient
from test_strategies_wire import StrategyDevice, WAIT

STATUSES = sorted(Sensor.STATUSES.items())
STATUS_IDS = [name for _, name in STATUSES]


def _sensor(**kwargs):
    return Sensor.integer("level", "An integer", "", **kwargs)


def _check(sensor, status, name, value):
    assert sensor.status() == status
    assert sensor.read().status == status
    assert sensor.value() == value
    assert sensor.read_formatted(5)[1:] == (name.encode("ascii"), b"%d" % value)
    assert sensor.read_formatted(4)[1] == name.encode("ascii")


@pytest.mark.parametrize("status, name", STATUSES, ids=STATUS_IDS)
def test_set_value_keeps_an_explicit_status(status, name):
    sensor = _sensor()
    sensor.set_value(3, status)
    _check(sensor, status, name, 3)
    sensor.set_value(4, status=status, timestamp=12.5)
    _check(sensor, status, name, 4)
    assert sensor.read().timestamp == 12.5


@pytest.mark.parametrize("status, name", STATUSES, ids=STATUS_IDS)
def test_set_keeps_the_status(status, name):
    sensor = _sensor()
    sensor.set(12.5, status, 3)
    _check(sensor, status, name, 3)
    assert sensor.read() == (12.5, status, 3)


@pytest.mark.parametrize("status, name", STATUSES, ids=STATUS_IDS)
def test_set_formatted_parses_the_status(status, name):
    sensor = _sensor()
    sensor.set_formatted(b"12.5", name.encode("ascii"), b"3")
    _check(sensor, status, name, 3)
    sensor.set_formatted(b"12500", name.encode("ascii"), b"4", major=4)
    _check(sensor, status, name, 4)
    assert sensor.read().timestamp == 12.5


@pytest.mark.parametrize("status, name", STATUSES, ids=STATUS_IDS)
def test_initial_status(status, name):
    sensor = _sensor(initial_status=status, default=2)
    _check(sensor, status, name, 2)


@pytest.mark.parametrize("status, name", STATUSES, ids=STATUS_IDS)
def test_observers_see_the_status(status, name):
    sensor = _sensor()
    seen = []

    class Observer:
        def update(self, sensor, reading):
            seen.append(reading.status)

    sensor.attach(Observer())
    sensor.set_value(1, status)
    sensor.set(1.0, status, 2)
    sensor.set_formatted(b"1.0", name.encode("ascii"), b"3")
    assert seen == [status] * 3


def test_set_value_defaults_to_nominal():
    sensor = _sensor(initial_status=Sensor.ERROR)
    sensor.set_value(5)
    assert sensor.status() == Sensor.NOMINAL


def test_new_sensors_default_to_unknown():
    assert _sensor().status() == Sensor.UNKNOWN
    assert _sensor(initial_status=None).status() == Sensor.UNKNOWN


@pytest.mark.parametrize("bad", [-1, 7, "nominal", None])
def test_invalid_statuses_are_refused(bad):
    sensor = _sensor()
    with pytest.raises(ValueError):
        sensor.set_value(1, bad)
    assert sensor.status() == Sensor.UNKNOWN
    if bad is not None:
        with pytest.raises(ValueError):
            _sensor(initial_status=bad)


@pytest.mark.parametrize("raw", [b"NOMINAL", b"ok", b"", b"1"])
def test_invalid_status_names_are_refused(raw):
    sensor = _sensor()
    with pytest.raises(ValueError):
        sensor.set_formatted(b"1.0", raw, b"1")
    assert sensor.status() == Sensor.UNKNOWN


def test_status_tables_agree():
    assert [Sensor.UNKNOWN, Sensor.NOMINAL, Sensor.WARN, Sensor.ERROR, Sensor.FAILURE,
            Sensor.UNREACHABLE, Sensor.INACTIVE] == list(range(7))
    assert Sensor.STATUSES == {0: "unknown", 1: "nominal", 2: "warn", 3: "error",
                               4: "failure", 5: "unreachable", 6: "inactive"}
    assert all(Sensor.STATUS_NAMES[name] == status
               for status, name in Sensor.STATUSES.items())


# -- over a socket ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def device():
    device = StrategyDevice("127.0.0.1", 0)
    device.start(timeout=WAIT)
    assert device.wait_running(WAIT)
    yield device
    device.stop()
    device.join(WAIT)


@pytest.mark.parametrize("name", STATUS_IDS)
def test_status_reaches_clients(device, name):
    with LineClient(device.bind_address[1], timeout=WAIT) as client:
        client.greeting(3)
        informs, reply = client.request("?sensor-sampling level auto")
        assert reply == "!sensor-sampling ok level auto"
        informs, reply = client.request("?put level 7 %s" % name)
        assert reply == "!put ok"
        assert [line.split()[3:] for line in informs] == [["level", name, "7"]]
        informs, reply = client.request("?sensor-value level")
        assert reply == "!sensor-value ok 1"
        assert [line.split()[2:] for line in informs] == [["1", "level", name, "7"]]
