"""Mirrored sensors are cheap until used: what a resource container of many devices relies on.

A client resource mirrors every sensor of its device, but makes the type-aware part of
each mirrored sensor (its :class:`katcp.Sensor`) only when the sensor is first used.
Nothing of that may show:

* a sensor first touched after the sync knows its type, units, params and description,
  and readings that arrived before anyone looked at it are parsed for its type;
* strategies and listeners wished for before the sync reach the sensors it makes;
* sensors the device adds or removes later (``#interface-changed``) come and go in the
  resource and in its container like the others;
* a :class:`katcp.resource.KATCPSensor` made directly still refuses a bad description at
  once;
* the parser undoes the escapes of a ``#sensor-list`` or ``#help`` text the same way
  whatever mix of escapes it holds.
"""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado.ioloop import IOLoop

from katcp import AsyncDeviceServer, Sensor
from katcp.core import KatcpSyntaxError, MessageParser
from katcp.kattypes import Int, request, return_reply
from katcp.resource import KATCPSensor
from katcp.resource_client import KATCPClientResourceContainer

WAIT = 10.0


class _Dish(AsyncDeviceServer):
    VERSION_INFO = ("fleet-rules", 1, 0)
    BUILD_INFO = ("fleet-rules", 1, 0, "")
    SEND_INTERFACE_CHANGED = True

    def setup_sensors(self):
        self.elevation = Sensor.float("pos.elevation", "Elevation of the dish", "deg",
                                      [0.0, 90.0])
        self.elevation.set_value(15.5)
        self.add_sensor(self.elevation)
        self.mode = Sensor.discrete("mode", "Drive mode", "", ["stow", "track", "slew"])
        self.mode.set_value("track")
        self.add_sensor(self.mode)
        self.spare = Sensor.integer("spare.count", "A sensor that goes away", "", [0, 5])
        self.add_sensor(self.spare)

    @request(Int())
    @return_reply()
    def request_grow(self, req, count):
        """Add `count` sensors (grown.N) and drop spare.count."""
        for i in range(count):
            grown = Sensor.boolean("grown.%d" % i, "Added later", "")
            grown.set_value(True)
            self.add_sensor(grown)
        self.remove_sensor("spare.count")
        return ("ok",)


async def _started(*wishes):
    """Two dishes on this loop and a synced container mirroring them.

    Each wish is called with the container before it starts.
    """
    dishes = [_Dish("127.0.0.1", 0) for _ in range(2)]
    for dish in dishes:
        dish.set_ioloop(IOLoop.current())
        dish.start()
    container = KATCPClientResourceContainer({"name": "array", "clients": {
        "dish%d" % i: {"address": dish.bind_address, "controlled": True}
        for i, dish in enumerate(dishes)}})
    container.set_ioloop(IOLoop.current())
    for wish in wishes:
        wish(container)
    container.start()
    await container.until_synced(timeout=WAIT)
    return dishes, container


async def _stopped(dishes, container):
    container.stop()
    await asyncio.gather(*container.until_stopped(WAIT).values())
    for dish in dishes:
        await asyncio.wrap_future(dish.stop(timeout=WAIT))


def _run(main):
    asyncio.run(asyncio.wait_for(main(), 3 * WAIT))


async def _until(predicate):
    """Let the loop run until predicate() holds (bounded)."""
    async def poll():
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), WAIT)


def test_sensor_first_used_after_the_sync_knows_its_type_and_readings():
    async def main():
        dishes, container = await _started()
        try:
            dish = container.children.dish1
            elevation = dish.sensor.pos_elevation
            # Strategy and the reading it brings, before anything asked for the type.
            await elevation.set_sampling_strategy("event")
            await _until(lambda: elevation.value is not None)
            assert elevation.value == 15.5 and isinstance(elevation.value, float)
            assert elevation.status == "nominal"
            assert (elevation.type, elevation.units, elevation.params) == \
                ("float", "deg", [0.0, 90.0])
            assert elevation.description == elevation.__doc__ == "Elevation of the dish"
            mode = container.sensor.dish1_mode
            assert (await mode.get_value()) == "track"
            assert mode.params == ["stow", "track", "slew"]
            # A poll of a sensor nobody looked at before also parses for its type.
            assert (await container.sensor.dish0_spare_count.get_value()) == 0
        finally:
            await _stopped(dishes, container)

    _run(main)


def test_wishes_made_before_the_sync_reach_the_mirrored_sensors():
    heard = []

    def wish(container):
        child = container.children.dish0
        child.set_sensor_listener("pos.elevation", lambda sensor, reading: heard.append(
            (sensor.name, reading.value)))
        child.set_sampling_strategy("mode", "event")

    async def main():
        dishes, container = await _started(wish)
        try:
            child = container.children.dish0
            await _until(lambda: child.sensor.mode.value == "track")
            assert child.sensor.mode.sampling_strategy == ("event",)
            # The listener hears the readings a strategy brings.
            await child.set_sampling_strategy("pos.elevation", "event")
            await _until(lambda: ("pos.elevation", 15.5) in heard)
            dishes[0].elevation.set_value(42.25)
            await _until(lambda: ("pos.elevation", 42.25) in heard)
        finally:
            await _stopped(dishes, container)

    _run(main)


def test_sensors_added_and_removed_by_the_device_come_and_go():
    async def main():
        dishes, container = await _started()
        try:
            child = container.children.dish1
            assert "spare_count" in child.sensor
            reply = await child.req.grow(3)
            assert reply.succeeded
            await _until(lambda: "grown_2" in child.sensor and "spare_count" not in child.sensor)
            assert "dish1_grown_0" in container.sensor
            assert "dish1_spare_count" not in container.sensor
            # The other dish did not change.
            assert "dish0_spare_count" in container.sensor
            grown = container.sensor.dish1_grown_1
            assert grown.type == "boolean"
            assert (await grown.get_value()) is True
            assert child.sensor.grown_1 is grown
        finally:
            await _stopped(dishes, container)

    _run(main)


class _Manager:
    resource_name = "bench"

    @staticmethod
    def time():
        return 0.0


def test_sensor_made_directly_refuses_a_bad_description_at_once():
    with pytest.raises(ValueError):
        KATCPSensor(dict(name="bad", sensor_type=Sensor.INTEGER, params=[5, 1]), _Manager())
    sensor = KATCPSensor(dict(name="ok", sensor_type=Sensor.INTEGER, params=[1, 5]), _Manager())
    assert sensor.description == "Integer sensor 'ok' with no unit"
    sensor.set_formatted(b"1234567890.5", b"warn", b"3", 5)
    assert sensor.reading[1:] == (1234567890.5, Sensor.WARN, 3)
    with pytest.raises(ValueError):
        sensor.set_formatted(b"1234567890.5", b"warn", b"three", 5)


def test_listeners_stay_with_their_own_sensor():
    made = [KATCPSensor(dict(name="s%d" % i, sensor_type=Sensor.INTEGER), _Manager())
            for i in range(3)]
    heard = []

    def listener(sensor, reading):
        heard.append((sensor.name, reading.value))

    assert not made[0]._listeners
    made[0].unregister_listener(listener)  # nothing registered: no error
    made[1].register_listener(listener, reading=True)
    assert made[1].is_listener(listener) and not made[0].is_listener(listener)
    for i, sensor in enumerate(made):
        sensor.set_value(i)
    assert heard == [("s1", 1)]
    made[1].clear_listeners()
    made[2].register_listener(listener, reading=True)
    for i, sensor in enumerate(made):
        sensor.set_value(10 + i)
    assert heard == [("s1", 1), ("s2", 12)]
    made[2].unregister_listener(listener)
    assert not made[2]._listeners


_TOKENS = {b"\\\\": b"\\", b"\\_": b" ", b"\\@": b"", b"\\0": b"\0", b"\\n": b"\n",
           b"\\r": b"\r", b"\\e": b"\x1b", b"\\t": b"\t", b"a": b"a", b"_": b"_", b"@": b"@",
           b"0": b"0", b"n": b"n"}


@given(st.lists(st.sampled_from(sorted(_TOKENS)), min_size=1, max_size=12))
def test_escapes_of_any_mix_are_undone_token_by_token(tokens):
    # Help texts and descriptions mix escaped backslashes with other escapes.
    wire = b"".join(tokens)
    assert MessageParser().parse(b"#x " + wire).arguments == [
        b"".join(_TOKENS[token] for token in tokens)]


@pytest.mark.parametrize("wire", [b"\\", b"a\\\\\\", b"\\\\\\q", b"\\_\\\\\\x"])
def test_an_invalid_escape_after_escaped_backslashes_is_refused(wire):
    with pytest.raises(KatcpSyntaxError, match="Invalid escape sequence"):
        MessageParser().parse(b"#x " + wire)
