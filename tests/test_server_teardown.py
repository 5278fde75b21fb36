"""A server on a tornado test case's loop, stopped as the test ends: nothing is left behind."""

import gc
import io
import logging
import select
import socket
import struct
import unittest
import warnings

import pytest
import tornado.gen
import tornado.testing

from katcp.ioloop_manager import IOLoopManager

from test_server import CONCURRENCY, TIMEOUT, ExampleServer
from wait_helpers import outcome_in_thread, run_case_for_leftovers


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


class _LogTexts(logging.Handler):
    """The texts logged (only: a record's traceback would keep its frames alive)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.texts = []

    def emit(self, record):
        self.texts.append("%s %s: %s" % (record.levelname, record.name, record.getMessage()))


def test_a_stop_in_a_cleanup_after_the_teardown_closed_the_loop_does_nothing():
    # addCleanup(server.stop): cleanups run after tearDown, which closed the test's loop.
    # The stop fails at once as nothing can run there any more; it used to start the
    # shutdown there anyway, logging an error and leaving two coroutines never awaited.
    stops = []

    class StoppedInCleanup(tornado.testing.AsyncTestCase):
        @tornado.testing.gen_test(timeout=TIMEOUT)
        def test_serve(self):
            server = _server_on(self.io_loop)
            self.addCleanup(lambda: stops.append(server.stop()))
            yield tornado.gen.moment

    logged = _LogTexts()
    logging.getLogger().addHandler(logged)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = unittest.TextTestRunner(stream=io.StringIO()).run(
                unittest.defaultTestLoader.loadTestsFromTestCase(StoppedInCleanup))
            (stopped,) = stops
            assert isinstance(stopped.exception(0), RuntimeError)
            del stopped, stops[:]
            gc.collect()  # what the stop left unawaited is reported by now
    finally:
        logging.getLogger().removeHandler(logged)
    assert result.wasSuccessful(), result.errors + result.failures
    assert [str(w.message) for w in caught] == []
    assert logged.texts == []


def _running_manager():
    manager = IOLoopManager()
    manager.get_ioloop()
    assert manager.start(timeout=TIMEOUT)
    return manager


@pytest.mark.parametrize("kind", sorted(CONCURRENCY))
def test_a_server_whose_shared_loop_was_closed_first_is_stopped_by_stop(kind):
    # A program's (or a fixture's) shutdown in this order: the loop's manager first, then
    # server.stop(); server.join(). The server stayed "running", and join() waited for
    # ever on a stop that no thread could run.
    manager = _running_manager()
    server = ExampleServer("127.0.0.1", 0)
    server.set_concurrency_options(**CONCURRENCY[kind])
    server.set_ioloop(manager.get_ioloop())
    assert server.start(timeout=TIMEOUT)
    with socket.create_connection(server.bind_address, timeout=TIMEOUT) as peer:
        with peer.makefile("rb") as lines:
            assert lines.readline().startswith(b"#version-connect")  # connected
            peer.sendall(b"?sensor-sampling an.int event\n")
            assert next(line for line in lines if line.startswith(b"!")) == (
                b"!sensor-sampling ok an.int event\n")
            manager.stop().result(TIMEOUT)
            manager.join(TIMEOUT)
            # As any call to a closed loop.
            assert isinstance(server.stop().exception(0), RuntimeError)
            assert not server.running()
            # The device has forgotten the client, and its strategies with it.
            assert server._strategies == {}
            assert not server.int_sensor._observers
            # The rest of the greeting, then the end (not a wait for more, which times out).
            assert all(line.startswith(b"#version-connect") for line in lines)
    with socket.socket() as port_user:
        port_user.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port_user.bind(server.bind_address)  # the port is free
    assert outcome_in_thread(server.join).result(TIMEOUT) is None
    # Stopped: it may be started again, on a loop that runs.
    manager = _running_manager()
    try:
        server.set_ioloop(manager.get_ioloop())
        assert server.start(timeout=TIMEOUT)
        with socket.create_connection(server.bind_address, timeout=TIMEOUT) as client:
            client.sendall(b"?watchdog\n?client-list\n")
            with client.makefile("rb") as lines:
                assert next(line for line in lines if not line.startswith(b"#")) == (
                    b"!watchdog ok\n")
                # Only this client: none left over from the loop that was closed.
                assert next(line for line in lines if not line.startswith(b"#")) == (
                    b"!client-list ok 1\n")
    finally:
        server.stop().result(TIMEOUT)
        server.join(TIMEOUT)
        manager.stop().result(TIMEOUT)
        manager.join(TIMEOUT)
        del server
        with warnings.catch_warnings():
            # Here rather than in a later test: the connection's transport, left on the
            # closed loop, whose socket only its collection closes.
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_a_stop_on_a_closed_loop_tells_the_device_of_each_client_even_one_reset():
    # The device hears of every client it had, as no longer to be sent to; a client
    # that reset its connection meanwhile (whose socket cannot be shut down) is one, and
    # so is the next after the device failed to hear of one.
    told = []

    class Told(ExampleServer):
        def on_client_disconnect(self, client_conn, msg, connection_valid):
            told.append((msg, connection_valid))
            if len(told) == 1:
                raise RuntimeError("Failed to hear of it.")
            return super().on_client_disconnect(client_conn, msg, connection_valid)

    manager = _running_manager()
    server = Told("127.0.0.1", 0, logger=logging.getLogger("katcp.test.closed_loop"))
    server.set_concurrency_options(**CONCURRENCY["async"])
    server.set_ioloop(manager.get_ioloop())
    assert server.start(timeout=TIMEOUT)
    try:
        with socket.create_connection(server.bind_address, timeout=TIMEOUT) as stays, \
                socket.create_connection(server.bind_address, timeout=TIMEOUT) as resets:
            for peer in (stays, resets):
                with peer.makefile("rb") as lines:
                    assert lines.readline().startswith(b"#version-connect")  # connected
            addresses = [peer.getsockname() for peer in (stays, resets)]
            manager.stop().result(TIMEOUT)
            manager.join(TIMEOUT)
            resets.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            resets.close()
            logged = _LogTexts()
            server_log = logging.getLogger("katcp.test.closed_loop")  # the one given
            server_log.addHandler(logged)
            server_log.propagate = False  # a record's traceback holds a connection
            try:
                assert isinstance(server.stop().exception(0), RuntimeError)
            finally:
                server_log.propagate = True
                server_log.removeHandler(logged)
            assert not server.running()
            assert told == [("Device server shutting down.", False)] * 2
            assert logged.texts in [[
                "ERROR katcp.test.closed_loop: Error in on_client_disconnect for %s:%d"
                % address] for address in addresses]
            while stays.recv(4096):  # up to the shutdown (a socket timeout otherwise)
                pass
    finally:
        del server
        with warnings.catch_warnings():
            # The connections' transports, left on the closed loop (as above).
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
