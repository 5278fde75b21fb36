"""The operator's Python experience: one call to a synced resource, wrappers that say
what they need, `with` blocks, objects that explain themselves, "did you mean", and
IPython's own cell machinery (terminal-style autoawait), against devices on 127.0.0.1."""

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import tornado.ioloop
import tornado.util

import katcp
from katcp import AsyncClient, BlockingClient, Message, Sensor
from katcp.client import request_check
from katcp.display import close_matches, did_you_mean, html_table
from katcp.ioloop_manager import (IOLoopManager, IOLoopThreadWrapper, current_ioloop,
                                  ioloop_thread_wrapper)
from katcp.kattypes import Str, request, return_reply
from katcp.resource import KATCPSensorError
from katcp.resource_client import (KATCPClientResource, KATCPClientResourceContainer,
                                   ThreadSafeKATCPClientResourceWrapper, connect_resource)
from katcp.server import AsyncDeviceServer, DeviceServer
from katcp.wire.message import readable_message
from subprocess_helpers import outcome_in_forked_child, python_env
from test_client import _closed_port

WAIT = 10.0


class WeatherStation(DeviceServer):
    """A device an operator would meet: a few sensors, one chatty request."""

    VERSION_INFO = ("weather", 1, 0)
    BUILD_INFO = ("weather", 1, 0, "")

    def setup_sensors(self):
        self.temperature = Sensor.float("ambient-temperature", "Air temperature", "degC",
                                        [-50.0, 50.0])
        self.temperature.set_value(21.5)
        self.add_sensor(self.temperature)
        self.wind = Sensor.integer("wind.speed", "Wind speed", "km/h", [0, 300])
        self.wind.set_value(80, status=Sensor.WARN)
        self.add_sensor(self.wind)
        self.label = Sensor.string("label", "A label with <markup> & more", "")
        self.label.set_value("<script>alert('x')</script>")
        self.add_sensor(self.label)

    @request(Str())
    @return_reply(Str())
    def request_echo(self, req, text):
        """Echo the text back.

        A second paragraph that only ``?help`` shows.
        """
        return ("ok", text)


@pytest.fixture
def device():
    with WeatherStation("127.0.0.1", 0) as server:
        yield server


def address_of(server):
    return "%s:%d" % server.bind_address


def ioloop_threads():
    return [thread for thread in threading.enumerate() if thread.name == "katcp-ioloop"]


# -- connect_resource ------------------------------------------------------------------


def test_connect_resource_returns_a_synced_blocking_resource_and_close_stops_everything(
        device):
    threads_before = set(ioloop_threads())
    with connect_resource(address_of(device), name="station") as station:
        assert isinstance(station, ThreadSafeKATCPClientResourceWrapper)
        assert station.synced and station.state == "synced"
        reply = station.req.echo("hello world")
        assert reply.succeeded and reply.reply.arguments == [b"ok", b"hello world"]
        assert station.sensor.ambient_temperature.get_value() == 21.5
        started = set(ioloop_threads()) - threads_before
        assert len(started) == 1
    (loop_thread,) = started
    loop_thread.join(WAIT)
    assert not loop_thread.is_alive()
    assert station.state == "disconnected"


def test_closing_a_connect_resource_wrapper_again_does_nothing(device):
    # As when close() is called inside its with block: leaving it closes again.
    with connect_resource(address_of(device), name="station") as station:
        station.close()
        assert station.state == "disconnected"
    station.close()


def test_connect_resource_to_nothing_times_out_naming_address_and_state():
    listener = __import__("socket").socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # a port where nothing listens
    threads_before = set(ioloop_threads())
    with pytest.raises(tornado.util.TimeoutError) as raised:
        connect_resource(("127.0.0.1", port), name="absent", timeout=0.5)
    text = str(raised.value)
    assert "'absent' at 127.0.0.1:%d" % port in text
    assert "state is 'disconnected'" in text
    for thread in set(ioloop_threads()) - threads_before:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_connect_resource_rejects_an_address_without_port():
    with pytest.raises(ValueError, match="host:port"):
        connect_resource("localhost")


def test_connect_resource_is_exported_from_the_package():
    assert katcp.connect_resource is connect_resource


# -- thread-safe wrappers: what loop they take, and failing fast ------------------------


@pytest.mark.parametrize("given", ["manager", "ioloop", "wrapper"])
def test_thread_safe_wrapper_accepts_a_manager_a_loop_or_a_loop_wrapper(device, loop_manager,
                                                                        given):
    loop = {"manager": loop_manager, "ioloop": loop_manager.get_ioloop(),
            "wrapper": IOLoopThreadWrapper(loop_manager.get_ioloop())}[given]
    resource = KATCPClientResource(dict(name="station", address=device.bind_address,
                                        controlled=True))
    resource.set_ioloop(loop_manager.get_ioloop())
    with ThreadSafeKATCPClientResourceWrapper(resource, loop) as station:
        station.start()
        station.until_synced(WAIT)
        assert station.req.echo("x").succeeded
    assert resource.state == "disconnected"


def test_thread_safe_wrapper_refuses_anything_else_at_construction():
    with pytest.raises(TypeError, match="IOLoopThreadWrapper, an IOLoopManager or a tornado"):
        ThreadSafeKATCPClientResourceWrapper(object(), "not a loop")
    with pytest.raises(TypeError):
        ioloop_thread_wrapper(None)


def test_blocking_call_on_a_loop_nothing_runs_fails_fast(device):
    manager = IOLoopManager()  # never started
    resource = KATCPClientResource(dict(name="station", address=device.bind_address))
    resource.set_ioloop(manager.get_ioloop())
    station = ThreadSafeKATCPClientResourceWrapper(resource, manager)
    station._ioloop_wrapper.not_running_grace = 0.05
    with pytest.raises(RuntimeError, match="no thread runs its ioloop"):
        station.start()
    manager.get_ioloop().close()


def test_blocking_call_fails_when_the_loop_stops_while_waiting():
    manager = IOLoopManager()
    manager.start(timeout=WAIT)
    wrapper = IOLoopThreadWrapper(manager.get_ioloop())
    wrapper.not_running_grace = 0.05
    never = []

    def pending():
        never.append(manager.get_ioloop().asyncio_loop.create_future())
        manager.stop()
        return never[0]

    with pytest.raises(RuntimeError, match="no thread runs its ioloop"):
        wrapper.call_in_ioloop(pending, (), {})
    manager.join(WAIT)


if hasattr(os, "fork"):
    def test_a_blocking_call_in_a_forked_child_fails_fast(device, loop_manager):
        # The child has no thread running the parent's loop, which still says it runs.
        resource = KATCPClientResource(dict(name="station", address=device.bind_address,
                                            controlled=True))
        resource.set_ioloop(loop_manager.get_ioloop())
        station = ThreadSafeKATCPClientResourceWrapper(resource, loop_manager)
        station._ioloop_wrapper.not_running_grace = 0.05
        station.start()
        try:
            station.until_synced(WAIT)
            assert (outcome_in_forked_child(station.req.watchdog, WAIT)
                    .startswith("RuntimeError: Cannot call "))
            assert station.req.watchdog().succeeded  # the parent's loop runs on
        finally:
            station.stop()


def test_current_ioloop_outside_ipython_is_tornados_current_loop():
    async def on_loop():
        return current_ioloop() is tornado.ioloop.IOLoop.current()

    assert asyncio.run(on_loop())


# -- with / async with -------------------------------------------------------------------


def test_blocking_client_with_block_connects_and_stops(device):
    with BlockingClient(*device.bind_address) as client:
        assert client.is_connected() and client.protocol_flags is not None
        reply, _ = client.blocking_request(Message.request("echo", "hi"), timeout=WAIT)
        assert reply.reply_ok()
    assert not client.is_connected() and not client.running()


def test_blocking_client_with_block_to_nothing_times_out_naming_the_address():
    with _closed_port() as port:
        client = BlockingClient("127.0.0.1", port)
        client.ENTER_TIMEOUT = 0.3
        with pytest.raises(tornado.util.TimeoutError,
                           match="127.0.0.1:%d: not connected" % port):
            with client:
                pass
    assert not client.running()


def test_a_client_that_fails_to_stop_after_a_timed_out_entry_raises_the_timeout(
        monkeypatch, caplog):
    def join(timeout=None):
        raise RuntimeError("cannot join")

    with _closed_port() as port:
        client = BlockingClient("127.0.0.1", port)
        client.ENTER_TIMEOUT = 0.3
        monkeypatch.setattr(client, "join", join)
        with pytest.raises(tornado.util.TimeoutError,
                           match="127.0.0.1:%d: not connected" % port):
            with client:
                pass
    assert "Error stopping the client after a failed entry" in caplog.text
    assert "cannot join" in caplog.text
    monkeypatch.undo()
    client.join(timeout=WAIT)
    assert not client.running()


def test_async_client_and_resource_async_with(device):
    async def main():
        async with AsyncClient(*device.bind_address) as client:
            reply, _ = await client.future_request(Message.request("echo", "a"))
            assert reply.reply_ok() and client.ioloop.asyncio_loop is asyncio.get_running_loop()
        assert not client.is_connected()
        spec = dict(name="station", address=device.bind_address, controlled=True)
        async with KATCPClientResource(spec) as station:
            assert station.synced
            assert (await station.req.echo("b")).succeeded
        assert station.state == "disconnected"
        containers = dict(name="site", clients={"station": dict(address=device.bind_address)})
        async with KATCPClientResourceContainer(containers) as site:
            assert site.children.station.synced
        assert not site.children.station.is_connected()

    asyncio.run(main())


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_a_blocking_client_with_block_interrupted_while_entering_stops_the_client():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = unused.getsockname()[:2]  # nothing listens there
    client = BlockingClient(*address)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        # Ctrl-C while __enter__ waits for the device.
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            with client:
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not client.running()
    assert client.ioloop_thread_id is None  # its loop thread has ended: no more attempts


def test_a_server_with_block_interrupted_while_entering_stops_the_server(monkeypatch):
    def interrupted(timeout=None):
        raise KeyboardInterrupt

    server = WeatherStation("127.0.0.1", 0)
    monkeypatch.setattr(server, "wait_running", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with server:
            pass
    assert not server.running()
    assert _refused(server.bind_address)


def test_an_async_with_given_up_while_entering_stops_what_it_started():
    # As docs/interactive.rst advises for a device that may be absent: the bound
    # cancels the entry, after which no __aexit__ runs.
    listener = __import__("socket").socket()
    listener.bind(("127.0.0.1", 0))
    address = listener.getsockname()[:2]
    listener.close()  # a port where nothing listens

    async def enter(thing):
        async with thing:
            pass

    async def main():
        client = AsyncClient(*address)
        resource = KATCPClientResource(dict(name="absent", address=address))
        container = KATCPClientResourceContainer(
            dict(name="site", clients={"absent": dict(address=address)}))
        for thing in (client, resource, container):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(enter(thing), 0.2)
        await client.until_stopped(timeout=WAIT)
        await resource.until_stopped(timeout=WAIT)
        await asyncio.gather(*container.until_stopped(timeout=WAIT).values())

    asyncio.run(main())


def test_resource_with_block_starts_and_stops_on_its_loop(device):
    async def main():
        spec = dict(name="station", address=device.bind_address)
        with KATCPClientResource(spec) as station:
            await station.until_synced(WAIT)
        await station.until_stopped(WAIT)
        assert station.state == "disconnected"

    asyncio.run(main())


def test_server_with_block_runs_and_stops_it():
    with WeatherStation("127.0.0.1", 0) as server:
        assert server.running()
    assert not server.running()


class AsyncWeatherStation(WeatherStation, AsyncDeviceServer):
    """The weather station, its handlers on the loop."""


def _refused(address):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=WAIT).close()
    return True


def _on_the_running_loop(server):
    if not isinstance(server, AsyncDeviceServer):
        server.set_ioloop()  # made outside the loop: told which one
    return server


@pytest.mark.parametrize("make", [lambda: AsyncWeatherStation("127.0.0.1", 0),
                                  lambda: WeatherStation("127.0.0.1", 0)],
                         ids=["AsyncDeviceServer", "DeviceServer.set_ioloop"])
def test_server_with_block_on_its_own_running_loop_stops_it(make):
    async def serve(fail):
        with _on_the_running_loop(make()) as server:
            client = AsyncClient(*server.bind_address, auto_reconnect=False)
            client.set_ioloop()
            client.start()
            await client.until_protocol(timeout=WAIT)
            if fail:
                raise ValueError("the block's own error")
        # Stopping: the listener is closed at once, the clients are let go.
        assert _refused(server.bind_address)
        await client.until_disconnected(timeout=WAIT)
        await client.until_stopped(timeout=WAIT)
        return "left"

    assert asyncio.run(serve(False)) == "left"
    with pytest.raises(ValueError, match="the block's own error"):
        asyncio.run(serve(True))


def test_a_server_that_fails_to_stop_leaves_the_with_blocks_own_error_raised(
        monkeypatch, caplog):
    def join(timeout=None):
        raise RuntimeError("cannot join")

    with pytest.raises(ValueError, match="the block's own error"):
        with WeatherStation("127.0.0.1", 0) as server:
            monkeypatch.setattr(server, "join", join)
            raise ValueError("the block's own error")
    assert "Error stopping" in caplog.text and "cannot join" in caplog.text
    monkeypatch.undo()
    server.join(timeout=WAIT)
    with pytest.raises(RuntimeError, match="cannot join"):  # no error of its own to keep
        with WeatherStation("127.0.0.1", 0) as server:
            monkeypatch.setattr(server, "join", join)
    monkeypatch.undo()
    server.join(timeout=WAIT)


@pytest.mark.parametrize("make", [lambda: AsyncWeatherStation("127.0.0.1", 0),
                                  lambda: WeatherStation("127.0.0.1", 0)],
                         ids=["AsyncDeviceServer", "DeviceServer"])
def test_server_async_with_runs_it_on_the_running_loop_and_waits_for_its_stop(make):
    async def main():
        async with make() as server:
            assert server.running()
            assert server.ioloop.asyncio_loop is asyncio.get_running_loop()
            async with AsyncClient(*server.bind_address) as client:
                reply, _ = await client.future_request(Message.request("echo", "a"))
                assert reply.reply_ok()
        assert not server.running()
        assert _refused(server.bind_address)

    asyncio.run(main())


# -- objects that explain themselves -----------------------------------------------------


def test_reprs_of_sensor_request_resource_container_client_and_server(device):
    with connect_resource(address_of(device), name="station") as station:
        station.sensor.wind_speed.get_value()  # a fresh reading
        text = repr(station.sensor.wind_speed)
        assert "KATCPSensor(name=wind.speed, parent=station, value=80, units=km/h, " \
               "status=warn, age=" in text
        assert re.search(r"age=\d+\.\ds\)", text)
        assert "age=never" in repr(station.sensor.ambient_temperature)
        assert "(name=echo, help='Echo the text back.')" in repr(station.req.echo)
        assert re.search(r"KATCPClientResource\(name=station, address=127.0.0.1:\d+, "
                         r"state=synced, sensors=3, requests=\d+\)", repr(station))
    # A server of its own: the one above may not have seen the resource leave yet.
    with WeatherStation("127.0.0.1", 0) as server, BlockingClient(*server.bind_address) as client:
        assert "(address=%s, connected=True, protocol=5.0-" % address_of(server) in repr(client)
        assert "(address=%s, running=True, clients=1, protocol=5.0-" % address_of(server) \
            in repr(server)
    container = KATCPClientResourceContainer(dict(name="site", clients={
        "a": dict(address=device.bind_address), "b": dict(address=device.bind_address)}))
    assert "KATCPClientResourceContainer(name=site, children=2, synced=0, sensors=0, " \
           "requests=0)" in repr(container)


def test_request_docstring_is_the_devices_help_and_how_to_call(device):
    with connect_resource(address_of(device)) as station:
        doc = station.req.echo.__doc__
    assert doc.startswith("Echo the text back.")
    assert "second paragraph" in doc and "Calling this object sends ?echo" in doc
    assert "request_description" not in doc  # not the class's constructor docs


def test_resource_html_tables_escape_everything_and_colour_statuses(device):
    with connect_resource(address_of(device)) as station:
        station.sensor.label.get_value()
        station.sensor.wind_speed.get_value()
        page = station._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert '<td style="background-color: #fff3b0">warn</td>' in page
    assert "<td>echo</td><td>Echo the text back.</td>" in page
    assert "<caption>3 sensors</caption>" in page


def test_html_table_escapes_captions_headers_and_cells():
    table = html_table("a<b", ["x&y"], [["<i>"]])
    assert "<caption>a&lt;b</caption>" in table and "<th>x&amp;y</th>" in table
    assert "<td>&lt;i&gt;</td>" in table


# -- did you mean ------------------------------------------------------------------------


def test_close_matches_read_dots_and_dashes_as_underscores():
    names = ["ambient_temperature", "wind_speed", "label"]
    assert close_matches("ambient-temprature", names) == ["ambient_temperature"]
    assert did_you_mean("wind.sped", names) == "; did you mean 'wind_speed'?"
    assert did_you_mean("zzz", names) == ""


def test_unknown_sensor_and_request_names_suggest_close_matches(device):
    with connect_resource(address_of(device)) as station:
        with pytest.raises(AttributeError, match="No sensor 'ambient_temprature'; did you "
                                                 "mean 'ambient_temperature'"):
            station.sensor.ambient_temprature
        with pytest.raises(KeyError, match="did you mean 'wind_speed'"):
            station.sensor["wind-sped"]
        with pytest.raises(AttributeError, match="No request 'ecko'; did you mean 'echo'"):
            station.req.ecko
        subject = station.__subject__
        with pytest.raises(AttributeError, match="did you mean 'echo'"):
            subject.req.ecko
        with pytest.raises(KeyError, match="No sensor 'nothing_like_it'\"$"):
            subject.sensor["nothing_like_it"]


def test_strategy_for_an_unknown_sensor_is_kept_with_a_warning_naming_a_close_match(
        device, caplog):
    with connect_resource(address_of(device), name="station") as station:
        with caplog.at_level(logging.WARNING, logger="katcp.resource_client"):
            # As in katcp 0.9: kept for a sensor that may appear, and an empty result.
            assert station.set_sampling_strategy("ambient_temprature", "event") == {}
            assert station.set_sampling_strategies("ambient_temprature", "event") == {}
    warnings = [record.getMessage() for record in caplog.records]
    assert "Resource station has no sensor 'ambient_temprature'; the strategy is kept for " \
           "when it appears; did you mean 'ambient_temperature'?" in warnings
    assert any("no sensor matching 'ambient_temprature'" in text for text in warnings)


def test_container_strategy_for_an_unknown_sensor_names_a_close_match(device, loop_manager,
                                                                       caplog):
    container = KATCPClientResourceContainer(dict(name="site", clients={
        "station": dict(address=device.bind_address)}))
    container.set_ioloop(loop_manager.get_ioloop())
    with ThreadSafeKATCPClientResourceWrapper(container, loop_manager) as site:
        site.start()
        site.until_synced(WAIT)
        with caplog.at_level(logging.WARNING):
            result = site.set_sampling_strategy("station_wind_sped", "event")
    assert result == {}  # as in 0.9.3: only sensors that exist get a strategy
    assert ("Container site has no sensor matching '^station_wind_sped$': no sampling "
            "strategy was set; did you mean 'station_wind_speed'?") in caplog.text


def test_container_sync_timeout_names_children_addresses_and_states(device):
    async def main(port):
        container = KATCPClientResourceContainer(dict(name="site", clients={
            "up": dict(address=device.bind_address),
            "down": dict(address=("127.0.0.1", port))}))
        container.start()
        try:
            with pytest.raises(tornado.util.TimeoutError) as raised:
                await container.until_synced(0.5)
        finally:
            container.stop()
        return str(raised.value)

    with _closed_port() as port:
        text = asyncio.run(main(port))
    assert text.startswith("Container 'site' not synced after 0.5 s: ")
    assert "down at 127.0.0.1:%d is 'disconnected'" % port in text and "up at" not in text


# -- exception texts read without wire escapes -------------------------------------------


def test_readable_message_unescapes_arguments():
    reply = Message.reply("sensor-sampling", "fail", "Unknown sampling strategy 'bogus'")
    assert "\\_" in str(reply)
    assert readable_message(reply) == "!sensor-sampling fail Unknown sampling strategy 'bogus'"


def test_strategy_error_reads_as_the_device_wrote_it(device):
    with connect_resource(address_of(device)) as station:
        with pytest.raises(KATCPSensorError) as raised:
            station.sensor.wind_speed.set_sampling_strategy("bogus")
    text = str(raised.value)
    assert "!sensor-sampling fail " in text and "\\_" not in text


def test_request_check_error_reads_without_escapes(device):
    with BlockingClient(*device.bind_address) as client:
        with pytest.raises(ValueError) as raised:
            request_check(client, ValueError, "sensor-value", "no-such-sensor", timeout=WAIT)
    assert "\\_" not in str(raised.value) and "!sensor-value" in str(raised.value)


# -- IPython's own machinery: terminal-style autoawait -----------------------------------

IPYTHON_RUNNER = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for cell in json.loads(sys.argv[1]):
    result = shell.run_cell(cell)
    error = result.error_in_exec or result.error_before_exec
    print("CELL %s" % json.dumps([cell, result.success, repr(error) if error else None]))
"""


def run_ipython_cells(cells):
    """Run `cells` one by one in an IPython shell (its asyncio autoawait runner: a loop
    that runs only while an ``await`` cell runs, as in terminal IPython)."""
    done = subprocess.run([sys.executable, "-c", IPYTHON_RUNNER, json.dumps(cells)],
                          capture_output=True, text=True, timeout=60, env=python_env())
    results = [json.loads(line[5:]) for line in done.stdout.splitlines()
               if line.startswith("CELL ")]
    assert len(results) == len(cells), done.stdout + done.stderr
    return results, done.stdout


def test_ipython_await_style_in_separate_cells(device):
    cells = [
        "from katcp.resource_client import KATCPClientResource",
        "r = KATCPClientResource(dict(name='station', address=('127.0.0.1', %d), "
        "controlled=True))" % device.bind_address[1],
        "r.start()",
        "await r.until_synced(timeout=%s)" % WAIT,
        "reply = await r.req.echo('hello world')\nprint('REPLY', repr(reply))",
        "print('VALUE', await r.sensor.ambient_temperature.get_value())",
        "r.stop()",
    ]
    results, output = run_ipython_cells(cells)
    assert [success for _, success, _ in results] == [True] * len(cells), results
    assert "REPLY !echo ok hello world" in output
    assert "VALUE 21.5" in output


def test_ipython_threaded_style_in_separate_cells(device):
    cells = [
        "import katcp",
        "station = katcp.connect_resource('%s', timeout=%s)" % (address_of(device), WAIT),
        "print('REPLY', repr(station.req.echo('hi there')))",
        "print('VALUE', station.sensor.ambient_temperature.get_value())",
        "station.sensor.ambient_temprature",
        # Completion through the wrapper, with the settings docs/interactive.rst gives.
        "%config Completer.evaluation = 'unsafe'\n%config Completer.use_jedi = False",
        "from IPython.core.completer import provisionalcompleter\n"
        "with provisionalcompleter():\n"
        "    for text in ('station.req.ec', 'station.sensor.wind'):\n"
        "        found = get_ipython().Completer.completions(text, len(text))\n"
        # (IPython 8 on Python 3.9 completes to the whole text, newer ones from the dot.)
        "        print('COMPLETED', text, sorted(c.text.split('.')[-1] for c in found))",
        "station.close()",
    ]
    results, output = run_ipython_cells(cells)
    assert [success for _, success, _ in results] == [True] * 4 + [False] + [True] * 3
    assert "did you mean 'ambient_temperature'" in results[4][2]
    assert "REPLY !echo ok hi there" in output and "VALUE 21.5" in output
    assert "COMPLETED station.req.ec ['echo']" in output
    assert "COMPLETED station.sensor.wind ['wind_speed']" in output
