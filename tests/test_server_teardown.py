"""A server on a tornado test case's loop, stopped as the test ends: nothing is left behind."""

import select
import socket

import tornado.gen
import tornado.testing

from test_server import CONCURRENCY, TIMEOUT, ExampleServer
from wait_helpers import run_case_for_leftovers


def _server_on(io_loop):
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY["async"])
    server.set_ioloop(io_loop)
    server.start()
    return server


def test_a_connection_accepted_in_the_loops_last_turn_is_closed_by_the_teardown():
    # The last turn of the test's loop accepted a connection whose setup had not started
    # when tearDown stopped the server and the teardown cancelled what was pending (the
    # setup and the stop with it): the accepted socket was left open.
    peers = []

    class AcceptedLast(tornado.testing.AsyncTestCase):
        def setUp(self):
            super().setUp()
            self.server = _server_on(self.io_loop)

        @tornado.testing.gen_test(timeout=TIMEOUT)
        def test_serve(self):
            yield tornado.gen.moment  # the server is installed

        def tearDown(self):
            transport = self.server._server
            peers.append(socket.create_connection(self.server.bind_address, timeout=TIMEOUT))
            assert select.select([transport._listener], [], [], TIMEOUT)[0]
            # What the loop does when the listener is readable, as in its last turn.
            transport._accept_ready()
            assert len(transport._accepting) == 1
            self.server.stop()
            super().tearDown()

    try:
        result, resource_warnings = run_case_for_leftovers(AcceptedLast)
        assert result.wasSuccessful(), result.errors + result.failures
        assert resource_warnings == []
        (peer,) = peers
        assert peer.recv(1) == b""  # the server has closed its end
    finally:
        for peer in peers:
            peer.close()
