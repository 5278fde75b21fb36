"""Showing high-level katcp objects to people: suggestions, ages and notebook tables.

Text only, no I/O: :mod:`katcp.resource` and :mod:`katcp.resource_client` build their
reprs, error messages and ``_repr_html_`` tables from these helpers, and the console
tools may use them too.
"""

import collections
import difflib
import html
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

from katcp.core import Message
from katcp.wire.message import readable_message
from katcp.wire.util import escape_name, object_repr

__all__ = ["close_matches", "did_you_mean", "age_text", "first_line", "object_repr",
           "help_docstring", "request_docstring", "request_repr", "sensor_repr", "html_table",
           "resource_html", "STATUS_COLOURS"]

#: Background colour of each sensor status in notebook tables (as katcp GUIs colour them).
STATUS_COLOURS = {
    "nominal": "#c8f0c8",
    "warn": "#fff3b0",
    "error": "#f8c0c0",
    "failure": "#e08080",
    "unreachable": "#d0d0d0",
    "inactive": "#e8e8e8",
    "unknown": "#ffffff",
}


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> List[str]:
    """The candidates closest to `name` (a mistyped sensor or request name), best first.

    Names are compared with ``.`` and ``-`` read as ``_``, as Python identifiers of
    KATCP names are made, so ``ambient-temprature`` finds ``ambient_temperature``.

    Parameters
    ----------
    name : str
        The name that was not found.
    candidates : iterable of str
        The names that exist.
    n : int, optional
        At most this many matches.

    Returns
    -------
    matches : list of str
        Candidates as given, possibly none.

    """
    def plain(text: str) -> str:
        return escape_name(text).lower()

    by_plain: Dict[str, str] = {}
    for candidate in candidates:
        by_plain.setdefault(plain(candidate), candidate)
    found = difflib.get_close_matches(plain(name), list(by_plain), n=n, cutoff=0.7)
    return [by_plain[match] for match in found]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A sentence to append to an "unknown name" error: ``"; did you mean 'x'?"``.

    Parameters
    ----------
    name : str
        The name that was not found.
    candidates : iterable of str
        The names that exist.

    Returns
    -------
    text : str
        Empty if nothing is close.

    """
    matches = close_matches(name, candidates)
    if not matches:
        return ""
    return "; did you mean %s?" % " or ".join(repr(match) for match in matches)


def age_text(received: float, now: float) -> str:
    """How long ago a reading arrived, e.g. ``'2.5s'``; ``'never'`` for no reading.

    Parameters
    ----------
    received : float
        When the reading was received (seconds since the epoch); 0 for never.
    now : float
        The current time on the same clock.

    Returns
    -------
    age : str

    """
    if not received:
        return "never"
    age = max(now - received, 0.0)
    if age < 120:
        return "%.1fs" % age
    if age < 7200:
        return "%.0fmin" % (age / 60)
    return "%.1fh" % (age / 3600)


def first_line(text: Optional[str]) -> str:
    """The first non-blank line of a help text, stripped ('' if there is none)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def help_docstring(description: Optional[str], calling: str) -> str:
    """The docstring of a request object: the device's help text, then how to call it.

    An instance docstring lets IPython's ``req.name?`` and ``help(req.name)`` show the
    device's help text rather than the class's (which documents its constructor).

    Parameters
    ----------
    description : str or None
        The request's help text, as the device gave it.
    calling : str
        One paragraph on calling the object.

    Returns
    -------
    docstring : str

    """
    return "%s\n\n%s" % ((description or "(The device gave no help text.)").rstrip(), calling)


def request_docstring(name: str, description: Optional[str]) -> str:
    """The docstring of a :class:`katcp.resource.KATCPRequest` called `name`."""
    return help_docstring(description, (
        "Calling this object sends ?%s with the positional arguments; keywords: timeout, "
        "mid. It gives a future of the KATCPReply (the reply itself through a "
        "thread-safe wrapper)." % name))


def request_repr(request: Any) -> str:
    """The repr of a request object: its name and the first line of its help."""
    return object_repr(request, name=request.name, help=repr(first_line(request.description)))


def sensor_repr(sensor: Any, now: float) -> str:
    """The repr of a :class:`katcp.resource.KATCPSensor`: name, owner, the latest reading
    (value, status and age at time `now`) and units."""
    reading = sensor.reading
    return object_repr(sensor, name=sensor.name, parent=sensor.parent_name,
                       value=repr(reading.value), units=sensor.units, status=reading.status,
                       age=age_text(reading.received_timestamp, now))


def html_table(caption: str, header: Sequence[str], rows: Iterable[Sequence[Any]],
               status_column: Optional[int] = None) -> str:
    """An HTML table for notebooks; every cell is escaped.

    Parameters
    ----------
    caption : str
        Shown above the table.
    header : sequence of str
        Column titles.
    rows : iterable of sequences
        Cell values (``str()`` of each is shown).
    status_column : int, optional
        Index of a column holding sensor status names: its cells are coloured with
        :data:`STATUS_COLOURS`.

    Returns
    -------
    html : str

    """
    lines = ["<table>", "<caption>%s</caption>" % html.escape(caption),
             "<tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(str(title))
                                     for title in header)]
    for row in rows:
        cells = []
        for index, value in enumerate(row):
            text = html.escape(str(value))
            colour = STATUS_COLOURS.get(str(value)) if index == status_column else None
            if colour:
                cells.append('<td style="background-color: %s">%s</td>' % (colour, text))
            else:
                cells.append("<td>%s</td>" % text)
        lines.append("<tr>%s</tr>" % "".join(cells))
    lines.append("</table>")
    return "\n".join(lines)


def resource_html(resource: Any) -> str:
    """Notebook tables of a resource's sensors (statuses coloured) and requests.

    Parameters
    ----------
    resource : :class:`katcp.resource.KATCPResource`
        Its ``sensor`` and ``req`` namespaces are shown, keyed by Python identifier.

    Returns
    -------
    html : str

    """
    now = time.time()
    sensors = sorted(dict.items(resource.sensor))
    requests = sorted(dict.items(resource.req))
    sensor_rows = [(identifier, sensor.reading.value, sensor.units, sensor.reading.status,
                    age_text(sensor.reading.received_timestamp, now),
                    " ".join(sensor.sampling_strategy))
                   for identifier, sensor in sensors]
    request_rows = [(identifier, first_line(request.description))
                    for identifier, request in requests]
    return "\n".join((
        "<div><strong>%s</strong></div>" % html.escape(repr(resource)),
        html_table("%d sensors" % len(sensor_rows),
                   ("sensor", "value", "units", "status", "age", "strategy"), sensor_rows,
                   status_column=3),
        html_table("%d requests" % len(request_rows), ("request", "help"), request_rows)))


_KATCPReplyTuple = collections.namedtuple("_KATCPReplyTuple", "reply informs")


class KATCPReply(_KATCPReplyTuple):
    """Container for return messages of KATCP request (reply and informs).

    This is based on a named tuple with 'reply' and 'informs' fields so that the
    :class:`KATCPReply` object can still be unpacked into a normal tuple.

    Parameters
    ----------
    reply : :class:`katcp.Message` object
        Reply message returned by katcp request
    informs : list of :class:`katcp.Message` objects
        List of inform messages returned by KATCP request

    Attributes
    ----------
    messages: list of :class:`katcp.Message` objects
        List of all messages returned by KATCP request, reply first

    The instance evaluates to nonzero (i.e. truthy) if the request succeeded.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        """String representation for pretty-printing in IPython."""
        return "\n".join(readable_message(msg) for msg in self.messages)

    def __str__(self) -> str:
        """String representation using KATCP wire format"""
        return "\n".join(str(msg) for msg in self.messages)

    def __bool__(self) -> bool:
        return self.succeeded

    @property
    def messages(self) -> List[Message]:
        """List of all messages returned by KATCP request, reply first."""
        return [self.reply] + list(self.informs)

    @property
    def succeeded(self) -> bool:
        """True if request succeeded (i.e. first reply argument is 'ok')."""
        return self.reply.reply_ok()
