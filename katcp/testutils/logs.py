"""Log handlers for tests."""

import logging
from typing import List


class TestLogHandler(logging.Handler):
    """A logger for KATCP tests: remembers every record it handles."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        """Create a TestLogHandler."""
        super().__init__()
        self._records: List[logging.LogRecord] = []

    @property
    def records(self) -> List[logging.LogRecord]:
        """The records handled so far, oldest first."""
        return self._records

    def emit(self, record: logging.LogRecord) -> None:
        """Handle the arrival of a log message."""
        self._records.append(record)

    def clear(self) -> None:
        """Clear the list of remembered logs."""
        self._records = []
