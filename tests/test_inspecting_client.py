"""Tests for katcp.inspecting_client over real sockets on 127.0.0.1.

Most tests talk to a small scripted KATCP server (``FakeDevice``) that runs on the
test's own loop, so the device's interface can be changed between steps and every
request the client sends is recorded. The last tests use a real katcp DeviceServer.
"""

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
from unittest import mock

import tornado.gen
import tornado.ioloop
import tornado.testing
import tornado.util
from accepting import Acceptor
from log_helpers import no_logs
from wait_helpers import waits_left_by

from katcp.client import AsyncClient
from katcp.core import AttrDict, Message, MessageParser, ProtocolFlags, Sensor
from katcp.inspecting_client import (
    ExponentialRandomBackoff,
    InspectingClientAsync,
    InspectingClientStateType,
    RequestType,
    SyncError,
)
from katcp.resource_client import KATCPClientResource
from katcp.kattypes import request_timeout_hint
from katcp.server import DeviceServer

WAIT = 5.0

DISCONNECTED = InspectingClientStateType(False, False, False, False)
CONNECTED = InspectingClientStateType(True, False, False, False)
SYNCED = InspectingClientStateType(True, True, False, True)
DATA_SYNCED_CHANGED = InspectingClientStateType(True, False, True, True)
DATA_SYNCED_UNCHANGED = InspectingClientStateType(True, False, False, True)


class FakeDevice:
    """Scripted KATCP v5 device: ?help, ?sensor-list, ?sensor-value, ?sensor-sampling,
    ?request-timeout-hint; #version-connect on connect; informs pushed on demand.

    Parameters
    ----------
    protocol : bytes or None
        Version string sent in ``#version-connect katcp-protocol``; None for a KATCP
        v4 device (``#version`` and ``#build-state`` instead).
    """

    def __init__(self, protocol=b"5.1-MIT"):
        self.protocol = protocol
        self.requests = {"help": "Get help.", "sensor-list": "List sensors.",
                         "watchdog": "Check the device."}
        self.timeout_hints = {"watchdog": 2.5}
        # name -> [description, units, type, params, (timestamp, status, value)]
        self.sensors = {
            "temp": ["Temperature.", "degC", "float", [b"-10", b"50"],
                     (b"1000.5", b"nominal", b"21.5")],
            "mode": ["Mode.", "", "discrete", [b"on", b"off"],
                     (b"1000.5", b"nominal", b"on")],
        }
        # Requests answered with a fail reply / never answered / answered by
        # dropping the connection, the next time each arrives.
        self.fail_next = set()
        self.ignore_next = set()
        self.drop_next = set()
        # How the device words "no such item" (None: as katcp-python does; "": a fail
        # reply without a reason).
        self.unknown_text = None
        # Informs sent on connect before the device says its version.
        self.first_informs = []
        self.received = []
        self.port = None
        self._acceptor = Acceptor(self._serve)
        self._writers = set()
        self._request_seen = None

    async def start(self, port=0):
        self.port = await self._acceptor.start(port)

    async def stop(self):
        """Close the listening socket and every connection."""
        await self._acceptor.stop()

    def inform(self, name, *args):
        """Send an inform to every connected client."""
        self.informs_together((name, *args))

    def informs_together(self, *informs):
        """Send informs, each ``(name, *args)``, to every connected client in one write."""
        data = b"".join(bytes(Message.inform(*inform)) + b"\n" for inform in informs)
        for writer in self._writers:
            writer.write(data)

    def until_request(self, name):
        """Future resolving with the next request called `name` the device receives."""
        self._request_seen = (name, asyncio.get_running_loop().create_future())
        return self._request_seen[1]

    def names_received(self):
        return [(msg.name, [arg.decode() for arg in msg.arguments])
                for msg in self.received]

    async def _serve(self, reader, writer):
        self._writers.add(writer)
        for msg in self.first_informs:
            writer.write(bytes(msg) + b"\n")
        if self.protocol is None:
            writer.write(b"#version fake-1.0\n#build-state fake-build\n")
        else:
            writer.write(b"#version-connect katcp-protocol " + self.protocol + b"\n"
                         b"#version-connect katcp-device fake-1.0 fake-build\n")
        parser = MessageParser()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                msg = parser.parse(line.rstrip(b"\r\n"))
                self.received.append(msg)
                if self._request_seen and self._request_seen[0] == msg.name:
                    self._request_seen[1].set_result(msg)
                    self._request_seen = None
                if msg.name in self.drop_next:
                    self.drop_next.discard(msg.name)
                    break
                for reply in self._answer(msg):
                    writer.write(bytes(reply) + b"\n")
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, msg):
        handler = getattr(self, "_request_" + msg.name.replace("-", "_"), None)
        if handler is None:
            return [Message.reply_to_request(msg, "invalid", "Unknown request.")]
        if msg.name in self.fail_next:
            self.fail_next.discard(msg.name)
            return [Message.reply_to_request(msg, "fail", "Scripted failure.")]
        if msg.name in self.ignore_next:
            self.ignore_next.discard(msg.name)
            return []
        return handler(msg)

    def _listing(self, msg, table, unknown, make_inform):
        names = [arg.decode() for arg in msg.arguments] or sorted(table)
        if any(name not in table for name in names):
            reason = unknown if self.unknown_text is None else self.unknown_text
            return [Message.reply_to_request(msg, "fail", *([reason] if reason else []))]
        informs = [Message.reply_inform(msg, *make_inform(name)) for name in names]
        return informs + [Message.reply_to_request(msg, "ok", len(informs))]

    def _request_help(self, msg):
        # A description of None: an inform of the name alone.
        return self._listing(msg, self.requests, "Unknown request method.",
                             lambda name: (name, self.requests[name])[
                                 :1 if self.requests[name] is None else 2])

    def _request_request_timeout_hint(self, msg):
        table = {name: self.timeout_hints.get(name, 0.0) for name in self.requests}
        if not msg.arguments:
            table = {name: hint for name, hint in table.items() if hint}
        return self._listing(msg, table, "Unknown request method",
                             lambda name: (name, table[name]))

    def _request_sensor_list(self, msg):
        return self._listing(msg, self.sensors, "Unknown sensor name.",
                             lambda name: (name, *self.sensors[name][:3],
                                           *self.sensors[name][3]))

    def _request_sensor_value(self, msg):
        return self._listing(msg, self.sensors, "Unknown sensor name.",
                             lambda name: self._reading(name))

    def _reading(self, name):
        timestamp, status, value = self.sensors[name][4]
        return timestamp, 1, name, status, value

    def _request_sensor_sampling(self, msg):
        name, strategy = [arg.decode() for arg in msg.arguments[:2]]
        reply = Message.reply_to_request(msg, "ok", name, strategy)
        if strategy == "none":
            return [reply]
        return [reply, Message.inform("sensor-status", *self._reading(name))]

    def _request_watchdog(self, msg):
        return [Message.reply_to_request(msg, "ok")]


class StateRecorder:
    """State callback recording (state, model_changes), optionally as a coroutine."""

    def __init__(self):
        self.calls = []

    def __call__(self, state, model_changes):
        self.calls.append((state, model_changes))

    @property
    def states(self):
        return [state for state, _ in self.calls]


class SensorWatcher:
    """Sensor observer whose next() future resolves with the next reading."""

    def __init__(self, sensor):
        self._future = None
        sensor.attach(self)

    def next(self):
        self._future = asyncio.get_running_loop().create_future()
        return self._future

    def update(self, sensor, reading):
        if self._future is not None and not self._future.done():
            self._future.set_result(reading)


class _FirstRecord(logging.Handler):
    def __init__(self, level):
        super().__init__(level)
        self.future = asyncio.get_running_loop().create_future()

    def emit(self, record):
        if not self.future.done():
            self.future.set_result(record)


@contextlib.contextmanager
def first_record(name, level=logging.WARNING):
    """Future resolving with the first record that logger `name` logs at `level` or above
    in the block: for a test on the loop to wait for."""
    handler = _FirstRecord(level)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler.future
    finally:
        logger.removeHandler(handler)


class PatientClient(InspectingClientAsync):
    """Inspecting client whose requests without a timeout of their own never time out."""

    def inform_hook_client_factory(self, host, port, *args, **kwargs):
        return super().inform_hook_client_factory(host, port, *args, timeout=None, **kwargs)


class FailingNamedInspectionOnce(InspectingClientAsync):
    """Its first inspection of one named sensor fails (SyncError), as a failed listing would."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures = [SyncError("scripted failure")]

    def inspect_sensors(self, name=None, timeout=None):
        if name is not None and self.failures:
            raise self.failures.pop()
        return super().inspect_sensors(name, timeout)


class QuietSensorFoundBeforeFailure(InspectingClientAsync):
    """While fail_whole_list, its inspection of all sensors fails (SyncError) after another
    inspection has found the sensor 'quiet'."""

    fail_whole_list = False

    @tornado.gen.coroutine
    def inspect_sensors(self, name=None, timeout=None):
        if name is None and self.fail_whole_list:
            self.fail_whole_list = False
            yield super().inspect_sensors("quiet")
            raise SyncError("scripted failure")
        return (yield super().inspect_sensors(name, timeout))


class TestExponentialRandomBackoff(tornado.testing.AsyncTestCase):

    def test_defaults(self):
        backoff = ExponentialRandomBackoff()
        self.assertEqual((backoff.delay_initial, backoff.delay_max, backoff.exp_fac,
                          backoff.randomicity), (1.0, 90.0, 3.0, 0.95))
        self.assertGreaterEqual(backoff.delay, 0.05)
        self.assertLessEqual(backoff.delay, 1.0)

    def test_failed_grows_randomised_delay_up_to_max_and_success_resets(self):
        backoff = ExponentialRandomBackoff(delay_initial=1.0, delay_max=20.0,
                                           exp_fac=2.0, randomicity=0.5)
        nominals = [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
        for nominal in nominals:
            backoff.failed()
            self.assertGreaterEqual(backoff.delay, 0.5 * nominal)
            self.assertLessEqual(backoff.delay, nominal)
        backoff.success()
        self.assertGreaterEqual(backoff.delay, 0.5)
        self.assertLessEqual(backoff.delay, 1.0)

    def test_zero_randomicity_is_deterministic(self):
        backoff = ExponentialRandomBackoff(delay_initial=0.5, exp_fac=3.0,
                                           randomicity=0.0)
        delays = [backoff.delay]
        for _ in range(2):
            backoff.failed()
            delays.append(backoff.delay)
        self.assertEqual(delays, [0.5, 1.5, 4.5])

    def test_zero_or_negative_initial_delay_retries_at_once_then_from_the_floor(self):
        for delay_initial in (0.0, -2.0):
            backoff = ExponentialRandomBackoff(delay_initial=delay_initial, exp_fac=3.0,
                                               randomicity=0.0)
            delays = [backoff.delay]
            for _ in range(2):
                backoff.failed()
                delays.append(backoff.delay)
            floor = ExponentialRandomBackoff.delay_floor
            self.assertEqual(delays, [0.0, floor, 3 * floor])

    def test_a_positive_initial_delay_grows_from_itself_however_small(self):
        backoff = ExponentialRandomBackoff(delay_initial=0.001, exp_fac=2.0, randomicity=0.0)
        delays = [backoff.delay]
        for _ in range(2):
            backoff.failed()
            delays.append(backoff.delay)
        self.assertEqual(delays, [0.001, 0.002, 0.004])


class InspectingClientTestBase(tornado.testing.AsyncTestCase):
    """Starts a FakeDevice and provides a helper to start clients against it."""

    protocol = b"5.1-MIT"

    def setUp(self):
        super().setUp()
        self.device = FakeDevice(self.protocol)
        self.io_loop.run_sync(self.device.start)
        self.clients = []

    def tearDown(self):
        async def cleanup():
            for client in self.clients:
                client.stop()
                await client.until_stopped(timeout=WAIT)
            await self.device.stop()
        self.io_loop.run_sync(cleanup)
        super().tearDown()

    @contextlib.asynccontextmanager
    async def device_away(self):
        """The port of the device, stopped while the block runs (a new one serves after,
        for the tests and the tear-down that follow)."""
        port = self.device.port
        await self.device.stop()
        try:
            yield port
        finally:
            self.device = FakeDevice()
            await self.device.start()

    async def start_client(self, synced=True, client_class=InspectingClientAsync,
                           resync_delay=None, **kwargs):
        client = client_class("127.0.0.1", self.device.port, **kwargs)
        self.clients.append(client)
        recorder = StateRecorder()
        client.set_state_callback(recorder)
        client.resync_delay = resync_delay or ExponentialRandomBackoff(delay_initial=0.01,
                                                                       delay_max=0.05)
        await client.connect(timeout=WAIT)
        if synced:
            await client.until_synced(timeout=WAIT)
        return client, recorder

    async def start_client_whose_first_sync_fails(self):
        """A client whose first ?sensor-list fails, once it waits (a minute) to retry."""
        self.device.fail_next.add("sensor-list")
        # The failure is logged just before the wait for the retry begins.
        with first_record("katcp.inspect_client") as failed:
            started = await self.start_client(
                synced=False,
                resync_delay=ExponentialRandomBackoff(delay_initial=60.0, randomicity=0.0))
            await tornado.gen.with_timeout(self.io_loop.time() + WAIT, failed)
        return started

    async def failure_of_unanswered(self, request_name, inspect):
        """What ``inspect(timeout=0.1)`` fails with while the device ignores its next
        `request_name` request."""
        self.device.ignore_next.add(request_name)
        inspection = asyncio.ensure_future(inspect(timeout=0.1))
        done, _ = await asyncio.wait({inspection}, timeout=WAIT)
        self.assertEqual(done, {inspection})
        return inspection.exception()

    async def resync_after(self, client, *inform_args):
        """Send #interface-changed and wait until the client has resynced."""
        self.device.received.clear()
        not_synced = client.until_not_synced(timeout=WAIT)
        self.device.inform("interface-changed", *inform_args)
        await not_synced
        await client.until_synced(timeout=WAIT)


class TestSync(InspectingClientTestBase):

    @tornado.testing.gen_test(timeout=10)
    async def test_initial_sync_builds_model(self):
        client, _ = await self.start_client()
        self.assertEqual(sorted(client.requests), ["help", "sensor-list", "watchdog"])
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])
        self.assertTrue(client.synced)
        self.assertTrue(client.is_connected())
        self.assertTrue(client.connected)
        self.assertEqual(client.state, SYNCED)
        self.assertEqual(self.device.names_received(), [
            ("help", []), ("request-timeout-hint", []), ("sensor-list", [])])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_wait_for_a_state_resolves_to_true_when_reached_and_when_already_there(self):
        # As 0.9.3's: callers test the result (``if (yield client.until_synced())``).
        client, _ = await self.start_client(synced=False)
        self.assertIs(await client.until_synced(timeout=WAIT), True)
        self.assertIs(await client.until_synced(timeout=WAIT), True)
        self.assertIs(await client.until_state(SYNCED, timeout=WAIT), True)

    @tornado.testing.gen_test(timeout=10)
    async def test_state_callback_sequence_and_model_changes(self):
        client, recorder = await self.start_client()
        self.assertEqual(recorder.states, [CONNECTED, DATA_SYNCED_CHANGED, SYNCED])
        changes = recorder.calls[1][1]
        self.assertIsInstance(changes, AttrDict)
        self.assertEqual(changes.requests.added, {"help", "sensor-list", "watchdog"})
        self.assertEqual(changes.requests.removed, set())
        self.assertEqual(changes.sensors.added, {"mode", "temp"})
        self.assertEqual(changes.sensors.removed, set())
        self.assertIsNone(recorder.calls[2][1])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_state_callback_cancelled_is_an_error_the_client_goes_on_from(self):
        loop = asyncio.get_running_loop()
        started, cancelled_work = loop.create_future(), loop.create_future()

        async def callback(state, model_changes):
            if state == DATA_SYNCED_CHANGED and not started.done():
                started.set_result(None)
                await cancelled_work  # something the program cancels

        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.set_state_callback(callback)
        with self.assertLogs("katcp", logging.ERROR) as logs:
            await client.connect(timeout=WAIT)
            await tornado.gen.with_timeout(self.io_loop.time() + WAIT, started)
            cancelled_work.cancel()
            await client.until_synced(timeout=WAIT)
        self.assertEqual(logs.records[0].getMessage(),
                         "State callback for 127.0.0.1:%d was cancelled" % self.device.port)
        # Its state coroutine lives on: it follows the device's interface changes.
        self.device.sensors["added"] = ["Added.", "", "integer", [b"0", b"10"],
                                        (b"1000.5", b"nominal", b"3")]
        await self.resync_after(client, "sensor-list")
        assert "added" in client.sensors

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failing_state_callback_is_logged_with_the_device_and_the_error(self):
        def failing_callback(state, model_changes):
            raise RuntimeError("callback failed")

        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.set_state_callback(failing_callback)
        with self.assertLogs("katcp.inspect_client", logging.ERROR) as logs:
            await client.connect(timeout=WAIT)
            await client.until_synced(timeout=WAIT)
        record = logs.records[0]
        self.assertEqual(record.getMessage(),
                         "Error in state callback for 127.0.0.1:%d" % self.device.port)
        self.assertEqual(str(record.exc_info[1]), "callback failed")

    @tornado.testing.gen_test(timeout=10)
    async def test_a_plain_state_callback_holds_the_next_state_for_a_loop_turn_only(self):
        # A sync reports two states before it is synced; a plain callback must not delay
        # each by a timer (it takes milliseconds: the bound leaves room for a busy machine).
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.set_state_callback(StateRecorder())
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=1.5)

    @tornado.testing.gen_test(timeout=10)
    async def test_state_callback_coroutine_is_awaited(self):
        events = []
        loop = asyncio.get_running_loop()
        started, release = loop.create_future(), loop.create_future()

        async def slow_callback(state, model_changes):
            events.append(("start", state))
            if state == DATA_SYNCED_CHANGED:
                started.set_result(None)
                await release
            events.append(("end", state))

        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.set_state_callback(slow_callback)
        await client.connect(timeout=WAIT)
        try:
            await tornado.gen.with_timeout(self.io_loop.time() + WAIT, started)
            # A full request round trip gives the client time to move on if it would.
            await client.simple_request("watchdog")
            self.assertEqual(client.state, DATA_SYNCED_CHANGED)
        finally:
            release.set_result(None)
        await client.until_synced(timeout=WAIT)
        self.assertIn(("end", DATA_SYNCED_CHANGED), events)

    @tornado.testing.gen_test(timeout=10)
    async def test_future_get_sensor_and_request(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        self.assertIsInstance(temp, Sensor)
        self.assertEqual((temp.name, temp.stype, temp.units, temp.description, temp.params),
                         ("temp", "float", "degC", "Temperature.", [-10.0, 50.0]))
        self.assertIs(await client.future_get_sensor("temp"), temp)
        mode = await client.future_get_sensor("mode")
        self.assertEqual(mode.params, ["on", "off"])
        watchdog = await client.future_get_request("watchdog")
        self.assertEqual(watchdog, RequestType("watchdog", "Check the device.", 2.5))
        self.assertEqual(watchdog.timeout_hint, 2.5)
        help_request = await client.future_get_request("help")
        self.assertIsNone(help_request.timeout_hint)
        self.assertTrue(await client.future_check_sensor("temp"))
        self.assertTrue(await client.future_check_request("help"))

    @tornado.testing.gen_test(timeout=10)
    async def test_unknown_names_are_looked_up_once_on_the_device(self):
        client, _ = await self.start_client()
        self.device.received.clear()
        self.assertIsNone(await client.future_get_sensor("nosuch"))
        self.assertIsNone(await client.future_get_request("nosuch"))
        self.assertEqual(self.device.names_received(), [
            ("sensor-list", ["nosuch"]), ("help", ["nosuch"])])
        self.device.received.clear()
        self.assertFalse(await client.future_check_sensor("nosuch", update=False))
        self.assertFalse(await client.future_check_request("nosuch", update=False))
        self.assertEqual(self.device.received, [])

    @tornado.testing.gen_test(timeout=10)
    async def test_update_none_follows_the_clients_default_and_true_asks_the_device(self):
        client, _ = await self.start_client()
        # 0.9.3's attribute for the default of `update`, which is to ask.
        client._update_on_lookup = False
        self.device.sensors["quiet"] = ["Added quietly.", "", "integer", [],
                                        (b"1.0", b"nominal", b"3")]
        self.device.requests["quiet"] = "Added quietly."
        self.device.received.clear()
        self.assertFalse(await client.future_check_sensor("quiet"))
        self.assertIsNone(await client.future_get_request("quiet"))
        self.assertEqual(self.device.received, [])
        self.assertTrue(await client.future_check_sensor("quiet", update=True))
        self.assertEqual((await client.future_get_request("quiet", update=True)).description,
                         "Added quietly.")
        self.assertEqual(self.device.names_received(), [
            ("sensor-list", ["quiet"]), ("help", ["quiet"]), ("request-timeout-hint", ["quiet"])])

    @tornado.testing.gen_test(timeout=10)
    async def test_lookup_finds_item_added_without_interface_changed(self):
        client, _ = await self.start_client()
        self.device.sensors["quiet"] = ["Added quietly.", "", "integer", [],
                                        (b"1.0", b"nominal", b"3")]
        sensor = await client.future_get_sensor("quiet")
        self.assertEqual(sensor.stype, "integer")
        self.assertIn("quiet", client.sensors)

    @tornado.testing.gen_test(timeout=10)
    async def test_preset_protocol_flags_are_the_katcp_clients(self):
        # Preset without message ids: the device's 5.1-MIT is not detected.
        flags = ProtocolFlags(5, 0, set())
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.preset_protocol_flags(flags)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        self.assertIs(client.katcp_client.protocol_flags, flags)
        # Nor asked for timeout hints, which the flags do not offer.
        self.assertEqual(self.device.names_received(), [("help", []), ("sensor-list", [])])
        self.assertEqual([msg.mid for msg in self.device.received], [None, None])

    @tornado.testing.gen_test(timeout=10)
    async def test_custom_factories(self):
        made = []

        def sensor_factory(**kwargs):
            made.append(kwargs)
            return kwargs["name"]

        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.sensor_factory = sensor_factory
        client.request_factory = lambda **kwargs: ("request", kwargs)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        self.assertEqual(await client.future_get_sensor("temp"), "temp")
        self.assertEqual(made, [dict(name="temp", sensor_type=Sensor.FLOAT,
                                     description="Temperature.", units="degC",
                                     params=[-10.0, 50.0])])
        self.assertEqual(await client.future_get_request("watchdog"), (
            "request", dict(name="watchdog", description="Check the device.",
                            timeout_hint=2.5)))

    @tornado.testing.gen_test(timeout=10)
    async def test_a_lookup_whose_object_cannot_be_made_fails_its_future(self):
        # A factory's error, or a sensor type the device made up, fails the future the
        # lookup returns, as 0.9.3's coroutine did: the call itself returns.
        def refuse(**kwargs):
            raise ValueError("refused " + kwargs["name"])

        self.device.sensors["odd"] = ["Odd.", "", "made-up", [], (b"1", b"nominal", b"x")]
        client, _ = await self.start_client()
        client.request_factory = refuse
        lookups = [(client.future_get_request, "watchdog", "refused watchdog"),
                   (client.future_get_sensor, "odd", "Invalid sensor type"),
                   (functools.partial(client._future_get_many, "sensors"), ["odd"],
                    "Invalid sensor type")]
        for lookup, name, error in lookups:
            looked_up = lookup(name)
            with self.assertRaisesRegex(ValueError, error):
                await looked_up

    @tornado.testing.gen_test(timeout=10)
    async def test_lookup_calls_overrides_through_the_client(self):
        calls = []

        class Client(InspectingClientAsync):
            def future_check_sensor(self, name, update=None):
                calls.append(("check", name))
                return super().future_check_sensor(name, update)

            def _sensor_description(self, name, info):
                return dict(super()._sensor_description(name, info), units="K")

            def _make_request(self, name, info):
                return ("request", name)

        client = Client("127.0.0.1", self.device.port)
        self.clients.append(client)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        self.assertIsNone(await client.future_get_sensor("nosuch"))
        self.assertEqual(calls, [("check", "nosuch")])
        temp, mode = await client._future_get_many("sensors", ["temp", "mode"])
        self.assertEqual((temp.units, mode.units), ("K", "K"))
        self.assertEqual(await client.future_get_request("watchdog"), ("request", "watchdog"))
        self.assertEqual(await client._future_get_many("requests", ["help"]),
                         [("request", "help")])

    @tornado.testing.gen_test(timeout=10)
    async def test_inspect_reports_no_changes_as_none(self):
        client, _ = await self.start_client()
        self.assertIsNone(await client.inspect())
        self.assertIsNone(await client.inspect_sensors())
        self.assertIsNone(await client.inspect_requests("help"))

    @tornado.testing.gen_test(timeout=10)
    async def test_inspect_requests_fails_with_sync_error(self):
        client, _ = await self.start_client()
        self.device.fail_next.add("help")
        with self.assertRaises(SyncError):
            await client.inspect_requests()

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failed_inspect_leaves_the_model_as_it_was_for_the_next_to_report(self):
        # As in 0.9.3: the request and sensor updates of inspect() go in together or not
        # at all, so a change found before the failure is not lost to the next inspect().
        client, _ = await self.start_client()
        requests_index, sensors_index = client._requests_index, client._sensors_index
        temp = await client.future_get_sensor("temp")
        self.device.requests["new-request"] = "New."
        del self.device.requests["watchdog"]
        self.device.sensors["temp"][0] = "Changed."
        self.device.fail_next.add("sensor-list")
        with self.assertRaises(SyncError):
            await client.inspect()
        self.assertEqual(sorted(client.requests), ["help", "sensor-list", "watchdog"])
        self.assertIs(await client.future_get_sensor("temp"), temp)
        # Restored in place: code holding an index sees the restored one.
        self.assertIs(client._requests_index, requests_index)
        self.assertIs(client._sensors_index, sensors_index)
        changes = await client.inspect()
        self.assertEqual(changes, dict(
            requests=dict(added={"new-request"}, removed={"watchdog"}),
            sensors=dict(added={"temp"}, removed={"temp"})))
        self.assertEqual((await client.future_get_sensor("temp")).description, "Changed.")

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failed_inspect_leaves_alone_what_another_inspection_changed_meanwhile(self):
        client, _ = await self.start_client(client_class=QuietSensorFoundBeforeFailure)
        self.device.requests["new-request"] = "New."
        self.device.sensors["quiet"] = ["Added quietly.", "", "integer", [],
                                        (b"1.0", b"nominal", b"3")]
        client.fail_whole_list = True
        with self.assertRaises(SyncError):
            await client.inspect()
        self.assertNotIn("new-request", client.requests)
        self.assertEqual(sorted(client.sensors), ["mode", "quiet", "temp"])

    @tornado.testing.gen_test(timeout=10)
    async def test_initial_inspection_false_inspects_lazily(self):
        client, recorder = await self.start_client(initial_inspection=False)
        self.assertEqual(self.device.received, [])
        self.assertEqual(client.sensors, [])
        self.assertEqual(recorder.states, [CONNECTED, DATA_SYNCED_UNCHANGED, SYNCED])
        sensor = await client.future_get_sensor("temp")
        self.assertEqual(sensor.name, "temp")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["temp"])])
        self.assertEqual(client.sensors, ["temp"])
        # Resyncs only re-inspect what the client knows about.
        await self.resync_after(client, "sensor-list")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["temp"])])
        # An explicit inspect() inspects the device's every request and sensor.
        changes = await client.inspect()
        self.assertEqual(changes.sensors.added, {"mode"})
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])
        self.assertIn("watchdog", client.requests)

    @tornado.testing.gen_test(timeout=10)
    async def test_a_lazy_client_reinspects_the_requests_it_knows_when_they_change(self):
        client, _ = await self.start_client(initial_inspection=False)
        await client.future_get_request("watchdog")
        await client.future_get_sensor("temp")
        await self.resync_after(client, "request-list")
        self.assertEqual(self.device.names_received(), [
            ("help", ["watchdog"]), ("request-timeout-hint", ["watchdog"])])
        self.assertEqual(client.requests, ["watchdog"])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_timeout_hint_under_a_second_is_kept(self):
        self.device.timeout_hints = {"watchdog": 0.25}
        client, _ = await self.start_client()
        watchdog = await client.future_get_request("watchdog", update=False)
        self.assertEqual(watchdog.timeout_hint, 0.25)

    @tornado.testing.gen_test(timeout=10)
    async def test_failed_sync_is_retried_with_backoff(self):
        self.device.fail_next.add("sensor-list")
        client, recorder = await self.start_client()
        self.assertEqual([name for name, _ in self.device.names_received()],
                         ["help", "request-timeout-hint", "sensor-list", "sensor-list"])
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])
        # The retry is a new sync attempt and is reported as one.
        self.assertEqual(recorder.states,
                         [CONNECTED, CONNECTED, DATA_SYNCED_CHANGED, SYNCED])
        # Request changes found before the failure are still reported.
        self.assertEqual(set(recorder.calls[2][1]), {"requests", "sensors"})

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failed_sync_is_logged_with_the_device_and_the_reason(self):
        self.device.fail_next.add("sensor-list")
        with self.assertLogs("katcp.inspect_client", logging.WARNING) as logs:
            await self.start_client()
        address = "127.0.0.1:%d" % self.device.port
        self.assertEqual([(record.levelno, record.getMessage()) for record in logs.records],
                         [(logging.WARNING, "Error syncing with device %s: Error reply during "
                           "sync process for %s: !sensor-list fail Scripted failure."
                           % (address, address))])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failure_to_get_the_timeout_hints_is_logged_and_the_sync_retried(self):
        self.device.fail_next.add("request-timeout-hint")
        with self.assertLogs("katcp", logging.WARNING) as logs:
            client, _ = await self.start_client()
        address = "127.0.0.1:%d" % self.device.port
        self.assertEqual([(record.levelno, record.getMessage()) for record in logs.records],
                         [(logging.WARNING, "Error syncing with device %s: Error retrieving "
                           "request timeout hints for %s: !request-timeout-hint fail "
                           "Scripted failure." % (address, address))])
        watchdog = await client.future_get_request("watchdog", update=False)
        self.assertEqual(watchdog.timeout_hint, 2.5)

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failed_sync_is_logged_to_the_given_logger_or_the_modules_for_none(self):
        for name, logger in (("test.ic", logging.getLogger("test.ic")),
                             ("katcp.inspect_client", None)):
            self.device.fail_next.add("sensor-list")
            with self.assertLogs(name, logging.WARNING) as logs:
                client, _ = await self.start_client(logger=logger)
            self.assertIn("Error syncing with device", logs.records[0].getMessage())
            client.stop()
            await client.until_stopped(timeout=WAIT)

    @tornado.testing.gen_test(timeout=10)
    async def test_an_unexpected_error_of_a_sync_is_logged_with_its_traceback_and_retried(self):
        failures = [RuntimeError("inspection broke")]

        class Breaking(InspectingClientAsync):
            def inspect_sensors(self, name=None, timeout=None):
                if failures:
                    raise failures.pop()
                return super().inspect_sensors(name, timeout)

        client = Breaking("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.resync_delay = ExponentialRandomBackoff(delay_initial=0.01, delay_max=0.05)
        with self.assertLogs("katcp.inspect_client", logging.WARNING) as logs:
            await client.connect(timeout=WAIT)
            await client.until_synced(timeout=WAIT)
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])
        [record] = logs.records
        self.assertEqual((record.levelno, record.getMessage()), (
            logging.ERROR, "Unexpected error syncing with device 127.0.0.1:%d"
            % self.device.port))
        self.assertEqual(str(record.exc_info[1]), "inspection broke")

    @tornado.testing.gen_test(timeout=10)
    async def test_a_malformed_sensor_list_inform_fails_the_sync_which_is_retried(self):
        listing = self.device._request_sensor_list
        malformed = [lambda msg: [Message.reply_inform(msg, "broken", "Too short."),
                                  Message.reply_to_request(msg, "ok", 1)]]
        self.device._request_sensor_list = lambda msg: (
            malformed.pop() if malformed else listing)(msg)
        with self.assertLogs("katcp", logging.WARNING) as logs:
            client, _ = await self.start_client()
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])
        [record] = logs.records
        self.assertEqual((record.levelno, record.getMessage()), (
            logging.ERROR, "Unexpected error syncing with device 127.0.0.1:%d"
            % self.device.port))
        self.assertIsInstance(record.exc_info[1], ValueError)

    @tornado.testing.gen_test(timeout=10)
    async def test_the_indexes_hold_what_help_and_the_sensor_list_said(self):
        # 0.9 code reads the indexes under these names.
        client, _ = await self.start_client()
        self.assertEqual(client._requests_index, {
            "help": {"name": "help", "description": "Get help.", "timeout_hint": None},
            "sensor-list": {"name": "sensor-list", "description": "List sensors.",
                            "timeout_hint": None},
            "watchdog": {"name": "watchdog", "description": "Check the device.",
                         "timeout_hint": 2.5}})
        self.assertEqual(client._sensors_index, {
            "temp": {"description": "Temperature.", "units": "degC", "sensor_type": "float",
                     "params": (b"-10", b"50")},
            "mode": {"description": "Mode.", "units": "", "sensor_type": "discrete",
                     "params": (b"on", b"off")}})

    @tornado.testing.gen_test(timeout=10)
    async def test_a_sensor_description_that_is_not_utf8_is_read_with_replacement(self):
        self.device.sensors["temp"][0] = b"Temperature \xff."
        client, _ = await self.start_client()
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])
        temp = await client.future_get_sensor("temp", update=False)
        self.assertEqual(temp.description, "Temperature \ufffd.")

    @tornado.testing.gen_test(timeout=10)
    async def test_changes_found_before_a_failed_sync_are_reported_with_those_after(self):
        client, recorder = await self.start_client_whose_first_sync_fails()
        # Ends the wait to retry: the requests found before the failure stay found.
        self.device.requests["reboot"] = "Reboot the device."
        self.device.inform("interface-changed", "request", "reboot", "added")
        await client.until_synced(timeout=WAIT)
        self.assertEqual(recorder.states, [CONNECTED, CONNECTED, DATA_SYNCED_CHANGED, SYNCED])
        self.assertEqual(recorder.calls[2][1], dict(
            requests=dict(added={"help", "sensor-list", "watchdog", "reboot"}, removed=set()),
            sensors=dict(added={"mode", "temp"}, removed=set())))

    @tornado.testing.gen_test(timeout=10)
    async def test_the_changes_of_items_inspected_together_are_all_reported(self):
        client, recorder = await self.start_client(
            client_class=FailingNamedInspectionOnce,
            resync_delay=ExponentialRandomBackoff(delay_initial=60.0, randomicity=0.0))
        recorder.calls.clear()
        del self.device.sensors["mode"]
        del self.device.sensors["temp"]
        with first_record("katcp.inspect_client") as failed:
            self.device.inform("interface-changed", "sensor", "mode", "removed")
            await tornado.gen.with_timeout(self.io_loop.time() + WAIT, failed)
        # Ends the wait to retry: both sensors are inspected together.
        self.device.inform("interface-changed", "sensor", "temp", "removed")
        await client.until_synced(timeout=WAIT)
        self.assertEqual(client.sensors, [])
        self.assertEqual(recorder.calls[-2][1],
                         dict(sensors=dict(added=set(), removed={"mode", "temp"})))

    @tornado.testing.gen_test(timeout=10)
    async def test_an_inspection_of_requests_ends_at_its_timeout(self):
        client, _ = await self.start_client(client_class=PatientClient)
        # The inspection's deadline, not the request's own timeout (what was left of it
        # when the request was sent, so a little later).
        self.assertIsInstance(await self.failure_of_unanswered("help", client.inspect_requests),
                              tornado.util.TimeoutError)

    @tornado.testing.gen_test(timeout=10)
    async def test_an_inspection_of_sensors_ends_at_its_timeout(self):
        client, _ = await self.start_client(client_class=PatientClient)

        async def inspect_unanswered():
            # The request's own timeout: the client makes its fail reply.
            self.assertIsInstance(
                await self.failure_of_unanswered("sensor-list", client.inspect_sensors),
                SyncError)

        await inspect_unanswered()
        # Not streamed, through a future_request replaced (as a test's fake may be).
        own = client.katcp_client.future_request
        with mock.patch.object(client.katcp_client, "future_request",
                               lambda *args, **kwargs: own(*args, **kwargs)):
            await inspect_unanswered()

    @tornado.testing.gen_test(timeout=10)
    async def test_a_request_listed_without_a_description_has_an_empty_one(self):
        self.device.requests["bare"] = None
        client, _ = await self.start_client()
        bare = await client.future_get_request("bare", update=False)
        self.assertEqual(bare.description, "")

    @tornado.testing.gen_test(timeout=10)
    async def test_a_stop_ends_the_wait_to_retry_a_failed_sync(self):
        client, _ = await self.start_client_whose_first_sync_fails()
        client.stop()
        await client.until_stopped(timeout=WAIT)
        self.assertFalse(client.connected)

    @tornado.testing.gen_test(timeout=10)
    async def test_stops_while_waiting_to_retry_a_failed_sync_leave_no_waits_behind(self):
        client, _ = await self.start_client_whose_first_sync_fails()

        async def stop_and_fail_again():
            client.stop()
            await client.until_stopped(timeout=WAIT)
            self.device.fail_next.add("sensor-list")
            with first_record("katcp.inspect_client") as failed:
                await client.connect(timeout=WAIT)
                await tornado.gen.with_timeout(self.io_loop.time() + WAIT, failed)

        assert await waits_left_by(stop_and_fail_again, 5, asyncio.get_running_loop()) <= 0

    @tornado.testing.gen_test(timeout=10)
    async def test_a_connect_whose_katcp_client_fails_to_start_can_be_tried_again(self):
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        with mock.patch.object(client.katcp_client, "start",
                               side_effect=RuntimeError("Device client already started.")):
            with self.assertRaisesRegex(RuntimeError, "already started"):
                await client.connect(timeout=WAIT)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        self.assertTrue(client.synced)

    @tornado.testing.gen_test(timeout=10)
    async def test_the_resync_backoff_is_made_of_the_clients_own_settings(self):
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client.initial_resync_timeout = 0.25
        client.max_resync_timeout = 7.0
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        backoff = client.resync_delay
        self.assertIsInstance(backoff, ExponentialRandomBackoff)
        self.assertEqual((backoff.delay_initial, backoff.delay_max), (0.25, 7.0))

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failure_of_the_state_loop_is_logged_and_ends_in_not_connected(self):
        class Broken(ExponentialRandomBackoff):
            def success(self):
                if hasattr(self, "delay"):  # made: its constructor calls this too
                    raise RuntimeError("backoff broke")
                super().success()

        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        recorder = StateRecorder()
        client.set_state_callback(recorder)
        client.resync_delay = Broken()
        with self.assertLogs("katcp.inspect_client", logging.ERROR) as logs:
            await client.connect(timeout=WAIT)
            await client.until_synced(timeout=WAIT)
            await client.until_state(DISCONNECTED, timeout=WAIT)
        [record] = logs.records
        self.assertEqual(record.getMessage(), "State loop of inspecting client for "
                         "127.0.0.1:%d failed" % self.device.port)
        self.assertEqual(str(record.exc_info[1]), "backoff broke")
        self.assertEqual(recorder.states[-1], DISCONNECTED)

    @tornado.testing.gen_test(timeout=10)
    async def test_an_inspection_diffs_through_the_clients_own_difference(self):
        # 0.9's override point, as _update_index.
        diffed = []

        class Diffing(InspectingClientAsync):
            def _difference(self, original_keys, updated_keys, name, index):
                diffed.append((set(original_keys), set(updated_keys), name))
                return super()._difference(original_keys, updated_keys, name, index)

        await self.start_client(client_class=Diffing)
        self.assertEqual(diffed, [(set(), {"help", "sensor-list", "watchdog"}, None),
                                  (set(), {"mode", "temp"}, None)])

    @tornado.testing.gen_test(timeout=10)
    async def test_getting_many_items_with_one_unknown_looks_each_up(self):
        client, _ = await self.start_client()
        temp, ghost = await client._future_get_many("sensors", ["temp", "ghost"])
        self.assertIs(temp, await client.future_get_sensor("temp"))
        self.assertIsNone(ghost)
        [watchdog] = await client._future_get_many("requests", ["watchdog"])
        self.assertEqual(watchdog.name, "watchdog")

    @tornado.testing.gen_test(timeout=10)
    async def test_getting_an_unknown_item_without_update_asks_the_device_nothing(self):
        client, _ = await self.start_client()
        self.device.sensors["added"] = ["Added.", "", "integer", [b"0", b"10"],
                                        (b"1000.5", b"nominal", b"3")]
        self.device.requests["added"] = "Added."
        self.device.received.clear()
        self.assertIsNone(await client.future_get_sensor("added", update=False))
        self.assertIsNone(await client.future_get_request("added", update=False))
        self.assertEqual(self.device.names_received(), [])

    @tornado.testing.gen_test(timeout=10)
    async def test_simple_request(self):
        client, _ = await self.start_client()
        reply, informs = await client.simple_request("help", "watchdog")
        self.assertTrue(reply.reply_ok())
        self.assertEqual(informs[0].arguments, [b"watchdog", b"Check the device."])
        self.device.received.clear()
        reply, _ = await client.simple_request("watchdog", mid=42, timeout=WAIT)
        self.assertEqual(reply.mid, b"42")
        reply, _ = await client.simple_request("watchdog", use_mid=False)
        self.assertIsNone(reply.mid)
        self.assertEqual([msg.mid for msg in self.device.received], [b"42", None])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_simple_request_times_out_after_its_own_timeout(self):
        client, _ = await self.start_client()
        self.device.ignore_next.add("watchdog")
        # Well before the KATCP client's default timeout (5 seconds).
        replied = asyncio.ensure_future(client.simple_request("watchdog", timeout=0.05))
        done, _ = await asyncio.wait({replied}, timeout=WAIT / 2)
        self.assertEqual(done, {replied})
        reply, informs = replied.result()
        self.assertEqual(reply.arguments[0], b"fail")
        self.assertIn(b"timed out", reply.arguments[1])

    @tornado.testing.gen_test(timeout=10)
    async def test_until_state_timeouts(self):
        client, _ = await self.start_client()
        with self.assertRaises(tornado.gen.TimeoutError):
            await client.until_not_synced(timeout=0.05)
        with self.assertRaises(tornado.gen.TimeoutError):
            await client.until_state(DISCONNECTED, timeout=0.05)
        await client.until_state(SYNCED, timeout=0.05)
        await client.until_state(tuple(SYNCED), timeout=0.05)
        # A resource's state name, which no state ever equals: refused, not waited on.
        for never in ("synced", list(SYNCED), SYNCED[:3]):
            with self.assertRaisesRegex(TypeError, "InspectingClientStateType"):
                client.until_state(never)
        await client.until_connected(timeout=0.05)
        await client.until_data_synced(timeout=0.05)
        # Timed-out waiters are dropped rather than kept until the state changes (on the
        # next loop turn, as other waits given up).
        await asyncio.sleep(0)
        self.assertEqual(client._states.waiters, {})

    @tornado.testing.gen_test(timeout=10)
    async def test_waits_for_a_synced_model_time_out_while_a_sync_waits_to_be_retried(self):
        client, _ = await self.start_client_whose_first_sync_fails()
        for until in (client.until_data_synced, client.until_synced):
            waiting = until(timeout=0.05)
            done, _ = await asyncio.wait({waiting}, timeout=WAIT)
            self.assertEqual(done, {waiting})
            self.assertIsInstance(waiting.exception(), tornado.gen.TimeoutError)

    @tornado.testing.gen_test(timeout=10)
    async def test_waits_given_up_are_unregistered_while_the_state_stays(self):
        client, _ = await self.start_client()
        # A watchdog on a healthy device: each wait is given up by its caller (cancelled
        # by asyncio.wait_for, or directly), with or without a timeout of its own.
        for _ in range(20):
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(client.until_not_synced(), 0.001)
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(client.until_state(DISCONNECTED, timeout=WAIT), 0.001)
            client.until_state(DISCONNECTED).cancel()
        await asyncio.sleep(0)  # the turn on which what a cancelled wait leaves runs
        self.assertEqual(len(client._states.waiters), 0)
        # A wait still pending is resolved by the state change it waits for.
        waiting = client.until_not_synced()
        self.assertEqual(len(client._states.waiters), 1)
        client.stop()
        self.assertTrue(await asyncio.wait_for(waiting, WAIT))
        self.assertEqual(len(client._states.waiters), 0)


class TestInterfaceChanged(InspectingClientTestBase):

    async def start_recording_client(self):
        client, recorder = await self.start_client()
        recorder.calls.clear()
        return client, recorder

    @tornado.testing.gen_test(timeout=10)
    async def test_sensor_added(self):
        client, recorder = await self.start_recording_client()
        self.device.sensors["fan"] = ["Fan speed.", "rpm", "integer", [b"0", b"5000"],
                                      (b"1.0", b"nominal", b"1200")]
        await self.resync_after(client, "sensor", "fan", "added")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["fan"])])
        self.assertIn("fan", client.sensors)
        self.assertEqual(recorder.states, [CONNECTED, DATA_SYNCED_CHANGED, SYNCED])
        self.assertEqual(recorder.calls[1][1],
                         dict(sensors=dict(added={"fan"}, removed=set())))
        fan = await client.future_get_sensor("fan", update=False)
        self.assertEqual(fan.params, [0, 5000])

    @tornado.testing.gen_test(timeout=10)
    async def test_sensor_removed(self):
        client, recorder = await self.start_recording_client()
        del self.device.sensors["mode"]
        await self.resync_after(client, "sensor", "mode", "removed")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["mode"])])
        self.assertEqual(client.sensors, ["temp"])
        self.assertEqual(recorder.calls[1][1],
                         dict(sensors=dict(added=set(), removed={"mode"})))
        self.assertIsNone(await client.future_get_sensor("mode", update=False))

    @tornado.testing.gen_test(timeout=10)
    async def test_removals_seen_whatever_the_device_calls_an_unknown_item(self):
        # Spec 5.1 section 7.2: "a fail reply should be sent", no text prescribed.
        self.device.unknown_text = "No such thing."
        client, recorder = await self.start_recording_client()
        del self.device.sensors["mode"]
        await self.resync_after(client, "sensor", "mode", "removed")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["mode"]),
                                                        ("sensor-list", [])])
        self.assertEqual(client.sensors, ["temp"])
        del self.device.requests["watchdog"]
        await self.resync_after(client, "request", "watchdog", "removed")
        self.assertEqual(sorted(client.requests), ["help", "sensor-list"])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_removal_is_seen_from_a_fail_reply_without_a_reason(self):
        self.device.unknown_text = ""
        client, recorder = await self.start_recording_client()
        del self.device.sensors["mode"]
        with no_logs("katcp", logging.WARNING):
            await self.resync_after(client, "sensor", "mode", "removed")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["mode"]),
                                                        ("sensor-list", [])])
        self.assertEqual(client.sensors, ["temp"])

    @tornado.testing.gen_test(timeout=10)
    async def test_an_item_inspected_while_another_fails_has_its_change_reported(self):
        client, recorder = await self.start_recording_client()
        for name in ("fan", "pump"):
            self.device.sensors[name] = ["A %s." % name, "", "integer", [b"0", b"10"],
                                         (b"1.0", b"nominal", b"1")]
        self.device.received.clear()
        # The first of the two listings (whichever it is) fails, and so does the whole
        # list then asked to tell why: that inspection fails. The other one's sensor is in
        # the index from then on, and the retry must not lose its being added.
        listing = self.device._request_sensor_list
        to_fail = [True, False]  # whether named, in order

        def listing_failing_once(msg):
            if to_fail and to_fail[0] == bool(msg.arguments):
                to_fail.pop(0)
                return [Message.reply_to_request(msg, "fail", "Scripted failure.")]
            return listing(msg)

        self.device._request_sensor_list = listing_failing_once
        not_synced = client.until_not_synced(timeout=WAIT)
        with self.assertLogs("katcp", logging.WARNING) as logs:
            # Read at once, so inspected together.
            self.device.informs_together(("interface-changed", "sensor", "fan", "added"),
                                         ("interface-changed", "sensor", "pump", "added"))
            await not_synced
            await client.until_synced(timeout=WAIT)
        self.assertEqual([record.getMessage() for record in logs.records], [
            "Error syncing with device 127.0.0.1:%d: Error reply during sync process for "
            "127.0.0.1:%d: !sensor-list fail Scripted failure." % (
                self.device.port, self.device.port)])
        failed = self.device.received[0].arguments[0].decode()
        # Only what failed is asked again.
        self.assertEqual(self.device.names_received()[3:], [("sensor-list", [failed])])
        reported = set()
        for _state, model_changes in recorder.calls:
            if model_changes:
                self.assertEqual(model_changes.sensors.removed, set())
                reported |= model_changes.sensors.added
        self.assertEqual(reported, {"fan", "pump"})
        self.assertEqual(sorted(client.sensors), ["fan", "mode", "pump", "temp"])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_change_named_without_its_kind_reinspects_that_item_alone(self):
        client, recorder = await self.start_recording_client()
        self.device.sensors["temp"][1] = "K"
        await self.resync_after(client, "sensor", "temp")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["temp"])])
        temp = await client.future_get_sensor("temp", update=False)
        self.assertEqual(temp.units, "K")

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failed_inspection_of_one_sensor_is_retried_for_that_sensor_alone(self):
        client, _ = await self.start_client(client_class=FailingNamedInspectionOnce)
        self.device.sensors["temp"][1] = "K"
        with self.assertLogs("katcp", logging.WARNING) as logs:
            await self.resync_after(client, "sensor", "temp", "modified")
        self.assertEqual([record.getMessage() for record in logs.records], [
            "Error syncing with device 127.0.0.1:%d: scripted failure" % self.device.port])
        self.assertEqual(self.device.names_received(), [("sensor-list", ["temp"])])
        temp = await client.future_get_sensor("temp", update=False)
        self.assertEqual(temp.units, "K")

    @tornado.testing.gen_test(timeout=10)
    async def test_an_item_whose_own_listing_fails_is_kept_as_the_whole_list_shows_it(self):
        client, recorder = await self.start_recording_client()
        self.device.sensors["temp"][1] = "K"
        self.device.fail_next.add("sensor-list")
        await self.resync_after(client, "sensor", "temp", "modified")
        self.assertEqual(self.device.names_received(), [("sensor-list", ["temp"]),
                                                        ("sensor-list", [])])
        self.assertEqual(client.sensors, ["mode", "temp"])
        temp = await client.future_get_sensor("temp", update=False)
        self.assertEqual(temp.units, "K")

    @tornado.testing.gen_test(timeout=10)
    async def test_the_whole_list_asked_for_after_a_failed_listing_has_the_same_timeout(self):
        client = PatientClient("127.0.0.1", self.device.port)
        self.clients.append(client)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        self.device.received.clear()
        self.device.fail_next.add("sensor-list")
        self.device.ignore_next.add("sensor-list")
        with self.assertRaises(SyncError) as caught:
            await tornado.gen.with_timeout(self.io_loop.time() + WAIT,
                                           client.inspect_sensors("temp", timeout=0.1))
        self.assertEqual(str(caught.exception), "Error reply during sync process for "
                         "127.0.0.1:%d: !sensor-list fail Scripted failure." % self.device.port)
        self.assertEqual(self.device.names_received(), [("sensor-list", ["temp"]),
                                                        ("sensor-list", [])])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_future_request_replaced_on_the_katcp_client_gets_every_inspection(self):
        client, _ = await self.start_recording_client()
        sent = []
        own = client.katcp_client.future_request

        def spy(msg, *args, **kwargs):
            sent.append(msg.name)
            return own(msg, *args, **kwargs)

        with mock.patch.object(client.katcp_client, "future_request", spy):
            await self.resync_after(client)
        self.assertEqual(sent, ["help", "request-timeout-hint", "sensor-list"])
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])

    @tornado.testing.gen_test(timeout=10)
    async def test_sensor_list_changed_modifies_and_removes(self):
        client, recorder = await self.start_recording_client()
        old_temp = await client.future_get_sensor("temp")
        self.device.sensors["temp"][3] = [b"-20", b"80"]
        del self.device.sensors["mode"]
        await self.resync_after(client, "sensor-list")
        self.assertEqual(self.device.names_received(), [("sensor-list", [])])
        self.assertEqual(recorder.calls[1][1],
                         dict(sensors=dict(added={"temp"}, removed={"temp", "mode"})))
        new_temp = await client.future_get_sensor("temp")
        self.assertIsNot(new_temp, old_temp)
        self.assertEqual(new_temp.params, [-20.0, 80.0])

    @tornado.testing.gen_test(timeout=10)
    async def test_request_added(self):
        client, recorder = await self.start_recording_client()
        self.device.requests["reboot"] = "Reboot the device."
        self.device.timeout_hints["reboot"] = 30.0
        await self.resync_after(client, "request", "reboot", "added")
        self.assertEqual(self.device.names_received(), [
            ("help", ["reboot"]), ("request-timeout-hint", ["reboot"])])
        self.assertEqual(recorder.calls[1][1],
                         dict(requests=dict(added={"reboot"}, removed=set())))
        reboot = await client.future_get_request("reboot", update=False)
        self.assertEqual(reboot, RequestType("reboot", "Reboot the device.", 30.0))

    @tornado.testing.gen_test(timeout=10)
    async def test_request_list_changed(self):
        client, recorder = await self.start_recording_client()
        del self.device.requests["watchdog"]
        self.device.requests["status"] = "Report status."
        await self.resync_after(client, "request-list")
        self.assertEqual(self.device.names_received(), [
            ("help", []), ("request-timeout-hint", [])])
        self.assertEqual(sorted(client.requests), ["help", "sensor-list", "status"])
        self.assertEqual(recorder.calls[1][1],
                         dict(requests=dict(added={"status"}, removed={"watchdog"})))

    @tornado.testing.gen_test(timeout=10)
    async def test_bare_interface_changed_reinspects_everything(self):
        client, recorder = await self.start_recording_client()
        await self.resync_after(client)
        self.assertEqual(self.device.names_received(), [
            ("help", []), ("request-timeout-hint", []), ("sensor-list", [])])
        self.assertEqual(recorder.states, [CONNECTED, DATA_SYNCED_UNCHANGED, SYNCED])
        self.assertIsNone(recorder.calls[1][1])

    @tornado.testing.gen_test(timeout=10)
    async def test_change_during_sync_triggers_another_inspection(self):
        client, recorder = await self.start_recording_client()
        self.device.sensors["late"] = ["Late.", "", "boolean", [],
                                       (b"1.0", b"nominal", b"1")]
        list_request = self.device.until_request("sensor-list")
        not_synced = client.until_not_synced(timeout=WAIT)
        self.device.inform("interface-changed", "sensor-list")
        await not_synced
        await list_request
        # Arrives while the client is busy with the first inspection.
        self.device.inform("interface-changed", "sensor", "late", "modified")
        await client.until_synced(timeout=WAIT)
        self.assertIn(("sensor-list", ["late"]), self.device.names_received())
        self.assertEqual(recorder.states[-1], SYNCED)
        self.assertIn("late", client.sensors)


class TestSensorUpdates(InspectingClientTestBase):

    @tornado.testing.gen_test(timeout=10)
    async def test_sensor_status_informs_update_sensor_objects(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        watcher = SensorWatcher(temp)
        reading = watcher.next()
        self.device.inform("sensor-status", b"1234.5", 1, "temp", "warn", b"45.25")
        reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        self.assertEqual(tuple(reading), (1234.5, Sensor.WARN, 45.25))
        self.assertEqual(temp.read(), reading)

    @tornado.testing.gen_test(timeout=10)
    async def test_a_reading_sent_before_the_device_says_its_protocol_is_set(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        watcher = SensorWatcher(temp)
        port = self.device.port
        await self.device.stop()
        await client.until_state(DISCONNECTED, timeout=WAIT)
        # Its sensors are kept meanwhile, and a reading on the next connection may come
        # before the version informs: it is read as the default KATCP version's.
        self.device = FakeDevice()
        self.device.first_informs = [
            Message.inform("sensor-status", b"1234.5", 1, "temp", "warn", b"45.25")]
        reading = watcher.next()
        with no_logs("katcp", logging.WARNING):
            await self.device.start(port)
            reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        self.assertEqual(tuple(reading), (1234.5, Sensor.WARN, 45.25))

    @tornado.testing.gen_test(timeout=10)
    async def test_a_failing_inform_hook_is_logged_and_the_hooks_after_it_still_run(self):
        client, _ = await self.start_client()
        seen = asyncio.get_running_loop().create_future()

        def failing(msg):
            raise RuntimeError("hook broke")

        client.katcp_client.hook_inform("custom", failing)
        client.katcp_client.hook_inform("custom", seen.set_result)
        with self.assertLogs("katcp.inspect_client", logging.ERROR) as logs:
            self.device.inform("custom", "x")
            msg = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, seen)
        self.assertEqual(str(msg), "#custom x")
        [record] = logs.records
        self.assertEqual(record.getMessage(), "Inform hook %r failed on #custom x" % (failing,))
        self.assertEqual(str(record.exc_info[1]), "hook broke")

    @tornado.testing.gen_test(timeout=10)
    async def test_async_client_handle_inform_patched_once_the_client_runs_is_heard(self):
        # The unhooked handle_inform was bound when the KATCP client was made, so a
        # patch of AsyncClient's made later saw no inform; 0.9.3 looked it up each time.
        client, _ = await self.start_client()
        seen = asyncio.get_running_loop().create_future()

        def handle_inform(katcp_client, msg):
            if msg.name == "custom" and not seen.done():
                seen.set_result((katcp_client, msg))
            return original(katcp_client, msg)

        original = AsyncClient.handle_inform
        with mock.patch.object(AsyncClient, "handle_inform", handle_inform):
            self.device.inform("custom", "x")
            katcp_client, msg = await tornado.gen.with_timeout(
                self.io_loop.time() + WAIT, seen)
        self.assertIs(katcp_client, client.katcp_client)
        self.assertEqual(str(msg), "#custom x")

    @tornado.testing.gen_test(timeout=10)
    async def test_an_async_def_inform_hook_is_refused(self):
        # Hooks are called and left: its coroutines would never run.
        client, _ = await self.start_client()

        async def hook(msg):
            pass

        with self.assertRaisesRegex(TypeError, "callback .* is an async function"):
            client.katcp_client.hook_inform("custom", hook)
        self.assertNotIn(hook, client.katcp_client._inform_hooks["custom"])

    @tornado.testing.gen_test(timeout=10)
    async def test_multi_sensor_status_inform(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        mode = await client.future_get_sensor("mode")
        watcher = SensorWatcher(mode)
        reading = watcher.next()
        self.device.inform("sensor-status", b"99.0", 2, "temp", "error", b"49.0",
                           "mode", "nominal", "off")
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        self.assertEqual(tuple(temp.read()), (99.0, Sensor.ERROR, 49.0))
        self.assertEqual(tuple(mode.read()), (99.0, Sensor.NOMINAL, "off"))

    @tornado.testing.gen_test(timeout=10)
    async def test_sampling_strategy_updates_arrive(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        watcher = SensorWatcher(temp)
        reading = watcher.next()
        reply, _ = await client.simple_request("sensor-sampling", "temp", "event")
        self.assertTrue(reply.reply_ok())
        reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        self.assertEqual(tuple(reading), (1000.5, Sensor.NOMINAL, 21.5))

    @tornado.testing.gen_test(timeout=10)
    async def test_sensor_value_replies_update_only_when_handled(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        self.device.sensors["temp"][4] = (b"2000.0", b"warn", b"30.5")
        await client.simple_request("sensor-value", "temp")
        self.assertEqual(temp.status(), Sensor.UNKNOWN)
        client.handle_sensor_value()
        await client.simple_request("sensor-value", "temp")
        self.assertEqual(tuple(temp.read()), (2000.0, Sensor.WARN, 30.5))

    @tornado.testing.gen_test(timeout=10)
    async def test_an_overridden_sensor_status_callback_gets_the_informs(self):
        seen = []

        class Recording(InspectingClientAsync):
            def _cb_inform_sensor_status(self, msg):
                seen.append(msg.name)
                super()._cb_inform_sensor_status(msg)

        client = Recording("127.0.0.1", self.device.port)
        self.clients.append(client)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        temp = await client.future_get_sensor("temp")
        client.handle_sensor_value()
        self.device.inform("sensor-status", b"1234.5", 1, "temp", "warn", b"45.25")
        await client.simple_request("sensor-value", "temp")
        self.assertEqual(seen, ["sensor-status", "sensor-value"])
        self.assertEqual(tuple(temp.read()), (1000.5, Sensor.NOMINAL, 21.5))

    @tornado.testing.gen_test(timeout=10)
    async def test_malformed_and_unknown_sensor_informs_are_ignored(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        with self.assertLogs("katcp.inspect_client", "WARNING"):
            self.device.inform("sensor-status", b"1.0", 2, "temp", "warn", b"1.0")
            self.device.inform("sensor-status", b"1.0", 1, "temp", "warn", b"not-float")
            self.device.inform("sensor-status", b"1.0", 1, "ghost", "warn", b"1")
            # A request round trip orders the informs before the assertions.
            await client.simple_request("watchdog")
        self.assertEqual(temp.status(), Sensor.UNKNOWN)
        self.assertTrue(client.synced)

    @tornado.testing.gen_test(timeout=10)
    async def test_an_unknown_sensor_in_an_inform_is_skipped_quietly(self):
        client, _ = await self.start_client()
        temp = await client.future_get_sensor("temp")
        with no_logs("katcp.inspect_client", logging.WARNING):
            self.device.inform("sensor-status", b"1234.5", 2, "ghost", "warn", b"1",
                               "temp", "warn", b"45.25")
            # A request round trip orders the informs before the assertions.
            await client.simple_request("watchdog")
        self.assertEqual(tuple(temp.read()), (1234.5, Sensor.WARN, 45.25))

    @tornado.testing.gen_test(timeout=10)
    async def test_the_logs_of_a_malformed_inform_and_a_bad_reading_say_what_was_sent(self):
        client, _ = await self.start_client()
        await client.future_get_sensor("temp")
        with self.assertLogs("katcp.inspect_client", "WARNING") as logs:
            self.device.inform("sensor-status", b"1.0", 2, "temp", "warn", b"1.0")
            self.device.inform("sensor-status", b"1.0", 1, "temp", "warn", b"not-float")
            await client.simple_request("watchdog")
        self.assertEqual([record.getMessage() for record in logs.records], [
            "Malformed sensor-status inform: #sensor-status 1.0 2 temp warn 1.0",
            "Could not update sensor 'temp' to (b'1.0', b'warn', b'not-float')"])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_logger_replaced_after_construction_gets_every_message(self):
        def failing_callback(state, model_changes):
            raise RuntimeError("callback failed")

        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        client._logger = logging.getLogger("inspect-test.replaced")
        client.set_state_callback(failing_callback)
        with self.assertLogs("inspect-test.replaced", "WARNING") as logs:
            await client.connect(timeout=WAIT)
            await client.until_synced(timeout=WAIT)
            await client.future_get_sensor("temp")
            self.device.inform("sensor-status", b"1.0", 2, "temp", "warn", b"1.0")
            self.device.inform("sensor-status", b"1.0", 1, "temp", "warn", b"not-float")
            # A request round trip orders the informs before the assertions.
            await client.simple_request("watchdog")
        messages = "\n".join(logs.output)
        self.assertIn("Error in state callback", messages)
        self.assertIn("Malformed sensor-status inform", messages)
        self.assertIn("Could not update sensor 'temp'", messages)

    @tornado.testing.gen_test(timeout=10)
    async def test_handle_sensor_value_hooks_a_sensor_status_callback_replaced_since(self):
        # A resource calls handle_sensor_value() on the client its factory made, which
        # a test may have patched meanwhile.
        for replace_on in ("instance", "class"):
            seen = []
            client = InspectingClientAsync("127.0.0.1", self.device.port)
            self.clients.append(client)
            if replace_on == "instance":
                client._cb_inform_sensor_status = lambda msg: seen.append(msg.name)
                client.handle_sensor_value()
            else:
                with mock.patch.object(InspectingClientAsync, "_cb_inform_sensor_status",
                                       lambda self, msg: seen.append(msg.name)):
                    client.handle_sensor_value()
            await client.connect(timeout=WAIT)
            await client.until_synced(timeout=WAIT)
            await client.simple_request("sensor-value", "temp")
            self.assertEqual(seen, ["sensor-value"], replace_on)

    @tornado.testing.gen_test(timeout=10)
    async def test_each_reading_goes_through_an_update_sensor_replaced_or_overridden(self):
        # As in 0.9.3, whose sensor-status callback called update_sensor() per reading.
        class Recording(InspectingClientAsync):
            def update_sensor(self, name, timestamp, status, value):
                seen.append(("subclass", name, status))
                return super().update_sensor(name, timestamp, status, value)

        replaced = [("instance", "temp", b"1.0", b"warn", b"45.25"),
                    ("instance", "mode", b"1.0", b"nominal", b"off")]
        for client_class, then in ((Recording, [("subclass", "temp", b"error")]),
                                   (InspectingClientAsync, [])):
            seen = []
            client = client_class("127.0.0.1", self.device.port)
            self.clients.append(client)
            await client.connect(timeout=WAIT)
            await client.until_synced(timeout=WAIT)
            temp = await client.future_get_sensor("temp")
            with mock.patch.object(client, "update_sensor",
                                   lambda *reading: seen.append(("instance",) + reading)):
                self.device.inform("sensor-status", b"1.0", 2, "temp", "warn", b"45.25",
                                   "mode", "nominal", "off")
                # A request round trip orders the inform before the assertions.
                await client.simple_request("watchdog")
            self.device.inform("sensor-status", b"2.0", 1, "temp", "error", b"1.5")
            await client.simple_request("watchdog")
            self.assertEqual(tuple(temp.read()), (2.0, Sensor.ERROR, 1.5), client_class)
            self.assertEqual(seen, replaced + then, client_class)
            client.stop()


    @tornado.testing.gen_test(timeout=10)
    async def test_an_async_def_update_sensor_override_runs_and_its_failure_is_logged(self):
        # update_sensor() is a tornado coroutine, so an override may well be async def:
        # its coroutines were dropped (Python warned they were never awaited).
        seen = []
        both = asyncio.Event()

        class Overriding(InspectingClientAsync):
            async def update_sensor(self, name, timestamp, status, value):
                await asyncio.sleep(0)
                seen.append((name, status))
                if len(seen) == 2:
                    both.set()
                if name == "mode":
                    raise ValueError("override broke")
                await super().update_sensor(name, timestamp, status, value)

        client = Overriding("127.0.0.1", self.device.port)
        self.clients.append(client)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        temp = await client.future_get_sensor("temp")
        with self.assertLogs("katcp.inspect_client", logging.ERROR) as logs:
            self.device.inform("sensor-status", b"1.0", 2, "temp", "warn", b"45.25",
                               "mode", "nominal", "off")
            await asyncio.wait_for(both.wait(), WAIT)
            # Its failure is logged once the failed coroutine's callbacks ran.
            await client.simple_request("watchdog")
        self.assertEqual(seen, [("temp", b"warn"), ("mode", b"nominal")])
        self.assertEqual(tuple(temp.read()), (1.0, Sensor.WARN, 45.25))
        [record] = logs.records
        self.assertEqual(str(record.exc_info[1]), "override broke")


class TestWarningRanges(InspectingClientTestBase):
    """Integer and float sensors listed with [nominal-min nominal-max warn-min warn-max]
    (KATCP 5.1 section 7.2)."""

    def setUp(self):
        super().setUp()
        self.device.sensors.update({
            "volts": ["Volts.", "V", "float", [b"0", b"10", b"-5", b"15"],
                      (b"1000.5", b"warn", b"12.5")],
            "count": ["Count.", "", "integer", [b"0", b"10", b"-5", b"15"],
                      (b"1000.5", b"nominal", b"3")],
        })

    @tornado.testing.gen_test(timeout=10)
    async def test_inspecting_client_makes_and_updates_the_sensors(self):
        client, _ = await self.start_client()
        volts = await client.future_get_sensor("volts")
        count = await client.future_get_sensor("count")
        self.assertEqual((volts.stype, volts.params), ("float", [0.0, 10.0, -5.0, 15.0]))
        self.assertEqual((count.stype, count.params), ("integer", [0, 10, -5, 15]))
        watcher = SensorWatcher(volts)
        reading = watcher.next()
        self.device.inform("sensor-status", b"1234.5", 1, "volts", "error", b"16.0")
        reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        self.assertEqual(tuple(reading), (1234.5, Sensor.ERROR, 16.0))

    @tornado.testing.gen_test(timeout=10)
    async def test_resource_lists_and_samples_the_sensors(self):
        resource = KATCPClientResource(dict(name="dev", address=("127.0.0.1", self.device.port)))
        resource.start()
        try:
            await resource.until_synced(timeout=WAIT)
            names = [found.name for found in await resource.list_sensors("")]
            self.assertEqual(names, ["count", "mode", "temp", "volts"])
            self.assertEqual(resource.sensor.volts.params, [0.0, 10.0, -5.0, 15.0])
            sampled = asyncio.get_running_loop().create_future()
            resource.sensor.volts.register_listener(
                lambda sensor, reading: sampled.done() or sampled.set_result(reading),
                reading=True)
            self.assertEqual(await resource.set_sampling_strategy("volts", "event"),
                             {"volts": (True, ("event",))})
            reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, sampled)
            self.assertEqual((reading.timestamp, reading.status, reading.value),
                             (1000.5, "warn", 12.5))
            self.assertEqual((await resource.sensor.count.get_reading()).value, 3)
        finally:
            resource.stop()
            await resource.until_stopped(timeout=WAIT)


class TestKatcpV4Device(InspectingClientTestBase):

    protocol = None

    @tornado.testing.gen_test(timeout=10)
    async def test_sync_and_millisecond_sensor_updates(self):
        client, _ = await self.start_client()
        self.assertEqual(self.device.names_received(), [("help", []), ("sensor-list", [])])
        self.assertEqual([msg.mid for msg in self.device.received], [None, None])
        self.assertIsNone((await client.future_get_request("watchdog")).timeout_hint)
        temp = await client.future_get_sensor("temp")
        watcher = SensorWatcher(temp)
        reading = watcher.next()
        self.device.inform("sensor-status", b"1234500", 1, "temp", "nominal", b"20.0")
        reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        self.assertEqual(tuple(reading), (1234.5, Sensor.NOMINAL, 20.0))


class TestConnectionLifecycle(InspectingClientTestBase):

    @tornado.testing.gen_test(timeout=15)
    async def test_reconnect_after_server_restart(self):
        client, recorder = await self.start_client()
        recorder.calls.clear()
        port = self.device.port
        await self.device.stop()
        await client.until_state(DISCONNECTED, timeout=WAIT)
        self.assertFalse(client.is_connected())
        self.device = FakeDevice()
        del self.device.sensors["mode"]
        self.device.requests["new"] = "New request."
        await self.device.start(port)
        await client.until_synced(timeout=WAIT)
        self.assertEqual(recorder.states,
                         [DISCONNECTED, CONNECTED, DATA_SYNCED_CHANGED, SYNCED])
        self.assertEqual(recorder.calls[2][1], dict(
            requests=dict(added={"new"}, removed=set()),
            sensors=dict(added=set(), removed={"mode"})))
        self.assertEqual(sorted(client.sensors), ["temp"])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_stop_ends_the_wait_for_a_silent_device_to_say_its_protocol(self):
        async def silent(reader, writer):
            await reader.read()

        device = Acceptor(silent)
        port = await device.start()
        try:
            client = InspectingClientAsync("127.0.0.1", port)
            self.clients.append(client)
            await client.connect(timeout=WAIT)
            # Without a state callback the client goes on at once to wait for the
            # device's protocol, before this wait's result is delivered.
            await client.until_connected(timeout=WAIT)
            client.stop()
            await client.until_stopped(timeout=WAIT)
            self.assertEqual(client.state, DISCONNECTED)
        finally:
            await device.stop()

    @tornado.testing.gen_test(timeout=10)
    async def test_a_second_connect_while_running_is_refused(self):
        client, _ = await self.start_client()
        with self.assertRaisesRegex(AssertionError, "already started"):
            await client.connect(timeout=WAIT)

    @tornado.testing.gen_test(timeout=10)
    async def test_a_connect_while_the_stopped_run_awaits_its_callback_runs_one_sync(self):
        # Stopped and connected again while its state callback still runs, the client
        # follows the device with one state coroutine: the earlier one ends (with its
        # final state) before the new one syncs.
        client, recorder = await self.start_client(synced=False)
        await client.until_synced(timeout=WAIT)
        release = asyncio.Event()

        async def slow_on_synced(state, model_changes):
            recorder(state, model_changes)
            if state == SYNCED:
                await release.wait()

        recorder.calls.clear()
        self.device.inform("interface-changed", "sensor", "temp")
        self.device.sensors["temp"][0] = "Changed."
        client.set_state_callback(slow_on_synced)
        await client.until_state(DATA_SYNCED_CHANGED, timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        client.stop()
        await client.katcp_client.until_stopped(timeout=WAIT)
        await client.connect(timeout=WAIT)
        recorder.calls.clear()
        release.set()
        await client.until_state(DATA_SYNCED_UNCHANGED, timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        self.assertEqual(recorder.states, [DISCONNECTED, CONNECTED, DATA_SYNCED_UNCHANGED,
                                           SYNCED])

    @tornado.testing.gen_test(timeout=10)
    async def test_a_state_callback_may_stop_the_client_and_wait_for_it(self):
        # The state coroutine waits for the callback: the callback's wait is for the KATCP
        # client alone, as in 0.9.3. Anyone else's wait still includes the final state.
        client, recorder = await self.start_client()
        outcome = asyncio.get_running_loop().create_future()

        async def stop_when_changed(state, model_changes):
            recorder(state, model_changes)
            if state == DATA_SYNCED_CHANGED:
                client.stop()
                try:
                    outcome.set_result(await client.until_stopped(timeout=WAIT))
                except Exception as exc:
                    outcome.set_exception(exc)

        client.set_state_callback(stop_when_changed)
        others_wait = client.until_stopped()
        self.device.sensors["temp"][0] = "Changed."
        self.device.inform("interface-changed", "sensor", "temp")
        self.assertIsNone(await outcome)
        self.assertFalse(others_wait.done())
        await others_wait
        self.assertEqual(recorder.states[-1], DISCONNECTED)

    @tornado.testing.gen_test(timeout=10)
    async def test_stop_gives_final_state_update(self):
        client, recorder = await self.start_client()
        not_synced = client.until_not_synced()
        client.stop()
        await client.until_stopped(timeout=WAIT)
        self.assertTrue(not_synced.done())
        self.assertEqual(recorder.states[-1], DISCONNECTED)
        self.assertEqual(client.state, DISCONNECTED)
        self.assertFalse(client.is_connected())
        self.assertIs(client.running(), False)

    @tornado.testing.gen_test(timeout=10)
    async def test_a_client_that_stops_itself_ends_the_inspection(self):
        # Without auto_reconnect the KATCP client stops once the device goes, and
        # until_stopped() (documented as the KATCP client's) resolves then, without a
        # stop(); connect() then starts both again.
        client, recorder = await self.start_client(auto_reconnect=False)
        port = self.device.port
        await self.device.stop()
        await client.katcp_client.until_stopped(timeout=WAIT)
        await client.until_stopped(timeout=WAIT)
        self.assertEqual(recorder.states[-1], DISCONNECTED)
        self.assertIs(client.running(), False)
        self.device = FakeDevice(self.protocol)
        await self.device.start(port)
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)

    @tornado.testing.gen_test(timeout=10)
    async def test_a_katcp_client_stopped_while_it_waits_to_reconnect_ends_the_inspection(self):
        client, recorder = await self.start_client()
        await self.device.stop()
        await client.until_state(DISCONNECTED, timeout=WAIT)
        ended = asyncio.get_running_loop().create_future()
        # The state loop's last report, as it ends, is a second not-connected state.
        client.set_state_callback(lambda state, changes: ended.done() or ended.set_result(state))
        client.katcp_client.stop()
        self.assertEqual(await tornado.gen.with_timeout(self.io_loop.time() + WAIT, ended),
                         DISCONNECTED)
        self.assertIs(client.running(), False)

    @tornado.testing.gen_test(timeout=30)
    async def test_reconnects_leave_no_waits_behind(self):
        client, _ = await self.start_client()
        port = self.device.port

        async def reconnect():
            await self.device.stop()
            await client.until_state(DISCONNECTED, timeout=WAIT)
            self.device = FakeDevice(self.protocol)
            await self.device.start(port)
            await client.until_synced(timeout=WAIT)

        assert await waits_left_by(reconnect, 5) <= 0

    @tornado.testing.gen_test(timeout=10)
    async def test_a_stop_wait_given_up_leaves_the_client_running(self):
        client, recorder = await self.start_client()
        for _ in range(2):
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(client.until_stopped(), 0.01)
        with self.assertRaises(tornado.util.TimeoutError):
            await client.until_stopped(timeout=0.01)
        # It still follows its device, and its stop still ends in a final state.
        await self.resync_after(client, "sensor-list")
        client.stop()
        assert await client.until_stopped(timeout=WAIT) is None
        self.assertEqual(recorder.states[-1], DISCONNECTED)

    @tornado.testing.gen_test(timeout=10)
    async def test_stop_during_inspection(self):
        self.device.ignore_next.add("sensor-list")
        sensor_list = self.device.until_request("sensor-list")
        client, recorder = await self.start_client(synced=False)
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, sensor_list)
        client.stop()
        await client.until_stopped(timeout=WAIT)
        self.assertEqual(recorder.states, [CONNECTED, DISCONNECTED])

    def record_errors(self):
        """The error records logged from here on (tornado logs its own as errors)."""
        errors = []
        handler = logging.Handler(logging.ERROR)
        handler.emit = errors.append
        logging.getLogger().addHandler(handler)
        self.addCleanup(logging.getLogger().removeHandler, handler)
        return errors

    def spy_inspections(self, client, count):
        """Future resolving once `count` inspection requests of `client` have ended."""
        ended = asyncio.get_running_loop().create_future()
        inspection_request = client._inspector.request
        ends = []

        def spy(*args, **kwargs):
            try:
                return (yield from inspection_request(*args, **kwargs))
            finally:
                ends.append(args[0])
                if len(ends) == count:
                    ended.set_result(ends)

        client._inspector.request = spy
        return ended

    @tornado.testing.gen_test(timeout=10)
    async def test_until_stopped_waits_for_a_replaced_state_loops_concurrent_future(self):
        # A replacement run elsewhere (a thread) returns a concurrent future.
        by_hand = concurrent.futures.Future()
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        client._state_loop = lambda: by_hand
        self.clients.append(client)
        await client.connect(timeout=WAIT)
        client.stop()
        await client.katcp_client.until_stopped(timeout=WAIT)
        with self.assertRaises(tornado.gen.TimeoutError):
            await client.until_stopped(timeout=0.1)
        by_hand.set_result(None)
        self.assertIsNone(await client.until_stopped(timeout=WAIT))

    @tornado.testing.gen_test(timeout=10)
    async def test_stop_during_inspection_with_its_wait_cancelled_logs_nothing(self):
        errors = self.record_errors()
        self.device.ignore_next.add("sensor-list")
        sensor_list = self.device.until_request("sensor-list")
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        inspected = self.spy_inspections(client, 2)  # help, sensor-list
        await client.connect(timeout=WAIT)
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, sensor_list)
        client.stop()
        # As a tornado test case's teardown cancels every task still pending.
        state_loop = client._state_loop_future
        state_loop.cancel()
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, inspected)
        await client.katcp_client.until_stopped(timeout=WAIT)
        await asyncio.wait([state_loop], timeout=WAIT)
        self.assertTrue(state_loop.cancelled())
        self.assertEqual(errors, [])

    @tornado.testing.gen_test(timeout=10)
    async def test_stop_during_inspection_of_several_sensors_logs_nothing(self):
        errors = self.record_errors()
        client, _ = await self.start_client()
        asked = []
        both_asked = asyncio.get_running_loop().create_future()

        def held_sensor_list(msg):
            asked.append(msg)
            if len(asked) == 2:
                both_asked.set_result(None)
            return []

        self.device._request_sensor_list = held_sensor_list
        inspected = self.spy_inspections(client, 2)
        self.device.inform("interface-changed", "sensor", "temp", "modified")
        self.device.inform("interface-changed", "sensor", "mode", "modified")
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, both_asked)
        client.stop()
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, inspected)
        await client.until_stopped(timeout=WAIT)
        self.assertEqual(errors, [])

    @tornado.testing.gen_test(timeout=10)
    async def test_running_and_connection_count(self):
        # What a resource asks of its inspecting client, public.
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        self.assertEqual((client.running(), client.connection_count), (False, 0))
        self.device.drop_next.add("sensor-list")
        await client.connect(timeout=WAIT)
        await client.until_synced(timeout=WAIT)
        self.assertEqual((client.running(), client.connection_count), (True, 2))
        client.stop()
        await client.until_stopped(timeout=WAIT)
        self.assertFalse(client.running())

    @tornado.testing.gen_test(timeout=10)
    async def test_connection_lost_during_inspection_resyncs(self):
        self.device.drop_next.add("sensor-list")
        client, recorder = await self.start_client()
        self.assertEqual(recorder.states, [CONNECTED, DISCONNECTED, CONNECTED,
                                           DATA_SYNCED_CHANGED, SYNCED])
        self.assertEqual([name for name, _ in self.device.names_received()], [
            "help", "request-timeout-hint", "sensor-list",
            "help", "request-timeout-hint", "sensor-list"])
        self.assertEqual(sorted(client.sensors), ["mode", "temp"])
        # Requests inspected on the lost connection are still reported as added.
        self.assertEqual(recorder.calls[3][1].requests.added,
                         {"help", "sensor-list", "watchdog"})

    @tornado.testing.gen_test(timeout=10)
    async def test_stop_while_never_connected(self):
        async with self.device_away() as port:
            client = InspectingClientAsync("127.0.0.1", port)
            recorder = StateRecorder()
            client.set_state_callback(recorder)
            await client.start()
            with self.assertRaises(tornado.gen.TimeoutError):
                await client.until_connected(timeout=0.1)
            client.stop()
            await client.until_stopped(timeout=WAIT)
            self.assertEqual(recorder.states[-1], DISCONNECTED)
            self.assertNotIn(CONNECTED, recorder.states)

    @tornado.testing.gen_test(timeout=10)
    async def test_stop_right_after_start(self):
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        connecting = client.start()
        client.stop()
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, connecting)
        await client.until_stopped(timeout=WAIT)
        self.assertFalse(client.is_connected())

    @tornado.testing.gen_test(timeout=10)
    async def test_connect_timeout_raises(self):
        async with self.device_away() as port:
            client = InspectingClientAsync("127.0.0.1", port)
            with self.assertRaises(tornado.gen.TimeoutError):
                await client.connect(timeout=0.1)
            await client.until_stopped(timeout=WAIT)

    def test_the_katcp_client_runs_on_the_loop_given_not_the_current_one(self):
        other = tornado.ioloop.IOLoop(make_current=False)
        try:
            client = InspectingClientAsync("127.0.0.1", self.device.port, ioloop=other)
            self.assertIs(client.ioloop, other)
            self.assertIs(client.katcp_client.ioloop, other)
        finally:
            other.close()

    @tornado.testing.gen_test(timeout=10)
    async def test_start_passes_its_timeout_on_to_connect(self):
        async with self.device_away() as port:
            client = InspectingClientAsync("127.0.0.1", port)
            with self.assertRaises(tornado.gen.TimeoutError):
                await client.start(timeout=0.1)
            await client.until_stopped(timeout=WAIT)

    @tornado.testing.gen_test(timeout=10)
    async def test_connects_that_time_out_leave_no_waits_on_the_katcp_client(self):
        # Each connect(timeout) that timed out left its wait for a connection registered
        # on the KATCP client: a program retrying while the device stays away piled up
        # one per attempt.
        async with self.device_away() as port:
            client = InspectingClientAsync("127.0.0.1", port)
            for _ in range(3):
                with self.assertRaises(tornado.gen.TimeoutError):
                    await client.connect(timeout=0.05)
                await client.until_stopped(timeout=WAIT)
            katcp_client = client.katcp_client
            flags = [katcp_client._running, katcp_client._connected,
                     katcp_client._disconnected, katcp_client._received_protocol_info,
                     katcp_client._stopped]
            self.assertEqual([len(flag._event._waiters) for flag in flags], [0] * len(flags))

    @tornado.testing.gen_test(timeout=10)
    async def test_connections_closed_before_the_greeting_leave_no_waits_for_it(self):
        # A port that accepts and closes at once (a forwarder whose device is away, say):
        # each connection left the inspection's wait for the protocol registered on the
        # KATCP client, until a device ever greeted it.
        accepted = []
        enough = asyncio.Event()

        def close_at_once(reader, writer):
            accepted.append(writer)
            writer.close()
            if len(accepted) == 5:
                enough.set()
        listener = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        try:
            port = listener.sockets[0].getsockname()[1]
            client = InspectingClientAsync("127.0.0.1", port)
            self.clients.append(client)
            client.katcp_client.auto_reconnect_delay = 0.001
            await client.connect()
            await asyncio.wait_for(enough.wait(), WAIT)
            # At most the wait of a connection being made now.
            self.assertLessEqual(
                len(client.katcp_client._received_protocol_info._event._waiters), 1)
        finally:
            listener.close()

    @tornado.testing.gen_test(timeout=10)
    async def test_waits_for_the_stop_given_up_leave_nothing_registered(self):
        # until_stopped() given up (asyncio.wait_for cancels it) left its wait registered
        # on the KATCP client until the client stopped: a program polling it piled them up.
        client, _ = await self.start_client()
        for _ in range(3):
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(client.until_stopped(), 0.01)
        waiters = client.katcp_client._stopped._event._waiters
        for _ in range(10):  # the cancels pass along the chain of futures in a few turns
            if not waiters:
                break
            await asyncio.sleep(0)
        self.assertEqual(len(waiters), 0)
        self.assertTrue(client.is_connected())

    @tornado.testing.gen_test(timeout=10)
    async def test_lookup_waits_for_data_sync(self):
        client = InspectingClientAsync("127.0.0.1", self.device.port)
        self.clients.append(client)
        lookup = client.future_get_sensor("temp", update=False)
        await client.start()
        sensor = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, lookup)
        self.assertEqual(sensor.name, "temp")


class TutorialDevice(DeviceServer):
    """A real device server with one sensor."""

    VERSION_INFO = ("inspect-test-api", 1, 0)
    BUILD_INFO = ("inspect-test-impl", 0, 1, "")
    # add_sensor() / remove_sensor() tell the clients (off by default, as in katcp 0.9).
    SEND_INTERFACE_CHANGED = True

    def setup_sensors(self):
        self.counter = Sensor.integer("counter", "A counter.", "", [0, 100])
        self.add_sensor(self.counter)

    def request_add(self, req, msg):
        """Add two numbers."""
        x, y = (int(arg) for arg in msg.arguments)
        return req.make_reply("ok", x + y)


class DeviceServerOnTestLoop(tornado.testing.AsyncTestCase):
    """A real device server of `device_class` on the test's loop, and an inspecting client
    of it (not connected)."""

    device_class = TutorialDevice

    def setUp(self):
        super().setUp()
        self.server = self.device_class("127.0.0.1", 0)
        self.server.set_concurrency_options(thread_safe=False, handler_thread=False)
        self.server.set_ioloop(self.io_loop)
        self.io_loop.run_sync(self.server.start)
        self.port = self.server.bind_address[1]
        self.client = InspectingClientAsync("127.0.0.1", self.port)

    def tearDown(self):
        async def cleanup():
            self.client.stop()
            await self.client.until_stopped(timeout=WAIT)
            await asyncio.wrap_future(self.server.stop())
        self.io_loop.run_sync(cleanup)
        super().tearDown()


class TestWithDeviceServer(DeviceServerOnTestLoop):

    def setUp(self):
        super().setUp()
        self.recorder = StateRecorder()
        self.client.set_state_callback(self.recorder)

    @tornado.testing.gen_test(timeout=10)
    async def test_sync_and_requests(self):
        await self.client.start()
        await self.client.until_synced(timeout=WAIT)
        self.assertIn("add", self.client.requests)
        self.assertIn("sensor-list", self.client.requests)
        self.assertEqual(self.client.sensors, ["counter"])
        add = await self.client.future_get_request("add")
        self.assertEqual(add.description, "Add two numbers.")
        reply, _ = await self.client.simple_request("add", 3, 4)
        self.assertEqual(reply.arguments, [b"ok", b"7"])

    @tornado.testing.gen_test(timeout=10)
    async def test_sensor_updates_via_sampling(self):
        await self.client.start()
        await self.client.until_synced(timeout=WAIT)
        counter = await self.client.future_get_sensor("counter")
        self.assertEqual(counter.params, [0, 100])
        watcher = SensorWatcher(counter)
        reading = watcher.next()
        reply, _ = await self.client.simple_request("sensor-sampling", "counter", "event")
        self.assertTrue(reply.reply_ok(), reply)
        await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        reading = watcher.next()
        self.server.counter.set_value(42, timestamp=1234.5)
        reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
        self.assertEqual(tuple(reading), (1234.5, Sensor.NOMINAL, 42))

    async def resync_after(self, change):
        """Make a change that makes the server send #interface-changed; wait for resync."""
        self.recorder.calls.clear()
        not_synced = self.client.until_not_synced(timeout=WAIT)
        change()
        await not_synced
        await self.client.until_synced(timeout=WAIT)
        return self.recorder.calls[1][1]

    @tornado.testing.gen_test(timeout=10)
    async def test_interface_change_adds_and_removes_sensors(self):
        await self.client.start()
        await self.client.until_synced(timeout=WAIT)
        changes = await self.resync_after(
            lambda: self.server.add_sensor(Sensor.boolean("ok", "All OK.")))
        self.assertEqual(changes, dict(sensors=dict(added={"ok"}, removed=set())))
        self.assertEqual(sorted(self.client.sensors), ["counter", "ok"])
        changes = await self.resync_after(lambda: self.server.remove_sensor("counter"))
        self.assertEqual(changes, dict(sensors=dict(added=set(), removed={"counter"})))
        self.assertEqual(self.client.sensors, ["ok"])

    @tornado.testing.gen_test(timeout=15)
    async def test_reconnect_after_server_restart(self):
        await self.client.start()
        await self.client.until_synced(timeout=WAIT)
        await asyncio.wrap_future(self.server.stop())
        await self.client.until_state(DISCONNECTED, timeout=WAIT)
        self.server = TutorialDevice("127.0.0.1", self.port)
        self.server.set_concurrency_options(thread_safe=False, handler_thread=False)
        self.server.set_ioloop(self.io_loop)
        self.server.start()
        await self.client.until_synced(timeout=WAIT)
        self.assertEqual(self.client.sensors, ["counter"])
        self.assertEqual(self.recorder.states[-4:],
                         [DISCONNECTED, CONNECTED, DATA_SYNCED_UNCHANGED, SYNCED])


class EveryTypeDevice(DeviceServer):
    """A real device server with a sensor of each KATCP type and a request with a hint."""

    VERSION_INFO = ("inspect-types-api", 1, 0)
    BUILD_INFO = ("inspect-types-impl", 0, 1, "")

    def setup_sensors(self):
        for sensor in (Sensor.integer("int", "An int.", "count", [-5, 5]),
                       Sensor.float("float", "A float.", "m", [0.0, 1.5]),
                       Sensor.boolean("bool", "A bool.", ""),
                       Sensor.discrete("discrete", "A discrete.", "", ["one", "two"]),
                       Sensor.lru("lru", "An LRU.", ""),
                       Sensor.string("string", "A string.", ""),
                       Sensor.timestamp("timestamp", "A timestamp.", "s"),
                       Sensor.address("address", "An address.", "")):
            self.add_sensor(sensor)

    @request_timeout_hint(7.5)
    def request_slow(self, req, msg):
        """Echo, slowly."""
        return req.make_reply("ok", *msg.arguments)


class EveryTypeDeviceV4(EveryTypeDevice):
    PROTOCOL_INFO = ProtocolFlags(4, 0, {ProtocolFlags.MULTI_CLIENT})


class EveryTypeDeviceV51(EveryTypeDevice):
    PROTOCOL_INFO = ProtocolFlags(5, 1, {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
                                         ProtocolFlags.REQUEST_TIMEOUT_HINTS})


class TestEveryTypeWithDeviceServerV5(DeviceServerOnTestLoop):
    """What an inspecting client makes of a real device server, by its KATCP version."""

    device_class = EveryTypeDevice
    # The `slow` request's timeout hint as the client sees it, and whether its requests
    # carry message ids.
    timeout_hint = None
    message_ids = True

    async def synced_client(self):
        await self.client.connect(timeout=WAIT)
        await self.client.until_synced(timeout=WAIT)
        return self.client

    @tornado.testing.gen_test(timeout=10)
    async def test_each_sensor_type_is_made_with_its_params_and_gets_sampled_readings(self):
        client = await self.synced_client()
        self.assertIs(client.sensor_factory, Sensor)
        expected = {"int": ("integer", [-5, 5], 3, b"3"),
                    "float": ("float", [0.0, 1.5], 1.25, b"1.25"),
                    "bool": ("boolean", [], True, b"1"),
                    "discrete": ("discrete", ["one", "two"], "two", b"two"),
                    "lru": ("lru", [], Sensor.LRU_ERROR, b"error"),
                    "string": ("string", [], "a b", b"a b"),
                    "timestamp": ("timestamp", [], 1234.5, None),
                    "address": ("address", [], ("10.0.0.1", 80), b"10.0.0.1:80")}
        self.assertEqual(sorted(client.sensors), sorted(expected))
        for name, (stype, params, value, _) in expected.items():
            sensor = await client.future_get_sensor(name)
            self.assertIsInstance(sensor, Sensor)
            self.assertEqual((sensor.name, sensor.stype, sensor.params), (name, stype, params))
            self.assertIs(await client.future_get_sensor(name), sensor)
            reading = SensorWatcher(sensor).next()
            self.server.get_sensor(name).set_value(value, timestamp=1000.5)
            reply, _ = await client.simple_request("sensor-sampling", name, "event")
            self.assertTrue(reply.reply_ok(), reply)
            reading = await tornado.gen.with_timeout(self.io_loop.time() + WAIT, reading)
            self.assertEqual(tuple(reading), (1000.5, Sensor.NOMINAL, value))

    @tornado.testing.gen_test(timeout=10)
    async def test_requests_their_timeout_hints_and_simple_requests(self):
        client = await self.synced_client()
        self.assertIs(client.request_factory, RequestType)
        slow = await client.future_get_request("slow")
        self.assertEqual(type(slow).__name__, "Request")
        self.assertEqual(slow, RequestType("slow", "Echo, slowly.", self.timeout_hint))
        self.assertIs(await client.future_get_request("slow"), slow)
        self.assertIsNone((await client.future_get_request("watchdog")).timeout_hint)
        reply, informs = await client.simple_request("slow", 1, 2.5, "a b", b"c", True)
        self.assertEqual(reply.arguments, [b"ok", b"1", b"2.5", b"a b", b"c", b"1"])
        self.assertEqual(informs, [])
        self.assertEqual(reply.mid is not None, self.message_ids)
        reply, informs = await client.simple_request("help", "slow")
        self.assertTrue(reply.reply_ok())
        self.assertEqual([inform.arguments for inform in informs], [[b"slow", b"Echo, slowly."]])

    @tornado.testing.gen_test(timeout=10)
    async def test_close_stops_the_client_and_connect_starts_it_again(self):
        client = await self.synced_client()
        recorder = StateRecorder()
        client.set_state_callback(recorder)
        client.close()
        await client.until_stopped(timeout=WAIT)
        self.assertEqual(recorder.calls, [(DISCONNECTED, None)])
        self.assertFalse(client.is_connected())
        connecting = client.connect()
        self.assertTrue(tornado.gen.is_future(connecting))
        await connecting
        await client.until_synced(timeout=WAIT)
        # Started again, it keeps the model it had: the device is as it was. (Its first
        # state says whether it is connected by then, as on a first start: not yet on
        # asyncio's loop, already on uvloop's.)
        states = recorder.states
        self.assertEqual(states[0], DISCONNECTED)
        self.assertEqual([state for state in states[1:] if state != DISCONNECTED],
                         [CONNECTED, DATA_SYNCED_UNCHANGED, SYNCED])


class TestEveryTypeWithDeviceServerV4(TestEveryTypeWithDeviceServerV5):
    device_class = EveryTypeDeviceV4
    message_ids = False


class TestEveryTypeWithDeviceServerV51(TestEveryTypeWithDeviceServerV5):
    device_class = EveryTypeDeviceV51
    timeout_hint = 7.5

def test_an_inform_hook_client_passes_informs_on_as_super_would():
    # Its next class's own lookup of handle_inform is taken where it finds what super()
    # does; a subclass putting a class in between (Between) gets super() itself.
    from katcp.inspecting_client import _InformHookDeviceClient

    passed_on = []

    class Between(AsyncClient):
        pass

    class Handler(AsyncClient):
        def handle_inform(self, msg):
            passed_on.append(msg.name)

    class Client(_InformHookDeviceClient, Between, Handler):
        pass

    client = Client("127.0.0.1", 1)
    hooked = []
    client.hook_inform("custom", hooked.append)
    client.handle_inform(Message.inform("custom"))
    assert passed_on == ["custom"] and len(hooked) == 1
