"""The programs in examples/ (which the tutorial shows verbatim) run against live servers."""

import re
import signal

import pytest

from subprocess_helpers import BackgroundProcess, python_env, run_program

pytestmark = pytest.mark.timeout(90)

# Deprecated calls (tornado's, asyncio's) fail the program, as do asyncio's complaints.
STRICT = ["-X", "dev", "-W", "error"]


@pytest.fixture
def tutorial_server():
    server = BackgroundProcess(["examples/tutorial_server.py", "0"],
                               env=python_env(KATCP_TUTORIAL_SEED="1"))
    try:
        port = int(server.wait_for_line(r"^PORT (\d+)").group(1))
        yield port
    finally:
        server.stop()


def test_blocking_client(tutorial_server):
    result = run_program(["examples/blocking_client.py", "127.0.0.1", str(tutorial_server)])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The tutorial server supports message ids, so the client uses them.
    assert lines[0].startswith("!help[1] ok ")
    assert "#help[1] add Add\\_two\\_numbers" in lines
    assert int(lines[0].split()[2]) == len(lines) - 1


def test_callback_client(tutorial_server):
    result = run_program(["examples/callback_client.py", "127.0.0.1", str(tutorial_server)])
    assert result.returncode == 0, result.stderr
    assert "Inform: #help[1] raw-reverse" in result.stdout
    assert any(line.startswith("Reply: !help[1] ok ") for line in result.stdout.splitlines())


def test_custom_client(tutorial_server):
    result = run_program(["examples/custom_client.py", "127.0.0.1", str(tutorial_server)])
    assert result.returncode == 0, result.stderr
    assert "--------- pick-fruit ---------" in result.stdout
    assert "Pick a random fruit." in result.stdout
    assert "Unhandled reply watchdog" in result.stdout


def test_highlevel_client(tutorial_server):
    result = run_program(STRICT + ["examples/highlevel_client.py", "127.0.0.1",
                                   str(tutorial_server)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert "3 + 6 response:" in result.stdout
    assert "Fruit picked:  banana" in result.stdout
    assert "pick response:" in result.stdout


def test_highlevel_client_when_the_pick_fails():
    # Seed 5: the device's first pick fails ("No fruit."), so the fruit sensor never
    # becomes nominal; the example's wait gives up after its timeout, and it ends.
    server = BackgroundProcess(["examples/tutorial_server.py", "0"],
                               env=python_env(KATCP_TUTORIAL_SEED="5"))
    try:
        port = int(server.wait_for_line(r"^PORT (\d+)").group(1))
        result = run_program(["examples/highlevel_client.py", "127.0.0.1", str(port)])
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No fruit picked within 5 s" in result.stdout
    assert "!pick-fruit[5] fail No\\_fruit." in result.stdout


def test_tutorial_server_requests(tutorial_server):
    from katcp import BlockingClient, Message

    client = BlockingClient("127.0.0.1", tutorial_server)
    client.start()
    try:
        assert client.wait_protocol(timeout=10)
        reply, _ = client.blocking_request(Message.request("add", 3, 6))
        assert reply.arguments == [b"ok", b"9.0"]
        reply, _ = client.blocking_request(Message.request("eval", "2 ** 10"))
        assert reply.arguments == [b"ok", b"1024"]
        reply, _ = client.blocking_request(Message.request("eval", "__import__('os')"))
        assert reply.arguments[0] == b"fail"
        reply, _ = client.blocking_request(Message.request("raw-reverse", "a", "b"))
        assert reply.arguments == [b"ok", b"b", b"a"]
    finally:
        client.stop()
        client.join(timeout=10)


@pytest.mark.parametrize("program", ["examples/async_server.py", "examples/v4_server.py",
                                     "examples/asyncio_server.py",
                                     "examples/receiver_simulator.py"])
def test_servers_answer_help(program):
    from katcp import BlockingClient, Message

    server = BackgroundProcess([program, "0"])
    try:
        port = int(server.wait_for_line(r"^PORT (\d+)").group(1))
        client = BlockingClient("127.0.0.1", port)
        client.start()
        try:
            assert client.wait_protocol(timeout=10)
            reply, informs = client.blocking_request(Message.request("help"))
            assert reply.reply_ok()
            assert len(informs) == int(reply.arguments[1]) > 5
        finally:
            client.stop()
            client.join(timeout=10)
    finally:
        server.stop(signal.SIGINT)


@pytest.mark.parametrize("program", ["examples/async_server.py", "examples/asyncio_server.py",
                                     "examples/receiver_simulator.py"])
def test_servers_on_their_own_loop_stop_cleanly_on_ctrl_c(program):
    from katcp import BlockingClient, Message

    server = BackgroundProcess(STRICT + [program, "0"])
    try:
        port = int(server.wait_for_line(r"^PORT (\d+)").group(1))
        with BlockingClient("127.0.0.1", port) as client:
            reply, _ = client.blocking_request(Message.request("watchdog"))
            assert reply.reply_ok()
    finally:
        exit_status = server.stop(signal.SIGINT)
    output = "\n".join(server.lines)
    assert exit_status == 0, output
    assert "Warning" not in output and "Traceback" not in output, output


def test_asyncio_server_async_handlers():
    from katcp import BlockingClient, Message

    server = BackgroundProcess(["examples/asyncio_server.py", "0"])
    try:
        port = int(server.wait_for_line(r"^PORT (\d+)").group(1))
        client = BlockingClient("127.0.0.1", port)
        client.start()
        try:
            assert client.wait_protocol(timeout=10)
            reply, _ = client.blocking_request(Message.request("increment", 5))
            assert reply.arguments == [b"ok", b"5"]
            reply, informs = client.blocking_request(Message.request("wait", 0.05))
            assert reply.arguments[0] == b"ok"
            assert [m.arguments for m in informs] == [[b"waiting 0.05 seconds"]]
            reply, _ = client.blocking_request(Message.request("halt"))
            assert reply.reply_ok()
        finally:
            client.stop()
            client.join(timeout=10)
        assert server.proc.wait(10) == 0
    finally:
        server.stop()


def test_receiver_configure_reports_progress():
    from katcp import BlockingClient, Message

    server = BackgroundProcess(["examples/receiver_simulator.py", "0"])
    try:
        port = int(server.wait_for_line(r"^PORT (\d+)").group(1))
        client = BlockingClient("127.0.0.1", port, timeout=10)
        client.start()
        try:
            assert client.wait_protocol(timeout=10)
            reply, informs = client.blocking_request(
                Message.request("configure", "UHF", 800e6))
            assert reply.arguments[:2] == [b"ok", b"UHF"]
            assert [m.arguments[0] for m in informs] == [
                b"step %d of 4" % i for i in range(1, 5)]
            reply, informs = client.blocking_request(Message.request("sensor-value", "mode"))
            assert informs[0].arguments[-1] == b"observing"
            reply, _ = client.blocking_request(Message.request("configure", "UHF", 5e9))
            assert reply.arguments[0] == b"fail"
        finally:
            client.stop()
            client.join(timeout=10)
    finally:
        server.stop(signal.SIGINT)


def test_demo_runs():
    result = run_program(["examples/demo.py"], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"!add\[\d+\] ok 9.0", result.stdout)
    assert "Done: server stopped." in result.stdout


def test_demo_shows_a_changing_sensor():
    """The demo's sensor updates read as a sensor that changes: new value, later timestamp."""
    result = run_program(["examples/demo.py"], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    updates = re.findall(r"^    #sensor-status (\S+) 1 uptime nominal (\d+)$",
                         result.stdout, re.M)
    assert len(updates) == 3, result.stdout
    timestamps = [float(stamp) for stamp, _ in updates]
    values = [int(value) for _, value in updates]
    assert timestamps == sorted(set(timestamps)), updates
    assert values == sorted(set(values)), updates
