"""The "Writing your own Server" tutorial from the reference docs, run as written.

The tutorial program is executed as printed in the reference documentation; only its
``if __name__ == "__main__"`` part is replaced by the tests (port 0 instead of 5000), and
``random`` is replaced so that the fruit picking is deterministic and immediate.
"""

import asyncio
import concurrent.futures
import re
import threading

import pytest
import tornado.gen
import tornado.ioloop

from server_line_client import LineClient

TIMEOUT = 10

# The tutorial program from the reference docs ("Writing your own Server"), with the
# indentation that the text dump of the docs lost restored; nothing else is changed.
TUTORIAL_SOURCE = '''
import threading
import time
import random

from katcp import DeviceServer, Sensor, ProtocolFlags, AsyncReply
from katcp.kattypes import (Str, Float, Timestamp, Discrete,
                            request, return_reply)

server_host = ""
server_port = 5000

class MyServer(DeviceServer):

    VERSION_INFO = ("example-api", 1, 0)
    BUILD_INFO = ("example-implementation", 0, 1, "")

    # Optionally set the KATCP protocol version and features. Defaults to
    # the latest implemented version of KATCP, with all supported optional
    # features
    PROTOCOL_INFO = ProtocolFlags(5, 0, set([
        ProtocolFlags.MULTI_CLIENT,
        ProtocolFlags.MESSAGE_IDS,
    ]))

    FRUIT = [
        "apple", "banana", "pear", "kiwi",
    ]

    def setup_sensors(self):
        """Setup some server sensors."""
        self._add_result = Sensor.float("add.result",
            "Last ?add result.", "", [-10000, 10000])
        self._time_result = Sensor.timestamp("time.result",
            "Last ?time result.", "")
        self._eval_result = Sensor.string("eval.result",
            "Last ?eval result.", "")
        self._fruit_result = Sensor.discrete("fruit.result",
            "Last ?pick-fruit result.", "", self.FRUIT)

        self.add_sensor(self._add_result)
        self.add_sensor(self._time_result)
        self.add_sensor(self._eval_result)
        self.add_sensor(self._fruit_result)

    @request(Float(), Float())
    @return_reply(Float())
    def request_add(self, req, x, y):
        """Add two numbers"""
        r = x + y
        self._add_result.set_value(r)
        return ("ok", r)

    @request()
    @return_reply(Timestamp())
    def request_time(self, req):
        """Return the current time in seconds since the Unix Epoch."""
        r = time.time()
        self._time_result.set_value(r)
        return ("ok", r)

    @request(Str())
    @return_reply(Str())
    def request_eval(self, req, expression):
        """Evaluate a Python expression."""
        r = str(eval(expression))
        self._eval_result.set_value(r)
        return ("ok", r)

    @request()
    @return_reply(Discrete(FRUIT))
    def request_pick_fruit(self, req):
        """Pick a random fruit."""
        r = random.choice(self.FRUIT + [None])
        if r is None:
            return ("fail", "No fruit.")
        delay = random.randrange(1,5)
        req.inform("Picking will take %d seconds" % delay)

        def pick_handler():
            self._fruit_result.set_value(r)
            req.reply("ok", r)

        self.ioloop.add_callback(
          self.ioloop.call_later, delay, pick_handler)

        raise AsyncReply

    def request_raw_reverse(self, req, msg):
        """
        A raw request handler to demonstrate the calling convention if
        @request decorator are not used. Reverses the message arguments.
        """
        # msg is a katcp.Message.request object
        reversed_args = msg.arguments[::-1]
        # req.make_reply() makes a katcp.Message.reply using the correct request
        # name and message ID
        return req.make_reply('ok', *reversed_args)


if __name__ == "__main__":

    server = MyServer(server_host, server_port)
    server.start()
    server.join()
'''


class FakeRandom:
    """Stands in for the random module: picks the given fruit without delay."""

    def __init__(self, fruit):
        self.fruit = fruit

    def choice(self, seq):
        return self.fruit

    def randrange(self, start, stop):
        return 0


def load_tutorial(fruit="apple", async_server=False):
    source = TUTORIAL_SOURCE
    assert 'if __name__ == "__main__":' in source
    source = source.split('if __name__ == "__main__":')[0]
    if async_server:
        # The "Writing your own Async Server" modification.
        source = source.replace("class MyServer(DeviceServer):",
                                "from katcp import AsyncDeviceServer\n"
                                "class MyServer(AsyncDeviceServer):")
    namespace = {"__name__": "tutorial"}
    exec(compile(source, "tutorial", "exec"), namespace)
    namespace["random"] = FakeRandom(fruit)
    return namespace


def check_requests(port, fruit):
    with LineClient(port, timeout=TIMEOUT) as client:
        greeting = client.readlines(3)
        assert greeting[0] == b"#version-connect katcp-protocol 5.0-IM"
        assert greeting[2] == (b"#version-connect katcp-device example-api-1.0 "
                               b"example-implementation-0.1")
        assert client.request("?add 1 2.5") == ([], "!add ok 3.5")
        informs, reply = client.request("?time")
        assert re.match(r"!time ok \d+\.\d{6}$", reply)
        assert client.request("?eval 6*7") == ([], "!eval ok 42")
        assert client.request("?raw-reverse a b c") == ([], "!raw-reverse ok c b a")
        if fruit is None:
            assert client.request("?pick-fruit") == ([], r"!pick-fruit fail No\_fruit.")
        else:
            assert client.request("?pick-fruit[3]") == (
                [r"#pick-fruit[3] Picking\_will\_take\_0\_seconds"],
                "!pick-fruit[3] ok " + fruit)
        informs, reply = client.request("?sensor-value")
        assert reply == "!sensor-value ok 4"
        values = {line.split()[3]: line.split()[4:] for line in informs}
        assert values["add.result"] == ["nominal", "3.5"]
        assert values["eval.result"] == ["nominal", "42"]
        if fruit is not None:
            assert values["fruit.result"] == ["nominal", fruit]


@pytest.mark.parametrize("fruit", ["kiwi", None])
def test_threaded_tutorial_server(fruit):
    namespace = load_tutorial(fruit)
    server = namespace["MyServer"]("127.0.0.1", 0)
    server.start()
    assert server.wait_running(TIMEOUT)
    try:
        check_requests(server.bind_address[1], fruit)
    finally:
        server.stop().result(TIMEOUT)
        server.join(TIMEOUT)


def test_async_tutorial_server():
    namespace = load_tutorial("pear", async_server=True)
    started = concurrent.futures.Future()
    shutdown = concurrent.futures.Future()

    @tornado.gen.coroutine
    def on_shutdown(ioloop, server):
        # As in the tutorial, minus the print.
        yield server.stop()
        ioloop.stop()

    def main():
        asyncio.set_event_loop(asyncio.new_event_loop())
        ioloop = tornado.ioloop.IOLoop.current()
        server = namespace["MyServer"]("127.0.0.1", 0)
        ioloop.add_callback(server.start)
        ioloop.add_callback(lambda: started.set_result(server))
        shutdown.add_done_callback(
            lambda _: ioloop.add_callback(on_shutdown, ioloop, server))
        ioloop.start()
        ioloop.close(all_fds=True)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    server = started.result(TIMEOUT)
    try:
        check_requests(server.bind_address[1], "pear")
    finally:
        shutdown.set_result(None)
        thread.join(TIMEOUT)
    assert not thread.is_alive()
