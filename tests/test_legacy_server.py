"""Device-server behaviour that katcp 0.9 code and test suites rely on (issue 12).

Each behaviour is checked where a user meets it: over a real socket on 127.0.0.1, or
through the documented method a 0.9 test suite calls.
"""

import concurrent.futures
import socket
import threading

import pytest

from katcp import BlockingClient
from katcp.core import FailReply, Message, ProtocolFlags, Sensor
from katcp.server import (AsyncDeviceServer, ClientConnection, ClientRequestConnection,
                          DeviceServer, KATCPServer)
from katcp.testutils import ClientConnectionTest, mock_req

from server_line_client import LineClient

pytestmark = pytest.mark.timeout(60)

WAIT = 10


class Device(DeviceServer):
    """A v5 device with one integer sensor and handlers that return thread futures."""

    VERSION_INFO = ("legacy-api", 1, 0)
    BUILD_INFO = ("legacy-impl", 1, 0, "")

    def __init__(self, *args, **kwargs):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self.release = threading.Event()
        super().__init__(*args, **kwargs)

    def setup_sensors(self):
        self.level = Sensor.integer("level", "A level.", "", [0, 100], default=7)
        self.add_sensor(self.level)

    def request_pooled(self, req, msg):
        """Compute in a thread pool once released; reply with the result."""
        def work():
            if not self.release.wait(WAIT):
                raise RuntimeError("never released")
            return req.make_reply("ok", int(msg.arguments[0]) * 2)
        return self.pool.submit(work)

    def request_pooled_fail(self, req, msg):
        """A thread-pool future that raises FailReply."""
        def work():
            raise FailReply("no can do")
        return self.pool.submit(work)

    def request_pooled_error(self, req, msg):
        """A thread-pool future that raises some other exception."""
        def work():
            raise ValueError("pool exploded")
        return self.pool.submit(work)

    def request_from_loop(self, req, msg):
        """A concurrent future resolved later by the ioloop itself."""
        done = concurrent.futures.Future()
        self.ioloop.add_callback(done.set_result, req.make_reply("ok", "from-loop"))
        return done

    def stop(self, *args, **kwargs):
        self.release.set()
        self.pool.shutdown(wait=False)
        return super().stop(*args, **kwargs)


class V4Device(DeviceServer):
    """A KATCP v4 device."""

    PROTOCOL_INFO = ProtocolFlags(4, 0, {ProtocolFlags.MULTI_CLIENT})

    def setup_sensors(self):
        self.add_sensor(Sensor.integer("level", "A level.", "", [0, 100], default=7))


class AsyncDevice(AsyncDeviceServer, Device):
    """The same device with everything on the ioloop."""


def start(server):
    assert server.start(timeout=WAIT)
    return server.bind_address[1]


def stop(server):
    server.stop().result(WAIT)
    server.join(timeout=WAIT)


@pytest.fixture(params=["DeviceServer", "AsyncDeviceServer"])
def device(request, loop_manager):
    if request.param == "DeviceServer":
        server = Device("127.0.0.1", 0)
    else:
        server = AsyncDevice("127.0.0.1", 0)
        server.set_ioloop(loop_manager.get_ioloop())
    start(server)
    yield server
    stop(server)


def connect(port, greeting=3):
    client = LineClient(port, timeout=WAIT)
    client.readlines(greeting)
    return client


# -- #interface-changed is opt-in ------------------------------------------------------------


def test_add_and_remove_sensor_send_no_interface_changed_by_default(device):
    with connect(device.bind_address[1]) as client:
        device.add_sensor(Sensor.boolean("extra", "Extra.", ""))
        device.remove_sensor("extra")
        # An #interface-changed would be queued on the loop before the request arrives.
        assert client.request("?watchdog") == ([], "!watchdog ok")


def test_send_interface_changed_attribute_switches_it_on(device):
    device.SEND_INTERFACE_CHANGED = True
    with connect(device.bind_address[1]) as client:
        device.add_sensor(Sensor.boolean("extra", "Extra.", ""))
        assert client.readline() == b"#interface-changed sensor-list"
        device.remove_sensor("extra")
        assert client.readline() == b"#interface-changed sensor-list"


def test_send_interface_changed_is_documented():
    assert "SEND_INTERFACE_CHANGED" in DeviceServer.__doc__
    assert DeviceServer.SEND_INTERFACE_CHANGED is False


# -- handlers returning concurrent.futures.Future --------------------------------------------


def test_thread_pool_future_is_replied_when_it_resolves(device):
    with connect(device.bind_address[1]) as client, \
            connect(device.bind_address[1]) as other:
        client.send("?pooled 21")
        # While the pool works the server goes on serving (this connection waits for its
        # reply, as requests on one connection are handled in turn).
        assert other.request("?watchdog") == ([], "!watchdog ok")
        device.release.set()
        assert client.readline() == b"!pooled ok 42"
        assert client.request("?watchdog") == ([], "!watchdog ok")


def test_thread_pool_future_failures_become_fail_replies(device):
    with connect(device.bind_address[1]) as client:
        assert client.request("?pooled-fail") == ([], r"!pooled-fail fail no\_can\_do")
        _, reply = client.request("?pooled-error")
        assert reply.startswith(r"!pooled-error fail Traceback")
        assert reply.endswith(r"ValueError:\_pool\_exploded\n")


def test_future_resolved_from_the_ioloop_is_replied(device):
    with connect(device.bind_address[1]) as client:
        assert client.request("?from-loop[3]") == ([], "!from-loop[3] ok from-loop")


# -- a restarted server keeps its port -------------------------------------------------------


class _ConnectionCounter(BlockingClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connects = threading.Semaphore(0)

    def notify_connected(self, connected):
        if connected:
            self.connects.release()


def test_restarted_server_listens_on_the_same_port_and_clients_come_back():
    server = Device("127.0.0.1", 0)
    port = start(server)
    client = _ConnectionCounter("127.0.0.1", port, auto_reconnect=True)
    client.start(timeout=WAIT)
    try:
        assert client.connects.acquire(timeout=WAIT)
        stop(server)
        assert start(server) == port
        assert client.connects.acquire(timeout=WAIT)
        reply, _ = client.blocking_request(Message.request("watchdog"), timeout=WAIT)
        assert reply.reply_ok()
    finally:
        client.stop()
        client.join(WAIT)
        stop(server)


def test_katcp_server_remembers_the_bound_port():
    server = Device("127.0.0.1", 0)
    transport = server._server
    assert isinstance(transport, KATCPServer)
    port = start(server)
    stop(server)
    assert start(server) == port
    stop(server)


# -- sampling and the v4 dialect ---------------------------------------------------------------


def test_differential_zero_is_refused(device):
    with connect(device.bind_address[1]) as client:
        _, reply = client.request("?sensor-sampling level differential 0")
        assert reply.startswith("!sensor-sampling fail ")
        assert "positive" in reply
        assert client.request("?sensor-sampling level") == (
            [], "!sensor-sampling ok level none")


def test_v4_server_has_no_version_list_and_no_rate_strategies():
    server = V4Device("127.0.0.1", 0)
    port = start(server)
    try:
        with connect(port, greeting=2) as client:
            assert client.request("?version-list") == (
                [], r"!version-list invalid Unknown\_request.")
            informs, reply = client.request("?help")
            assert not [line for line in informs if line.startswith("#help version-list ")]
            assert reply == "!help ok %d" % len(informs)
            for strategy in ("event-rate 1000 2000", "differential-rate 1 1000 2000"):
                name = strategy.split()[0]
                assert client.request("?sensor-sampling level " + strategy) == (
                    [], r"!sensor-sampling fail Strategy\_%s\_not\_allowed\_for\_version"
                        r"\_4\_of\_katcp" % name)
            assert client.request("?sensor-sampling level period 1000")[1] == (
                "!sensor-sampling ok level period 1000")
    finally:
        stop(server)


def test_only_katcp_4_and_5_servers_can_be_made():
    for major in (3, 6):
        bad = type("Bad", (V4Device,), {
            "PROTOCOL_INFO": ProtocolFlags(major, 0, {ProtocolFlags.MULTI_CLIENT})})
        with pytest.raises(ValueError, match="major version"):
            bad("127.0.0.1", 0)


def test_request_sensor_sampling_called_from_a_thread_returns_a_future(device):
    conn = ClientConnectionTest()
    req = mock_req("sensor-sampling", "level", "event", client_conn=conn)
    reply = device.request_sensor_sampling(req, req.msg).result(timeout=WAIT)
    assert str(reply) == "!sensor-sampling ok level event"
    conn.inform.assert_wait_call_count(1, timeout=WAIT)
    assert conn.messages[0].name == "sensor-status"
    req = mock_req("sensor-sampling", "nothing.here", "event", client_conn=conn)
    with pytest.raises(FailReply):
        device.request_sensor_sampling(req, req.msg).result(timeout=WAIT)
    req = mock_req("sensor-sampling-clear", client_conn=conn)
    done = device.handle_message(conn, req.msg)
    done.result(timeout=WAIT)
    assert str(conn.messages[-1]) == "!sensor-sampling-clear ok"


# -- closing connections ----------------------------------------------------------------------


def read_to_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_overlong_line_gets_disconnect_and_nothing_after_it(device):
    device._server.MAX_MSG_SIZE = 1000
    sock = socket.create_connection(device.bind_address, timeout=WAIT)
    with sock:
        sock.sendall(b"?watchdog " + b"x" * 2000)
        data = read_to_eof(sock)
    assert data.endswith(b"\n#disconnect Message\\_exceeds\\_maximum\\_size\\_of\\_1000\\_bytes.\n")


def test_orderly_close_still_ends_with_an_empty_line(device):
    sock = socket.create_connection(device.bind_address, timeout=WAIT)
    with sock:
        sock.sendall(b"?halt\n")
        data = read_to_eof(sock)
    assert data.endswith(b"!halt ok\n#disconnect Device\\_server\\_shutting\\_down.\n\n")


def test_closing_a_connection_from_the_server_side(device):
    with connect(device.bind_address[1]) as client:
        conn = next(iter(device._server._connections))
        device.ioloop.add_callback(conn.close)
        assert client.sock.recv(100) == b""
    device.sync_with_ioloop(timeout=WAIT)


def test_client_that_stops_reading_is_dropped_while_its_requests_are_handled(device):
    device._server.MAX_WRITE_BUFFER_SIZE = 16384
    with connect(device.bind_address[1]) as client:
        lazy = socket.create_connection(device.bind_address, timeout=WAIT)
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.settimeout(0.5)
        try:
            lazy.sendall(b"?help\n" * 200000)
        except (socket.timeout, ConnectionError):
            pass  # the server stopped reading from or dropped the lazy client
        finally:
            lazy.close()
        informs, reply = client.request("?help")
        assert reply == "!help ok %d" % len(informs)


# -- error texts -------------------------------------------------------------------------------


def test_non_ascii_name_in_an_error_text_is_utf8_once(device):
    with connect(device.bind_address[1]) as client:
        client.send_raw("?café\n".encode("utf-8"))
        line = client.readline()
    assert line.startswith(b"#log error ")
    assert "'café'".encode("utf-8") in line
    assert b"\xc3\x83" not in line


def test_tracebacks_end_with_a_newline(device):
    with connect(device.bind_address[1]) as client:
        client.send("bad line")
        assert client.readline().endswith(rb"Bad\_type\_character\_'b'.\n")


# -- connection objects ------------------------------------------------------------------------


class _Transport:
    """Stands in for KATCPServer: records what a ClientConnection sends."""

    def __init__(self):
        self.sent = []

    def get_address(self, conn_id):
        return "test:1"

    def send_message(self, conn_id, msg):
        self.sent.append(msg)


def test_reply_and_reply_inform_must_answer_the_request_by_name():
    transport = _Transport()
    conn = ClientConnection(transport, object())
    req = Message.request("ask", mid=4)
    with pytest.raises(ValueError):
        conn.reply(Message.reply("other", "ok"), req)
    with pytest.raises(ValueError):
        conn.reply_inform(Message.inform("other"), req)
    assert transport.sent == []
    conn.reply_inform(Message.inform("ask", "x"), req)
    conn.reply(Message.reply("ask", "ok"), req)
    assert [str(msg) for msg in transport.sent] == ["#ask[4] x", "!ask[4] ok"]


def test_request_informs_go_through_the_connection_inform():
    conn = ClientConnectionTest()
    req = ClientRequestConnection(conn, Message.request("ask", mid=9))
    req.inform("part")
    req.reply("ok")
    assert conn.inform.call_count == 1
    assert [str(msg) for msg in conn.messages] == ["#ask[9] part", "!ask[9] ok"]


def test_server_inform_handlers_need_docstrings():
    with pytest.raises(AssertionError):
        type("Undocumented", (DeviceServer,), {"inform_note": lambda self, conn, msg: None})

    class Documented(DeviceServer):
        def inform_note(self, conn, msg):
            """Take note."""

    assert "note" in Documented._inform_handlers


def test_timewarp_helpers_give_futures_and_the_loop_thread():
    # wake_ioloop() and set_ioloop_time() give futures that a test coroutine can yield.
    from katcp.testutils import TimewarpAsyncTestCase

    class Case(TimewarpAsyncTestCase):
        def runTest(self):
            fired = []
            self.io_loop.call_at(self.ioloop_time + 5, fired.append, True)
            self.io_loop.run_sync(lambda: self.set_ioloop_time(self.ioloop_time + 5))
            assert fired == [True]
            assert self.ioloop_thread_id == threading.get_ident()

    case = Case()
    case.setUp()
    try:
        case.runTest()
    finally:
        case.tearDown()
