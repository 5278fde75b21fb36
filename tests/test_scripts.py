"""katcp-exampleserver, katcp-cmd and katcp-shell, run as programs against a live server."""

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from subprocess_helpers import BackgroundProcess, python_env, run_program

pytestmark = pytest.mark.timeout(90)

CMD = ["-m", "katcp.scripts.cmd"]


@pytest.fixture(scope="module")
def example_server():
    server = BackgroundProcess(["-m", "katcp.scripts.exampleserver", "--port", "0",
                               "--log-level", "WARNING"])
    try:
        match = server.wait_for_line(r"listening on ([\d.]+):(\d+)")
        yield "%s:%s" % (match.group(1), match.group(2))
    finally:
        server.stop(signal.SIGINT)


def test_request_ok_prints_informs_and_reply(example_server):
    result = run_program(CMD + [example_server, "help", "add"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["#help add Add two numbers.", "!help ok 1"]


def test_raw_output_is_wire_format(example_server):
    result = run_program(CMD + ["--raw", example_server, "help", "add"])
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["#help add Add\\_two\\_numbers.", "!help ok 1"]


def test_arguments_are_sent(example_server):
    result = run_program(CMD + [example_server, "add", "3", "6"])
    assert result.returncode == 0
    assert result.stdout.strip() == "!add ok 9.0"


def test_fail_and_invalid_exit_1(example_server):
    result = run_program(CMD + [example_server, "add", "three", "6"])
    assert result.returncode == 1
    assert result.stdout.startswith("!add fail")
    result = run_program(CMD + [example_server, "no-such-request"])
    assert result.returncode == 1
    assert result.stdout.strip() == "!no-such-request invalid 'Unknown request.'"


def test_address_from_environment(example_server):
    result = run_program(CMD + ["watchdog"], env=python_env(KATCP_SERVER=example_server))
    assert result.returncode == 0
    assert result.stdout.strip() == "!watchdog ok"


def test_missing_address_is_a_usage_error():
    env = python_env()
    env.pop("KATCP_SERVER", None)
    result = run_program(CMD + ["watchdog"], env=env)
    assert result.returncode == 64
    assert "HOST:PORT" in result.stderr


def test_connection_refused_exits_2():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_program(CMD + ["--timeout", "2", "127.0.0.1:%d" % port, "watchdog"])
    assert result.returncode == 2
    assert "cannot connect" in result.stderr


def test_silent_server_times_out_with_exit_2():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]),
                              daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        result = run_program(CMD + ["--timeout", "0.5", "127.0.0.1:%d" % port, "watchdog"])
        assert result.returncode == 2
        assert "no reply within 0.5 seconds" in result.stderr
    finally:
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_watch_streams_sensor_updates_until_interrupted(example_server):
    # Ctrl-C is the way a watch ends: exit status 130, as for any interrupted command.
    watcher = BackgroundProcess(CMD + ["--watch", example_server, "uptime", "period", "0.05"])
    try:
        watcher.wait_for_line(r"^!sensor-sampling ok uptime period 0.05$")
        # Several updates prove that it streams rather than printing once.
        watcher.wait_for_lines(
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} uptime nominal \d+$", 3)
    finally:
        assert watcher.stop(signal.SIGINT) == 130
    assert not any("Traceback" in line for line in watcher.lines)


def test_watch_unknown_sensor_fails(example_server):
    result = run_program(CMD + ["--watch", example_server, "no.such.sensor"])
    assert result.returncode == 1
    assert result.stdout.startswith("!sensor-sampling fail")


def test_shell_runs_requests_from_stdin(example_server):
    result = run_program(["-m", "katcp.scripts.shell", example_server],
                         input_text="add 1 2\n?watchdog\nquit\n")
    assert result.returncode == 0, result.stderr
    assert "!add ok 3.0" in result.stdout
    assert "!watchdog ok" in result.stdout


def test_shell_completion_names():
    from katcp.scripts.shell import KatcpShell

    shell = KatcpShell(session=None)
    shell.request_names = ["sensor-list", "sensor-value", "watchdog"]
    shell.sensor_names = ["uptime", "add.result"]
    assert shell.completenames("sensor-v") == ["sensor-value "]
    assert shell.completedefault("u", "sensor-value u", 13, 14) == ["uptime "]
    assert shell.completedefault("u", "watchdog u", 9, 10) == []


def test_exampleserver_help():
    result = run_program(["-m", "katcp.scripts.exampleserver", "--help"])
    assert result.returncode == 0
    for option in ("--host", "--port", "--log-level"):
        assert option in result.stdout


@pytest.mark.parametrize("script", ["katcp-exampleserver", "katcp-cmd", "katcp-shell"])
def test_console_scripts_are_installed(script):
    path = os.path.join(os.path.dirname(sys.executable), script)
    assert os.path.exists(path), "%s is not installed next to %s" % (script, sys.executable)
    result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "usage: %s" % script in result.stdout
