"""The kattypes decorators as a client meets them: typed requests of a real device server
on 127.0.0.1, of both kinds, speaking KATCP v5 and v4, answered as the documentation of
``katcp.kattypes`` says (argument errors, each type's wire form, every handler outcome).
"""

import concurrent.futures
import queue

import pytest
import tornado.gen

from katcp import (AsyncDeviceServer, AsyncReply, DeviceClient, DeviceServer, FailReply,
                   Message, ProtocolFlags)
from katcp.kattypes import (Address, Bool, Discrete, DiscreteMulti, Float, Int, Lru, Regex,
                            Str, Struct, Timestamp, TimestampOrNow, inform, request,
                            return_reply, send_reply, unpack_message)

from server_kinds import TIMEOUT, started
from server_line_client import LineClient

_POOL = concurrent.futures.ThreadPoolExecutor(1)


class _Typed:
    """Typed request handlers, from the examples of the kattypes documentation on."""

    VERSION_INFO = ("kattypes-wire-api", 1, 0)
    BUILD_INFO = ("kattypes-wire-build", 1, 0, "")

    def setup_sensors(self):
        """No sensors."""

    @request(Int(), Float(), Bool())
    @return_reply(Int(), Float())
    def request_myreq(self, req, my_int, my_float, my_bool):
        """?myreq my_int my_float my_bool"""
        return ("ok", my_int + 1, my_float / 2.0)

    @request(Int(), include_msg=True)
    @return_reply(Bool())
    def request_is_odd(self, req, msg, my_int):
        """?is-odd <my_int>, reply '1' if <my_int> is odd, else 0"""
        req.inform("Checking oddity of %d" % my_int)
        return ("ok", my_int % 2)

    @request(Timestamp(), TimestampOrNow(default=TimestampOrNow.NOW))
    @return_reply(Timestamp(), TimestampOrNow())
    def request_when(self, req, when, then):
        """Echo times with the decorators' default version (v5: seconds)."""
        return ("ok", when, then)

    @request(Timestamp(), TimestampOrNow(default=TimestampOrNow.NOW), major=4)
    @return_reply(Timestamp(), TimestampOrNow(), major=4)
    def request_when_v4(self, req, when, then):
        """Echo times in KATCP v4 (milliseconds)."""
        return ("ok", when, then)

    @request(Discrete(["On", "off"], case_insensitive=True), DiscreteMulti(["a", "b", "c"]),
             Address(), Lru(), Struct(">H2s"), Regex(r"\d\d:\d\d"))
    @return_reply(Discrete(["On", "off"], case_insensitive=True),
                  DiscreteMulti(["a", "b", "c"]), Address(), Lru(), Struct(">H2s"), Str())
    def request_values(self, req, switch, letters, address, lru, pair, hhmm):
        """Echo one value of several types, and what the handler got."""
        seen = repr((switch, letters, address, lru, pair, hhmm))
        return ("ok", switch, letters, address, lru, pair, seen)

    @request(Int())
    @return_reply(Int())
    def request_outcome(self, req, which):
        """Reply each documented way."""
        if which == 1:
            raise FailReply("refused by raising")
        if which == 2:
            return ("fail", "refused by returning")
        if which == 3:
            return req.make_reply("ok", "made by hand")
        if which == 4:
            return _POOL.submit(lambda: ("ok", 40))
        if which == 5:
            self.ioloop.add_callback(self.finish_outcome, req, 50)
            raise AsyncReply()
        return ("ok", which)

    @send_reply(Int())
    def finish_outcome(self, req, value):
        return (req, "ok", value)

    @request(Str(), Int())
    @return_reply()
    def request_announce(self, req, fruit, count):
        """Tell every client that fruit was picked."""
        self.mass_inform(Message.inform("fruit-picked", fruit, count))
        return ("ok",)

    @request(Int())
    @return_reply(Int())
    @tornado.gen.coroutine
    def request_gen(self, req, number):
        """A tornado coroutine."""
        yield tornado.gen.moment
        if number < 0:
            raise FailReply("negative")
        return ("ok", number * 2)

    @request(Int())
    @return_reply(Int())
    async def request_coro(self, req, number):
        """An async def handler."""
        if number < 0:
            raise FailReply("negative")
        return ("ok", number * 3)


def _device_classes(major):
    flags = ProtocolFlags(major, 0, [ProtocolFlags.MULTI_CLIENT]
                          + ([ProtocolFlags.MESSAGE_IDS] if major >= 5 else []))
    threaded = type("Typed", (_Typed, DeviceServer), {"PROTOCOL_INFO": flags})
    in_loop = type("AsyncTyped", (_Typed, AsyncDeviceServer), {"PROTOCOL_INFO": flags})
    return threaded, in_loop


@pytest.fixture(scope="module",
                params=[("threaded", 5), ("async", 5), ("threaded", 4), ("async", 4)],
                ids=["threaded-v5", "async-v5", "threaded-v4", "async-v4"])
def server(request):
    kind, major = request.param
    server = started(kind, *_device_classes(major))
    yield server, major
    server.stop()
    server.join(timeout=TIMEOUT)


@pytest.fixture
def client(server):
    device, major = server
    with LineClient(device.bind_address[1], timeout=TIMEOUT) as line_client:
        line_client.readlines(3 if major >= 5 else 2)
        yield line_client


def test_the_documented_examples_reply_as_documented(client):
    assert client.request("?myreq 1 2.5 1") == ([], "!myreq ok 2 1.25")
    assert client.request("?is-odd 3") == (["#is-odd Checking\\_oddity\\_of\\_3"], "!is-odd ok 1")
    assert client.request("?is-odd 4") == (["#is-odd Checking\\_oddity\\_of\\_4"], "!is-odd ok 0")


@pytest.mark.parametrize("line, reply", [
    ("?myreq 1 2.5",
     "!myreq fail Error\\_in\\_parameter\\_3\\_(my_bool):\\_No\\_value\\_given\\_and\\_no"
     "\\_default\\_available."),
    ("?myreq 1 2.5 1 9", "!myreq fail Too\\_many\\_parameters\\_given."),
    ("?myreq x 2.5 1",
     "!myreq fail Error\\_in\\_parameter\\_1\\_(my_int):\\_Could\\_not\\_parse\\_value\\_'x'"
     "\\_as\\_integer."),
    ("?myreq 1 2.5 yes",
     "!myreq fail Error\\_in\\_parameter\\_3\\_(my_bool):\\_Could\\_not\\_parse\\_value"
     "\\_'yes'\\_as\\_boolean."),
    ("?values ON a 1:x nominal \\0\\_ab 12:34",
     "!values fail Error\\_in\\_parameter\\_3\\_(address):\\_Could\\_not\\_parse\\_value"
     "\\_'1:x'\\_as\\_address."),
    ("?values x a h nominal \\0\\_ab 12:34",
     "!values fail Error\\_in\\_parameter\\_1\\_(switch):\\_Discrete\\_value\\_'x'\\_is\\_not"
     "\\_one\\_of\\_On,\\_off."),
    ("?values on a,d h nominal \\0\\_ab 12:34",
     "!values fail Error\\_in\\_parameter\\_2\\_(letters):\\_Discrete\\_value\\_'d'\\_is"
     "\\_not\\_one\\_of\\_a,\\_b,\\_c."),
    ("?values on a h nominal \\0\\_ab 1:34",
     "!values fail Error\\_in\\_parameter\\_6\\_(hhmm):\\_Value\\_'1:34'\\_does\\_not\\_match"
     "\\_regex\\_'\\\\d\\\\d:\\\\d\\\\d'."),
], ids=["missing", "too-many", "bad-int", "bad-bool", "bad-address", "bad-discrete",
        "bad-discrete-multi", "bad-regex"])
def test_argument_errors_are_fail_replies_naming_the_parameter(client, line, reply):
    assert client.request(line) == ([], reply)


def test_each_type_has_its_documented_wire_form(client):
    # Case-insensitive discretes keep the case sent; "all" is every value; an IPv6 host
    # is bracketed; a Struct is its packed bytes (escaped on the wire).
    assert client.request("?values ON all [::1]:80 error \\0\\_ab 12:34:56") == ([], (
        "!values ok ON a,b,c [::1]:80 error \\0\\_ab ('ON',\\_['a',\\_'b',\\_'c'],"
        "\\_('::1',\\_80),\\_1,\\_(32,\\_b'ab'),\\_'12:34:56')"))
    assert client.request("?values off b,\\_a 10.0.0.1 nominal \\0\\_ab 00:00") == ([], (
        "!values ok off b,a 10.0.0.1 nominal \\0\\_ab ('off',\\_['b',\\_'a'],"
        "\\_('10.0.0.1',\\_None),\\_0,\\_(32,\\_b'ab'),\\_'00:00')"))


def test_times_follow_the_version_the_decorators_are_given_not_the_servers(client):
    # The decorators default to KATCP v5 (seconds) on any server; major=4 is milliseconds.
    assert client.request("?when 1234.5") == ([], "!when ok 1234.500000 now")
    assert client.request("?when 1234.5 12.25") == ([], "!when ok 1234.500000 12.250000")
    assert client.request("?when-v4 1234500") == ([], "!when-v4 ok 1234500 now")
    assert client.request("?when-v4 1234500 12250") == ([], "!when-v4 ok 1234500 12250")


@pytest.mark.parametrize("line, reply", [
    ("?outcome 0", "!outcome ok 0"),
    ("?outcome 1", "!outcome fail refused\\_by\\_raising"),
    ("?outcome 2", "!outcome fail refused\\_by\\_returning"),
    ("?outcome 3", "!outcome ok made\\_by\\_hand"),
    ("?outcome 4", "!outcome ok 40"),
    ("?outcome 5", "!outcome ok 50"),
    ("?gen 2", "!gen ok 4"),
    ("?gen -1", "!gen fail negative"),
    ("?coro 2", "!coro ok 6"),
    ("?coro -1", "!coro fail negative"),
], ids=["tuple", "raise-fail", "fail-tuple", "message", "concurrent-future",
        "async-reply-send-reply", "gen-coroutine", "gen-coroutine-fail", "async-def",
        "async-def-fail"])
def test_every_documented_handler_outcome_is_replied(client, line, reply):
    assert client.request(line) == ([], reply)


class _Listener(DeviceClient):
    """A client whose inform and reply handlers are decorated as the documentation shows."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.heard = queue.Queue()

    @inform(Str(), Int())
    def inform_fruit_picked(self, fruit, count):
        self.heard.put(("inform", fruit, count))

    @unpack_message(Str(), include_msg=True)
    def reply_announce(self, msg, status):
        self.heard.put(("reply", msg.name, status))


def test_a_clients_decorated_handlers_get_the_typed_values(server):
    device, _ = server
    listener = _Listener("127.0.0.1", device.bind_address[1])
    listener.start(timeout=TIMEOUT)
    try:
        assert listener.wait_connected(TIMEOUT)
        listener.ioloop.add_callback(listener.send_request,
                                     Message.request("announce", "apple", 3))
        # The inform is sent before the reply, on the one connection.
        assert listener.heard.get(timeout=TIMEOUT) == ("inform", "apple", 3)
        assert listener.heard.get(timeout=TIMEOUT) == ("reply", "announce", "ok")
    finally:
        listener.stop()
        listener.join(timeout=TIMEOUT)
