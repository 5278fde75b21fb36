"""A blocking client that makes assertions about a device, for test cases."""

import threading
import time
import unittest
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from katcp import client, server
from katcp.core import Message
from katcp.display import first_line
from katcp.testutils.messages import MessageRecorder
from katcp.wire.text import as_bytes, readable
from katcp.wire.util import plain_callback, refuse_coroutine


def _float_param(param: str) -> str:
    try:
        return "%g" % float(param)
    except ValueError:
        return param  # left as it is, for the comparison to show


def _exact_text(value: Any) -> Union[str, bytes]:
    """The bytes a value is sent as (:func:`as_bytes`), as text where they are UTF-8.

    Two of them are equal exactly when the bytes are (text never equals bytes), and they
    read as text in failure messages; a lossy decode would make different bytes equal.
    """
    raw = as_bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _all_exact_text(values: Sequence[Any]) -> List[Union[str, bytes]]:
    return [_exact_text(value) for value in values]


def _status_and_error(reply: Message) -> Tuple[Union[str, bytes], Union[str, bytes, None]]:
    """A reply's code and error text (None if absent), as :func:`_exact_text`."""
    args = reply.arguments
    return (_exact_text(args[0]) if args else "",
            _exact_text(args[1]) if len(args) > 1 else None)


class BlockingTestClient(client.BlockingClient):
    """Test blocking client: a BlockingClient with assertions for use in test cases."""

    __test__ = False

    def __init__(self, test: unittest.TestCase, *args: Any, **kwargs: Any) -> None:
        """Takes a TestCase class as an additional parameter."""
        self.test = test
        self._message_recorders: Dict[int, MessageRecorder] = {}
        super().__init__(*args, **kwargs)

    @property
    def sockname(self) -> Optional[Tuple[str, int]]:
        """The (host, port) of this client's end of the connection (None if unconnected)."""
        protocol = self._protocol
        transport = None if protocol is None else protocol.transport
        if transport is None:
            return None
        return tuple(transport.get_extra_info("sockname")[:2])

    @client.make_threadsafe
    def raw_send(self, chunk: Union[bytes, str]) -> None:
        """Send a raw chunk of data to the server: bytes as they are, text as UTF-8."""
        self._write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)

    def _record(self, msg: Message) -> None:
        for recorder in list(self._message_recorders.values()):
            recorder.append_msg(msg)

    def handle_inform(self, msg: Message) -> Any:
        """Pass unhandled informs to message recorders."""
        self._record(msg)
        return super().handle_inform(msg)

    def handle_reply(self, msg: Message) -> Any:
        """Pass unhandled replies to message recorders."""
        self._record(msg)
        return super().handle_reply(msg)

    def message_recorder(self, whitelist: Sequence[Union[str, bytes]] = (),
                         blacklist: Sequence[Union[str, bytes]] = (),
                         regex_filter: Optional[str] = None, informs: bool = True,
                         replies: bool = False) -> MessageRecorder:
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

    def _request(self, name: str, *params: Any, timeout: Optional[float] = None,
                 mid: Optional[int] = None) -> Tuple[Message, List[Message]]:
        msg = Message.request(name, *params, mid=mid)
        return self.blocking_request(msg, timeout=timeout, use_mid=mid is not None or None)

    @staticmethod
    def expected_sensor_value_tuple(sensorname: str, value: Any, sensortype: type = str,
                                    places: int = 7) -> Tuple[str, Any, type, int]:
        """Helper for completing optional values in expected sensor value tuple."""
        return (sensorname, value, sensortype, places)

    def get_sensor(self, sensorname: str, sensortype: type = str) -> Tuple[Any, str, float]:
        """Retrieve the value, status and timestamp of a sensor.

        Parameters
        ----------
        sensorname : str
        sensortype : type, optional
            The value is converted with ``sensortype(value)``; a value that does not
            convert fails the test. For ``bool`` it must be ``0`` or ``1``; ``bytes`` gives
            the value's bytes as they came.

        Returns
        -------
        value : sensortype
        status : str
        timestamp : float
        """
        raw_value, status, timestamp = self._read_sensor(sensorname)
        return self._converted(sensorname, raw_value, sensortype), status, timestamp

    def _read_sensor(self, sensorname: str) -> Tuple[bytes, str, float]:
        """A sensor's value as its bytes on the wire, its status and its timestamp."""
        reply, informs = self._request("sensor-value", sensorname)
        self.test.assertTrue(reply.reply_ok(),
                             "Could not retrieve sensor %r: %s" % (sensorname, reply))
        self.test.assertEqual(len(informs), 1,
                              "Expected one #sensor-value for %r, got %d"
                              % (sensorname, len(informs)))
        args = informs[0].arguments
        timestamp, _, _name, status, raw_value = args[:5]
        return raw_value, readable(status), float(timestamp)

    def _converted(self, sensorname: str, raw_value: bytes, sensortype: type) -> Any:
        """A sensor's value as `sensortype`; one that does not convert fails the test."""
        if sensortype is bytes:
            return raw_value
        value = readable(raw_value)
        if sensortype is bool:
            if value not in ("0", "1"):
                self.test.fail("Value %r of sensor %r is not a bool: expected '0' or '1'"
                               % (value, sensorname))
            return value == "1"
        try:
            return sensortype(value)
        except (ValueError, TypeError) as exc:
            self.test.fail("Value %r of sensor %r does not convert to %s: %s"
                           % (value, sensorname, getattr(sensortype, "__name__", sensortype),
                              exc))

    def get_sensor_value(self, sensorname: str, sensortype: type = str) -> Any:
        """Retrieve the value of a sensor."""
        return self.get_sensor(sensorname, sensortype)[0]

    def get_sensor_status(self, sensorname: str) -> str:
        """Retrieve the status of a sensor."""
        return self.get_sensor(sensorname)[1]

    def get_sensor_timestamp(self, sensorname: str) -> float:
        """Retrieve the timestamp of a sensor."""
        return self.get_sensor(sensorname)[2]

    def _wire_value(self, sensorname: str) -> Tuple[bytes, str]:
        """A sensor's value as its bytes on the wire, and its status, read through
        :meth:`get_sensor` (which a test client may override to map or fake sensors)."""
        value, status, _ = self.get_sensor(sensorname, bytes)
        return as_bytes(value), status

    @staticmethod
    def _compared(raw_value: bytes, value: Any, expected: Any, sensortype: type
                  ) -> Tuple[Any, Any]:
        """The two sides that compare a sensor's value with an expected (non-float) one."""
        if sensortype is str:
            # The bytes, as the expected value is sent: decoded text may hide a difference.
            return _exact_text(raw_value), _exact_text(expected)
        if sensortype is bytes:
            return raw_value, as_bytes(expected)
        return value, expected

    def _assert_value(self, sensorname: str, expected: Any, sensortype: type, places: int,
                      msg: Optional[str], equal: bool) -> str:
        """Assert that a sensor's value equals `expected` (or not); return its status."""
        raw_value, status = self._wire_value(sensorname)
        value = self._converted(sensorname, raw_value, sensortype)
        if msg is None:
            shown = _exact_text(raw_value) if sensortype is str else value
            msg = ("Value of sensor %r is %r. Expected %r." % (sensorname, shown, expected)
                   if equal else "Value of sensor %r is %r. Expected a different value."
                   % (sensorname, shown))
        if sensortype is float:
            if equal:
                self.test.assertAlmostEqual(value, float(expected), places, msg)
            else:
                self.test.assertNotAlmostEqual(value, float(expected), places, msg)
        else:
            actual, expected = self._compared(raw_value, value, expected, sensortype)
            (self.test.assertEqual if equal else self.test.assertNotEqual)(actual, expected, msg)
        return status

    def assert_sensor_equals(self, sensorname: str, expected: Any, sensortype: type = str,
                             msg: Optional[str] = None, places: int = 7,
                             status: Optional[str] = None) -> None:
        """Assert that a sensor's value is equal to the given value.

        A ``str`` or ``bytes`` value is compared as the bytes of the wire with the bytes
        `expected` is sent as (text as UTF-8, other values as the UTF-8 of their str()).
        """
        actual_status = self._assert_value(sensorname, expected, sensortype, places, msg, True)
        if status is not None:
            self.test.assertEqual(actual_status, status,
                                  "Status of sensor %r is %r. Expected %r."
                                  % (sensorname, actual_status, status))

    def assert_sensor_status_equals(self, sensorname: str, expected_status: str,
                                    msg: Optional[str] = None) -> None:
        """Assert that a sensor's status is equal to the given status."""
        status = self.get_sensor_status(sensorname)
        if msg is None:
            msg = "Status of sensor %r is %r. Expected %r." % (sensorname, status, expected_status)
        self.test.assertEqual(status, expected_status, msg)

    def assert_sensor_not_equal(self, sensorname: str, expected: Any, sensortype: type = str,
                                msg: Optional[str] = None, places: int = 7) -> None:
        """Assert that a sensor's value is not equal to the given value (compared as by
        :meth:`assert_sensor_equals`)."""
        self._assert_value(sensorname, expected, sensortype, places, msg, False)

    def _sensor_value_is(self, name: str, value: Any, sensortype: type, places: int) -> bool:
        raw_value, _ = self._wire_value(name)
        actual = self._converted(name, raw_value, sensortype)
        if sensortype is float:
            return round(abs(actual - float(value)), places) == 0
        actual, expected = self._compared(raw_value, actual, value, sensortype)
        return actual == expected

    def wait_until_sensors_equal(self, timeout: float, sensor_tuples: Sequence[Sequence[Any]],
                                 msg: Optional[str] = None) -> None:
        """Wait up to timeout seconds for several sensors to reach the given values."""
        def all_equal() -> bool:
            return all(self._sensor_value_is(*self.expected_sensor_value_tuple(*sensor_tuple))
                       for sensor_tuple in sensor_tuples)

        if not self.wait_condition(timeout, all_equal):
            self.test.fail(msg or "Timed out waiting for sensors %r" % (sensor_tuples,))

    def assert_sensors_equal(self, sensor_tuples: Sequence[Sequence[Any]],
                             msg: Optional[str] = None) -> None:
        """Assert that the values of several sensors are equal to given values."""
        for sensor_tuple in sensor_tuples:
            name, value, sensortype, places = self.expected_sensor_value_tuple(*sensor_tuple)
            self.assert_sensor_equals(name, value, sensortype, msg=msg, places=places)

    def assert_sensors_not_equal(self, sensor_tuples: Sequence[Sequence[Any]],
                                 msg: Optional[str] = None) -> None:
        """Assert that values of several sensors are not equal to given values."""
        for sensor_tuple in sensor_tuples:
            name, value, sensortype, places = self.expected_sensor_value_tuple(*sensor_tuple)
            self.assert_sensor_not_equal(name, value, sensortype, msg=msg, places=places)

    def wait_condition(self, timeout: float, predicate: Callable[..., Any], *args: Any,
                       poll_period: float = 0.02, pollperiod: Optional[float] = None,
                       **kwargs: Any) -> Any:
        """Wait for the boolean function ``predicate(*args, **kwargs)`` to become True.

        Parameters
        ----------
        timeout : float
            Seconds to wait.
        predicate : callable
            Called with the other arguments, first at once and then every `poll_period`
            seconds until it returns a true value or the time is up.
        poll_period : float, optional
            Seconds between calls (not passed to the predicate). ``pollperiod``, the
            spelling of :meth:`wait_until_sensor_equals`, is taken too.

        Returns
        -------
        cond : object
            The predicate's last value: true if it became true within `timeout`.

        Raises
        ------
        TypeError
            If `predicate` is an ``async def`` function, or returns a coroutine (which
            is no answer).
        """
        plain_callback(predicate, "predicate")
        if pollperiod is not None:
            poll_period = pollperiod
        deadline = time.monotonic() + timeout
        idle = threading.Event()
        while True:
            cond = predicate(*args, **kwargs)
            if cond:
                refuse_coroutine(cond, "predicate")
                return cond
            if time.monotonic() >= deadline:
                return cond
            idle.wait(poll_period)

    def wait_until_sensor_equals(self, timeout: float, sensorname: str, value: Any,
                                 sensortype: type = str, places: int = 7,
                                 pollperiod: float = 0.02) -> None:
        """Wait until a sensor's value equals the given value, or times out."""
        if not self.wait_condition(timeout, self._sensor_value_is, sensorname, value,
                                   sensortype, places, poll_period=pollperiod):
            self.test.fail("Timed out after %s s waiting for sensor %r to equal %r"
                           % (timeout, sensorname, value))

    def test_sensor_list(self, expected_sensors: Sequence[Sequence[Any]],
                         ignore_descriptions: bool = False) -> None:
        """Test that list of sensors on the device equals the provided list.

        Parameters
        ----------
        expected_sensors : list of tuples
            ``(name, description, units, type, params...)`` for each sensor (str or
            bytes). The params of a ``float`` sensor match in any form of the same
            number, compared as ``"%g" % float(param)`` as in 0.9.3: ``0``, ``"0"`` and
            ``0.0`` match a device's ``0.0``.
        ignore_descriptions : bool
            Compare only names, units, types and params.
        """
        reply, informs = self._request("sensor-list")
        self.test.assertTrue(reply.reply_ok(), "?sensor-list failed: %s" % reply)

        def normalise(fields: Sequence[Any]) -> Tuple[str, ...]:
            fields = [readable(f) for f in fields]
            if fields[3:4] == ["float"]:
                # Both sides in one form, as 0.9.3 compared them: 0, "0", 0.0 and the
                # device's b"0.0" all match.
                fields[4:] = [_float_param(p) for p in fields[4:]]
            if ignore_descriptions:
                fields = fields[:1] + fields[2:]
            return tuple(fields)

        actual = sorted(normalise(m.arguments) for m in informs)
        expected = sorted(normalise(s) for s in expected_sensors)
        self.test.assertEqual(actual, expected)

    def test_help(self, expected_requests: Sequence[Any], full_descriptions: bool = False,
                  exclude_defaults: bool = True) -> None:
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

        def describe(description: Any) -> str:
            description = readable(description)
            return description if full_descriptions else first_line(description)

        expected = {}
        for item in expected_requests:
            name, description = (item, None) if isinstance(item, (str, bytes)) else item
            if not isinstance(name, str):
                raise ValueError("Request names must be str, not %r" % (name,))
            expected[name] = description
        actual = {}
        for inform in informs:
            name = readable(inform.arguments[0])
            if name not in defaults:
                actual[name] = describe(inform.arguments[1])
        self.test.assertEqual(sorted(actual), sorted(expected))
        for name, description in expected.items():
            if description is not None:
                self.test.assertEqual(actual[name], describe(description),
                                      "Description of request %r differs" % name)

    def assert_request_succeeds(self, requestname: Union[str, bytes], *params: Any,
                                args_echo: bool = False,
                                args_equal: Optional[Sequence[Any]] = None,
                                args_in: Optional[Sequence[Sequence[Any]]] = None,
                                args_length: Optional[int] = None,
                                informs_count: Optional[int] = None,
                                informs_args_equal: Optional[Sequence[Sequence[Any]]] = None,
                                timeout: Optional[float] = None, mid: Optional[int] = None
                                ) -> Tuple[Message, List[Message]]:
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
        timeout : float, optional
            Seconds to wait for the reply.
        mid : int, optional
            Message id to send the request with.

        Returns
        -------
        reply, informs : Message, list of Message
        """
        reply, informs, called = self._request_expecting(True, requestname, params, timeout,
                                                         mid)
        # Compared as bytes, each side as it is sent (see _exact_text).
        args = _all_exact_text(reply.arguments[1:])
        if args_echo:
            args_equal = params
        if args_equal is not None:
            expected_args = _all_exact_text(args_equal)
            self.test.assertEqual(args, expected_args,
                                  "Expected reply to %s to have arguments %r, but received %r."
                                  % (called, expected_args, args))
        if args_in is not None:
            choices = [_all_exact_text(choice) for choice in args_in]
            self.test.assertIn(args, choices,
                               "Expected reply to %s to have arguments in %r, but received %r."
                               % (called, choices, args))
        if args_length is not None:
            self.test.assertEqual(len(args), args_length,
                                  "Expected reply to %s to have %d arguments, but received "
                                  "%d: %r." % (called, args_length, len(args), args))
        if informs_count is not None:
            self.test.assertEqual(len(informs), informs_count,
                                  "Expected %d informs in reply to %s, but received %d."
                                  % (informs_count, called, len(informs)))
        if informs_args_equal is not None:
            informs_args = [_all_exact_text(inform.arguments) for inform in informs]
            expected_informs = [_all_exact_text(expected) for expected in informs_args_equal]
            self.test.assertEqual(informs_args, expected_informs,
                                  "Expected informs in reply to %s to have arguments %r, but "
                                  "received %r." % (called, expected_informs, informs_args))
        return reply, informs

    def assert_request_fails(self, requestname: Union[str, bytes], *params: Any,
                             status_equals: Any = None, error_equals: Any = None,
                             timeout: Optional[float] = None, mid: Optional[int] = None
                             ) -> Tuple[Message, List[Message]]:
        """Assert that given request fails when called with given parameters.

        Keyword Arguments
        -----------------
        status_equals : str, optional
            The reply code expected (``fail``, ``invalid``); by default any reply code
            but ``ok`` passes, as in 0.9.3.
        error_equals : str, optional
            The exact error text expected.
        timeout, mid
            As for :meth:`assert_request_succeeds`.

        Returns
        -------
        reply, informs : Message, list of Message
        """
        reply, informs, called = self._request_expecting(False, requestname, params, timeout,
                                                         mid)
        status, error = _status_and_error(reply)
        if status_equals is not None:
            self.test.assertEqual(status, _exact_text(status_equals),
                                  "Expected %s to return status %r, but the status was %r."
                                  % (called, _exact_text(status_equals), status))
        if error_equals is not None:
            self.test.assertEqual(error, _exact_text(error_equals),
                                  "Expected %s to fail with error %r, but the error was %r."
                                  % (called, _exact_text(error_equals), error))
        return reply, informs

    def _request_expecting(self, succeed: bool, requestname: Union[str, bytes],
                           params: Sequence[Any], timeout: Optional[float], mid: Optional[int]
                           ) -> Tuple[Message, List[Message], str]:
        """Make a request and assert that it succeeded (or failed, as `succeed` says).

        Returns
        -------
        reply, informs : Message, list of Message
        called : str
            The request and its parameters, as the failure messages name them.
        """
        requestname = readable(requestname)  # a str or bytes name, compared with reply.name
        reply, informs = self._request(requestname, *params, timeout=timeout, mid=mid)
        called = "request %r called with parameters %r" % (requestname, params)
        self.test.assertEqual(reply.name, requestname,
                              "Expected the reply to %s to be named %r, but it was named %r."
                              % (called, requestname, reply.name))
        status, error = _status_and_error(reply)
        if succeed:
            msg = "Expected %s to succeed, but it failed with status %r and %s." % (
                called, status, "no error message" if error is None else "error %r" % error)
        else:
            msg = "Expected %s to fail, but it succeeded with arguments %r." % (
                called, _all_exact_text(reply.arguments[1:]))
        self.test.assertEqual(reply.reply_ok(), succeed, msg)
        return reply, informs, called

    def test_setter_request(self, requestname: str, sensorname: str, sensortype: type = str,
                            good: Sequence[Any] = (), bad: Sequence[Any] = (),
                            places: int = 7, args_echo: bool = False) -> None:
        """Test a request which simply sets the value of a sensor.

        Each value in ``good`` must succeed and set the sensor to it; each value in
        ``bad`` must fail.
        """
        for value in good:
            self.assert_request_succeeds(requestname, value, args_echo=args_echo)
            self.assert_sensor_equals(sensorname, value, sensortype, places=places)
        for value in bad:
            self.assert_request_fails(requestname, value)

    def test_multi_setter_request(self, requestname: str, good: Sequence[Any] = (),
                                  bad: Sequence[Any] = ()) -> None:
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
