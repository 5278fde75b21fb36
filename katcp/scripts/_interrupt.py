"""Ctrl-C that reaches a readline prompt whenever it is pressed.

CPython's ``input()`` with readline notices a signal only when the signal interrupts the
``select()`` in which readline waits for a key. A Ctrl-C that arrives while readline is
busy with the previous key (echoing it, listing completions) is recorded but not acted on
until the next line is entered: the prompt seems to ignore it. :class:`InterruptRelay`
watches for such a Ctrl-C and signals the main thread once more, so that ``select()`` is
interrupted and ``KeyboardInterrupt`` is raised as usual.
"""

import contextlib
import os
import select
import signal
import threading
from typing import Any, ContextManager, Optional

# How long a Ctrl-C may wait for the main thread before it is sent again. Long enough for
# any ordinary work between two bytecodes, short enough to feel immediate.
RELAY_AFTER = 0.1


class InterruptRelay:
    """While active (a context manager), SIGINT raises KeyboardInterrupt in the main thread
    promptly, even inside readline. Create and use it in the main thread.

    The C-level signal handler writes a byte into a pipe at once, whatever the main thread
    is doing; the Python-level handler empties the pipe when it runs. A byte left in the
    pipe for :data:`RELAY_AFTER` seconds is a Ctrl-C that the main thread has not seen.
    """

    def __init__(self):
        self._runs = 0  # of the Python-level handler
        self._relayed_at: Optional[int] = None  # _runs when the watcher signalled again
        self._changed = threading.Condition()
        self._main = threading.get_ident()
        self._signals, self._signals_in = os.pipe()
        self._stop, self._stop_in = os.pipe()
        for fd in (self._signals, self._signals_in):
            os.set_blocking(fd, False)
        self._previous_fd = -1
        self._watcher = threading.Thread(target=self._watch, name="katcp-interrupt-relay",
                                         daemon=True)

    def __enter__(self) -> "InterruptRelay":
        signal.signal(signal.SIGINT, self._on_sigint)
        self._previous_fd = signal.set_wakeup_fd(self._signals_in, warn_on_full_buffer=False)
        self._watcher.start()
        return self

    def __exit__(self, *exc_info) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.write(self._stop_in, b"x")
        self._watcher.join()
        for fd in (self._signals, self._signals_in, self._stop, self._stop_in):
            os.close(fd)

    def _unseen(self) -> bool:
        return bool(select.select([self._signals], [], [], 0)[0])

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._signals, 512):
                pass

    def _on_sigint(self, signum, frame):
        with self._changed:
            self._drain()
            relayed_at, self._relayed_at = self._relayed_at, None
            self._runs += 1
            self._changed.notify_all()
        # A relay that arrives after the Ctrl-C it was for was handled is no new Ctrl-C.
        if relayed_at is None or relayed_at == self._runs - 1:
            raise KeyboardInterrupt

    def _watch(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        while self._stop not in select.select([self._signals, self._stop], [], [])[0]:
            with self._changed:
                if self._changed.wait_for(lambda: not self._unseen(), RELAY_AFTER):
                    continue
                self._drain()
                self._relayed_at = self._runs
            signal.pthread_kill(self._main, signal.SIGINT)


def prompt_interrupts(interactive: bool) -> ContextManager[Any]:
    """The context for a prompt's loop: an :class:`InterruptRelay` where readline needs one
    and the platform has thread signals, else nothing."""
    if interactive and hasattr(signal, "pthread_kill"):
        return InterruptRelay()
    return contextlib.nullcontext()
