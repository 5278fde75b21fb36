"""A logger whose records a test can read and wait for."""

import contextlib
import logging
import threading

WAIT = 5.0


class RecordingHandler(logging.Handler):
    """Keeps every record, as a test suite's log capture does."""

    def __init__(self):
        super().__init__()
        self.records = []
        self._changed = threading.Condition()

    def emit(self, record):
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def messages(self):
        return [record.getMessage() for record in self.records]

    def wait_for(self, prefix, count=1, timeout=WAIT):
        """Wait until `count` messages start with `prefix`; return those records."""
        def matching():
            return [r for r in self.records if r.getMessage().startswith(prefix)]

        with self._changed:
            self._changed.wait_for(lambda: len(matching()) >= count, timeout)
            return matching()


@contextlib.contextmanager
def recording_logger(name):
    """The logger `name` at DEBUG, recorded by a :class:`RecordingHandler` (and not
    passed on to the root logger's handlers) until the block ends, then as it was."""
    logger = logging.getLogger(name)
    level, propagate = logger.level, logger.propagate
    handler = RecordingHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        # As found: the logger may be one of katcp's own, which later tests record.
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@contextlib.contextmanager
def no_logs(name, level=logging.ERROR):
    """Fail if logger `name` (or one below it) logs at `level` or above in the block: what
    ``unittest``'s ``assertNoLogs`` does from Python 3.10 on."""
    logger = logging.getLogger(name)
    handler = RecordingHandler()
    handler.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.records, handler.messages()
