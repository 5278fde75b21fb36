"""Run example programs and command-line tools as subprocesses, and code in a forked
child, with bounded waits."""

import os
import re
import select
import signal
import subprocess
import sys
import threading
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def python_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, EXAMPLES,
                                                      env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class BackgroundProcess:
    """A long-running program whose stdout is read by a thread, line by line."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable] + list(args), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env=env or python_env(), text=True)
        self.lines = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_lines(self, pattern, count, timeout=10):
        """Return the matches of the first ``count`` output lines matching ``pattern``."""
        regex = re.compile(pattern)

        def find():
            matches = [m for m in (regex.search(line) for line in self.lines) if m]
            return matches if len(matches) >= count else None

        with self._new_line:
            self._new_line.wait_for(
                lambda: find() is not None or self.proc.poll() is not None, timeout)
            matches = find()
        if matches is None:
            raise AssertionError("fewer than %d lines matching %r within %s s (exit %s); "
                                 "output:\n%s" % (count, pattern, timeout, self.proc.poll(),
                                                   "\n".join(self.lines)))
        return matches[:count]

    def wait_for_line(self, pattern, timeout=10):
        """Return the match of the first output line matching ``pattern``."""
        return self.wait_for_lines(pattern, 1, timeout)[0]

    def stop(self, sig=None, timeout=10):
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            self._reader.join(timeout)
            raise AssertionError("process did not exit within %s s; output:\n%s"
                                 % (timeout, "\n".join(self.lines)))
        finally:
            self._reader.join(timeout)


def run_program(args, timeout=30, env=None, input_text=None):
    """Run a Python program to completion; return the CompletedProcess."""
    return subprocess.run([sys.executable] + list(args), capture_output=True, text=True,
                          cwd=ROOT, env=env or python_env(), timeout=timeout,
                          input=input_text)


def outcome_in_forked_child(fn, timeout):
    """Call `fn` in a child made by :func:`os.fork` and return what came of it, as text:
    ``"returned <repr>"`` or ``"<exception class name>: <message>"``.

    Raises AssertionError if the child has no outcome within `timeout` seconds (it is
    killed then).
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns of forking a process that has threads, as the tests' has.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            try:
                text = "returned %r" % (fn(),)
            except BaseException as exc:
                text = "%s: %s" % (type(exc).__name__, exc)
            os.write(write_end, text.encode())
        finally:
            os._exit(0)  # never the parent's cleanup (pytest's, the loops')
    os.close(write_end)
    try:
        if not select.select([read_end], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("no outcome from the forked child within %s s" % timeout)
        chunks = []
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def run_without_loop(code, timeout=30):
    """Run `code` in a fresh interpreter's main thread, which has no event loop yet (as a
    plain script's), with DeprecationWarning an error; return the CompletedProcess.

    Python 3.12 and 3.13 warn there when asyncio makes the thread's loop implicitly.
    """
    return run_program(["-W", "error::DeprecationWarning", "-c", code], timeout=timeout)


def assert_quiet_exit(result):
    """`result` (of :func:`run_without_loop`) exited 0 and wrote nothing to stderr."""
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
