"""The server of the tutorial "Writing your own Server".

Usage: ``python examples/tutorial_server.py [PORT]`` (default 5000; 0 picks a free port and
prints it). One change from the tutorial: ``?eval`` evaluates arithmetic only, because a device
must never run code that arrives over the network.
"""

import ast
import operator
import os
import random
import sys
import time

from katcp import AsyncReply, DeviceServer, ProtocolFlags, Sensor
from katcp.kattypes import Discrete, Float, Str, Timestamp, request, return_reply

server_host = "127.0.0.1"
server_port = 5000

_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg,
    ast.UAdd: operator.pos, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
}


def safe_arithmetic(expression):
    """Evaluate numbers combined with + - * / // % ** and parentheses, nothing else."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.operand))
        raise ValueError("only arithmetic is allowed")
    return walk(ast.parse(expression, mode="eval"))


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
        """Evaluate an arithmetic expression."""
        try:
            r = str(safe_arithmetic(expression))
        except (ValueError, SyntaxError, ArithmeticError, TypeError) as exc:
            return ("fail", str(exc))
        self._eval_result.set_value(r)
        return ("ok", r)

    @request()
    @return_reply(Discrete(FRUIT))
    def request_pick_fruit(self, req):
        """Pick a random fruit."""
        r = random.choice(self.FRUIT + [None])
        if r is None:
            return ("fail", "No fruit.")
        delay = random.randrange(1, 5)
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
    if len(sys.argv) > 1:
        server_port = int(sys.argv[1])
    if "KATCP_TUTORIAL_SEED" in os.environ:
        # Lets tests replay a known fruit and delay.
        random.seed(int(os.environ["KATCP_TUTORIAL_SEED"]))
    server = MyServer(server_host, server_port)
    server.start()
    print("PORT %d" % server.bind_address[1], flush=True)
    server.join()
