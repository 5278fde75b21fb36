"""The console tools behave like good Unix tools: run as programs, against real servers on
127.0.0.1, in pipes and in a terminal (a pseudo-terminal), as a user would meet them.

Exit statuses: 0 success, 1 a request failed, 2 network trouble, 64 usage error,
74 output cannot be written, 130 Ctrl-C, 141 output pipe closed.
"""

import contextlib
import fcntl
import io
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import urllib.request

import pytest

import katcp
from katcp import AsyncReply, Sensor
from katcp.kattypes import request, return_reply
from katcp.wire.message import Message
from katcp.scripts import TOOLS
from katcp.scripts import cmd, exampleserver
from katcp.scripts._connection import LineConnection, check_address, for_people
from katcp.scripts.exampleserver import ExampleServer
from katcp.scripts.shell import DeviceSession

import test_scripts
from subprocess_helpers import ROOT, BackgroundProcess, python_env, run_program

pytestmark = pytest.mark.timeout(120)

example_server = test_scripts.example_server  # the example server program, as a fixture

WAIT = 10.0
CMD = ["-m", "katcp.scripts.cmd"]
SHELL = ["-m", "katcp.scripts.shell"]
SERVER = ["-m", "katcp.scripts.exampleserver"]
WEB = ["-m", "katcp.scripts.web"]
MODULES = {"katcp-cmd": CMD, "katcp-shell": SHELL, "katcp-exampleserver": SERVER,
           "katcp-web": WEB}


def env_without_server(**extra):
    env = python_env(**extra)
    env.pop("KATCP_SERVER", None)
    return env


def no_traceback(text):
    return "Traceback" not in text and "Exception ignored" not in text


class HangingServer(ExampleServer):
    """The example server plus ``?hang``, which never replies."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hanging = threading.Event()
        self.address = None

    @request()
    @return_reply()
    def request_hang(self, req):
        """Never reply."""
        self.hanging.set()
        raise AsyncReply()


def _running(server_class):
    """A started server of `server_class`, its ``address`` as the tools take it; stopped
    at the end."""
    server = server_class("127.0.0.1", 0)
    server.start(timeout=WAIT)
    server.address = "%s:%d" % server.bind_address
    try:
        yield server
    finally:
        server.stop()
        server.join(timeout=WAIT)


@pytest.fixture
def device():
    yield from _running(HangingServer)


class ChattyServer(ExampleServer):
    """The example server as a device that never stops talking: a ``#log`` to every client
    every 50 ms, and requests that never reply: ``?stuck`` in silence, ``?help`` and
    ``?sensor-sampling`` with an inform of their own every 50 ms."""

    INTERVAL = 0.05

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.address = None
        self._quiet = threading.Event()

    def start(self, *args, **kwargs):
        super().start(*args, **kwargs)
        self._chatter(lambda: self.mass_inform(Message.inform("log", "info", "0", "dev", "polling")))

    def stop(self, *args, **kwargs):
        self._quiet.set()
        return super().stop(*args, **kwargs)

    def _chatter(self, say):
        def loop():
            while not self._quiet.wait(self.INTERVAL):  # the device's pace, not a sync
                say()
        threading.Thread(target=loop, daemon=True).start()

    def request_stuck(self, req, msg):
        """Never reply."""
        raise AsyncReply()

    def request_help(self, req, msg):
        """Report progress for ever, never reply."""
        self._chatter(lambda: req.inform("progress"))
        raise AsyncReply()

    request_sensor_sampling = request_help


@pytest.fixture
def chatty_device():
    yield from _running(ChattyServer)


class TextServer(ExampleServer):
    """The example server plus a string sensor ``text`` and ``?hex``, which replies with
    the hex of each argument it received."""

    def setup_sensors(self):
        super().setup_sensors()
        self.text = Sensor.string("text", "Text the test chooses.", "")
        self.add_sensor(self.text)

    def request_hex(self, req, msg):
        """Reply with the hex of each argument."""
        return req.make_reply("ok", *[arg.hex() for arg in msg.arguments])


@pytest.fixture
def text_device():
    yield from _running(TextServer)


def run_bytes(args, input_bytes=None, **env):
    """Run a Python program to completion with bytes for its input and output."""
    return subprocess.run([sys.executable] + list(args), capture_output=True, cwd=ROOT,
                          env=python_env(**env), timeout=30, input=input_bytes)


def sensor_value_line(stdout):
    """The #sensor-value line of the output, from its value's sensor name on."""
    [line] = [line for line in stdout.split(b"\n") if line.startswith(b"#sensor-value ")]
    return line.split(b" ", 3)[3]


class SilentServer:
    """Accepts one connection and records what arrives, never answering."""

    def __init__(self):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self.received = b""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        conn, _ = self._listener.accept()
        with conn:
            for chunk in iter(lambda: conn.recv(4096), b""):
                with self._changed:
                    self.received += chunk
                    self._changed.notify_all()

    def wait_for(self, data):
        with self._changed:
            assert self._changed.wait_for(lambda: data in self.received, WAIT), self.received

    def close(self):
        self._listener.close()
        self._thread.join(WAIT)


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


class Terminal:
    """A program run in a pseudo-terminal that is its controlling terminal, so that typing
    Ctrl-C sends it SIGINT and readline does line editing and completion."""

    def __init__(self, args, env):
        self.master, slave = pty.openpty()

        def become_session_leader_of_the_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable] + args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
            env=env, preexec_fn=become_session_leader_of_the_terminal)
        os.close(slave)
        self.output = b""
        self._seen = 0

    def type(self, keys):
        os.write(self.master, keys)

    def expect(self, pattern):
        """Wait for `pattern` (bytes regex) in the output after the previous match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + WAIT
        while True:
            match = regex.search(self.output, self._seen)
            if match:
                self._seen = match.end()
                return match
            ready, _, _ = select.select([self.master], [], [], deadline - time.monotonic())
            if not ready:
                raise AssertionError("no %r within %s s in output:\n%s" % (
                    pattern, WAIT, self.output.decode(errors="replace")))
            try:
                self.output += os.read(self.master, 4096)
            except OSError:  # EIO: the program has gone
                raise AssertionError("program ended (%s) before %r; output:\n%s" % (
                    self.proc.wait(WAIT), pattern, self.output.decode(errors="replace")))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path):
    started = []

    def start(args):
        # HOME: the shell's history file goes to the test's directory.
        started.append(Terminal(args, python_env(HOME=str(tmp_path), TERM="xterm")))
        return started[-1]

    yield start
    for term in started:
        term.close()


# --- the command line: options before the request, '--', --version, python -m katcp ---

@pytest.mark.parametrize("order", [
    ["--raw", "{server}", "help", "add"],
    ["{server}", "--raw", "help", "add"],
    ["--timeout", "3", "{server}", "--raw", "help", "add"],
    ["{server}", "--timeout=3", "--raw", "--", "help", "add"],
])
def test_options_and_address_come_in_any_order_before_the_request(example_server, order):
    result = run_program(CMD + [word.format(server=example_server) for word in order])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["#help add Add\\_two\\_numbers.", "!help ok 1"]


def test_words_from_the_request_on_go_to_the_device(example_server):
    result = run_program(CMD + [example_server, "raw-reverse", "--raw", "-x", "--", "1"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "!raw-reverse ok 1 -- -x --raw"


def test_double_dash_makes_the_next_word_the_request(example_server):
    result = run_program(CMD + [example_server, "--", "--weird"])
    assert result.returncode == 64
    assert result.stderr == ("katcp-cmd: error: '--weird' is not a request name "
                             "(a letter, then letters, digits and '-')\n")
    assert result.stdout == ""


@pytest.mark.parametrize("tool", sorted(MODULES))
def test_every_tool_has_version(tool):
    result = run_program(MODULES[tool] + ["--version"])
    assert result.returncode == 0
    assert result.stdout == "%s (katcp) %s\n" % (tool, katcp.__version__)


def test_python_m_katcp_names_the_version_and_every_installed_tool():
    result = run_program(["-m", "katcp"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("katcp %s (Python %d.%d." % ((katcp.__version__,)
                                                           + sys.version_info[:2]))
    listed = {line.split()[0]: line.split(None, 1)[1] for line in lines[2:]}
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        installed = set(re.findall(r'"(katcp-[\w-]+) = katcp\.scripts\.\w+:main"', f.read()))
    assert set(listed) == installed == set(TOOLS)
    assert all(listed[name] == TOOLS[name] for name in listed)
    assert run_program(["-m", "katcp", "--version"]).stdout == "katcp %s\n" % katcp.__version__


# --- usage errors: exit 64, one line that says what is wrong and what is expected ---

@pytest.mark.parametrize("args, expected", [
    (CMD + ["127.0.0.1:99999", "help"],
     "katcp-cmd: error: bad address '127.0.0.1:99999': port 99999 is out of range 1-65535; "
     "expected HOST:PORT, such as localhost:5000"),
    (CMD + ["localhost:", "help"], "bad address 'localhost:': port '' is not a number"),
    (CMD + ["::1:5000", "help"], "an IPv6 host needs brackets ([::1]:5000)"),
    (CMD + ["[::1]", "help"], "bad address '[::1]': no port;"),
    (CMD + ["[::1]]:5000", "help"], "bad address '[::1]]:5000': ']:5000' after the host's ']'"),
    (CMD + ["[::1:5000", "help"], "no ']' after the IPv6 host"),
    (CMD + ["localhost", "help"],
     "katcp-cmd: error: no server address: give HOST:PORT (for example localhost:5000) "
     "before the request, or set KATCP_SERVER ('localhost' was taken as the request name)"),
    (CMD + ["127.0.0.1:5000"], "katcp-cmd: error: no request given"),
    (CMD + ["--watch", "127.0.0.1:5000"], "katcp-cmd: error: no sensor given"),
    (CMD + ["--timeout", "soon", "127.0.0.1:5000", "help"],
     "argument --timeout: expected a number of seconds above 0 (or inf), got 'soon'"),
    (CMD + ["--timeout", "nan", "127.0.0.1:5000", "help"], "got 'nan'"),
    (CMD + ["--tiemout", "3", "127.0.0.1:5000", "help"], "unrecognized arguments: --tiemout"),
    (CMD + ["--log-level", "chatty", "127.0.0.1:5000", "help"], "unknown log level 'chatty'"),
    (CMD + ["--interactive", "127.0.0.1:5000", "help"], "--interactive takes no request"),
    (SHELL + ["localhost"],
     "katcp-shell: error: bad address 'localhost': no port; expected HOST:PORT, such as "
     "localhost:5000"),
    (SHELL + ["127.0.0.1:65536"], "port 65536 is out of range 1-65535"),
    (SHELL + [], "katcp-shell: error: no server address: give HOST:PORT"),
    (SHELL + ["127.0.0.1:5000", "extra"], "unrecognized arguments: extra"),
    (SERVER + ["--port", "99999"], "expected a port number from 0 (any free port) to 65535"),
    (SERVER + ["--host", "[::1"], "argument --host: expected a host name or an IP address"),
    (WEB + ["localhost"], "katcp-web: error: argument HOST:PORT: bad address 'localhost': "
                          "no port; expected HOST:PORT"),
    (WEB + ["127.0.0.1:5000", "--listen", "127.0.0.1:70000"],
     "argument --listen: bad address '127.0.0.1:70000': port 70000 is out of range 0-65535; "
     "expected ADDR:PORT"),
    (WEB + ["127.0.0.1:5000", "--strategy", "bogus"],
     "katcp-web: error: argument --strategy: Unknown strategy name: bogus. Known: auto, "
     "differential, differential-rate, event, event-rate, none, period."),
    (WEB + ["127.0.0.1:5000", "--strategy", "period"],
     "katcp-web: error: argument --strategy: The 'period' strategy takes 1 parameter, 0 given."),
    (WEB + ["127.0.0.1:5000", "--strategy", "event 1"],
     "argument --strategy: The 'event' strategy takes 0 parameters, 1 given."),
    (["-m", "katcp", "extra"], "python -m katcp: error: unrecognized arguments: extra"),
])
def test_usage_errors_exit_64_with_one_line(args, expected):
    result = run_program(args, env=env_without_server())
    assert result.returncode == 64
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert expected in result.stderr
    assert result.stderr.split(": ")[1] == "error"


def test_a_bad_katcp_server_variable_is_named():
    result = run_program(CMD + ["help"], env=python_env(KATCP_SERVER="localhost"))
    assert result.returncode == 64
    assert result.stderr == ("katcp-cmd: error: KATCP_SERVER: bad address 'localhost': no port; "
                             "expected HOST:PORT, such as localhost:5000\n")


@pytest.mark.parametrize("tool, codes", [
    ("katcp-cmd", ["0", "1", "2", "64", "74", "130", "141"]),
    ("katcp-shell", ["0", "1", "2", "64", "74", "130", "141"]),
    ("katcp-exampleserver", ["0", "2", "64", "74", "130"]),
    ("katcp-web", ["0", "2", "64", "74", "130"]),
])
def test_help_documents_the_exit_statuses(tool, codes):
    result = run_program(MODULES[tool] + ["--help"])
    assert result.returncode == 0
    section = result.stdout.split("exit status:\n")[1]
    listed = re.findall(r"^  (\d+) ", section, re.MULTILINE)
    assert listed == codes


def test_addresses_are_read_as_documented():
    assert check_address("localhost:5000") == ("localhost", 5000)
    assert check_address(":5000") == ("127.0.0.1", 5000)
    assert check_address("[::1]:7147") == ("::1", 7147)
    assert check_address("0.0.0.0:0", any_port=True) == ("0.0.0.0", 0)
    for text in ("host:0", "host", "host:5 000", "ho st:5000", "[::1:5000", "host:+5",
                 "[::1]", "[::1]]:5000", "[::1]5000", "[]:5000", "[[::1]]:5000", "a]:5000"):
        with pytest.raises(ValueError, match="bad address"):
            check_address(text)


def test_ipv6_addresses_are_written_as_the_tools_read_them(unused_ipv6_port):
    # They were written without brackets (::1:5000), which the tools then refused.
    server = BackgroundProcess(SERVER + ["--host", "[::1]", "--port", "0"])
    try:
        address = server.wait_for_line(r"listening on (\S+)$").group(1)
        assert re.fullmatch(r"\[::1\]:\d+", address)
        result = run_program(CMD + [address, "watchdog"])
        assert (result.returncode, result.stdout) == (0, "!watchdog ok\n")
    finally:
        server.stop()
    result = run_program(CMD + ["[::1]:%d" % unused_ipv6_port, "watchdog"])
    assert result.returncode == 2
    assert result.stderr.startswith("katcp-cmd: cannot connect to [::1]:%d: " % unused_ipv6_port)


@pytest.fixture
def unused_ipv6_port():
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


# --- network errors of the servers: one line, exit 2 ---

@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_example_server_on_a_busy_port_says_so_in_one_line(busy_port):
    result = run_program(SERVER + ["--port", str(busy_port)])
    assert result.returncode == 2
    assert result.stderr == (
        "katcp-exampleserver: cannot listen on 127.0.0.1:%d: Address already in use (another "
        "program has it: choose another port, or port 0 for any free one)\n" % busy_port)


def test_web_on_a_busy_port_says_so_in_one_line(example_server, busy_port):
    result = run_program(WEB + [example_server, "--listen", "127.0.0.1:%d" % busy_port])
    assert result.returncode == 2
    assert result.stderr.startswith(
        "katcp-web: cannot listen on 127.0.0.1:%d: Address already in use" % busy_port)
    assert len(result.stderr.splitlines()) == 1


# --- logging ---

def test_client_logging_is_off_by_default_and_raised_by_v_or_log_level(example_server):
    quiet = run_program(CMD + [example_server, "watchdog"])
    assert quiet.returncode == 0 and quiet.stderr == ""
    info = run_program(CMD + ["-v", example_server, "watchdog"])
    assert re.search(r" katcp\.scripts INFO connected to 127\.0\.0\.1:\d+$", info.stderr, re.M)
    assert " DEBUG " not in info.stderr
    for flags in (["-vv"], ["--log-level", "debug"]):
        debug = run_program(CMD + flags + [example_server, "watchdog"])
        assert re.search(r" katcp\.scripts DEBUG sent \?watchdog$", debug.stderr, re.M)
        assert re.search(r" katcp\.scripts DEBUG received !watchdog ok$", debug.stderr, re.M)
    shell = run_program(SHELL + ["-vv", example_server], input_text="watchdog\n")
    assert re.search(r" DEBUG sent \?watchdog$", shell.stderr, re.M)


def test_web_verbose_shows_the_pages_served(example_server):
    web = BackgroundProcess(WEB + [example_server, "--listen", "127.0.0.1:0", "-v"])
    try:
        url = web.wait_for_line(r"katcp-web serving (http://\S+) for ").group(1)
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            assert response.status == 200
        web.wait_for_line(r" tornado\.access INFO 200 GET / ")
    finally:
        assert web.stop() == 0


# --- device text the terminal cannot show, bytes that are not UTF-8, control characters ---

@pytest.mark.parametrize("args, input_bytes, encoding, shown", [
    (CMD, None, "ascii", b"text nominal 'caf\\xe9 \\U0001f600'"),
    (CMD, None, "latin-1", b"text nominal 'caf\xe9 \\U0001f600'"),
    (CMD + ["--raw"], None, "ascii", b"text nominal caf\xc3\xa9\\_\xf0\x9f\x98\x80"),
    (SHELL, b"sensor-value text\n", "ascii", b"text nominal 'caf\\xe9 \\U0001f600'"),
    (SHELL, b"sensor-value text\n", "latin-1", b"text nominal 'caf\xe9 \\U0001f600'"),
], ids=["cmd-ascii", "cmd-latin-1", "cmd-raw", "shell-ascii", "shell-latin-1"])
def test_text_the_output_encoding_cannot_hold_is_escaped(text_device, args, input_bytes,
                                                         encoding, shown):
    # As in a Latin-1 locale: the tools used to end with a UnicodeEncodeError (the shell's
    # reader thread, so that it then said "connection closed").
    text_device.text.set_value("caf\u00e9 \U0001F600")
    words = [] if args is SHELL else ["sensor-value", "text"]
    result = run_bytes(args + [text_device.address] + words, input_bytes,
                       PYTHONIOENCODING=encoding)
    assert (result.returncode, result.stderr) == (0, b"")
    assert sensor_value_line(result.stdout) == shown


def test_raw_prints_the_bytes_of_the_wire(text_device):
    text_device.text.set_value(b"\xff\xfe caf\xc3\xa9")
    result = run_bytes(CMD + ["--raw", text_device.address, "sensor-value", "text"])
    assert (result.returncode, result.stderr) == (0, b"")
    assert sensor_value_line(result.stdout) == b"text nominal \xff\xfe\\_caf\xc3\xa9"


def test_raw_into_a_closed_pipe(example_server):
    result = run_into_closed_pipe(CMD + ["--raw", example_server, "sensor-list"])
    assert (result.returncode, result.stderr) == (141, "")


def test_words_that_are_not_utf8_reach_the_device_as_typed(text_device):
    # Linux passes such command-line bytes to Python as surrogate escapes; they were sent
    # as '?'. The shell reads its input so too, even where the encoding is strict.
    result = run_bytes(CMD + [text_device.address, "hex", b"caf\xe9", "caf\u00e9"])
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"!hex ok 636166e9 636166c3a9\n"
    result = run_bytes(SHELL + [text_device.address], b"hex caf\xe9 caf\xc3\xa9\n",
                       PYTHONIOENCODING="utf-8")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.endswith(b"\n!hex ok 636166e9 636166c3a9\n")  # after the greeting


CONTROLS = "\x1b]0;title\x07\x1b[2Jgone\x08\x08\x08\x08shown"


@pytest.mark.parametrize("args, input_bytes", [(CMD, None), (SHELL, b"sensor-value text\n")],
                         ids=["cmd", "shell"])
def test_control_characters_of_the_device_are_shown_escaped(text_device, args, input_bytes):
    # Written as they are, they would retitle and clear the terminal and hide text.
    text_device.text.set_value(CONTROLS)
    words = [] if args is SHELL else ["sensor-value", "text"]
    result = run_bytes(args + [text_device.address] + words, input_bytes)
    assert result.returncode == 0
    assert sensor_value_line(result.stdout) == b"text nominal " + repr(CONTROLS).encode()
    # --raw prints the wire's bytes, whose escapes (KATCP's) cover ESC but not BEL or BS.
    raw = run_bytes(CMD + ["--raw", text_device.address, "sensor-value", "text"])
    assert sensor_value_line(raw.stdout) == (
        b"text nominal \\e]0;title\x07\\e[2Jgone\x08\x08\x08\x08shown")


def test_texts_and_watched_values_are_shown_with_control_characters_escaped():
    assert for_people(Message.inform("help", "x", "Bell\x07.\n\n  Then \x1b[2J.")) == (
        "#help x Bell\\x07.\n\n    Then \\x1b[2J.")
    assert for_people(Message.reply("x", "ok", "a\tb", "c", "")) == "!x ok 'a\\tb' c ''"
    status = Message.inform("sensor-status", "1700000000.5", "1", "text", "nominal", "\x1bc")
    assert cmd._format_status(status) == "2023-11-14 22:13:20.500 text nominal '\\x1bc'"


# --- help rendered as text ---

def test_help_is_shown_as_text(example_server):
    result = run_program(CMD + [example_server, "help", "watchdog"])
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "#help watchdog Check that the server is still alive."
    assert lines[1:5] == ["", "    Returns", "    -------", "        success : {'ok'}"]
    assert lines[-1] == "!help ok 1"
    assert "\\n" not in result.stdout and "'" not in lines[0]
    shell = run_program(SHELL + [example_server], input_text="help watchdog\n")
    assert result.stdout in shell.stdout


# --- Ctrl-C: exit 130, no traceback ---

def test_ctrl_c_ends_a_command_waiting_for_its_reply(silent_server):
    cmd = BackgroundProcess(CMD + [silent_server.address, "watchdog"])
    silent_server.wait_for(b"?watchdog\n")
    assert cmd.stop(signal.SIGINT) == 130
    assert no_traceback("\n".join(cmd.lines))


def test_ctrl_c_ends_a_starting_shell(silent_server):
    shell = BackgroundProcess(SHELL + [silent_server.address])
    silent_server.wait_for(b"?help\n")  # it asks for the names to complete
    assert shell.stop(signal.SIGINT) == 130
    assert no_traceback("\n".join(shell.lines))


def test_ctrl_c_stops_the_example_server():
    server = BackgroundProcess(SERVER + ["--port", "0"])
    server.wait_for_line(r"listening on 127\.0\.0\.1:\d+")
    assert server.stop(signal.SIGINT) == 130
    assert no_traceback("\n".join(server.lines))


def test_ctrl_c_stops_web(example_server):
    web = BackgroundProcess(WEB + [example_server, "--listen", "127.0.0.1:0"])
    web.wait_for_line(r"katcp-web serving ")
    assert web.stop(signal.SIGINT) == 130
    assert no_traceback("\n".join(web.lines))


# --- a closed output pipe ends the program quietly (141, like `yes | head -1`) ---

def run_into_closed_pipe(args, input_text=None):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable] + args, stdout=write_end, stderr=subprocess.PIPE,
                              input=input_text, text=True, cwd=ROOT, env=python_env(),
                              timeout=30)
    finally:
        os.close(write_end)


def test_cmd_into_a_closed_pipe(example_server):
    result = run_into_closed_pipe(CMD + [example_server, "sensor-list"])
    assert (result.returncode, result.stderr) == (141, "")


def test_shell_into_a_closed_pipe(example_server):
    result = run_into_closed_pipe(SHELL + [example_server], input_text="help\nwatchdog\n")
    assert (result.returncode, result.stderr) == (141, "")


def test_watch_ends_when_its_reader_stops_reading(example_server):
    proc = subprocess.Popen(
        [sys.executable] + CMD + ["--watch", example_server, "uptime", "period", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=python_env())
    try:
        assert select.select([proc.stdout], [], [], WAIT)[0], "no output"
        assert b" uptime " in proc.stdout.readline()
        proc.stdout.close()  # like head -1 exiting
        assert proc.wait(WAIT) == 141
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        proc.stderr.close()


# --- output that cannot be written (stdout closed, a full disk): one line, exit 74 ---

def run_with_streams(args, stdout, stderr=subprocess.PIPE, close=(), input_text=None):
    """Run a Python program with the given stdout and stderr, and the descriptors in
    `close` closed (as ``>&-`` and ``<&-`` leave them)."""
    def close_descriptors():
        for fd in close:
            os.close(fd)
    return subprocess.run([sys.executable] + args, stdout=stdout, stderr=stderr,
                          input=input_text, text=True, cwd=ROOT, env=python_env(),
                          timeout=30, preexec_fn=close_descriptors)


OUTPUT_TOOLS = {
    "cmd": (CMD + ["{server}", "watchdog"], None),
    "watch": (CMD + ["--watch", "{server}", "uptime"], None),
    "shell": (SHELL + ["{server}"], "watchdog\n"),
    "python-m-katcp": (["-m", "katcp"], None),
    "exampleserver": (SERVER + ["--port", "0"], None),
    "web": (WEB + ["{server}", "--listen", "127.0.0.1:0"], None),
}
SERVER_TOOLS = {"exampleserver", "web"}


@pytest.mark.parametrize("tool, stdout", [
    (tool, stdout) for tool in sorted(OUTPUT_TOOLS) for stdout in ["closed", "full"]
    if not (tool in SERVER_TOOLS and stdout == "closed")])
def test_output_that_cannot_be_written_exits_74_with_one_line(example_server, tool, stdout):
    # They ended with an AttributeError or OSError traceback and exit status 1.
    args, input_text = OUTPUT_TOOLS[tool]
    args = [word.format(server=example_server) for word in args]
    prog = "python -m katcp" if args == ["-m", "katcp"] else "katcp-" + args[1].rsplit(".")[-1]
    reason = "stdout is closed" if stdout == "closed" else "No space left on device"
    with open("/dev/full", "w") as full:
        if stdout == "closed":
            result = run_with_streams(args, subprocess.DEVNULL, close=[1], input_text=input_text)
        else:
            result = run_with_streams(args, full, input_text=input_text)
    assert (result.returncode, result.stderr) == (
        74, "%s: cannot write output: %s\n" % (prog, reason))


def test_example_server_runs_with_stdout_closed():
    # A daemon started with >&-: its only output is the line saying where it listens.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable] + SERVER + ["--port", str(port)],
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, env=python_env(), preexec_fn=lambda: os.close(1))
    try:
        with katcp.BlockingClient("127.0.0.1", port) as client:
            assert client.wait_protocol(WAIT)
            reply, _ = client.blocking_request(Message.request("watchdog"), timeout=WAIT)
        assert reply.reply_ok()
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=WAIT)
    assert (server.returncode, stderr) == (0, "")


def test_example_server_stopped_by_halt_does_not_wait_out_a_second_stop(monkeypatch):
    # It stopped the stopped server again on its way out, and that stop() waited its whole
    # timeout for a server to run (as 0.9.3's does): each ?halt or SIGTERM cost a second.
    stops_of_a_stopped_server = []
    started = threading.Event()
    real_start, real_stop = ExampleServer.start, ExampleServer.stop

    def start(self, *args, **kwargs):
        real_start(self, *args, **kwargs)
        started.server = self
        started.set()

    def stop(self, *args, **kwargs):
        if not self.running():
            stops_of_a_stopped_server.append(args or kwargs)
        return real_stop(self, *args, **kwargs)

    def halt():
        assert started.wait(WAIT)
        with katcp.BlockingClient(*started.server.bind_address[:2]) as client:
            assert client.wait_protocol(WAIT)
            client.blocking_request(Message.request("halt"), timeout=WAIT)

    monkeypatch.setattr(ExampleServer, "start", start)
    monkeypatch.setattr(ExampleServer, "stop", stop)
    # Not in this (pytest's) process: the program's SIGTERM handler and logging levels.
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)
    monkeypatch.setattr(exampleserver, "configure_logging", lambda opts: None)
    halting = threading.Thread(target=halt, daemon=True)
    halting.start()
    assert exampleserver._main(["--port", "0"]) == 0
    halting.join(WAIT)
    assert stops_of_a_stopped_server == []


def test_output_errors_with_stderr_failing_too_keep_their_status(example_server):
    # Python flushes stdout and stderr at exit: what they still held turned 74 into 120.
    with open("/dev/full", "w") as full:
        result = run_with_streams(CMD + [example_server, "watchdog"], full, full)
    assert result.returncode == 74


# --- the shell with stdin closed (<&-): no input, as from /dev/null ---

@pytest.mark.parametrize("args", [SHELL, CMD + ["--interactive"]], ids=["shell", "cmd"])
def test_shell_with_stdin_closed_has_no_input(example_server, args):
    # It ended with an AttributeError traceback and exit status 1.
    result = run_with_streams(args + [example_server], subprocess.PIPE, close=[0])
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("#version-connect ")


# --- the shell fed from a pipe: exit status, and a quiet end ---

@pytest.mark.parametrize("lines, status", [
    (["add 1 2", "watchdog"], 0),
    (["add 1 2", "no-such-request", "watchdog"], 1),
    (["add one 2", "watchdog"], 1),
    (['add 1 "2'], 1),
    (["sensor_value"], 1),
])
def test_piped_shell_status_tells_whether_every_request_succeeded(example_server, lines, status):
    result = run_program(SHELL + [example_server], input_text="\n".join(lines) + "\n")
    assert result.returncode == status, result.stdout + result.stderr
    assert result.stderr == ""


def test_cmd_interactive_runs_the_shell(example_server):
    result = run_program(CMD + ["--interactive", "--timeout", "3", example_server],
                         input_text="watchdog\nno-such-request\n")
    assert result.returncode == 1
    assert "!watchdog ok\n!no-such-request invalid 'Unknown request.'\n" in result.stdout


def test_piped_shell_reply_timeout_exits_2(device):
    result = run_program(SHELL + ["--timeout", "0.5", device.address],
                         input_text="hang\nwatchdog\n")
    assert result.returncode == 2
    assert "*** no reply to ?hang within 0.5 seconds\n!watchdog ok\n" in result.stdout


# --- --timeout: one deadline for the reply, however many informs come first ---

@pytest.mark.parametrize("words", [["stuck"], ["help"], ["--watch", "uptime"]],
                         ids=["other-informs", "own-informs", "watch"])
def test_cmd_timeout_bounds_the_reply_while_informs_keep_coming(chatty_device, words):
    # Each line received used to start the timeout again: the tools waited for ever.
    options, operands = words[:-1], words[-1:]
    started = time.monotonic()
    result = run_program(CMD + options + ["--timeout", "0.5", chatty_device.address] + operands,
                         timeout=WAIT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "katcp-cmd: no reply within 0.5 seconds\n"
    assert time.monotonic() - started < WAIT / 2
    if words == ["help"]:
        assert result.stdout.startswith("#help progress\n#help progress\n")


def test_shell_timeout_bounds_each_reply_while_informs_keep_coming(chatty_device):
    # Its ?help at startup (for completion) chatters and never replies, ?stuck stays silent
    # while the #log informs come: each ends after its --timeout.
    result = run_program(SHELL + ["--timeout", "0.5", chatty_device.address],
                         input_text="watchdog\nstuck\n", timeout=WAIT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "!watchdog ok\n" in result.stdout
    assert "*** no reply to ?stuck within 0.5 seconds\n" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("timeout", ["inf", "1e300"])
def test_timeout_inf_waits_without_limit(example_server, timeout):
    # It passed the option's check, then ended in an OverflowError traceback.
    result = run_program(CMD + ["--timeout", timeout, example_server, "watchdog"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "!watchdog ok\n", "")
    result = run_program(SHELL + ["--timeout", timeout, example_server],
                         input_text="watchdog\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith("!watchdog ok\n")


def test_piped_shell_connection_lost_exits_2(device):
    result = run_program(SHELL + [device.address], input_text="halt\nwatchdog\n")
    assert result.returncode == 2
    assert "!halt ok" in result.stdout and "*** connection closed" in result.stdout
    assert "!watchdog" not in result.stdout


def test_piped_shell_ends_quietly_at_the_end_of_its_input(example_server):
    # The reader thread used to meet its socket closed under it now and then (EBADF).
    for _ in range(20):
        result = run_program(SHELL + [example_server], input_text="add 1 2\nwatchdog\n")
        assert (result.returncode, result.stderr) == (0, "")
        assert "***" not in result.stdout
        assert result.stdout.endswith("!add ok 3.0\n!watchdog ok\n")


def test_closing_a_session_never_reports_a_lost_connection(example_server):
    address = check_address(example_server)
    for _ in range(200):
        out = io.StringIO()
        session = DeviceSession(address, WAIT, out)
        reply, _ = session.request("watchdog")
        session.close()
        assert reply.reply_ok() and "***" not in out.getvalue()
        assert not session.lost.is_set()


# --- the shell in a terminal: completion, Ctrl-C, Ctrl-D ---

def test_tab_completes_names_strategies_and_help_with_a_space(example_server, terminal):
    term = terminal(SHELL + [example_server])
    term.expect(rb"katcp> $")
    term.type(b"sensor-v\t")
    term.expect(rb"sensor-value $")
    term.type(b"upt\t")
    term.expect(rb"uptime $")
    term.type(b"\r")
    term.expect(rb"!sensor-value ok 1\r\n")
    term.type(b"sensor-sampling upt\tperi\t0.5\r")
    term.expect(rb"!sensor-sampling ok uptime period 0.5\r\n")
    term.type(b"help watc\t\r")
    term.expect(rb"#help watchdog Check that the server is still alive\.\r\n")
    term.expect(rb"!help ok 1\r\n")


def test_ctrl_c_at_the_prompt_cancels_the_line_and_ctrl_d_leaves(example_server, terminal):
    term = terminal(SHELL + [example_server])
    term.expect(rb"katcp> $")
    # Several times: a Ctrl-C that comes while readline is still echoing the last key
    # used to wait for the next Enter (see katcp.scripts._interrupt).
    for _ in range(30):
        term.type(b"add 1")
        term.expect(rb"add 1$")
        term.type(b"\x03")
        term.expect(rb"\r\nkatcp> $")
    term.type(b"watchdog\r")  # would be "add 1watchdog" had the line been kept
    term.expect(rb"!watchdog ok\r\nkatcp> $")
    term.type(b"\x04")
    assert term.proc.wait(WAIT) == 0
    assert b"!add" not in term.output and no_traceback(term.output.decode())


def test_ctrl_c_while_waiting_for_a_reply_returns_to_the_prompt(device, terminal):
    term = terminal(SHELL + ["--timeout", "60", device.address])
    term.expect(rb"katcp> $")
    term.type(b"hang\r")
    assert device.hanging.wait(WAIT)
    term.type(b"\x03")
    term.expect(rb"\r\nkatcp> $")
    term.type(b"watchdog\r")
    term.expect(rb"!watchdog ok\r\n")
    term.type(b"quit\r")
    assert term.proc.wait(WAIT) == 0


def test_watch_shows_a_timestamp_beyond_the_calendar_as_sent():
    # A device's nanosecond timestamp (1.7e18 seconds) made gmtime() raise OSError, which
    # the tool took for its output failing: "cannot write output", exit status 74.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def device():
            server_side, _ = listener.accept()
            with server_side:
                server_side.recv(1024)  # ?sensor-sampling
                server_side.sendall(b"!sensor-sampling ok temp event\n#sensor-status "
                                    b"1700000000000000000 1 temp nominal 21.5\n")

        threading.Thread(target=device, daemon=True).start()
        result = run_program(CMD + ["--watch", "127.0.0.1:%d" % listener.getsockname()[1],
                                    "temp"])
    assert (result.returncode, result.stderr) == (
        2, "katcp-cmd: connection closed by the server\n")
    assert result.stdout.splitlines()[-1] == "1700000000000000000 temp nominal 21.5"


# --- watch: a v4 server's millisecond timestamps ---

@pytest.mark.parametrize("greeting, in_ms", [
    (b"#version api-4.0\n#build-state roach-4.1\n", True),
    (b"#build-state roach-4.1\n", True),
    (b"#version-connect katcp-protocol 4.0\n", True),
    (b"#version-connect katcp-protocol 5.0-IM\n", False),
    (b"#version-connect katcp-protocol 5.0-IM\n#version-connect katcp-library 4.1\n", False),
    (b"#log info 1 x hello\n", False),
])
def test_watch_reads_the_greeting_for_the_timestamp_unit(greeting, in_ms):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = LineConnection(listener.getsockname()[:2], WAIT)
        server_side, _ = listener.accept()
        with server_side, contextlib.closing(conn):
            server_side.sendall(greeting)
            for _ in range(greeting.count(b"\n")):
                conn.read_message()
            assert conn.timestamps_in_ms is in_ms
            stamp = b"1700000000500" if in_ms else b"1700000000.5"
            server_side.sendall(b"#sensor-status " + stamp + b" 1 temp nominal 21.5\n")
            _, msg = conn.read_message()
            assert cmd._format_status(msg, conn.timestamps_in_ms) == \
                "2023-11-14 22:13:20.500 temp nominal 21.5"
