"""The console sessions shown in README.md and the docs are what the programs really print.

Each ``console`` block of a checked document is replayed: ``$ `` lines are commands, the
lines under them the output the document promises. Servers (``katcp-exampleserver``,
``examples/quickstart_server.py``) are started in the background on a free port, and the
commands after them talk to the latest one; the documents say 127.0.0.1:5000. A promised
line must match an output line exactly, except for timestamps and that port; the promised
lines must come in the order shown, though the program may print more (a document marks
lines it leaves out with ``...``). A program must exit 0 unless ``$ echo $?`` after it shows
its status.

The Python blocks of README.md are the example files, which the commands here run.
"""

import os
import re
import subprocess
import sys

import pytest

from subprocess_helpers import ROOT, BackgroundProcess, python_env

pytestmark = pytest.mark.timeout(120)

DOC_PORT = "5000"
WAIT = 20

# How each program named in a document is run here: servers on a free port, which they print
# (the regex finds it), ...
SERVERS = {
    "katcp-exampleserver": (lambda args: ["-m", "katcp.scripts.exampleserver"] + args
                            + ["--port", "0"], r"\b127\.0\.0\.1:(\d+)\b"),
    "python examples/quickstart_server.py": (
        lambda args: ["examples/quickstart_server.py", "0"], r"\b127\.0\.0\.1:(\d+)\b"),
    "python examples/tutorial_server.py": (
        lambda args: ["examples/tutorial_server.py", "0"], r"^PORT (\d+)$"),
}
# ... clients given the port of the latest server, ...
CLIENTS = {
    "katcp-cmd": lambda args, port: ["-m", "katcp.scripts.cmd"] + [
        arg.replace(":" + DOC_PORT, ":%d" % port) for arg in args],
    "python examples/quickstart_client.py": lambda args, port: [
        "examples/quickstart_client.py", str(port)],
    "python examples/quickstart_resource.py": lambda args, port: [
        "examples/quickstart_resource.py", str(port)],
    "python examples/asyncio_client.py": lambda args, port: [
        "examples/asyncio_client.py", str(port)],
    "python examples/blocking_client.py": lambda args, port: [
        "examples/blocking_client.py", "127.0.0.1", str(port)],
    "python examples/callback_client.py": lambda args, port: [
        "examples/callback_client.py", "127.0.0.1", str(port)],
    "python examples/custom_client.py": lambda args, port: [
        "examples/custom_client.py", "127.0.0.1", str(port)],
}
# ... and programs that start a server of their own.
SELF_CONTAINED = {
    "python examples/demo.py": lambda args, port: ["examples/demo.py"],
    "python examples/logging_example.py": lambda args, port: ["examples/logging_example.py"],
}
# Commands that set up an environment rather than show output.
NOT_RUN = ("python3 -m venv ", ". .venv/bin/activate", "pip install ")

# What may differ between a promised line and the real one: timestamps, and the port a server
# listens on (127.0.0.1:5000 in the documents; the tutorial server prints "PORT 5000").
VARIABLE = [(re.compile(r"\b\d{10}\.\d{1,6}\b"), r"\d+\.\d+"),
            (re.compile(r"\b127\.0\.0\.1:\d+\b"), r"127\.0\.0\.1:\d+"),
            (re.compile(r"^PORT \d+$"), r"PORT \d+")]


def line_pattern(promised):
    """A regex matching the output line `promised`, whatever its timestamps and port."""
    found = sorted(((match.start(), match.end(), replacement) for regex, replacement in VARIABLE
                    for match in regex.finditer(promised)))
    pattern = ""
    position = 0
    for start, end, replacement in found:
        pattern += re.escape(promised[position:start]) + replacement
        position = end
    return re.compile(pattern + re.escape(promised[position:]) + r"\Z")


def console_blocks(path):
    """The console blocks of a Markdown (```console) or reStructuredText document."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    if path.endswith(".md"):
        return [block.splitlines() for block in re.findall(r"^```console\n(.*?)^```",
                                                            text, re.M | re.S)]
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: console\n\n((?:   .*\n|\n)+)", text, re.M):
        blocks.append([line[3:] for line in match.group(1).rstrip("\n").splitlines()])
    return blocks


def sessions(path):
    """(command, promised output lines) for each ``$`` line of the document's consoles."""
    steps = []
    for block in console_blocks(path):
        for line in block:
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip():
                assert steps, "%s: output before any command: %r" % (path, line)
                steps[-1][1].append(line)
    return steps


def split_program(command):
    for table in (SERVERS, CLIENTS, SELF_CONTAINED):
        for program in table:
            if command == program or command.startswith(program + " "):
                return table, program, command[len(program):].split()
    return None, None, None


def assert_promised(promised, output, what):
    """The promised lines match lines of `output`, in order (``...`` stands for lines left
    out)."""
    remaining = iter(output)
    for line in promised:
        if line == "...":
            continue
        pattern = line_pattern(line)
        if not any(pattern.match(actual) for actual in remaining):
            raise AssertionError("%s: no line matching %r in order; it printed:\n%s"
                                 % (what, line, "\n".join(output)))


class Replay:
    """Runs a document's commands, keeping its servers running until closed."""

    def __init__(self, path):
        self.path = path
        self.servers = []
        self.port = None
        self.last_status = None

    def run(self, command, promised):
        what = "%s: $ %s" % (self.path, command)
        if command == "echo $?":
            assert promised == [str(self.last_status)], what
            self.last_status = None
            return
        self.check_status()
        if command.startswith(NOT_RUN):
            return
        table, program, args = split_program(command)
        assert table is not None, "%s: add this program to the tables of %s" % (
            what, __file__)
        if table is SERVERS:
            make_args, port_regex = SERVERS[program]
            self.start_server(make_args(args), port_regex, promised)
        else:
            assert table is SELF_CONTAINED or self.port is not None, (
                "%s: no server started before it" % what)
            result = subprocess.run(
                [sys.executable] + table[program](args, self.port), cwd=ROOT,
                env=python_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, timeout=WAIT * 3)
            self.last_status = result.returncode
            assert_promised(promised, result.stdout.splitlines(), what)

    def start_server(self, args, port_regex, promised):
        server = BackgroundProcess(args)
        self.servers.append(server)
        self.port = int(server.wait_for_line(port_regex, WAIT).group(1))
        for line in promised:
            server.wait_for_line("^" + line_pattern(line).pattern, WAIT)

    def check_status(self):
        """A program that failed is shown failing: ``echo $?`` after it."""
        assert not self.last_status, "%s: a program exited %d; the document does not say so" % (
            self.path, self.last_status)

    def close(self):
        for server in self.servers:
            server.stop()


@pytest.mark.parametrize("path", ["README.md", "docs/quickstart.rst", "docs/logging.rst",
                                  "docs/aiokatcp.rst", "docs/tutorial/blocking_client.rst",
                                  "docs/tutorial/callback_client.rst",
                                  "docs/tutorial/own_client.rst"])
def test_console_sessions_print_what_the_document_shows(path):
    steps = sessions(path)
    assert steps, "%s has no console session" % path
    replay = Replay(path)
    try:
        for command, promised in steps:
            replay.run(command, promised)
        replay.check_status()
    finally:
        replay.close()


@pytest.mark.parametrize("example", ["examples/quickstart_server.py",
                                     "examples/quickstart_client.py"])
def test_readme_shows_the_example_files(example):
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.M | re.S)
    with open(os.path.join(ROOT, example)) as f:
        assert f.read() in blocks


def test_promised_lines_are_checked():
    """A promised line that differs from the output (other than in time and port) fails."""
    output = ["#sensor-value 1796464969.861700 1 add.result nominal 9.0",
              "Listening on 127.0.0.1:40123"]
    assert_promised(["#sensor-value 1700000000.5 1 add.result nominal 9.0",
                     "Listening on 127.0.0.1:5000"], output, "same")
    for wrong in (["!add ok 9.0"], ["#sensor-value 1796464969.861700 1 add.result nominal 9"],
                  ["Listening on 127.0.0.1:5000", "#sensor-value 1796464969.8 1 add.result "
                   "nominal 9.0"]):
        with pytest.raises(AssertionError):
            assert_promised(wrong, output, "different")
