"""katcp.testutils: the helpers downstream suites use, exercised as they would use them."""

import asyncio
import concurrent.futures
import gc
import inspect
import logging
import queue
import threading
import unittest
import unittest.mock

import pytest
import tornado.gen
import tornado.ioloop
import tornado.testing
from tornado.concurrent import Future, chain_future

from katcp import DeviceServer, Message, Sensor
from katcp import testutils
from katcp.ioloop_manager import IOLoopManager
from katcp.kattypes import Int, request, return_reply
from katcp.testutils import timewarp

from wait_helpers import outcome_in_thread

pytestmark = pytest.mark.timeout(60)


class TestDeviceTestServerWithBlockingTestClient(unittest.TestCase):

    def setUp(self):
        self.server = testutils.DeviceTestServer("127.0.0.1", 0)
        testutils.start_thread_with_cleanup(self, self.server, start_timeout=5)
        host, port = self.server.bind_address
        self.client = testutils.BlockingTestClient(self, host, port)
        testutils.start_thread_with_cleanup(self, self.client, start_timeout=5)
        self.assertTrue(self.client.wait_protocol(timeout=5))

    def test_sensor_getters_and_assertions(self):
        self.assertEqual(self.client.get_sensor("an.int", int)[:2], (3, "nominal"))
        self.assertEqual(self.client.get_sensor_value("a.float", float), 12.0)
        self.assertEqual(self.client.get_sensor_status("a.discrete"), "nominal")
        self.assertEqual(self.client.get_sensor_timestamp("an.int"), 12345.0)
        self.client.assert_sensor_equals("an.int", 3, int, status="nominal")
        self.client.assert_sensor_equals("a.discrete", b"one")
        self.client.assert_sensor_not_equal("an.int", 4, int)
        self.client.assert_sensors_equal([("an.int", 3, int), ("a.float", 12.0, float)])
        self.client.assert_sensor_status_equals("a.float", "nominal")
        with self.assertRaises(AssertionError):
            self.client.assert_sensor_equals("an.int", 4, int)

    def test_a_value_that_does_not_convert_to_sensortype_fails_the_test(self):
        for check in (lambda: self.client.get_sensor("a.discrete", int),
                      lambda: self.client.get_sensor_value("a.float", int),
                      lambda: self.client.assert_sensor_equals("a.discrete", 1, int),
                      lambda: self.client.assert_sensors_equal([("a.float", 12, int)]),
                      lambda: self.client.wait_until_sensor_equals(5, "a.discrete", 1, float)):
            with self.assertRaises(AssertionError) as raised:
                check()
            self.assertRegex(str(raised.exception), r"sensor 'a\.(discrete|float)'")
            self.assertRegex(str(raised.exception), r"'(one|12\.0)'.*(int|float)")

    def test_a_bool_sensortype_takes_0_or_1_only(self):
        sensor = self.server.get_sensor("an.int")
        with self.assertRaisesRegex(AssertionError, r"'3' of sensor 'an\.int'.*bool"):
            self.client.get_sensor_value("an.int", bool)
        for raw, value in ((1, True), (0, False)):
            sensor.set_value(raw)
            self.assertIs(self.client.get_sensor_value("an.int", bool), value)
        self.client.assert_sensor_equals("an.int", False, bool)
        self.server.add_sensor(Sensor.string("a.word", "A word.", ""))
        self.server.get_sensor("a.word").set_value("True")
        with self.assertRaisesRegex(AssertionError, r"'True' of sensor 'a\.word'.*bool"):
            self.client.get_sensor_value("a.word", bool)

    def test_wait_until_sensor_equals_sees_a_change(self):
        sensor = self.server.get_sensor("an.int")
        threading.Timer(0.05, sensor.set_value, (5,)).start()
        self.client.wait_until_sensor_equals(5, "an.int", 5, int)
        with self.assertRaises(AssertionError):
            self.client.wait_until_sensor_equals(0.1, "an.int", -5, int)

    def test_wait_condition_takes_pollperiod_and_passes_the_rest_to_the_predicate(self):
        calls = []

        def seen(name, other):
            calls.append((name, other))
            return len(calls) == 2

        self.assertTrue(self.client.wait_condition(5, seen, "x", pollperiod=0.001, other=2))
        self.assertEqual(calls, [("x", 2)] * 2)
        self.assertFalse(self.client.wait_condition(0.05, lambda: False))

    def test_wait_condition_takes_poll_period_and_returns_the_predicates_last_value(self):
        calls = []

        def seen(*args, **kwargs):
            calls.append((args, kwargs))
            return len(calls) == 3 and ["met"]

        self.assertEqual(self.client.wait_condition(5, seen, "x", poll_period=0.001, y=1),
                         ["met"])
        self.assertEqual(calls, [(("x",), {"y": 1})] * 3)
        self.assertEqual(self.client.wait_condition(0.01, lambda: 0, poll_period=0.001), 0)
        self.assertIsNone(self.client.wait_condition(0.01, lambda: None))

    def test_wait_condition_refuses_an_async_def_predicate(self):
        # Its coroutine, true as any object, was taken for the condition met.
        async def met():
            return False

        with self.assertRaisesRegex(TypeError, "predicate .* is an async function"):
            self.client.wait_condition(0.01, met)

    def test_wait_condition_refuses_a_predicate_returning_a_coroutine(self):
        async def met():
            return False

        returned = []

        def predicate():
            returned.append(met())
            return returned[-1]

        with self.assertRaisesRegex(TypeError, "predicate returned the coroutine"):
            self.client.wait_condition(5, predicate)
        self.assertEqual(inspect.getcoroutinestate(returned[0]), inspect.CORO_CLOSED)

    def test_request_assertions_take_a_bytes_request_name(self):
        reply, _ = self.client.assert_request_succeeds(b"new-command", args_length=2)
        self.assertEqual(reply.name, "new-command")
        self.client.assert_request_fails(b"raise-fail", status_equals=b"fail")
        with self.assertRaises(AssertionError):
            self.client.assert_request_fails(b"new-command")

    def test_request_assertions(self):
        reply, informs = self.client.assert_request_succeeds(
            "decorated", "abc", 1.5, 3, "0", args_equal=["abc", "1.5", "3", "0"])
        self.assertEqual([inform.arguments[0] for inform in informs],
                         [b"_string", b"_float", b"_int", b"do_raise"])
        self.client.assert_request_succeeds("log-level", args_in=[["warn"], ["error"]])
        with self.assertRaises(AssertionError):
            self.client.assert_request_succeeds("log-level", args_in=[["error"], ["off"]])
        self.client.assert_request_succeeds(
            "sensor-value", "an.int",
            informs_args_equal=[["12345.000000", "1", "an.int", "nominal", "3"]])
        with self.assertRaises(AssertionError):
            self.client.assert_request_succeeds(
                "sensor-value", "an.int",
                informs_args_equal=[["12345.000000", "1", "an.int", "nominal", "4"]])
        self.client.assert_request_succeeds("new-command", args_length=2)
        self.client.assert_request_fails("raise-fail",
                                         error_equals="There was a problem with your request.")
        self.client.assert_request_fails("no-such-request", status_equals="invalid")
        with self.assertRaises(AssertionError):
            self.client.assert_request_succeeds("raise-exception")
        with self.assertRaises(AssertionError):
            self.client.assert_request_fails("watchdog")

    def test_assert_request_fails_passes_any_failure_unless_a_status_is_asked_for(self):
        reply, _ = self.client.assert_request_fails("no-such-request")
        self.assertEqual(reply.arguments[0], b"invalid")
        self.client.assert_request_fails("raise-fail")
        with self.assertRaises(AssertionError):
            self.client.assert_request_fails("no-such-request", status_equals="fail")

    def test_request_check_failures_name_the_request_and_the_check(self):
        c = self.client
        problem = "'There was a problem with your request.'"
        for check, expected in [
                (lambda: c.assert_request_succeeds("new-command", args_length=3),
                 "'new-command' called with parameters () to have 3 arguments"),
                (lambda: c.assert_request_succeeds("help", "watchdog", informs_count=2),
                 "Expected 2 informs in reply to request 'help' called with parameters "
                 "('watchdog',)"),
                (lambda: c.assert_request_succeeds("new-command", args_equal=["x"]),
                 "'new-command' called with parameters () to have arguments ['x']"),
                (lambda: c.assert_request_succeeds("new-command", args_in=[["x"]]),
                 "to have arguments in [['x']]"),
                (lambda: c.assert_request_succeeds("sensor-value", "an.int",
                                                   informs_args_equal=[["x"]]),
                 "informs in reply to request 'sensor-value' called with parameters "
                 "('an.int',) to have arguments [['x']]"),
                (lambda: c.assert_request_succeeds("raise-fail", 1),
                 "request 'raise-fail' called with parameters (1,) to succeed, but it "
                 "failed with status 'fail' and error " + problem),
                (lambda: c.assert_request_fails("watchdog"),
                 "request 'watchdog' called with parameters () to fail, but it succeeded"),
                (lambda: c.assert_request_fails("raise-fail", status_equals="invalid"),
                 "'raise-fail' called with parameters () to return status 'invalid', but "
                 "the status was 'fail'"),
                (lambda: c.assert_request_fails("raise-fail", error_equals="x"),
                 "'raise-fail' called with parameters () to fail with error 'x', but the "
                 "error was " + problem)]:
            with self.assertRaises(AssertionError) as raised:
                check()
            self.assertIn(expected, str(raised.exception))
            self.assertNotIn("\\_", str(raised.exception))

    def test_sensor_list_and_help(self):
        self.client.test_sensor_list([
            ("an.int", "An Integer.", "count", "integer", "-5", "5"),
            ("a.float", "A Float.", "", "float", -123.4, 123.4),
            ("a.floatwithzero", b"A Float with zero.", "", b"float", "-123.0", "123.0"),
            ("a.discrete", "A Discrete.", "", "discrete", "one", "two", "three"),
        ])
        with self.assertRaises(AssertionError):
            self.client.test_sensor_list([("an.int", "An Integer.", "count", "integer")])
        expected = [(name, getattr(testutils.DeviceTestServer,
                                   "request_" + name.replace("-", "_")).__doc__)
                    for name in ("new-command", "raise-exception", "raise-fail",
                                 "slow-command", "cancel-slow-command", "decorated",
                                 "decorated-return-exception")]
        self.client.test_help(expected)
        self.client.test_help([name for name, _ in expected])
        with self.assertRaises(AssertionError):
            self.client.test_help([name for name, _ in expected[1:]])
        with self.assertRaises(ValueError):
            self.client.test_help([name.encode() for name, _ in expected])

    def test_sensor_list_float_params_match_in_any_form_of_the_number(self):
        others = [("an.int", "An Integer.", "count", "integer", -5, 5),
                  ("a.discrete", "A Discrete.", "", "discrete", "one", "two", "three")]
        for float_params in ((-123.4, 123.4, -123, 123), ("-123.4", "123.4", "-123", "123"),
                             (b"-123.4", b"123.4", b"-123.0", b"123.0")):
            self.client.test_sensor_list(others + [
                ("a.float", "A Float.", "", "float") + float_params[:2],
                ("a.floatwithzero", "A Float with zero.", "", b"float") + float_params[2:]])
        with self.assertRaises(AssertionError):
            self.client.test_sensor_list(others + [
                ("a.float", "A Float.", "", "float", "-123.5", "123.4"),
                ("a.floatwithzero", "A Float with zero.", "", "float", "-123", "123")])
        # Only float params: an integer sensor's are compared as written.
        with self.assertRaises(AssertionError):
            self.client.test_sensor_list([
                ("an.int", "An Integer.", "count", "integer", "-5.0", "5"), others[1],
                ("a.float", "A Float.", "", "float", "-123.4", "123.4"),
                ("a.floatwithzero", "A Float with zero.", "", "float", "-123", "123")])

    def test_message_recorder_and_raw_send(self):
        recorder = self.client.message_recorder(whitelist=["sensor-status"])
        self.client.assert_request_succeeds("sensor-sampling", "an.int", "event")
        msgs = recorder(1, timeout=5)
        self.assertEqual(msgs[0].name, "sensor-status")
        self.assertEqual(msgs[0].arguments[2:], [b"an.int", b"nominal", b"3"])
        replies = self.client.message_recorder(informs=False, replies=True,
                                               whitelist=["watchdog"])
        self.client.raw_send(b"?watchdog\n")
        self.assertEqual(str(replies(1, timeout=5)[0]), "!watchdog ok")

    def test_message_recorder_takes_bytes_names(self):
        # As the request assertions do: a bytes name matched no message, and the wait for
        # the messages timed out.
        recorder = self.client.message_recorder(whitelist=[b"sensor-status"])
        blind = self.client.message_recorder(blacklist=[b"sensor-status"])
        self.client.assert_request_succeeds("sensor-sampling", "an.int", "event")
        self.assertEqual([msg.name for msg in recorder(1, timeout=5)], ["sensor-status"])
        self.assertEqual(blind(), [])

    def test_raw_send_sends_text_as_utf8(self):
        # A str chunk failed on the client's loop (a TypeError logged there): nothing was
        # sent, and the test waited for an answer that could not come.
        waiting = self.server.until_messages(len(self.server.messages) + 1)
        self.client.raw_send("?watchdog \u00e9t\u00e9\n")
        self.assertEqual(waiting.result(timeout=5)[-1].arguments, ["été".encode()])

    def test_setter_requests_and_server_records_messages(self):
        count = len(self.server.messages)
        self.client.assert_request_succeeds("watchdog")
        self.assertEqual(self.server.messages[count].name, "watchdog")

    def test_a_wait_for_messages_given_up_leaves_them_handled(self):
        # Resolving the cancelled future raised in handle_message: the message that came
        # next went unanswered.
        given_up = self.server.until_messages(len(self.server.messages) + 1)
        self.assertTrue(given_up.cancel())
        waiting = self.server.until_messages(len(self.server.messages) + 1)
        self.client.assert_request_succeeds("watchdog", timeout=5)
        self.assertEqual(waiting.result(timeout=5)[-1].name, "watchdog")

    def test_slow_command_is_cancelled(self):
        # The slow command waits outside the handler thread, so the server answers other
        # requests meanwhile, the cancel among them.
        slow = concurrent.futures.Future()
        self.client.ioloop.add_callback(lambda: chain_future(
            self.client.future_request(Message.request("slow-command", 30)), slow))
        self.client.assert_request_succeeds("watchdog")
        self.assertFalse(slow.done())
        self.client.assert_request_succeeds("cancel-slow-command")
        reply, _ = slow.result(timeout=10)
        self.assertTrue(reply.reply_ok())

    def test_client_sockname_is_what_the_server_lists(self):
        _, informs = self.client.assert_request_succeeds("client-list")
        host, port = informs[0].arguments[0].decode().split(":")
        self.assertEqual((host, int(port)), self.client.sockname)


class _EchoingServer(testutils.DeviceTestServer):
    """The test server plus ``?echo``, which informs and replies with its arguments."""

    def request_echo(self, req, msg):
        """Inform and reply with the arguments, as they came."""
        req.inform(*msg.arguments)
        return req.make_reply("ok", *msg.arguments)


class _BlankHelpServer(testutils.DeviceTestServer):
    """The test server plus a request whose docstring is blank."""

    def request_blank(self, req, msg):
        """
        """
        return req.make_reply("ok")


class TestHelpOfABlankDescription(unittest.TestCase):

    def test_a_blank_description_compares_as_empty(self):
        # Its first line was looked up among none: test_help() raised IndexError.
        server = _BlankHelpServer("127.0.0.1", 0)
        testutils.start_thread_with_cleanup(self, server, start_timeout=5)
        client = testutils.BlockingTestClient(self, *server.bind_address)
        testutils.start_thread_with_cleanup(self, client, start_timeout=5)
        self.assertTrue(client.wait_protocol(timeout=5))
        others = sorted(set(testutils.DeviceTestServer._request_handlers)
                        - set(DeviceServer._request_handlers))
        client.test_help(others + [("blank", "")])
        client.test_help(others + [("blank", " \n  ")])
        with self.assertRaisesRegex(AssertionError, "Description of request 'blank'"):
            client.test_help(others + [("blank", "Something.")])


class TestBlockingTestClientComparesTheBytes(unittest.TestCase):
    """Arguments and values that are not UTF-8 compare as their bytes: a lossy decode
    made different bytes equal (both U+FFFD)."""

    def setUp(self):
        self.server = _EchoingServer("127.0.0.1", 0)
        self.server.add_sensor(Sensor.string("a.text", "Any bytes.", ""))
        testutils.start_thread_with_cleanup(self, self.server, start_timeout=5)
        self.client = testutils.BlockingTestClient(self, *self.server.bind_address)
        testutils.start_thread_with_cleanup(self, self.client, start_timeout=5)
        self.assertTrue(self.client.wait_protocol(timeout=5))

    def test_reply_and_inform_arguments(self):
        c = self.client
        c.assert_request_succeeds("echo", b"\xff", "\u00e9", args_equal=[b"\xff", "\u00e9"],
                                  args_in=[[b"\xfe", "x"], [b"\xff", b"\xc3\xa9"]],
                                  informs_args_equal=[[b"\xff", "\u00e9"]])
        c.assert_request_succeeds("echo", b"\xff", args_echo=True)
        for check in (lambda: c.assert_request_succeeds("echo", b"\xff", args_equal=[b"\xfe"]),
                      lambda: c.assert_request_succeeds("echo", b"\xff", args_equal=["\ufffd"]),
                      lambda: c.assert_request_succeeds("echo", b"\xff", args_in=[[b"\xfe"]]),
                      lambda: c.assert_request_succeeds("echo", b"\xff",
                                                        informs_args_equal=[[b"\xfe"]])):
            with self.assertRaises(AssertionError) as raised:
                check()
            # Text that is not UTF-8 is named by its bytes.
            self.assertIn("b'\\xff'", str(raised.exception))

    def test_sensor_values(self):
        c = self.client
        self.server.get_sensor("a.text").set_value(b"\x80\x81")
        self.assertEqual(c.get_sensor_value("a.text", bytes), b"\x80\x81")
        self.assertEqual(c.get_sensor_value("a.text"), "\ufffd\ufffd")  # text, for people
        c.assert_sensor_equals("a.text", b"\x80\x81")
        c.assert_sensor_equals("a.text", bytearray(b"\x80\x81"), bytes)
        c.assert_sensor_not_equal("a.text", b"\xfe\xfe")
        c.assert_sensor_not_equal("a.text", "\ufffd\ufffd", bytes)
        c.wait_until_sensor_equals(5, "a.text", b"\x80\x81")
        with self.assertRaises(AssertionError) as raised:
            c.assert_sensor_equals("a.text", b"\xfe\xfe")
        self.assertIn("Value of sensor 'a.text' is b'\\x80\\x81'. Expected b'\\xfe\\xfe'.",
                      str(raised.exception))
        for check in (lambda: c.assert_sensor_equals("a.text", "\ufffd\ufffd"),
                      lambda: c.assert_sensor_equals("a.text", b"\xfe\xfe", bytes),
                      lambda: c.assert_sensor_not_equal("a.text", b"\x80\x81"),
                      lambda: c.wait_until_sensor_equals(0.05, "a.text", "\ufffd\ufffd")):
            with self.assertRaises(AssertionError):
                check()

    def test_the_assertions_read_sensors_through_get_sensor(self):
        # A test client may override it, to map names or to stand in for sensors.
        read = []

        class Mapping(testutils.BlockingTestClient):
            def get_sensor(self, sensorname, sensortype=str):
                read.append(sensorname)
                return super().get_sensor("a." + sensorname, sensortype)

        c = Mapping(self, *self.server.bind_address)
        testutils.start_thread_with_cleanup(self, c, start_timeout=5)
        self.assertTrue(c.wait_protocol(timeout=5))
        self.server.get_sensor("a.text").set_value("x")
        c.assert_sensor_equals("text", "x")
        c.assert_sensor_not_equal("text", "y")
        c.wait_until_sensor_equals(5, "text", "x")
        self.assertEqual(read, ["text"] * 3)


class _CoroutineHandlers(testutils.DeviceTestServer):
    """Handlers that reply later, in each style a handler may."""

    @request(Int())
    @return_reply(Int())
    @tornado.gen.coroutine
    def request_gen_inc(self, req, x):
        """Increment after a loop turn (a tornado coroutine)."""
        yield tornado.gen.moment
        raise tornado.gen.Return(("ok", x + 1))

    async def request_native_echo(self, req, msg):
        """Echo after a loop turn (an async def)."""
        await asyncio.sleep(0)
        return req.make_reply("ok", *msg.arguments)

    def request_from_thread(self, req, msg):
        """Reply from another thread's future."""
        future = concurrent.futures.Future()
        threading.Thread(target=future.set_result,
                         args=(req.make_reply("ok", "thread"),)).start()
        return future


def _in_new_thread(fn):
    """fn() in a new thread (which has no event loop of its own): its outcome."""
    outcome = concurrent.futures.Future()

    def run():
        try:
            outcome.set_result(fn())
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return outcome.result(10)


class TestClientConnectionTest(unittest.TestCase):

    def test_mass_informs_are_recorded_among_the_messages_and_informs(self):
        conn = testutils.ClientConnectionTest()
        conn.inform(Message.inform("a"))
        conn.mass_inform(Message.inform("b"))
        conn.reply(Message.reply("x", "ok"), Message.request("x"))
        self.assertEqual([str(m) for m in conn.messages], ["#a", "#b", "!x ok"])
        self.assertEqual([str(m) for m in conn.informs], ["#a", "#b"])
        self.assertEqual([str(m) for m in conn.mass_informs], ["#b"])
        self.assertEqual([str(m) for m in conn.replies], ["!x ok"])
        conn.mass_inform.assert_wait_call_count(1, timeout=1)


    def test_its_methods_are_methods_that_a_subclass_may_override(self):
        # Documented as methods: a subclass's override is called, and may call the base.
        seen = []

        class Filtering(testutils.ClientConnectionTest):
            def inform(self, msg):
                seen.append(str(msg))
                if msg.name != "noise":
                    super().inform(msg)

        conn = Filtering()
        conn.inform(Message.inform("noise"))
        conn.inform(Message.inform("kept"))
        conn.reply(Message.reply("x", "ok"), Message.request("x"))
        self.assertEqual(seen, ["#noise", "#kept"])
        self.assertEqual([str(m) for m in conn.informs], ["#kept"])
        conn.reply.assert_wait_call_count(1, timeout=1)
        self.assertTrue(callable(testutils.ClientConnectionTest.mass_inform))


class TestMockReq(unittest.TestCase):

    def test_handle_mock_req_calls_handler(self):
        server = testutils.DeviceTestServer("127.0.0.1", 0)
        reply = testutils.handle_mock_req(server, testutils.mock_req("decorated", "x", 2.5,
                                                                     7, "0"))
        self.assertEqual(reply.arguments, [b"ok", b"x", b"2.5", b"7", b"0"])
        req = testutils.mock_req("watchdog", mid=5)
        self.assertEqual(req.msg.mid, b"5")

    def test_coroutine_handlers_reply_in_a_thread_without_an_event_loop(self):
        server = _CoroutineHandlers("127.0.0.1", 0)

        def handle_all():
            replies = []
            for name, args in (("gen-inc", (3,)), ("native-echo", ("a", "b")),
                               ("from-thread", ())):
                req = testutils.mock_req(name, *args)
                reply = testutils.handle_mock_req(server, req)
                replies.append((str(reply), req.reply_msg is reply))
            return replies

        self.assertEqual(_in_new_thread(handle_all), [
            ("!gen-inc ok 4", True), ("!native-echo ok a b", True),
            ("!from-thread ok thread", True)])

    def test_the_threads_own_event_loop_is_left_alone(self):
        server = _CoroutineHandlers("127.0.0.1", 0)

        def with_a_current_loop():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                reply = testutils.handle_mock_req(server, testutils.mock_req("gen-inc", 1))
                return str(reply), asyncio.get_event_loop() is loop, loop.is_closed()
            finally:
                asyncio.set_event_loop(None)
                loop.close()

        self.assertEqual(_in_new_thread(with_a_current_loop), ("!gen-inc ok 2", True, False))


class TestMockReqOnARunningLoop(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=10)
    def test_a_coroutine_handler_gives_a_future_of_its_reply(self):
        server = _CoroutineHandlers("127.0.0.1", 0)
        for name, args, expected in (("gen-inc", (3,), "!gen-inc ok 4"),
                                     ("native-echo", ("x",), "!native-echo ok x"),
                                     ("from-thread", (), "!from-thread ok thread")):
            req = testutils.mock_req(name, *args)
            pending = testutils.handle_mock_req(server, req)
            self.assertTrue(tornado.gen.is_future(pending))
            reply = yield pending
            self.assertEqual(str(reply), expected)
            self.assertIs(req.reply_msg, reply)
        # A handler that replies at once still gives its reply at once.
        reply = testutils.handle_mock_req(server, testutils.mock_req("watchdog"))
        self.assertEqual(str(reply), "!watchdog ok")


class TestSmallHelpers(unittest.TestCase):

    def test_add_mid_to_msg_str(self):
        self.assertEqual(testutils.add_mid_to_msg_str("?watchdog", 3), "?watchdog[3]")
        self.assertEqual(testutils.add_mid_to_msg_str("!help ok 3", 7), "!help[7] ok 3")

    def test_list_to_native_strings(self):
        self.assertEqual(testutils.list_to_native_strings([b"a", "b", 1]), ["a", "b", 1])

    def test_counting_callback(self):
        seen = []

        @testutils.counting_callback(number_of_calls=2)
        def callback(value):
            seen.append(value)

        callback(1)
        self.assertFalse(callback.done.is_set())
        threading.Thread(target=callback, args=(2,)).start()
        callback.assert_wait(5)
        self.assertEqual(sorted(seen), [1, 2])

    def test_atomic_iadd_callback_extends_a_list_in_place(self):
        items, seen = [1], []
        wrapper = testutils.AtomicIaddCallback(items, callback=seen.append)
        wrapper += [2]
        self.assertEqual(items, [1, 2])
        self.assertIs(wrapper.__subject__, items)
        self.assertEqual(seen, [items])
        counter = testutils.AtomicIaddCallback(1, callback=seen.append)
        counter += 2
        self.assertEqual((counter, seen[-1]), (3, 3))

    def test_suppress_queue_repeats(self):
        q = queue.Queue()
        for value in [1, 1, 2, 2, 2, 3, 1]:
            q.put(value)
        self.assertEqual(list(testutils.suppress_queue_repeats(q, 1, read_time=0.2)),
                         [2, 3, 1])

    def test_waiting_mock(self):
        mock = testutils.WaitingMock()
        threading.Thread(target=lambda: [mock(i) for i in range(3)]).start()
        mock.assert_wait_call_count(3, timeout=5)
        with self.assertRaises(AssertionError):
            mock.assert_wait_call_count(4, timeout=0.05)

    def test_waiting_mocks_take_a_spec_set_as_a_mock_does(self):
        # Their constructors set attributes of their own, which the spec_set refused.
        class Device:
            def update(self, value):
                pass

        for make in (testutils.WaitingMock, testutils.AsyncWaitingMock):
            mock = make(spec_set=Device)
            threading.Thread(target=mock.update, args=(1,)).start()
            if make is testutils.WaitingMock:
                mock.update.assert_wait_call_count(1, timeout=5)
            with self.assertRaises(AttributeError):
                mock.no_such_method()
            with self.assertRaises(AttributeError):
                mock.no_such_attribute = 1

    def test_log_handler_records(self):
        import logging
        handler = testutils.TestLogHandler()
        log = logging.getLogger("katcp_testutils.loghandler")
        log.addHandler(handler)
        try:
            log.warning("hello %s", "there")
            self.assertEqual([r.getMessage() for r in handler.records], ["hello there"])
            handler.clear()
            self.assertEqual(handler.records, [])
        finally:
            log.removeHandler(handler)

    def test_sensor_transition_waiter(self):
        sensor = Sensor.integer("counter", default=0)
        waiter = testutils.SensorTransitionWaiter(sensor, [0, 1, 2, 3])
        thread = threading.Thread(target=lambda: [sensor.set_value(v) for v in (1, 2, 3)])
        thread.start()
        self.assertTrue(waiter.wait(5))
        self.assertEqual(waiter.get_received_values(), [0, 1, 2, 3])
        self.assertTrue(testutils.wait_sensor(sensor, 3, timeout=1))
        self.assertFalse(testutils.wait_sensor(sensor, 4, timeout=0.05))
        status_waiter = testutils.SensorTransitionStatusWaiter(
            sensor, [(3, Sensor.NOMINAL), (4, Sensor.WARN)])
        sensor.set_value(4, Sensor.WARN)
        self.assertTrue(status_waiter.wait(1))
        status_waiter.teardown()

    def test_async_def_value_checks_are_refused(self):
        # Their coroutines, true as any object, matched every value.
        async def is_big(value):
            return value > 100

        sensor = Sensor.integer("counter", default=0)
        with self.assertRaisesRegex(TypeError, "value_sequence element .* is an async function"):
            testutils.SensorTransitionWaiter(sensor, [0, is_big])
        assert not sensor._observers

        class Check(unittest.TestCase, testutils.SensorComparisonMixin):
            def runTest(self):
                pass

        with self.assertRaisesRegex(TypeError, "value test .* is an async function"):
            Check().assert_sensors_value_conditions([sensor], {"counter": is_big})

    def test_value_checks_returning_coroutines_are_refused(self):
        # Not told apart when given: each raises when its coroutine comes back.
        async def is_big(value):
            return value > 100

        def returns_coroutine(value):
            return is_big(value)

        sensor = Sensor.integer("counter", default=0)
        with self.assertRaisesRegex(TypeError, "value_sequence element returned the coroutine"):
            testutils.SensorTransitionWaiter(sensor, [returns_coroutine])
        assert not sensor._observers

        class Check(unittest.TestCase, testutils.SensorComparisonMixin):
            def runTest(self):
                pass

        with self.assertRaisesRegex(TypeError, "value test returned the coroutine"):
            Check().assert_sensors_value_conditions([sensor], {"counter": returns_coroutine})

    def test_call_in_ioloop(self):
        manager = IOLoopManager(managed_default=True)
        ioloop = manager.get_ioloop()
        manager.start()
        try:
            @tornado.gen.coroutine
            def add_later(a, b):
                yield tornado.gen.moment
                raise tornado.gen.Return(a + b)

            async def mul(a, b):
                return a * b

            self.assertEqual(testutils.call_in_ioloop(ioloop, add_later, 2, 3), 5)
            self.assertEqual(testutils.call_in_ioloop(ioloop, mul, 2, 3), 6)
            self.assertEqual(testutils.call_in_ioloop(ioloop, lambda: 7), 7)
            with self.assertRaises(ZeroDivisionError):
                testutils.call_in_ioloop(ioloop, lambda: 1 / 0)
        finally:
            manager.stop()
            manager.join(timeout=5)


    def test_call_in_ioloop_fails_once_no_thread_runs_the_loop(self):
        # It waited for ever: on a loop that nothing runs, or one stopped while the call's
        # future was pending.
        idle = tornado.ioloop.IOLoop(make_current=False)
        self.addCleanup(idle.close)
        call = outcome_in_thread(testutils.call_in_ioloop, idle, lambda: 1)
        with self.assertRaisesRegex(RuntimeError, "no thread runs its ioloop"):
            call.result(timeout=10)
        manager = IOLoopManager(managed_default=True)
        manager.start()
        called = threading.Event()

        def never_done():
            called.set()
            return Future()

        call = outcome_in_thread(testutils.call_in_ioloop, manager.get_ioloop(), never_done)
        self.assertTrue(called.wait(10))
        manager.stop()
        manager.join(timeout=5)
        with self.assertRaisesRegex(RuntimeError, "no thread runs its ioloop"):
            call.result(timeout=10)


class TestAsyncWaitingMock(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=10)
    def test_a_call_from_another_thread_wakes_the_waiter_on_its_loop(self):
        # Debug mode (python -X dev) raises for a loop's future resolved from another
        # thread; without it the waiter slept on until the loop woke for another reason.
        self.io_loop.asyncio_loop.set_debug(True)
        mock = testutils.AsyncWaitingMock(return_value="called")
        call = concurrent.futures.Future()
        called = threading.Event()

        def call_once_waiting():
            called.wait(10)
            try:
                call.set_result(mock(1))
            except BaseException as exc:
                call.set_exception(exc)

        threading.Thread(target=call_once_waiting, daemon=True).start()
        waiting = mock.assert_wait_call_count(1, timeout=30)
        called.set()
        yield waiting
        self.assertEqual(call.result(5), "called")
        self.assertEqual(mock._waiters, [])

    @tornado.testing.gen_test(timeout=10)
    def test_a_wait_that_times_out_is_forgotten(self):
        mock = testutils.AsyncWaitingMock()
        with self.assertRaises(AssertionError):
            yield mock.assert_wait_call_count(1, timeout=0.01)
        self.assertEqual(mock._waiters, [])
        mock()
        yield mock.assert_wait_call_count(1, timeout=5)


class TestWaitSensorAsync(tornado.testing.AsyncTestCase):

    @tornado.testing.gen_test(timeout=10)
    def test_resolves_once_the_sensor_has_the_value_and_status(self):
        sensor = Sensor.integer("an.int", "", "", [0, 10], default=3,
                                initial_status=Sensor.NOMINAL)
        yield testutils.wait_sensor_async(sensor, 3)
        waiting = testutils.wait_sensor_async(sensor, 5, status=Sensor.WARN)
        setter = threading.Thread(target=lambda: (sensor.set_value(5),
                                                  sensor.set_value(5, Sensor.WARN)))
        setter.start()
        yield waiting
        setter.join(5)
        self.assertEqual(sensor._observers, set())

    @tornado.testing.gen_test(timeout=10)
    def test_a_wait_given_up_leaves_no_observer_on_the_sensor(self):
        # Neither a wait cancelled (asyncio.wait_for) nor one abandoned when its time was
        # up (tornado.gen.with_timeout) stayed attached to the sensor for ever.
        sensor = Sensor.integer("an.int", "", "", [0, 10], default=3)
        with self.assertRaises(asyncio.TimeoutError):
            yield asyncio.wait_for(testutils.wait_sensor_async(sensor, 5), 0.01)
        with self.assertRaises(tornado.gen.TimeoutError):
            yield tornado.gen.with_timeout(self.io_loop.time() + 0.01,
                                           testutils.wait_sensor_async(sensor, 5))
        yield tornado.gen.moment  # the cancelled wait's callbacks run
        gc.collect()
        sensor.set_value(4)  # an abandoned wait, collected, is noticed at the next reading
        self.assertEqual(sensor._observers, set())

    @tornado.testing.gen_test(timeout=10)
    def test_a_sensor_that_fails_to_read_fails_the_wait_and_keeps_no_observer(self):
        # As a tornado coroutine's: the future fails, the call itself does not raise.
        class Unreadable(Sensor):
            def read(self):
                raise ValueError("hardware away")

        sensor = Unreadable.integer("an.int", "", "", [0, 10])
        waiting = testutils.wait_sensor_async(sensor, 5)
        with self.assertRaisesRegex(ValueError, "hardware away"):
            yield waiting
        self.assertEqual(sensor._observers, set())


class _StoppableThread(threading.Thread):
    """A plain thread: its start() takes no timeout."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self):
        self.stopping.wait(60)

    def stop(self):
        self.stopping.set()


class TestStartThreadWithCleanup(unittest.TestCase):

    def test_a_start_without_timeout_is_called_without_arguments(self):
        case = unittest.TestCase()
        thread = _StoppableThread()
        testutils.start_thread_with_cleanup(case, thread, timeout=5)
        self.assertTrue(thread.is_alive())
        case.doCleanups()
        self.assertTrue(thread.stopping.is_set())
        self.assertFalse(thread.is_alive())

    def test_a_start_timeout_is_passed_on(self):
        starts = []

        class Recorder:
            def start(self, *args, **kwargs):
                starts.append((args, kwargs))

        case = unittest.TestCase()
        testutils.start_thread_with_cleanup(case, Recorder(), start_timeout=3)
        testutils.start_thread_with_cleanup(case, Recorder())
        self.assertEqual(starts, [((), {"timeout": 3}), ((), {})])


class TestTimewarpWait(testutils.TimewarpAsyncTestCase):
    """tornado's wait() and stop(), deprecated but still found in older test suites."""

    def test_wait_returns_what_stop_gives(self):
        self.io_loop.call_later(3600, self.stop, "an hour later")
        self.set_ioloop_time(self.ioloop_time + 3600)
        self.assertEqual(self.wait(timeout=10), "an hour later")

    def test_a_wait_that_nothing_stops_fails_after_its_timeout_in_real_seconds(self):
        # Its timeout was a timer on the virtual clock, which stands still: it hung.
        guard = threading.Timer(10, self.io_loop.add_callback, (self.stop, "guard"))
        guard.start()
        self.addCleanup(guard.cancel)
        with self.assertRaisesRegex(self.failureException, "timed out after 0.01 seconds"):
            self.wait(timeout=0.01)
        self.assertTrue(guard.is_alive())

    def test_the_timeout_of_a_wait_that_returned_stops_no_later_wait(self):
        # Its alarm may go off just as the wait returns: it reaches the loop during the
        # next wait, which it must leave alone.
        alarms = []

        def alarm(ioloop, seconds, fn):
            alarms.append(fn)
            return threading.Timer(seconds, fn)  # never started: cancel() does nothing

        with unittest.mock.patch.object(timewarp, "_alarm", alarm):
            self.stop("first")
            self.assertEqual(self.wait(timeout=10), "first")
        self.io_loop.add_callback(alarms[0])
        # A loop turn later: a stop in the same turn would make up for a stale one.
        self.io_loop.add_callback(self.io_loop.add_callback, self.stop, "second")
        self.assertEqual(self.wait(timeout=10), "second")


class TestTimewarp(testutils.TimewarpAsyncTestCase):

    @tornado.testing.gen_test(timeout=5)
    def test_timers_fire_at_virtual_times(self):
        start = self.io_loop.time()
        fired = {"minute": Future(), "hour": Future()}

        def at(label):
            fired[label].set_result(self.io_loop.time() - start)

        self.io_loop.call_later(3600, at, "hour")
        self.io_loop.call_later(60, at, "minute")
        self.set_ioloop_time(start + 60)
        self.assertEqual((yield fired["minute"]), 60)
        self.assertFalse(fired["hour"].done())
        self.set_ioloop_time(start + 3600)
        self.assertEqual((yield fired["hour"]), 3600)

    @tornado.testing.gen_test(timeout=5)
    def test_assigning_ioloop_time_moves_the_loops_clock(self):
        start = self.io_loop.time()
        self.assertEqual(self.ioloop_time, start)
        fired = Future()
        self.io_loop.call_later(60, lambda: fired.set_result(self.io_loop.time()))
        self.ioloop_time += 60
        self.assertEqual(self.io_loop.time(), start + 60)
        yield self.wake_ioloop()
        self.assertEqual((yield fired), start + 60)
        self.set_ioloop_time(start + 100, wake_ioloop=False)
        self.assertEqual((self.ioloop_time, self.io_loop.time()), (start + 100, start + 100))

    @tornado.testing.gen_test(timeout=10)
    def test_set_ioloop_time_from_another_thread_wakes_the_loop(self):
        # Debug mode (python -X dev) raises for a task made on the loop in another thread;
        # without it the loop slept the virtual gap in real time.
        self.io_loop.asyncio_loop.set_debug(True)
        start = self.io_loop.time()
        hour = tornado.gen.sleep(3600)
        outcome = concurrent.futures.Future()

        def advance():
            try:
                outcome.set_result(self.set_ioloop_time(start + 3600))
            except BaseException as exc:
                outcome.set_exception(exc)

        threading.Thread(target=advance, daemon=True).start()
        yield hour
        self.assertEqual(self.io_loop.time(), start + 3600)
        woken = outcome.result(5)
        self.assertIsInstance(woken, concurrent.futures.Future)
        yield woken
        # wake_ioloop too; on the loop's thread it still gives a task.
        yield _in_new_thread(self.wake_ioloop)
        self.assertIsInstance(self.wake_ioloop(), asyncio.Task)

    @tornado.testing.gen_test(timeout=5)
    def test_a_warp_in_debug_mode_is_no_slow_callback(self):
        # asyncio's debug mode (python -X dev) times callbacks with the warped clock.
        self.io_loop.asyncio_loop.set_debug(True)
        warned = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = warned.append
        logging.getLogger("asyncio").addHandler(handler)
        self.addCleanup(logging.getLogger("asyncio").removeHandler, handler)
        yield tornado.gen.moment  # the steps from here on are timed
        start = self.io_loop.time()
        later = tornado.gen.sleep(100)
        yield self.set_ioloop_time(start + 100)
        yield later
        assert [record.getMessage() for record in warned] == []

    @tornado.testing.gen_test(timeout=5)
    def test_time_advancer_started_with_cleanup(self):
        advancer = testutils.TimewarpAsyncTestCaseTimeAdvancer(self, quantum=1.0)
        testutils.start_thread_with_cleanup(self, advancer)
        start = self.io_loop.time()
        yield tornado.gen.sleep(100)
        self.assertGreaterEqual(self.io_loop.time(), start + 100)

    def test_time_advancer_queues_no_step_while_the_last_is_pending(self):
        # No gen_test: the loop stands still, so the first step stays pending.
        steps = []
        first, second = threading.Event(), threading.Event()
        add_callback = self.io_loop.add_callback

        def counting_add_callback(callback, *args, **kwargs):
            if threading.get_ident() != self.ioloop_thread_id:
                steps.append(callback)
                (second if first.is_set() else first).set()
            return add_callback(callback, *args, **kwargs)

        self.io_loop.add_callback = counting_add_callback
        advancer = testutils.TimewarpAsyncTestCaseTimeAdvancer(self)
        testutils.start_thread_with_cleanup(self, advancer)
        self.assertTrue(first.wait(5))
        # Steps are due every 50 us: 0.2 s leaves room for thousands.
        self.assertFalse(second.wait(0.2))
        start = self.io_loop.time()
        self.io_loop.run_sync(lambda: tornado.gen.sleep(1.0), timeout=5)
        self.assertGreaterEqual(self.io_loop.time(), start + 1.0)
        self.assertGreaterEqual(len(steps), 20)

    def test_time_advancer_keeps_up_in_debug_mode(self):
        # asyncio's debug mode makes each callback slower than a step of 50 us; queued
        # steps used to pile up faster than the loop ran them and the time stood still.
        self.io_loop.asyncio_loop.set_debug(True)
        advancer = testutils.TimewarpAsyncTestCaseTimeAdvancer(self)
        testutils.start_thread_with_cleanup(self, advancer)
        # A backlog that grows for ever would outlast run_sync's timeout.
        guard = threading.Timer(5, advancer.stop)
        guard.daemon = True
        guard.start()
        self.addCleanup(guard.cancel)
        start = self.io_loop.time()
        self.io_loop.run_sync(lambda: tornado.gen.sleep(2.0), timeout=10)
        self.assertGreaterEqual(self.io_loop.time(), start + 2.0)
        self.assertLessEqual(len(self.io_loop.asyncio_loop._ready), 2)

    @tornado.testing.gen_test(timeout=5)
    def test_async_waiting_mock(self):
        mock = testutils.AsyncWaitingMock()
        self.io_loop.add_callback(mock)
        self.io_loop.add_callback(mock)
        yield mock.assert_wait_call_count(2, timeout=1)
