"""katcp-web without a browser: what its websocket and HTTP side let through, and what not.

The device is the example server (in this process, on its own thread); katcp-web runs on the
test's own loop and is spoken to with tornado's HTTP and websocket clients, over 127.0.0.1.
The page as a browser shows it is tested in test_web_browser.py.
"""

import asyncio
import json
import math
import socket

import pytest
import tornado.httpclient
import tornado.websocket

import katcp.web.app
from katcp import Message, ProtocolFlags, Sensor
from katcp.scripts.exampleserver import ExampleServer
from katcp.web import WebServer
from katcp.web.app import allowed_hosts, is_loopback
from katcp.web.monitor import json_value

from log_helpers import no_logs
from subprocess_helpers import BackgroundProcess, run_program

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


@pytest.fixture
def device():
    server = ExampleServer("127.0.0.1", 0)
    server.start(timeout=WAIT)
    yield server
    stop_server(server)


def device_address(server):
    return server.bind_address[:2]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def open_page_socket(web, origin="same", host=None):
    """Connect to the page websocket as a browser page of ``origin`` would."""
    headers = {}
    if origin == "same":
        origin = "http://127.0.0.1:%d" % web.port
    if origin is not None:
        headers["Origin"] = origin
    if host is not None:
        headers["Host"] = host
    request = tornado.httpclient.HTTPRequest("ws://127.0.0.1:%d/ws" % web.port,
                                             headers=headers)
    return await tornado.websocket.websocket_connect(request)


async def next_message(conn, predicate=lambda message: True, timeout=WAIT):
    """The next message from katcp-web for which ``predicate`` holds."""
    async def wait():
        while True:
            text = await conn.read_message()
            assert text is not None, "katcp-web closed the websocket"
            message = json.loads(text)
            if predicate(message):
                return message
    return await asyncio.wait_for(wait(), timeout)


def synced_snapshot(message):
    return message["type"] == "snapshot" and message["synced"]


async def started(device, control=False):
    web = WebServer(device_address(device), listen=("127.0.0.1", 0), control=control)
    web.start()
    return web


def test_page_first_says_what_it_may_do_then_shows_every_sensor(device):
    async def scenario():
        web = await started(device)
        try:
            conn = await open_page_socket(web)
            first = await next_message(conn)
            assert first == {"type": "page", "control": False}
            snapshot = await next_message(conn, synced_snapshot)
            names = [s["name"] for s in snapshot["sensors"]]
            assert names == sorted(s.name for s in device.get_sensors())
            temperature = next(s for s in snapshot["sensors"]
                               if s["name"] == "ambient.temperature")
            assert temperature["units"] == "degC"
            assert temperature["description"] == "Air temperature near the device."
            assert "add" in [r["name"] for r in snapshot["requests"]]
            assert snapshot["connection"]["state"] == "synced"
            assert snapshot["connection"]["reconnects"] == 0
            assert snapshot["identity"]["protocol"] == "5.0"
            assert "multi-client" in snapshot["identity"]["flags"]
            conn.close()
        finally:
            web.stop()
    run(scenario())


class V4Server(ExampleServer):
    PROTOCOL_INFO = ProtocolFlags(4, 0, "")


def test_a_v4_device_shows_the_versions_and_protocol_of_its_greeting():
    device = V4Server("127.0.0.1", 0)
    device.start(timeout=WAIT)

    async def scenario():
        web = await started(device)
        try:
            conn = await open_page_socket(web)
            snapshot = await next_message(conn, synced_snapshot)
            identity = snapshot["identity"]
            assert identity["protocol"] == "4.0" and identity["flags"] == []
            names = [fields[0] for fields in identity["versions"]]
            assert names == ["katcp-device-version", "katcp-device-build-state"]
            conn.close()
        finally:
            web.stop()
    try:
        run(scenario())
    finally:
        stop_server(device)


def test_a_sensor_change_reaches_every_open_page(device):
    async def scenario():
        web = await started(device)
        try:
            pages = [await open_page_socket(web) for _ in range(3)]
            for conn in pages:
                await next_message(conn, synced_snapshot)
            device.get_sensor("add.result").set_value(1234.5, Sensor.WARN)

            def carries_it(message):
                readings = message.get("readings", {}).get("add.result", [])
                return any(r[1:] == ["warn", 1234.5] for r in readings)

            for conn in pages:
                await next_message(conn, carries_it)
                conn.close()
        finally:
            web.stop()
    run(scenario())


def test_cross_site_websocket_is_refused(device):
    async def scenario():
        web = await started(device, control=True)
        try:
            for origin in ("http://evil.example", "http://127.0.0.1:%d.evil.example" % web.port,
                           "null", "file://"):
                with pytest.raises(tornado.httpclient.HTTPClientError) as err:
                    await open_page_socket(web, origin=origin)
                assert err.value.code == 403, origin
        finally:
            web.stop()
    run(scenario())


def test_foreign_host_name_is_refused_on_loopback(device):
    # A page of a site whose name was rebound to 127.0.0.1 sends its own name as Host.
    async def scenario():
        web = await started(device, control=True)
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            url = "http://127.0.0.1:%d/" % web.port
            with pytest.raises(tornado.httpclient.HTTPClientError) as err:
                await client.fetch(url, headers={"Host": "evil.example:%d" % web.port})
            assert err.value.code == 403
            with pytest.raises(tornado.httpclient.HTTPClientError) as err:
                await open_page_socket(web, origin="http://evil.example:%d" % web.port,
                                       host="evil.example:%d" % web.port)
            assert err.value.code == 403
            page = await client.fetch(url, headers={"Host": "localhost:%d" % web.port})
            assert b"katcp-web" in page.body
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["X-Frame-Options"] == "DENY"
        finally:
            client.close()
            web.stop()
    run(scenario())


def test_without_control_a_request_message_is_refused_and_not_sent(device):
    async def scenario():
        web = await started(device, control=False)
        try:
            conn = await open_page_socket(web)
            await next_message(conn, synced_snapshot)
            conn.write_message(json.dumps(
                {"type": "request", "id": 7, "name": "add", "arguments": ["100", "200"]}))
            answer = await next_message(conn, lambda m: m.get("id") == 7)
            assert answer["type"] == "refused"
            assert "--control" in answer["reason"]
            # A request the device did get would show up on its sensor: ask it directly.
            async_reply = await web.monitor.resource.req.sensor_value("add.result")
            assert async_reply.informs[0].arguments[-1] != b"300.0"
            conn.close()
        finally:
            web.stop()
    run(scenario())


def test_with_control_a_request_shows_its_informs_and_reply(device):
    async def scenario():
        web = await started(device, control=True)
        try:
            conn = await open_page_socket(web)
            assert (await next_message(conn))["control"] is True
            await next_message(conn, synced_snapshot)
            conn.write_message(json.dumps(
                {"type": "request", "id": 1, "name": "add", "arguments": ["3", "4"]}))
            answer = await next_message(conn, lambda m: m.get("id") == 1)
            assert answer["type"] == "reply" and answer["ok"] is True
            assert answer["reply"] == {"name": "add", "mtype": "!", "arguments": ["ok", "7.0"]}
            conn.write_message(json.dumps(
                {"type": "request", "id": 2, "name": "help", "arguments": ["add"]}))
            answer = await next_message(conn, lambda m: m.get("id") == 2)
            assert answer["informs"] == [
                {"name": "help", "mtype": "#", "arguments": ["add", "Add two numbers."]}]
            conn.write_message(json.dumps(
                {"type": "request", "id": 3, "name": "no-such-request", "arguments": []}))
            answer = await next_message(conn, lambda m: m.get("id") == 3)
            assert answer["type"] == "error" and "no request" in answer["error"]
            conn.write_message(json.dumps(
                {"type": "request", "id": 4, "name": "add", "arguments": [1, 2]}))
            answer = await next_message(conn, lambda m: m.get("id") == 4)
            assert answer == {"type": "error", "id": 4, "error": "malformed request"}
            conn.close()
        finally:
            web.stop()
    run(scenario())


def test_device_going_away_and_back_is_shown_then_resynced(device):
    address = device_address(device)

    async def scenario():
        web = WebServer(address, listen=("127.0.0.1", 0))
        web.start()
        second = None
        try:
            conn = await open_page_socket(web)
            await next_message(conn, synced_snapshot)
            await asyncio.get_running_loop().run_in_executor(None, stop_server, device)
            lost = await next_message(conn, lambda m: m["type"] == "connection")
            assert lost["connection"]["state"] == "disconnected"
            second = ExampleServer(*address)
            second.start(timeout=WAIT)
            snapshot = await next_message(conn, synced_snapshot)
            assert snapshot["connection"]["reconnects"] == 1
            assert [s["name"] for s in snapshot["sensors"]] == sorted(
                s.name for s in second.get_sensors())
            conn.close()
        finally:
            web.stop()
            if second is not None:
                stop_server(second)
    run(scenario())


def test_a_device_resyncing_again_and_again_leaves_no_waits_behind(device):
    # katcp-web follows its resource's state with a wait for what comes next and one for
    # a disconnect; each resync of the device left the latter registered on the
    # resource, where they piled up until the device went away.
    def waits_on(resource):
        return sum(len(event._waiters) for event in resource._state._events.values())

    async def scenario():
        web = await started(device)
        resource = web.monitor.resource
        try:
            conn = await open_page_socket(web)
            await next_message(conn, synced_snapshot)
            settled = waits_on(resource)
            for _ in range(5):
                resyncing = resource.until_state("syncing", timeout=WAIT)
                device.mass_inform(Message.inform("interface-changed", "sensor-list"))
                await resyncing
                await next_message(conn, synced_snapshot)
            assert waits_on(resource) == settled
            conn.close()
        finally:
            web.stop()
    run(scenario())


def stop_server(server):
    if server.running():
        server.stop(timeout=WAIT)
    server.join(timeout=WAIT)


@pytest.mark.parametrize("value, expected", [
    (1.5, 1.5), (3, 3), (True, True), (None, None), ("on", "on"),
    (float("nan"), "nan"), (float("inf"), "inf"), (("10.0.0.1", 7147), "10.0.0.1:7147"),
    (b"\xffraw", "\ufffdraw"),
])
def test_sensor_values_become_json_that_says_the_same(value, expected):
    converted = json_value(value)
    assert json.loads(json.dumps(converted, allow_nan=False)) == expected
    assert not (isinstance(converted, float) and math.isnan(converted))


def test_host_checks_apply_only_to_loopback_listeners():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert allowed_hosts("127.0.0.1", 8080) == {
        "localhost:8080", "127.0.0.1:8080", "[::1]:8080"}
    assert allowed_hosts("0.0.0.0", 8080) is None


def test_program_serves_loopback_only_by_default(device):
    web = BackgroundProcess(["-m", "katcp.scripts.web", "%s:%d" % device_address(device),
                             "--listen", "127.0.0.1:0"])
    try:
        match = web.wait_for_line(r"katcp-web serving (http://\S+) for ")
        assert match.group(1).startswith("http://127.0.0.1:")
        assert "control" not in web.lines[-1]
    finally:
        assert web.stop() == 0
    result = run_program(["-m", "katcp.scripts.web", "--help"])
    assert result.returncode == 0
    assert "127.0.0.1:8080" in result.stdout and "--control" in result.stdout
    result = run_program(["-m", "katcp.scripts.web", "no-port-here"])
    assert result.returncode == 64 and "HOST:PORT" in result.stderr


class BulkyServer(ExampleServer):
    """The example server with a string sensor that can carry big values."""

    def setup_sensors(self):
        super().setup_sensors()
        self.add_sensor(Sensor.string("bulky", "Big values.", default=""))


def test_a_page_that_stops_reading_is_dropped(monkeypatch):
    monkeypatch.setattr(katcp.web.app, "MAX_UNSENT_MESSAGES", 20)
    server = BulkyServer("127.0.0.1", 0)
    server.start(timeout=WAIT)

    async def scenario():
        web = WebServer(device_address(server), listen=("127.0.0.1", 0))
        web.monitor.flush_interval = 0.001
        web.start()
        dropped = asyncio.Event()
        unsubscribe = web.monitor.unsubscribe

        def watched_unsubscribe(send):
            unsubscribe(send)
            dropped.set()
        web.monitor.unsubscribe = watched_unsubscribe
        reader = await open_page_socket(web)
        await next_message(reader, synced_snapshot)
        # A page whose socket takes in little and which never reads after the handshake.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", web.port))
        await loop.sock_sendall(sock, (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: a2F0Y3Atd2ViLXRlc3Q=\r\n\r\n"
            % (web.port, web.port)).encode())
        assert (await loop.sock_recv(sock, 12)).startswith(b"HTTP/1.1 101")
        try:
            # Each big value reaches the reading page before the next is set, so katcp-web
            # keeps up with the device; only the silent page falls behind.
            bulky = server.get_sensor("bulky")
            for i in range(300):
                if dropped.is_set():
                    break
                value = "%d:%s" % (i, "x" * 200000)
                bulky.set_value(value)
                await next_message(reader, lambda m: any(
                    r[2] == value for r in m.get("readings", {}).get("bulky", [])))
            assert dropped.is_set()
            # the reading page is still served
            bulky.set_value("after")
            await next_message(reader, lambda m: "bulky" in m.get("readings", {}))
        finally:
            sock.close()
            reader.close()
            web.stop()
    try:
        run(scenario())
    finally:
        stop_server(server)


def test_stopped_while_the_device_is_away_it_leaves_no_task_behind(device):
    # Following the device, katcp-web waited for it to come back: for ever once stopped,
    # each stopped WebServer leaving a task on the loop that held its monitor.
    async def scenario():
        ours = asyncio.all_tasks()
        web = await started(device)
        try:
            conn = await open_page_socket(web)
            await next_message(conn, synced_snapshot)
            await asyncio.get_running_loop().run_in_executor(None, stop_server, device)
            # Shown to the page, then awaited: the device's return.
            await next_message(conn, lambda m: m["type"] == "connection")
            conn.close()
        finally:
            web.stop()
        _, pending = await asyncio.wait(asyncio.all_tasks() - ours, timeout=WAIT)
        assert [task.get_coro().__qualname__ for task in pending] == []
    run(scenario())


def test_stop_closes_the_open_pages(device):
    # Left open (kept alive by the websocket pings), a page went on showing the last
    # readings as current, never learning that katcp-web had stopped.
    async def scenario():
        web = await started(device)
        try:
            conn = await open_page_socket(web)
            await next_message(conn, synced_snapshot)
        finally:
            web.stop()
        while await asyncio.wait_for(conn.read_message(), WAIT) is not None:
            pass
        assert (conn.close_code, conn.close_reason) == (1001, "katcp-web stopped")
    run(scenario())


def test_started_again_it_shows_the_device_again(device):
    # Started again after stop(), it set the strategies while its client was still stopped
    # (an error logged for every sensor) and followed the device no more: a page never saw
    # it synced.
    async def scenario():
        web = await started(device)
        conn = await open_page_socket(web)
        await next_message(conn, synced_snapshot)
        web.stop()
        with no_logs("katcp"):
            web.start()
            try:
                conn = await open_page_socket(web)
                await next_message(conn, synced_snapshot)
                device.get_sensor("add.result").set_value(4321.0)
                await next_message(conn, lambda message: any(
                    reading[2] == 4321.0
                    for reading in message.get("readings", {}).get("add.result", [])))
                conn.close()
            finally:
                web.stop()
    run(scenario())
