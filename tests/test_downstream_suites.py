"""Helpers combined as downstream test suites combine them.

Control code is tested without hardware: fake resources (katcp.fake_clients) driven by
testutils' virtual clock, and a device server of the user's that controls fake children,
tested over a socket on 127.0.0.1 with BlockingTestClient.
"""

import unittest

import pytest
import tornado.gen
import tornado.testing

from katcp import DeviceServer, Sensor, fake_clients
from katcp.core import AsyncReply, FailReply
from katcp.kattypes import Float, Str, request, return_reply
from katcp.resource_client import KATCPClientResource, KATCPClientResourceContainer
from katcp.testutils import (BlockingTestClient, TimewarpAsyncTestCase,
                             start_thread_with_cleanup)

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
LOCK = {"lock": ("Locked.", "", "boolean")}


class TestFakesOnAVirtualClock(TimewarpAsyncTestCase):
    """A fake device's strategies and the clients' timeouts keep the test's virtual time."""

    def start(self, resource):
        resource.set_ioloop(self.io_loop)
        resource.start()
        self.addCleanup(resource.stop)

    @tornado.gen.coroutine
    def warp_by(self, seconds):
        yield self.set_ioloop_time(self.ioloop_time + seconds)

    @tornado.gen.coroutine
    def turn_until(self, condition):
        """Let the loop turn until ``condition()`` holds, for 20 wakes at most."""
        for _ in range(20):
            if condition():
                return
            yield self.wake_ioloop()
        raise AssertionError("the loop turned 20 times and the condition still fails")

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_fake_sensors_period_strategy_samples_at_virtual_times(self):
        res, manager = fake_clients.fake_KATCP_client_resource_factory(
            KATCPClientResource, {"sensor_infos": {"level": ("A level.", "m", "integer")}},
            dict(name="dev", address=("fake-host.invalid", 1), controlled=True))
        self.start(res)
        yield res.until_synced()
        manager.fake_sensors["level"].set_value(1)
        values = []
        res.sensor.level.register_listener(lambda sensor, reading: values.append(reading.value),
                                           reading=True)
        yield res.sensor.level.set_sampling_strategy("period 10")
        yield self.turn_until(lambda: values)
        manager.fake_sensors["level"].set_value(2)
        yield self.warp_by(9.9)
        assert values == [1]
        sampled = res.sensor.level.wait(2)
        yield self.warp_by(0.1)
        yield self.turn_until(sampled.done)
        assert values == [1, 2]

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_group_waits_for_its_quorum_then_for_the_grace_period(self):
        container, manager = fake_clients.fake_KATCP_client_resource_container_factory(
            KATCPClientResourceContainer, {"sensor_infos": LOCK},
            {"name": "rx", "groups": {"all": ["rx1", "rx2", "rx3"]},
             "clients": {name: dict(address=(name + ".invalid", 1), controlled=True)
                         for name in ("rx1", "rx2", "rx3")}})
        self.start(container)
        yield container.until_synced()
        group = container.groups.all
        yield group.set_sampling_strategy("lock", "event")
        manager.child_managers["rx1"].fake_sensors["lock"].set_value(True)
        # A total timeout of 10 s: 9 s for the quorum, then a grace period of 1 s.
        short = group.wait("lock", True, timeout=10, quorum=2, max_grace_period=1)
        yield self.warp_by(9.5)  # the clock stands still: the grace period ends at 10.5
        assert not short.done()
        yield self.warp_by(1)
        yield self.turn_until(short.done)
        result = yield short
        assert not result
        assert dict(result) == {"rx1": True, "rx2": False, "rx3": False}

        outcome = group.wait("lock", True, timeout=10, quorum=2, max_grace_period=1)
        yield self.warp_by(9)  # the quorum's time is over: the grace period runs
        manager.child_managers["rx2"].fake_sensors["lock"].set_value(True)
        yield self.turn_until(lambda: container.sensor.rx2_lock.value)
        assert not outcome.done()  # the grace period waits for rx3 too
        yield self.warp_by(1)
        yield self.turn_until(outcome.done)
        result = yield outcome
        assert result
        assert dict(result) == {"rx1": True, "rx2": True, "rx3": False}

    @tornado.testing.gen_test(timeout=WAIT)
    def test_a_request_to_a_fake_that_never_replies_times_out_at_its_virtual_time(self):
        def never(req, msg):
            """Never replies."""
            raise AsyncReply()

        res, _ = fake_clients.fake_KATCP_client_resource_factory(
            KATCPClientResource, {"request_handlers": {"never": never}},
            dict(name="dev", address=("fake-host.invalid", 1), controlled=True))
        self.start(res)
        yield res.until_synced()
        reply = res.req.never(timeout=20)
        yield self.warp_by(19.9)
        assert not reply.done()
        yield self.warp_by(0.1)
        yield self.turn_until(reply.done)
        reply = yield reply
        assert reply.reply.arguments == [b"fail", b"Request never timed out after 20.000000 "
                                                  b"seconds."]


class Receiver:
    """The fake handlers of one receiver."""

    def __init__(self, manager):
        self.manager = manager

    @request(Float())
    @return_reply()
    @tornado.gen.coroutine
    def request_tune(self, req, frequency):
        """Tune the receiver."""
        yield tornado.gen.moment
        if frequency > 1e10:
            raise FailReply("out of range")
        self.manager.fake_sensors["frequency"].set_value(frequency)
        return ("ok",)


class Controller(DeviceServer):
    """A user's device that tunes its receivers (the children of a container)."""

    VERSION_INFO = ("controller", 1, 0)
    BUILD_INFO = ("controller", 1, 0, "")

    def __init__(self, receivers, *args, **kwargs):
        self.receivers = receivers
        super().__init__(*args, **kwargs)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)

    def setup_sensors(self):
        self.frequency = Sensor.float("frequency", "First receiver's frequency.", "Hz",
                                      default=0.0, initial_status=Sensor.NOMINAL)
        self.ready = Sensor.boolean("ready", "Receivers watched.", "", default=False,
                                    initial_status=Sensor.NOMINAL)
        self.add_sensor(self.frequency)
        self.add_sensor(self.ready)

    @tornado.gen.coroutine
    def watch_receivers(self):
        yield self.receivers.until_synced()
        yield self.receivers.set_sampling_strategies("frequency", "event")
        yield self.receivers.set_sensor_listener(
            "rx1_frequency", lambda sensor, reading: self.frequency.set_value(reading.value))
        self.ready.set_value(True)

    @request(Float())
    @return_reply(Str())
    @tornado.gen.coroutine
    def request_tune(self, req, frequency):
        """Tune every receiver."""
        results = yield self.receivers.groups.all.req.tune(frequency)
        if not results:
            raise FailReply("refused by %s" % ",".join(
                sorted(name for name, reply in results.items() if not reply.succeeded)))
        yield self.receivers.groups.all.wait("frequency", frequency, timeout=WAIT)
        return ("ok", "tuned %d" % len(results))


class TestDeviceServerOverFakeChildren(unittest.TestCase):

    def setUp(self):
        receivers, self.manager = fake_clients.fake_KATCP_client_resource_container_factory(
            KATCPClientResourceContainer, {"sensor_infos": {
                "frequency": ("Tuned frequency.", "Hz", "float")}},
            {"name": "rx", "groups": {"all": ["rx1", "rx2"]},
             "clients": {name: dict(address=(name + ".invalid", 1), controlled=True)
                         for name in ("rx1", "rx2")}})
        for child_manager in self.manager.child_managers.values():
            child_manager.add_request_handlers_object(Receiver(child_manager))
        device = Controller(receivers, "127.0.0.1", 0)
        start_thread_with_cleanup(self, device, timeout=WAIT, start_timeout=WAIT)
        # On the device's loop; stopped before the device (cleanups run last first).
        receivers.set_ioloop(device.ioloop)
        device.ioloop.add_callback(receivers.start)
        self.addCleanup(device.ioloop.add_callback, receivers.stop)
        device.ioloop.add_callback(device.watch_receivers)
        self.client = BlockingTestClient(self, *device.bind_address)
        start_thread_with_cleanup(self, self.client, timeout=WAIT, start_timeout=WAIT)
        self.client.wait_protocol(timeout=WAIT)
        self.client.wait_until_sensor_equals(WAIT, "ready", True, bool)

    def test_requests_go_to_the_fake_children_and_their_sensors_come_back(self):
        client = self.client
        client.assert_request_succeeds("tune", 1.5e9, args_equal=["tuned 2"], timeout=WAIT)
        client.wait_until_sensor_equals(WAIT, "frequency", 1.5e9, float)
        client.assert_request_fails("tune", 2e10, error_equals="refused by rx1,rx2",
                                    timeout=WAIT)
        recorded = client.message_recorder(whitelist=["sensor-status"])
        client.assert_request_succeeds("sensor-sampling", "frequency", "event")
        self.manager.child_managers["rx1"].fake_sensors["frequency"].set_value(42.0)
        informs = recorded(2, timeout=WAIT)
        assert [inform.arguments[-1] for inform in informs] == [b"1500000000.0", b"42.0"]
