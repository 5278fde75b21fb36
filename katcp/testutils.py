"""Helpers for testing KATCP device servers and clients.

Downstream test suites use these to start a device server, talk to it with a blocking client
that makes assertions, record messages, wait for sensor transitions and drive tornado code
with a virtual clock. They work from ``unittest`` and from ``pytest``.
"""

import asyncio
import concurrent.futures
import functools
import logging
import queue
import re
import threading
import time
import warnings
from unittest import mock

import tornado.gen
import tornado.ioloop
import tornado.testing
import tornado.util
from tornado.concurrent import Future, chain_future
from tornado.platform.asyncio import AsyncIOLoop

from katcp import client, server
from katcp.core import (AsyncEvent, AsyncReply, FailReply, Message, ProtocolFlags,
                        Sensor, steal_docstring_from)
from katcp.kattypes import (Bool, Float, Int, Str, concurrent_reply, request,
                            request_timeout_hint, return_reply)
from katcp.object_proxies import ObjectWrapper

def _as_bytes(value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _as_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def list_to_native_strings(list_to_coerce):
    """Return a list with every bytes item decoded to str (other items unchanged)."""
    return [_as_str(item) if isinstance(item, bytes) else item for item in list_to_coerce]


def add_mid_to_msg_str(msg_str, mid):
    """Insert message id ``mid`` after the name of a message given as a string.

    Parameters
    ----------
    msg_str : str
        A message as on the wire, e.g. ``"?watchdog"``.
    mid : int or str
        The message id to add.

    Returns
    -------
    msg_str : str
        e.g. ``"?watchdog[5]"``.
    """
    parts = msg_str.split(" ", 1)
    parts[0] = "%s[%s]" % (parts[0], mid)
    return " ".join(parts)


class ClientConnectionTest:
    """A version of katcp.server.ClientConnection* suitable for testing.

    Records what a handler sends instead of sending it anywhere: ``messages`` holds every
    inform and reply in the order sent, ``informs`` / ``replies`` / ``mass_informs`` each
    kind. ``inform``, ``reply``, ``reply_inform`` and ``mass_inform`` are
    :class:`WaitingMock` objects, so a test can wait for calls made from another thread
    (``conn.inform.assert_wait_call_count(1)``).
    """

    def __init__(self):
        self.messages = []
        self._informs = []
        self._replies = []
        self._mass_informs = []
        self.address = "test-connection:0"
        self.inform = WaitingMock(side_effect=self._record_inform)
        self.reply_inform = WaitingMock(side_effect=self._record_reply_inform)
        self.reply = WaitingMock(side_effect=self._record_reply)
        self.mass_inform = WaitingMock(side_effect=self._mass_informs.append)

    def _record_inform(self, msg):
        self._informs.append(msg)
        self.messages.append(msg)

    def _record_reply_inform(self, msg, req_msg):
        msg.mid = req_msg.mid
        self._record_inform(msg)

    def _record_reply(self, msg, req_msg):
        msg.mid = req_msg.mid
        self._replies.append(msg)
        self.messages.append(msg)

    @property
    def informs(self):
        return self._informs

    @property
    def replies(self):
        return self._replies

    @property
    def mass_informs(self):
        return self._mass_informs


class TestLogHandler(logging.Handler):
    """A logger for KATCP tests: remembers every record it handles."""

    __test__ = False  # not a pytest test class

    def __init__(self):
        """Create a TestLogHandler."""
        super().__init__()
        self._records = []

    @property
    def records(self):
        return self._records

    def emit(self, record):
        """Handle the arrival of a log message."""
        self._records.append(record)

    def clear(self):
        """Clear the list of remembered logs."""
        self._records = []


class DeviceTestSensor(Sensor):
    """Test sensor: a Sensor created with a given reading."""

    def __init__(self, sensor_type, name, description, units, params,
                 timestamp, status, value):
        super().__init__(sensor_type, name, description, units, params)
        self.set(timestamp, status, value)


class MessageRecorder:
    """Message recorder: keeps the messages that pass a filter, for later inspection.

    Parameters
    ----------
    msg_types : tuple of Message type constants
        Which message types to record.
    whitelist : sequence of str
        Record only messages with these names (all names if empty).
    regex_filter : str or None
        Record only messages whose wire text matches this regular expression.
    blacklist : sequence of str
        Never record messages with these names.
    """

    def __init__(self, msg_types, whitelist, regex_filter, blacklist):
        self.msg_types = tuple(msg_types)
        self.whitelist = set(whitelist)
        self.blacklist = set(blacklist)
        self.regex_filter = re.compile(regex_filter) if regex_filter else None
        self.msgs = []
        self._condition = threading.Condition()

    def __call__(self, min_number=0, timeout=1):
        return self.get_msgs(min_number, timeout)

    def get_msgs(self, min_number=0, timeout=1):
        """Return the messages recorded so far and delete them.

        Parameters
        ----------
        min_number : int
            Wait until at least this many messages were recorded.
        timeout : float
            Seconds to wait for ``min_number`` messages (AssertionError if they do not come).
        """
        self.wait_number(min_number, timeout)
        with self._condition:
            msgs, self.msgs = self.msgs, []
        return msgs

    def wait_number(self, number, timeout=1):
        """Wait until at least a certain number of messages have been recorded."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.msgs) >= number, timeout):
                raise AssertionError("Timed out after %s s waiting for %d messages, got %d"
                                     % (timeout, number, len(self.msgs)))
            return list(self.msgs)

    def append_msg(self, msg):
        """Append a message if it matches the criteria."""
        if msg.mtype not in self.msg_types:
            return
        if self.whitelist and msg.name not in self.whitelist:
            return
        if msg.name in self.blacklist:
            return
        if self.regex_filter is not None and not self.regex_filter.search(str(msg)):
            return
        with self._condition:
            self.msgs.append(msg)
            self._condition.notify_all()


class BlockingTestClient(client.BlockingClient):
    """Test blocking client: a BlockingClient with assertions for use in test cases."""

    __test__ = False

    def __init__(self, test, *args, **kwargs):
        """Takes a TestCase class as an additional parameter."""
        self.test = test
        self._message_recorders = {}
        super().__init__(*args, **kwargs)

    @property
    def sockname(self):
        """The (host, port) of this client's end of the connection (None if unconnected)."""
        protocol = self._protocol
        transport = None if protocol is None else protocol.transport
        if transport is None:
            return None
        return tuple(transport.get_extra_info("sockname")[:2])

    @client.make_threadsafe
    def raw_send(self, chunk):
        """Send a raw chunk of data to the server."""
        self._write(chunk)

    def _record(self, msg):
        for recorder in list(self._message_recorders.values()):
            recorder.append_msg(msg)

    def handle_inform(self, msg):
        """Pass unhandled informs to message recorders."""
        self._record(msg)
        return super().handle_inform(msg)

    def handle_reply(self, msg):
        """Pass unhandled replies to message recorders."""
        self._record(msg)
        return super().handle_reply(msg)

    def message_recorder(self, whitelist=(), blacklist=(), regex_filter=None,
                         informs=True, replies=False):
        """Helper method for attaching a hook to selected received messages.

        Returns
        -------
        recorder : MessageRecorder
            Call it (or its ``get_msgs``) to fetch the messages recorded so far.
        """
        msg_types = []
        if informs:
            msg_types.append(Message.INFORM)
        if replies:
            msg_types.append(Message.REPLY)
        recorder = MessageRecorder(msg_types, whitelist, regex_filter, blacklist)
        self._message_recorders[id(recorder)] = recorder
        return recorder

    def _request(self, name, *params, **kwargs):
        timeout = kwargs.pop("timeout", None)
        mid = kwargs.pop("mid", None)
        msg = Message.request(name, *params, mid=mid)
        return self.blocking_request(msg, timeout=timeout, use_mid=mid is not None or None)

    @staticmethod
    def expected_sensor_value_tuple(sensorname, value, sensortype=str, places=7):
        """Helper for completing optional values in expected sensor value tuple."""
        return (sensorname, value, sensortype, places)

    def get_sensor(self, sensorname, sensortype=str):
        """Retrieve the value, status and timestamp of a sensor.

        Returns
        -------
        value : sensortype
        status : str
        timestamp : float
        """
        reply, informs = self._request("sensor-value", sensorname)
        self.test.assertTrue(reply.reply_ok(),
                             "Could not retrieve sensor %r: %s" % (sensorname, reply))
        self.test.assertEqual(len(informs), 1,
                              "Expected one #sensor-value for %r, got %d"
                              % (sensorname, len(informs)))
        args = informs[0].arguments
        timestamp, _, _name, status, value = args[:5]
        value = _as_str(value)
        if sensortype is bool:
            converted = value in ("1", "True", "true")
        elif sensortype is bytes:
            converted = _as_bytes(value)
        else:
            converted = sensortype(value)
        return converted, _as_str(status), float(timestamp)

    def get_sensor_value(self, sensorname, sensortype=str):
        """Retrieve the value of a sensor."""
        return self.get_sensor(sensorname, sensortype)[0]

    def get_sensor_status(self, sensorname):
        """Retrieve the status of a sensor."""
        return self.get_sensor(sensorname)[1]

    def get_sensor_timestamp(self, sensorname):
        """Retrieve the timestamp of a sensor."""
        return self.get_sensor(sensorname)[2]

    def _assert_value(self, actual, expected, sensortype, places, msg, equal):
        if sensortype is float:
            if equal:
                self.test.assertAlmostEqual(actual, float(expected), places, msg)
            else:
                self.test.assertNotAlmostEqual(actual, float(expected), places, msg)
        else:
            if sensortype is str:
                expected = _as_str(expected)
            elif sensortype is bytes:
                expected = _as_bytes(expected)
            (self.test.assertEqual if equal else self.test.assertNotEqual)(
                actual, expected, msg)

    def assert_sensor_equals(self, sensorname, expected, sensortype=str, msg=None,
                             places=7, status=None):
        """Assert that a sensor's value is equal to the given value."""
        value, actual_status, _ = self.get_sensor(sensorname, sensortype)
        if msg is None:
            msg = "Value of sensor %r is %r. Expected %r." % (sensorname, value, expected)
        self._assert_value(value, expected, sensortype, places, msg, True)
        if status is not None:
            self.test.assertEqual(actual_status, status,
                                  "Status of sensor %r is %r. Expected %r."
                                  % (sensorname, actual_status, status))

    def assert_sensor_status_equals(self, sensorname, expected_status, msg=None):
        """Assert that a sensor's status is equal to the given status."""
        status = self.get_sensor_status(sensorname)
        if msg is None:
            msg = "Status of sensor %r is %r. Expected %r." % (
                sensorname, status, expected_status)
        self.test.assertEqual(status, expected_status, msg)

    def assert_sensor_not_equal(self, sensorname, expected, sensortype=str, msg=None,
                                places=7):
        """Assert that a sensor's value is not equal to the given value."""
        value = self.get_sensor_value(sensorname, sensortype)
        if msg is None:
            msg = "Value of sensor %r is %r. Expected a different value." % (
                sensorname, value)
        self._assert_value(value, expected, sensortype, places, msg, False)

    @staticmethod
    def _expand(sensor_tuple):
        name, value = sensor_tuple[:2]
        sensortype = sensor_tuple[2] if len(sensor_tuple) > 2 else str
        places = sensor_tuple[3] if len(sensor_tuple) > 3 else 7
        return name, value, sensortype, places

    def wait_until_sensors_equal(self, timeout, sensor_tuples, msg=None):
        """Wait up to timeout seconds for several sensors to reach the given values."""
        expanded = [self._expand(t) for t in sensor_tuples]

        def all_equal():
            for name, value, sensortype, places in expanded:
                actual = self.get_sensor_value(name, sensortype)
                if sensortype is float:
                    if round(abs(actual - float(value)), places) != 0:
                        return False
                elif actual != (_as_str(value) if sensortype is str else value):
                    return False
            return True

        if not self.wait_condition(timeout, all_equal):
            self.test.fail(msg or "Timed out waiting for sensors %r" % (sensor_tuples,))

    def assert_sensors_equal(self, sensor_tuples, msg=None):
        """Assert that the values of several sensors are equal to given values."""
        for name, value, sensortype, places in (self._expand(t) for t in sensor_tuples):
            self.assert_sensor_equals(name, value, sensortype, msg=msg, places=places)

    def assert_sensors_not_equal(self, sensor_tuples, msg=None):
        """Assert that values of several sensors are not equal to given values."""
        for name, value, sensortype, places in (self._expand(t) for t in sensor_tuples):
            self.assert_sensor_not_equal(name, value, sensortype, msg=msg, places=places)

    def wait_condition(self, timeout, predicate, *args, **kwargs):
        """Wait for the boolean function ``predicate(*args, **kwargs)`` to become True.

        Returns
        -------
        met : bool
            Whether the predicate became True within ``timeout`` seconds.
        """
        poll = kwargs.pop("pollperiod", 0.02)
        deadline = time.monotonic() + timeout
        idle = threading.Event()
        while True:
            if predicate(*args, **kwargs):
                return True
            if time.monotonic() >= deadline:
                return False
            idle.wait(poll)

    def wait_until_sensor_equals(self, timeout, sensorname, value, sensortype=str,
                                 places=7, pollperiod=0.02):
        """Wait until a sensor's value equals the given value, or times out."""
        def equal():
            actual = self.get_sensor_value(sensorname, sensortype)
            if sensortype is float:
                return round(abs(actual - float(value)), places) == 0
            return actual == (_as_str(value) if sensortype is str else value)

        if not self.wait_condition(timeout, equal, pollperiod=pollperiod):
            self.test.fail("Timed out after %s s waiting for sensor %r to equal %r"
                           % (timeout, sensorname, value))

    def test_sensor_list(self, expected_sensors, ignore_descriptions=False):
        """Test that list of sensors on the device equals the provided list.

        Parameters
        ----------
        expected_sensors : list of tuples
            ``(name, description, units, type, params...)`` for each sensor.
        ignore_descriptions : bool
            Compare only names, units, types and params.
        """
        reply, informs = self._request("sensor-list")
        self.test.assertTrue(reply.reply_ok(), "?sensor-list failed: %s" % reply)

        def normalise(fields):
            fields = [_as_str(f) for f in fields]
            if ignore_descriptions:
                fields = fields[:1] + fields[2:]
            return tuple(fields)

        def normalise_expected(fields):
            fields = [repr(f) if isinstance(f, float) else f for f in fields]
            return normalise(fields)

        actual = sorted(normalise(m.arguments) for m in informs)
        expected = sorted(normalise_expected(s) for s in expected_sensors)
        self.test.assertEqual(actual, expected)

    def test_help(self, expected_requests, full_descriptions=False, exclude_defaults=True):
        """Test that list of requests on the device equals the provided list.

        Parameters
        ----------
        expected_requests : list of str or (name, description) tuples
            The requests expected; with names only, descriptions are not compared.
        full_descriptions : bool
            Compare whole descriptions rather than their first lines.
        exclude_defaults : bool
            Ignore the standard requests every DeviceServer provides.

        Raises
        ------
        ValueError
            If an expected request name is not a str (e.g. bytes).
        """
        reply, informs = self._request("help")
        self.test.assertTrue(reply.reply_ok(), "?help failed: %s" % reply)
        defaults = set(server.DeviceServer._request_handlers) if exclude_defaults else set()

        def describe(description):
            description = _as_str(description)
            if not full_descriptions:
                description = description.strip().splitlines()[0] if description else ""
            return description

        expected = {}
        for item in expected_requests:
            name, description = (item, None) if isinstance(item, (str, bytes)) else item
            if not isinstance(name, str):
                raise ValueError("Request names must be str, not %r" % (name,))
            expected[name] = description
        actual = {}
        for inform in informs:
            name = _as_str(inform.arguments[0])
            if name not in defaults:
                actual[name] = describe(inform.arguments[1])
        self.test.assertEqual(sorted(actual), sorted(expected))
        for name, description in expected.items():
            if description is not None:
                self.test.assertEqual(actual[name], describe(description),
                                      "Description of request %r differs" % name)

    def assert_request_succeeds(self, requestname, *params, **kwargs):
        """Assert that given request succeeds when called with given parameters.

        Keyword Arguments
        -----------------
        args_echo : bool
            Check that the reply echoes the parameters.
        args_equal : list
            The exact reply arguments (after ``ok``) expected.
        args_in : list of lists
            The reply arguments (after ``ok``) must equal one of these lists.
        args_length : int
            Number of reply arguments expected (after ``ok``).
        informs_count : int
            Number of informs expected.
        informs_args_equal : list of lists
            The exact arguments of each inform expected.

        Returns
        -------
        reply, informs : Message, list of Message
        """
        args_echo = kwargs.pop("args_echo", False)
        args_equal = kwargs.pop("args_equal", None)
        args_in = kwargs.pop("args_in", None)
        args_length = kwargs.pop("args_length", None)
        informs_count = kwargs.pop("informs_count", None)
        informs_args_equal = kwargs.pop("informs_args_equal", None)
        reply, informs = self._request(requestname, *params, **kwargs)
        self.test.assertEqual(reply.name, requestname)
        self.test.assertTrue(reply.reply_ok(),
                             "Expected request %r called with parameters %r to succeed, "
                             "but it failed: %s" % (requestname, params, reply))
        args = [_as_str(a) for a in reply.arguments[1:]]
        if args_echo:
            args_equal = params
        if args_equal is not None:
            self.test.assertEqual(args, [_as_str(a) for a in args_equal])
        if args_in is not None:
            self.test.assertIn(args, [[_as_str(a) for a in choice] for choice in args_in])
        if args_length is not None:
            self.test.assertEqual(len(args), args_length)
        if informs_count is not None:
            self.test.assertEqual(len(informs), informs_count)
        if informs_args_equal is not None:
            self.test.assertEqual(
                [[_as_str(a) for a in inform.arguments] for inform in informs],
                [[_as_str(a) for a in expected] for expected in informs_args_equal])
        return reply, informs

    def assert_request_fails(self, requestname, *params, **kwargs):
        """Assert that given request fails when called with given parameters.

        Keyword Arguments
        -----------------
        status_equals : str
            The reply code expected (default ``fail``).
        error_equals : str
            The exact error text expected.

        Returns
        -------
        reply, informs : Message, list of Message
        """
        status_equals = kwargs.pop("status_equals", "fail")
        error_equals = kwargs.pop("error_equals", None)
        reply, informs = self._request(requestname, *params, **kwargs)
        self.test.assertEqual(reply.name, requestname)
        self.test.assertFalse(reply.reply_ok(),
                              "Expected request %r called with parameters %r to fail, "
                              "but it succeeded: %s" % (requestname, params, reply))
        self.test.assertEqual(_as_str(reply.arguments[0]), _as_str(status_equals))
        if error_equals is not None:
            self.test.assertEqual(_as_str(reply.arguments[1]), _as_str(error_equals))
        return reply, informs

    def test_setter_request(self, requestname, sensorname, sensortype=str, good=(),
                            bad=(), places=7, args_echo=False):
        """Test a request which simply sets the value of a sensor.

        Each value in ``good`` must succeed and set the sensor to it; each value in
        ``bad`` must fail.
        """
        for value in good:
            self.assert_request_succeeds(requestname, value, args_echo=args_echo)
            self.assert_sensor_equals(sensorname, value, sensortype, places=places)
        for value in bad:
            self.assert_request_fails(requestname, value)

    def test_multi_setter_request(self, requestname, good=(), bad=()):
        """Test a request which causes several sensor values to change.

        Parameters
        ----------
        good : sequence of (params, sensor_tuples)
            Each request with ``params`` must succeed and leave the sensors as given.
        bad : sequence of params
            Each must fail.
        """
        for params, sensor_tuples in good:
            self.assert_request_succeeds(requestname, *params)
            self.assert_sensors_equal(sensor_tuples)
        for params in bad:
            self.assert_request_fails(requestname, *params)


class DeviceTestServer(server.DeviceServer):
    """Test server: a DeviceServer with a few sensors and requests, recording messages."""

    __test__ = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__msgs = []
        self.__msg_waiters = []
        # until_messages() may be called from a test thread while messages arrive.
        self.__msg_lock = threading.Lock()
        self.restart_queue = queue.Queue()
        self.set_restart_queue(self.restart_queue)
        self._cancel_slow_command = threading.Event()
        self.slow_waiting = False
        # Clear to hold back the #version-connect informs (and anything else a new
        # connection gets) until it is set again, on the server's ioloop.
        self.proceed_on_client_connect = AsyncEvent()
        self.proceed_on_client_connect.set()
        # Set to an error text to make ?help / ?sensor-list fail with it.
        self.break_help = False
        self.break_sensor_list = False

    @property
    def request_names(self):
        return set(self._request_handlers)

    @property
    def sensor_names(self):
        return set(sensor.name for sensor in self.get_sensors())

    @tornado.gen.coroutine
    def on_client_connect(self, client_conn):
        # Yield only when there is something to wait for: a coroutine that yields needs
        # a running loop, and tests call this directly from their own thread.
        if not self.proceed_on_client_connect.is_set():
            yield self.proceed_on_client_connect.until_set()
        ready = super().on_client_connect(client_conn)
        if ready is not None and not ready.done():
            yield ready

    def setup_sensors(self):
        self.restarted = False
        self.add_sensor(DeviceTestSensor(
            Sensor.INTEGER, "an.int", "An Integer.", "count", [-5, 5],
            timestamp=12345, status=Sensor.NOMINAL, value=3))
        self.add_sensor(DeviceTestSensor(
            Sensor.FLOAT, "a.float", "A Float.", "", [-123.4, 123.4],
            timestamp=12345, status=Sensor.NOMINAL, value=12.0))
        self.add_sensor(DeviceTestSensor(
            Sensor.FLOAT, "a.floatwithzero", "A Float with zero.", "", [-123.0, 123.0],
            timestamp=12345, status=Sensor.NOMINAL, value=12.0))
        self.add_sensor(DeviceTestSensor(
            Sensor.DISCRETE, "a.discrete", "A Discrete.", "", ["one", "two", "three"],
            timestamp=12345, status=Sensor.NOMINAL, value="one"))

    def request_new_command(self, req, msg):
        """A new command."""
        return Message.reply(msg.name, "ok", "param1", "param2")

    def request_raise_exception(self, req, msg):
        """A handler which raises an exception."""
        raise Exception("An exception occurred!")

    def request_raise_fail(self, req, msg):
        """A handler which raises a FailReply."""
        raise FailReply("There was a problem with your request.")

    @request_timeout_hint(99)
    def request_slow_command(self, req, msg):
        """A slow command, waits for msg.arguments[0] seconds."""
        # The wait happens in a thread of its own, so the server goes on handling other
        # requests (such as ?cancel-slow-command); the reply is sent from the ioloop, where
        # any connection (thread-safe or not) may send.
        wait_time = float(msg.arguments[0])
        cancelled = self._cancel_slow_command
        ioloop = self.ioloop

        def wait_and_reply():
            self.slow_waiting = True
            cancelled.wait(wait_time)
            self.slow_waiting = False
            ioloop.add_callback(req.reply, "ok")

        threading.Thread(target=wait_and_reply, name="slow-command", daemon=True).start()
        raise AsyncReply

    def request_cancel_slow_command(self, req, msg):
        """Cancel slow command request, resulting in it replying immediately."""
        # Each slow command waits on the event it found; later ones get a fresh one.
        self._cancel_slow_command, cancelled = threading.Event(), self._cancel_slow_command
        cancelled.set()
        return req.make_reply("ok")

    @request(Str(), Float(), Int(), Bool())
    @return_reply(Str(), Float(), Int(), Bool())
    def request_decorated(self, req, _string, _float, _int, do_raise):
        """Decorated handler, return params, optionally raise exception."""
        if do_raise:
            raise Exception("An exception occurred!")
        req.inform("_string", type(_string))
        req.inform("_float", type(_float))
        req.inform("_int", type(_int))
        req.inform("do_raise", type(do_raise))
        return ("ok", _string, _float, _int, do_raise)

    @return_reply()
    def request_decorated_return_exception(self, req, msg):
        """Decorated handler, return fail with exception object."""
        return ("fail", Exception("An exception occurred!"))

    def handle_message(self, req, msg):
        with self.__msg_lock:
            self.__msgs.append(msg)
            ready = [w for w in self.__msg_waiters if len(self.__msgs) >= w[0]]
            for waiter in ready:
                self.__msg_waiters.remove(waiter)
            received = list(self.__msgs) if ready else None
        for _count, future in ready:
            future.set_result(received)
        return super().handle_message(req, msg)

    @steal_docstring_from(server.DeviceServer.request_help)
    def request_help(self, req, msg):
        if self.break_help:
            raise FailReply(self.break_help)
        return super().request_help(req, msg)

    @steal_docstring_from(server.DeviceServer.request_sensor_list)
    def request_sensor_list(self, req, msg):
        if self.break_sensor_list:
            raise FailReply(self.break_sensor_list)
        return super().request_sensor_list(req, msg)

    @property
    def messages(self):
        return self.__msgs

    def until_messages(self, cnt):
        """Return a future that resolves once ``cnt`` messages have been received.

        It resolves to the list of messages received so far. It is a thread-safe
        :class:`concurrent.futures.Future`, as in katcp 0.9: test threads block on
        ``result(timeout)`` and coroutines on the loop can yield it.
        """
        future = concurrent.futures.Future()
        with self.__msg_lock:
            if len(self.__msgs) < cnt:
                self.__msg_waiters.append((cnt, future))
                return future
            received = list(self.__msgs)
        future.set_result(received)
        return future

    def stop(self, *args, **kwargs):
        # A blocked ?slow-command would otherwise hold up the handler thread.
        self._cancel_slow_command.set()
        return super().stop(*args, **kwargs)


def _resolve_once(future, result):
    if not future.done():
        future.set_result(result)


class AsyncDeviceTestServer(DeviceTestServer):
    """DeviceTestServer with handlers on the ioloop (no handler thread)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)
        self._slow_futures = []

    @request(Float())
    @return_reply()
    @request_timeout_hint(99)
    @concurrent_reply
    @tornado.gen.coroutine
    def request_slow_command(self, req, wait_time):
        """A slow coroutine request, waits for msg.arguments[0] seconds."""
        self.slow_waiting = True
        future = Future()
        self._slow_futures.append(future)
        try:
            yield tornado.gen.with_timeout(self.ioloop.time() + wait_time, future)
        except tornado.gen.TimeoutError:
            pass
        finally:
            self.slow_waiting = False
        raise tornado.gen.Return(("ok",))

    def request_cancel_slow_command(self, req, msg):
        """Cancel slow command request, resulting in it replying immediately."""
        for future in self._slow_futures:
            _resolve_once(future, None)
        self._slow_futures = []
        return req.make_reply("ok")


class DeviceTestServerWithTimeoutHints(DeviceTestServer):
    """DeviceTestServer whose ?request-timeout-hint reports configurable hints."""

    # Timeout hints are a KATCP v5.1 feature, announced with the T flag.
    PROTOCOL_INFO = ProtocolFlags(5, 1, {ProtocolFlags.MULTI_CLIENT,
                                         ProtocolFlags.MESSAGE_IDS,
                                         ProtocolFlags.REQUEST_TIMEOUT_HINTS})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_timeout_hints = {}

    @request(Str(optional=True))
    @return_reply(Int())
    def request_request_timeout_hint(self, req, name):
        """Return timeout hints for requests"""
        if name:
            hints = {name: self.request_timeout_hints.get(name, 0)}
            if name not in self._request_handlers:
                raise FailReply("Unknown request method.")
        else:
            hints = self.request_timeout_hints
        for request_name, hint in sorted(hints.items()):
            req.inform(request_name, float(hint))
        return ("ok", len(hints))


class SensorComparisonMixin:
    """Mixin to test that katcp.Sensor objects match specified criteria (for TestCases)."""

    def assert_sensor_equal(self, actual_sensor, desired_sensor, ignore_attributes=()):
        """Test that two sensor objects are equal, optionally ignoring some attributes."""
        attributes = {"name", "description", "units", "stype", "params"} - \
            set(ignore_attributes)
        for attr in sorted(attributes):
            self.assertEqual(getattr(actual_sensor, attr), getattr(desired_sensor, attr),
                             "Sensor attribute %r differs" % attr)
        if "value" not in ignore_attributes:
            self.assertEqual(actual_sensor.value(), desired_sensor.value())
        if "status" not in ignore_attributes:
            self.assertEqual(actual_sensor.status(), desired_sensor.status())

    def assert_sensor_equal_description(self, actual_sensor, desired_description):
        """Test that a Sensor object (actual) matches a description (desired).

        ``desired_description`` is a dict of attribute name to value; ``value`` and
        ``status`` compare against the sensor's current reading, and ``type`` is a
        type constant such as ``Sensor.INTEGER`` (or a KATCP type name).
        """
        for attr, desired in desired_description.items():
            if attr in ("value", "status", "timestamp"):
                actual = getattr(actual_sensor.read(), attr)
            elif attr == "type":
                actual = (actual_sensor.stype if isinstance(desired, str)
                          else actual_sensor._sensor_type)
            else:
                actual = getattr(actual_sensor, attr)
            self.assertEqual(actual, desired,
                             "Sensor %r attribute %r is %r, expected %r"
                             % (actual_sensor.name, attr, actual, desired))

    def assert_sensors_equal_description(self, actual_sensors, desired_description):
        """Test that a list of Sensor objects (actual) match a description (desired)."""
        self.assertEqual(len(actual_sensors), len(desired_description))
        for sensor, description in zip(actual_sensors, desired_description):
            self.assert_sensor_equal_description(sensor, description)

    def assert_sensors_value_conditions(self, actual_sensors, value_tests):
        """Test that a list of Sensor objects (actual) match value_tests.

        ``value_tests`` maps sensor names to callables that return True for good values.
        """
        by_name = {sensor.name: sensor for sensor in actual_sensors}
        for name, test in value_tests.items():
            self.assertIn(name, by_name)
            value = by_name[name].value()
            self.assertTrue(test(value), "Sensor %r value %r failed its test" % (name, value))


class TestUtilMixin:
    """Mixin class for making assertions about lists of KATCP messages."""

    def _assert_msgs_length(self, actual_msgs, expected_number):
        num_msgs = len(actual_msgs)
        if num_msgs < expected_number:
            self.fail("Too few messages received.")
        elif num_msgs > expected_number:
            self.fail("Too many messages received.")

    def _assert_msgs_equal(self, actual_msgs, expected_msgs):
        """Compare messages with their expected wire text (``str(msg)``)."""
        for msg, msg_str in zip(actual_msgs, expected_msgs):
            self.assertEqual(str(msg), msg_str)
        self._assert_msgs_length(actual_msgs, len(expected_msgs))

    def _assert_msgs_match(self, actual_msgs, expected):
        """Match messages against regular expressions."""
        for msg, pattern in zip(actual_msgs, expected):
            self.assertTrue(re.match(pattern, str(msg)),
                            "Message %r does not match %r" % (str(msg), pattern))
        self._assert_msgs_length(actual_msgs, len(expected))

    def _assert_msgs_like(self, actual_msgs, expected_items):
        """Match messages against (prefix, suffix) pairs."""
        for msg, (prefix, suffix) in zip(actual_msgs, expected_items):
            text = str(msg)
            self.assertTrue(text.startswith(prefix),
                            "Message %r does not start with %r" % (text, prefix))
            self.assertTrue(text.endswith(suffix),
                            "Message %r does not end with %r" % (text, suffix))
        self._assert_msgs_length(actual_msgs, len(expected_items))


def counting_callback(event=None, number_of_calls=1):
    """Decorate callback to set event once it's called certain number of times.

    The decorated callback gets ``done`` (the event), ``wait(timeout)`` and ``assert_wait``
    attributes.
    """
    if event is None:
        event = threading.Event()

    def decorator(callback):
        lock = threading.Lock()
        calls = [0]

        @functools.wraps(callback)
        def wrapped(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            finally:
                with lock:
                    calls[0] += 1
                    if calls[0] >= number_of_calls:
                        event.set()

        def assert_wait(timeout=1):
            if not event.wait(timeout):
                raise AssertionError("Callback called %d of %d times within %s s"
                                     % (calls[0], number_of_calls, timeout))

        wrapped.done = event
        wrapped.wait = event.wait
        wrapped.assert_wait = assert_wait
        wrapped.reset = lambda: (calls.__setitem__(0, 0), event.clear())
        return wrapped

    return decorator


def suppress_queue_repeats(suppressed_queue, initial_value, read_time=None):
    """Generator that reads a Queue and suppresses runs of repeated values.

    The queue is consumed, and a value yielded whenever it differs from the previous
    one, the first being compared with ``initial_value`` (which is not yielded: it is
    what the caller already has). Stops after reading for ``read_time`` seconds
    (None: reads forever).
    """
    previous = initial_value
    deadline = None if read_time is None else time.monotonic() + read_time
    while True:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            return
        try:
            value = suppressed_queue.get(timeout=timeout)
        except queue.Empty:
            return
        if value != previous:
            previous = value
            yield value


def _satisfies(expected, value):
    """Whether `value` meets one element of a transition sequence."""
    return expected(value) if callable(expected) else value == expected


class SensorTransitionWaiter:
    """Wait for a given set of sensor transitions.

    Works with katcp.resource.KATCPSensor objects (sensor of a resource client, best
    thread-safe wrapped when waiting from another thread) and plain katcp.Sensor
    objects. A KATCPSensor is sampled with the ``auto`` strategy while the waiter
    watches it, so that no change is missed; :meth:`teardown` restores its strategy.

    The sequence is followed as transitions: every update must satisfy the current
    element or the next one (moving on to it); any other value ends the wait as failed.
    Updates are checked as they arrive, so quick successive changes are not lost, and
    repeated values are fine.

    Parameters
    ----------
    sensor : KATCPSensor or Sensor
        The sensor to watch.
    value_sequence : list or None
        The values (or callables returning True for a matching value) to expect in
        order, the first being what the sensor has now; None just records received
        values.

    Raises
    ------
    ValueError
        If the sensor's current value does not satisfy the first element.
    """

    def __init__(self, sensor, value_sequence=None):
        self.sensor = sensor
        self.desired_value_sequence = value_sequence
        self._received_values = []
        self._condition = threading.Condition()
        # Index into the sequence of the element the latest value satisfied.
        self._position = 0
        self._failed = False
        self._torn_down = False
        self._listener = self._on_update
        self._original_strategy = None
        self._setup()

    def _setup(self):
        register = getattr(self.sensor, "register_listener", None)
        if register is not None:
            if hasattr(self.sensor, "set_sampling_strategy"):
                self._original_strategy = self.sensor.sampling_strategy
                self.sensor.set_sampling_strategy("auto")
            register(self._listener, reading=True)
        else:
            self.sensor.attach(self)
        current = self._current_value()
        with self._condition:
            self._received_values.append(current)
        sequence = self.desired_value_sequence
        if sequence and not _satisfies(sequence[0], current):
            self.teardown()
            raise ValueError("Sensor %s has value %r, which does not match the first "
                             "element of %r" % (self.sensor.name, current, sequence))

    def _current_value(self):
        reading = getattr(self.sensor, "reading", None)
        if reading is not None:
            return reading.value
        return self.sensor.value()

    def update(self, sensor, reading):
        self._record(reading.value if hasattr(reading, "value") else reading[2])

    def _on_update(self, sensor, reading):
        self._record(reading.value)

    def _record(self, value):
        with self._condition:
            if self._received_values[-1:] != [value]:
                self._received_values.append(value)
            self._advance(value)
            self._condition.notify_all()

    def _advance(self, value):
        sequence = self.desired_value_sequence
        if not sequence or self._failed or self._done():
            return
        following = self._position + 1
        if _satisfies(sequence[following], value):
            self._position = following
        elif not _satisfies(sequence[self._position], value):
            self._failed = True

    def _done(self):
        return self._position == len(self.desired_value_sequence) - 1

    def wait(self, timeout=5):
        """Wait until the specified transition occurs.

        Returns
        -------
        done : bool
            True if the whole sequence happened within ``timeout`` seconds; False on
            timeout, on a value out of sequence, or without a sequence.
        """
        if not self.desired_value_sequence:
            return False
        with self._condition:
            self._condition.wait_for(lambda: self._failed or self._done(), timeout)
            return self._done() and not self._failed

    def get_received_values(self, stop=True, reset=True):
        """Return list of values received to date (runs of repeats counted once)."""
        with self._condition:
            values = list(self._received_values)
            if reset:
                self._received_values = []
        if stop:
            self.teardown()
        return values

    def teardown(self):
        """Clean up: restore sensor strategy and de-register sensor callback."""
        if self._torn_down:
            return
        self._torn_down = True
        unregister = getattr(self.sensor, "unregister_listener", None)
        if unregister is not None:
            unregister(self._listener)
            if self._original_strategy is not None:
                self.sensor.set_sampling_strategy(self._original_strategy)
        else:
            self.sensor.detach(self)


class SensorTransitionStatusWaiter(SensorTransitionWaiter):
    """Also check for sensor status transitions, not just value.

    ``value_sequence`` holds ``(value, status)`` pairs (or callables taking one).
    """

    def _current_value(self):
        reading = getattr(self.sensor, "reading", None)
        if reading is None:
            reading = self.sensor.read()
        return (reading.value, reading.status)

    def update(self, sensor, reading):
        self._record((reading.value, reading.status))

    def _on_update(self, sensor, reading):
        self._record((reading.value, reading.status))


def wait_sensor(sensor, value, status=None, timeout=5):
    """Wait for a katcp sensor to attain a certain value.

    Returns
    -------
    attained : bool
    """
    if status is None:
        waiter_class, wanted = SensorTransitionWaiter, value
    else:
        waiter_class, wanted = SensorTransitionStatusWaiter, (value, status)
    # Whatever the sensor has now, then the wanted value (kept by any repeats).
    waiter = waiter_class(sensor, [lambda _: True, wanted])
    try:
        if waiter._current_value() == wanted:
            return True
        return waiter.wait(timeout)
    finally:
        waiter.teardown()


@tornado.gen.coroutine
def wait_sensor_async(sensor, value, status=None, ioloop=None):
    """Stop-gap async sensor-wait: resolves when ``sensor`` has ``value`` (and ``status``).

    ``sensor`` is a katcp.Sensor; updates may come from any thread.
    """
    ioloop = ioloop or tornado.ioloop.IOLoop.current()
    future = Future()

    def matches(reading):
        return reading.value == value and (status is None or reading.status == status)

    class Observer:
        def update(self, sensor_, reading):
            if matches(reading):
                ioloop.add_callback(_resolve_once, future, None)

    observer = Observer()
    sensor.attach(observer)
    try:
        if matches(sensor.read()):
            _resolve_once(future, None)
        yield future
    finally:
        sensor.detach(observer)


def start_thread_with_cleanup(test_instance, thread_object, timeout=1, start_timeout=None):
    """Start thread_object and add cleanup functions to test_instance.

    The thread object needs ``start(timeout=...)``, ``stop`` and ``join`` methods
    (katcp servers and clients have them): it is started with
    ``start(timeout=start_timeout)``, and stopped then joined (with `timeout`) when the
    test cleans up.
    """
    thread_object.start(timeout=start_timeout)

    def cleanup():
        thread_object.stop()
        thread_object.join(timeout=timeout)

    test_instance.addCleanup(cleanup)


class AtomicIaddCallback(ObjectWrapper):
    """Wrap an object so that ``+=`` is atomic and calls a callback with the new value."""

    def __init__(self, ob, callback=lambda x: x, mutex=None):
        super().__init__(ob)
        object.__setattr__(self, "_callback", callback)
        object.__setattr__(self, "_mutex", mutex or threading.Lock())

    def __iadd__(self, other):
        with self._mutex:
            new = self.__subject__ + other
            object.__setattr__(self, "__subject__", new)
            self._callback(new)
        return self


class WaitingMock(mock.Mock):
    """A Mock whose calls can be waited for from another thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._condition = threading.Condition()

    def _mock_call(self, *args, **kwargs):
        try:
            return super()._mock_call(*args, **kwargs)
        finally:
            # Also when a side effect raises: the call has been counted.
            with self._condition:
                self._condition.notify_all()

    def reset_mock(self, visited=None, *args, **kwargs):
        super().reset_mock(visited, *args, **kwargs)

    def assert_wait_call_count(self, count, timeout=1.0):
        """Wait for mock to be called >= *count* times within *timeout* seconds.

        Raises
        ------
        AssertionError
            If ``call_count`` does not reach `count` in time.
        RuntimeError
            If ``call_count`` reached `count` but ``call_args_list`` still holds
            fewer calls when the time is up (calls counted but not recorded).
        """
        deadline = time.monotonic() + timeout
        if not self._wait_until(lambda: self.call_count >= count, deadline):
            raise AssertionError("Waited %s s for %d calls, got %d"
                                 % (timeout, count, self.call_count))
        if not self._wait_until(lambda: len(self.call_args_list) >= count, deadline):
            raise RuntimeError(
                "Mock call_count is %d but call_args_list has only %d calls after "
                "%s s" % (self.call_count, len(self.call_args_list), timeout))

    def _wait_until(self, predicate, deadline):
        # Woken by each call; also re-checks now and then, for counts that tests
        # (or the mock internals, between counting and recording) change directly.
        with self._condition:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
        return True


class AsyncWaitingMock(mock.Mock):
    """A Mock whose calls can be waited for from a coroutine on the ioloop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waiters = []

    def _mock_call(self, *args, **kwargs):
        try:
            return super()._mock_call(*args, **kwargs)
        finally:
            for count, future in list(self._waiters):
                if self.call_count >= count:
                    self._waiters.remove((count, future))
                    _resolve_once(future, None)

    @tornado.gen.coroutine
    def assert_wait_call_count(self, count, timeout=1.0):
        """Wait for mock to be called >= *count* times within *timeout* seconds."""
        if self.call_count >= count:
            return
        future = Future()
        self._waiters.append((count, future))
        try:
            yield tornado.gen.with_timeout(
                tornado.ioloop.IOLoop.current().time() + timeout, future)
        except tornado.gen.TimeoutError:
            raise AssertionError("Waited %s s for %d calls, got %d"
                                 % (timeout, count, self.call_count))


class _RecordingRequestConnection(server.ClientRequestConnection):
    """A ClientRequestConnection that also keeps what the handler sent for it."""

    __slots__ = ("inform_msgs", "reply_msg")

    def __init__(self, client_connection, req_msg):
        super().__init__(client_connection, req_msg)
        self.inform_msgs = []
        self.reply_msg = None

    def inform(self, *args):
        msg = Message.reply_inform(self.msg, *args)
        self.inform_msgs.append(msg)
        self.client_connection.inform(msg)

    def reply_with_message(self, rep_msg):
        super().reply_with_message(rep_msg)
        self.reply_msg = rep_msg


def mock_req(req_name, *args, **kwargs):
    """Create a mock ClientRequestConnection object.

    Parameters
    ----------
    req_name : str
        Name of the request.
    args : list
        Request arguments.

    Keyword Arguments
    -----------------
    mid : int or None
        Message id of the request.
    client_conn : object
        Client connection to use (a fresh ClientConnectionTest by default).

    Returns
    -------
    req : ClientRequestConnection
        ``req.inform_msgs`` holds the informs sent through ``req`` and ``req.reply_msg``
        the reply; ``req.client_connection`` records everything sent.
    """
    mid = kwargs.pop("mid", None)
    client_conn = kwargs.pop("client_conn", None) or ClientConnectionTest()
    msg = Message.request(req_name, *args, mid=mid)
    return _RecordingRequestConnection(client_conn, msg)


def handle_mock_req(dev, req):
    """Instrument a real unstarted server.DeviceServer to handle a mock request.

    Calls the device's handler for ``req.msg`` directly (no network, no ioloop thread) and
    sends its reply through ``req`` (so ``req.reply_msg`` is set). Returns the reply
    Message; handlers that reply later (AsyncReply) give the reply they sent, if any.
    """
    msg = req.msg
    handler = dev._request_handlers.get(msg.name)
    if handler is None:
        raise FailReply("Unknown request %r" % msg.name)
    try:
        reply = handler(dev, req, msg)
    except AsyncReply:
        return getattr(req, "reply_msg", None)
    if not isinstance(reply, Message):
        reply = tornado.ioloop.IOLoop.current().run_sync(lambda: reply)
    req.reply_with_message(reply)
    return reply


def call_in_ioloop(ioloop, fn, *args, **kwargs):
    """Run fn in ioloop and block until the result is available.

    ``fn`` may return a plain value, a future or a coroutine. Must not be called from the
    ioloop's own thread.
    """
    timeout = kwargs.pop("timeout", None)
    result = concurrent.futures.Future()

    def _dispatch():
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            result.set_exception(exc)
            return
        if tornado.gen.is_future(value) or asyncio.iscoroutine(value) or \
                hasattr(value, "__await__"):
            future = tornado.gen.convert_yielded(value)
            future.add_done_callback(lambda f: _copy_result(f, result))
        else:
            result.set_result(value)

    ioloop.add_callback(_dispatch)
    return result.result(timeout)


def _copy_result(source, target):
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


class _WarpedLoopTime:
    """The clock of a time-warped asyncio loop: stands still until set."""

    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now


class _TimewarpIOLoop(AsyncIOLoop):
    """An IOLoop on a virtual clock whose ``run_sync`` timeout is in real seconds.

    Otherwise warping the clock past a test's timeout would end the test.
    """

    def time(self):
        # tornado's IOLoop.time() is the wall clock; here it is the warped asyncio clock.
        return self.asyncio_loop.time()

    def run_sync(self, func, timeout=None):
        if timeout is None:
            return super().run_sync(func)

        async def bounded():
            result = Future()
            chain_future(tornado.gen.convert_yielded(func()), result)

            def expire():
                if not result.done():
                    result.set_exception(tornado.util.TimeoutError(
                        "Operation timed out after %s seconds" % timeout))

            watchdog = threading.Timer(timeout, self.add_callback, (expire,))
            watchdog.daemon = True
            watchdog.start()
            try:
                return await result
            finally:
                watchdog.cancel()

        return super().run_sync(bounded)


class TimewarpAsyncTestCase(tornado.testing.AsyncTestCase):
    """Tornado AsyncTestCase that supports time-warping.

    The ioloop's clock stands still until ``set_ioloop_time`` moves it, so timers and
    sampling strategies fire exactly when the test says, without real waiting.
    """

    # Loop iterations wake_ioloop() lets pass: the first runs the timers that the new
    # time made due, the others what those scheduled in turn (e.g. a sample hopping to
    # the loop with add_callback).
    WAKE_ITERATIONS = 3

    def setUp(self):
        # tornado deprecates overriding get_new_ioloop, but offers no other way to give a
        # test case its own kind of loop.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "get_new_ioloop is deprecated",
                                    DeprecationWarning)
            super().setUp()
        # AsyncTestCase runs its loop in the test's own thread.
        self.ioloop_thread_id = threading.get_ident()

    def get_new_ioloop(self):
        ioloop = _TimewarpIOLoop(make_current=False)
        self.ioloop_time = 1000000.0
        self._warped_clock = _WarpedLoopTime(self.ioloop_time)
        # BaseEventLoop reads the clock through self.time(); an instance attribute wins.
        ioloop.asyncio_loop.time = self._warped_clock
        return ioloop

    def wake_ioloop(self):
        """Let the ioloop run a few iterations so that it notices the new time.

        Returns
        -------
        woken : Future
            Resolves once the iterations have run; yield it from a test coroutine
            (calling without yielding is fine too).
        """
        return self.io_loop.asyncio_loop.create_task(self._let_loop_run())

    async def _let_loop_run(self):
        for _ in range(self.WAKE_ITERATIONS):
            await asyncio.sleep(0)

    def set_ioloop_time(self, new_time, wake_ioloop=True):
        """Set the virtual time of the ioloop.

        Returns
        -------
        woken : Future or None
            With `wake_ioloop`, resolves once the loop has run at the new time.
        """
        self.ioloop_time = new_time
        self._warped_clock.now = new_time
        if wake_ioloop:
            return self.wake_ioloop()
        return None


class TimewarpAsyncTestCaseTimeAdvancer(threading.Thread):
    """Advance the virtual time of a TimewarpAsyncTestCase from a background thread.

    Parameters
    ----------
    test_instance : TimewarpAsyncTestCase
    quantum : float
        Virtual seconds per step.
    rate : float
        Virtual seconds per real second.
    """

    def __init__(self, test_instance, quantum=0.05, rate=1000.0):
        super().__init__(name="timewarp-advancer", daemon=True)
        self.test_instance = test_instance
        self.quantum = quantum
        self.rate = rate
        self._stopped = threading.Event()
        self._started = threading.Event()

    def start(self):
        super().start()
        self._started.wait(1.0)

    def stop(self, timeout=None):
        self._stopped.set()
        self.join(timeout)

    def run(self):
        self._started.set()
        ioloop = self.test_instance.io_loop
        step_wait = self.quantum / self.rate
        while not self._stopped.wait(step_wait):
            new_time = self.test_instance.ioloop_time + self.quantum
            ioloop.add_callback(self.test_instance.set_ioloop_time, new_time)
