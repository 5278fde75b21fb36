"""Message text helpers, a message recorder and assertions about lists of messages."""

import re
import threading
import unittest
from typing import TYPE_CHECKING, Any, Iterable, List, Sequence, Tuple, Union

from katcp.core import Message
from katcp.wire.text import readable


def list_to_native_strings(list_to_coerce: Iterable[Any]) -> List[Any]:
    """Return a list with every bytes item decoded to str (other items unchanged)."""
    return [readable(item) if isinstance(item, bytes) else item for item in list_to_coerce]


def add_mid_to_msg_str(msg_str: str, mid: Any) -> str:
    """Insert message id ``mid`` after the name of a message given as a string.

    Parameters
    ----------
    msg_str : str
        A message as on the wire, e.g. ``"?watchdog"``.
    mid : int or str
        The message id to add.

    Returns
    -------
    msg_str : str
        e.g. ``"?watchdog[5]"``.
    """
    parts = msg_str.split(" ", 1)
    parts[0] = "%s[%s]" % (parts[0], mid)
    return " ".join(parts)


class MessageRecorder:
    """Message recorder: keeps the messages that pass a filter, for later inspection.

    Parameters
    ----------
    msg_types : tuple of Message type constants
        Which message types to record.
    whitelist : sequence of str (or bytes)
        Record only messages with these names (all names if empty).
    regex_filter : str or None
        Record only messages whose wire text matches this regular expression.
    blacklist : sequence of str (or bytes)
        Never record messages with these names.
    """

    def __init__(self, msg_types: Iterable[int], whitelist: Iterable[Union[str, bytes]],
                 regex_filter: Any, blacklist: Iterable[Union[str, bytes]]) -> None:
        self.msg_types = tuple(msg_types)
        # Names as messages have them (str), however given.
        self.whitelist = set(readable(name) for name in whitelist)
        self.blacklist = set(readable(name) for name in blacklist)
        self.regex_filter = re.compile(regex_filter) if regex_filter else None
        self.msgs: List[Message] = []
        self._condition = threading.Condition()

    def __call__(self, min_number: int = 0, timeout: float = 1) -> List[Message]:
        return self.get_msgs(min_number, timeout)

    def get_msgs(self, min_number: int = 0, timeout: float = 1) -> List[Message]:
        """Return the messages recorded so far and delete them.

        Parameters
        ----------
        min_number : int
            Wait until at least this many messages were recorded.
        timeout : float
            Seconds to wait for ``min_number`` messages (AssertionError if they do not come).
        """
        self.wait_number(min_number, timeout)
        with self._condition:
            msgs, self.msgs = self.msgs, []
        return msgs

    def wait_number(self, number: int, timeout: float = 1) -> List[Message]:
        """Wait until at least a certain number of messages have been recorded."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.msgs) >= number, timeout):
                raise AssertionError("Timed out after %s s waiting for %d messages, got %d"
                                     % (timeout, number, len(self.msgs)))
            return list(self.msgs)

    def append_msg(self, msg: Message) -> None:
        """Append a message if it matches the criteria."""
        if msg.mtype not in self.msg_types:
            return
        if self.whitelist and msg.name not in self.whitelist:
            return
        if msg.name in self.blacklist:
            return
        if self.regex_filter is not None and not self.regex_filter.search(str(msg)):
            return
        with self._condition:
            self.msgs.append(msg)
            self._condition.notify_all()


# For type checkers the mixins are test cases; at run time they add only their methods.
if TYPE_CHECKING:
    _TestCase = unittest.TestCase
else:
    _TestCase = object


class TestUtilMixin(_TestCase):
    """Mixin class for making assertions about lists of KATCP messages."""

    def _assert_msgs_length(self, actual_msgs: Sequence[Message], expected_number: int) -> None:
        num_msgs = len(actual_msgs)
        if num_msgs < expected_number:
            self.fail("Too few messages received.")
        elif num_msgs > expected_number:
            self.fail("Too many messages received.")

    def _assert_msgs_equal(self, actual_msgs: Sequence[Message], expected_msgs: Sequence[str]
                           ) -> None:
        """Compare messages with their expected wire text (``str(msg)``)."""
        for msg, msg_str in zip(actual_msgs, expected_msgs):
            self.assertEqual(str(msg), msg_str)
        self._assert_msgs_length(actual_msgs, len(expected_msgs))

    def _assert_msgs_match(self, actual_msgs: Sequence[Message], expected: Sequence[str]) -> None:
        """Match messages against regular expressions."""
        for msg, pattern in zip(actual_msgs, expected):
            self.assertTrue(re.match(pattern, str(msg)),
                            "Message %r does not match %r" % (str(msg), pattern))
        self._assert_msgs_length(actual_msgs, len(expected))

    def _assert_msgs_like(self, actual_msgs: Sequence[Message],
                          expected_items: Sequence[Tuple[str, str]]) -> None:
        """Match messages against (prefix, suffix) pairs."""
        for msg, (prefix, suffix) in zip(actual_msgs, expected_items):
            text = str(msg)
            self.assertTrue(text.startswith(prefix),
                            "Message %r does not start with %r" % (text, prefix))
            self.assertTrue(text.endswith(suffix),
                            "Message %r does not end with %r" % (text, suffix))
        self._assert_msgs_length(actual_msgs, len(expected_items))
