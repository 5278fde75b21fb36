"""Log handlers for tests."""

import logging

__all__ = ["TestLogHandler"]


class TestLogHandler(logging.Handler):
    """A logger for KATCP tests: remembers every record it handles."""

    __test__ = False  # not a pytest test class

    def __init__(self):
        """Create a TestLogHandler."""
        super().__init__()
        self._records = []

    @property
    def records(self):
        return self._records

    def emit(self, record):
        """Handle the arrival of a log message."""
        self._records.append(record)

    def clear(self):
        """Clear the list of remembered logs."""
        self._records = []
