"""Physical-limit baselines: minimal KATCP programs with no katcp code.

Everything here is deliberately small and direct: it is what a competent
programmer would write to move the same bytes with nothing but the standard
library. The benchmarks compare katcp against these programs in the same run.

* A line codec: :func:`format_arg`, :func:`escape`, :func:`join`,
  :func:`split` and :func:`unescape`.
* A line server (:class:`LineServer` / :class:`LineServerProtocol`, an
  ``asyncio.Protocol``) answering ``?watchdog``, ``?sensor-value``,
  ``?sensor-list`` and ``?sensor-sampling`` with the same bytes as a katcp
  device server holding the same sensors: each sensor's wire line formatted
  once per update, the replies to a received chunk in one
  ``transport.write``, and informs in one write per loop iteration.
* Clients: :class:`BlockingLineClient` (blocking socket),
  :class:`AsyncLineClient` (asyncio buffered protocol), :class:`StreamsLineClient`
  (asyncio streams) and :class:`ThreadHopLineClient`
  (a blocking call from the caller's thread into an asyncio loop thread and
  back, the thread crossing that DESIGN.md prescribes for katcp's blocking
  clients, with nothing else).
"""

import asyncio
import collections
import concurrent.futures
import socket
import threading
import time

# -- codec ------------------------------------------------------------------

_ESCAPES = {
    b"\\": b"\\\\", b" ": b"\\_", b"\0": b"\\0", b"\n": b"\\n",
    b"\r": b"\\r", b"\x1b": b"\\e", b"\t": b"\\t",
}
# Within text holding no escaped backslash, every backslash starts one of these, and
# each gives a byte that starts no escape: plain replacements undo them.
_UNESCAPE_ORDER = [(_ESCAPES[raw], raw) for raw in (b" ", b"\n", b"\t", b"\r", b"\0", b"\x1b")]
_UNESCAPE_ORDER.append((b"\\@", b""))


def escape(arg):
    """Escape one argument for the wire.

    One ``bytes.replace`` per special byte present, backslashes first (the other
    escapes add backslashes that must stay single); unrolled. A regex calling back
    per escape is several times slower.

    Parameters
    ----------
    arg : bytes
        Raw argument.

    Returns
    -------
    bytes
        The escaped argument (``\\@`` for an empty one).
    """
    if not arg:
        return b"\\@"
    if 92 in arg:
        arg = arg.replace(b"\\", b"\\\\")
    if 32 in arg:
        arg = arg.replace(b" ", b"\\_")
    if 10 in arg:
        arg = arg.replace(b"\n", b"\\n")
    if 9 in arg:
        arg = arg.replace(b"\t", b"\\t")
    if 13 in arg:
        arg = arg.replace(b"\r", b"\\r")
    if 0 in arg:
        arg = arg.replace(b"\0", b"\\0")
    if 27 in arg:
        arg = arg.replace(b"\x1b", b"\\e")
    return arg


def _unescape_plain(part):
    for escaped, raw in _UNESCAPE_ORDER:
        if 92 not in part:
            return part
        part = part.replace(escaped, raw)
    if 92 in part:
        # A backslash no escape took: invalid, refused as katcp refuses it.
        raise ValueError("invalid escape in %r" % (part,))
    return part


def unescape(arg):
    """Undo :func:`escape` on one wire argument (ValueError for an invalid escape).

    Parameters
    ----------
    arg : bytes
        Escaped argument.

    Returns
    -------
    bytes
        The raw argument.
    """
    if 92 not in arg:
        return arg
    if b"\\\\" in arg:
        # Escaped backslashes pair from the left, as split() pairs them.
        return b"\\".join([_unescape_plain(part) for part in arg.split(b"\\\\")])
    return _unescape_plain(arg)


def format_arg(value):
    """Format a Python value the way KATCP puts it on the wire.

    Parameters
    ----------
    value : bool, int, float, str or bytes
        The value.

    Returns
    -------
    bytes
        ``b'1'``/``b'0'`` for booleans, ``str()`` for ints, ``repr()`` for
        floats, UTF-8 for text.
    """
    cls = type(value)
    if cls is bytes:
        return value
    if cls is str:
        return value.encode("utf-8")
    if cls is bool:
        return b"1" if value else b"0"
    if cls is float:
        return repr(value).encode("ascii")
    return str(value).encode("ascii")


def join(type_char, name, args, mid=None):
    """Build one wire line (without the newline).

    Parameters
    ----------
    type_char : bytes
        ``b'?'``, ``b'!'`` or ``b'#'``.
    name : bytes
        Message name.
    args : list of bytes
        Raw (unescaped) arguments.
    mid : bytes, optional
        Message id.

    Returns
    -------
    bytes
        The line.
    """
    head = type_char + name if mid is None else type_char + name + b"[" + mid + b"]"
    if not args:
        return head
    return head + b" " + b" ".join([escape(a) for a in args])


def split(line):
    """Split one wire line into its parts.

    Parameters
    ----------
    line : bytes
        A line without its newline.

    Returns
    -------
    tuple
        ``(type_char, name, mid, args)`` with ``mid`` None when absent and
        ``args`` a list of unescaped bytes.
    """
    parts = line.split()
    head = parts[0]
    name = head[1:]
    mid = None
    if name[-1:] == b"]":
        name, _, mid = name[:-1].partition(b"[")
    args = parts[1:]
    if 92 in line:
        args = [unescape(a) for a in args]
    return head[:1], name, mid, args


def iter_lines(chunks):
    """Yield complete lines from a sequence of byte chunks.

    Parameters
    ----------
    chunks : iterable of bytes
        Stream pieces, split anywhere.

    Yields
    ------
    bytes
        Each non-empty line without its newline (``\\r`` terminators too).
    """
    tail = b""
    for chunk in chunks:
        lines = (tail + chunk).replace(b"\r", b"\n").split(b"\n")
        tail = lines.pop()
        for line in lines:
            if line:
                yield line


# -- sensors shared by the line server and the katcp bench server -----------

SensorSpec = collections.namedtuple(
    "SensorSpec", "name stype description units params value")

T0 = 1234567890.25
"""Fixed timestamp of every initial reading, so replies are byte-comparable."""

_TYPES = ("integer", "float", "boolean", "string")
_PARAMS = {"integer": [0, 1000000000], "float": [-1e9, 1e9],
           "boolean": [], "string": []}
_UNITS = {"integer": "count", "float": "degC", "boolean": "", "string": ""}


def sensor_specs(count):
    """Describe ``count`` benchmark sensors (types cycle int/float/bool/str).

    Parameters
    ----------
    count : int
        Number of sensors.

    Returns
    -------
    list of SensorSpec
        Sorted by name.
    """
    specs = []
    for i in range(count):
        stype = _TYPES[i % len(_TYPES)]
        # none equals its first stream_value(), so round 1 changes every sensor
        value = {"integer": i, "float": i + 0.25, "boolean": False,
                 "string": "value %d" % i}[stype]
        specs.append(SensorSpec("s%05d.%s" % (i, stype), stype,
                                "Benchmark %s sensor %d." % (stype, i),
                                _UNITS[stype], _PARAMS[stype], value))
    return specs


def stream_value(stype, counter):
    """Value a producer gives a sensor in update round ``counter``.

    Every round changes every value, so the event strategy reports each one.
    """
    if stype == "integer":
        return counter
    if stype == "float":
        return counter + 0.5
    if stype == "boolean":
        return counter % 2 == 1
    return "v%d" % counter


# -- line server --------------------------------------------------------------

GREETING = (
    b"#version-connect katcp-protocol 5.1-BIM\n",
    b"#version-connect katcp-library bench-line-server-1.0\n",
    b"#version-connect katcp-device bench-api-1.0 bench-impl-1.0\n",
)


class _Reading:
    """One sensor: its value and the wire bytes of it, formatted once per update."""

    __slots__ = ("spec", "name", "timestamp", "value", "line", "list_line", "_escape")

    def __init__(self, spec):
        self.spec = spec
        self.name = spec.name.encode("ascii")
        self.timestamp = T0
        self.value = spec.value
        # only text can hold bytes that need escaping
        self._escape = spec.stype == "string"
        self.line = self._format()
        fields = [self.name, spec.description.encode(), spec.units.encode(),
                  spec.stype.encode()] + [format_arg(p) for p in spec.params]
        self.list_line = b" ".join([escape(f) for f in fields])

    def _format(self):
        value = format_arg(self.value)
        if self._escape:
            value = escape(value)
        return b"%.6f 1 %s nominal %s" % (self.timestamp, self.name, value)

    def set(self, value, timestamp):
        """Store a new value; return whether it changed."""
        changed = value != self.value
        self.value = value
        self.timestamp = timestamp
        self.line = self._format()
        return changed


class LineServer:
    """State of the minimal line server: sensors, connections, producer.

    Parameters
    ----------
    specs : list of SensorSpec
        The sensors to serve.
    """

    def __init__(self, specs):
        self.readings = [_Reading(s) for s in specs]
        self.by_name = {r.name: r for r in self.readings}
        # reading name -> set of protocols sampling it with the event strategy
        self.event_subscribers = collections.defaultdict(set)
        self.connections = set()
        self.loop = None
        # rounds continue across produce() calls so that every round changes every value
        self.rounds = 0

    def protocol_factory(self):
        """Return a new protocol for one connection."""
        return LineServerProtocol(self)

    async def start(self, host="127.0.0.1", port=0, backlog=4096):
        """Listen; return the asyncio server."""
        self.loop = asyncio.get_running_loop()
        return await self.loop.create_server(
            self.protocol_factory, host, port, backlog=backlog)

    def update(self, reading, value):
        """Give a sensor a new value now; if it changed, tell event subscribers."""
        changed = reading.set(value, time.time())
        subscribers = self.event_subscribers.get(reading.name)
        if subscribers and changed:
            line = b"#sensor-status " + reading.line + b"\n"
            for proto in subscribers:
                proto.send(line)

    def produce(self, count, duration, done):
        """Update the first ``count`` sensors in rounds for ``duration`` s.

        One round per loop iteration; ``done`` (a future) gets the number of
        rounds of this call.
        """
        readings = self.readings[:count]
        deadline = self.loop.time() + duration
        first = self.rounds + 1

        def one_round(counter):
            for reading in readings:
                self.update(reading, stream_value(reading.spec.stype, counter))
            self.rounds = counter
            if self.loop.time() < deadline:
                self.loop.call_soon(one_round, counter + 1)
            else:
                done.set_result(counter - first + 1)

        one_round(first)


class LineServerProtocol(asyncio.Protocol):
    """One connection of the line server.

    Output is batched: the replies to one received chunk go out in one write,
    and informs produced during a loop iteration in one write at its end.
    """

    __slots__ = ("server", "transport", "_tail", "_timers", "_out")

    # request name -> method name
    _HANDLERS = {
        b"watchdog": "_watchdog",
        b"sensor-value": "_sensor_value",
        b"sensor-list": "_sensor_list",
        b"sensor-sampling": "_sensor_sampling",
    }

    def __init__(self, server):
        self.server = server
        self.transport = None
        self._tail = b""
        self._timers = None  # made by the first period strategy
        self._out = None  # bytes waiting for the end of this loop iteration

    def connection_made(self, transport):
        self.transport = transport
        self.server.connections.add(self)
        transport.write(b"".join(GREETING))

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        for timer in (self._timers or {}).values():
            timer.cancel()
        for subscribers in self.server.event_subscribers.values():
            subscribers.discard(self)

    def send(self, data):
        """Queue ``data`` for the write at the end of this loop iteration."""
        out = self._out
        if out is None:
            out = self._out = []
            self.server.loop.call_soon(self._flush)
        out.append(data)

    def _flush(self):
        out, self._out = self._out, None
        if not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def data_received(self, data):
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        # replies and the informs sent meanwhile join what waits for this iteration's
        # write; if nothing did, they are written at the end of this chunk
        replies = self._out
        write_now = replies is None
        if write_now:
            replies = self._out = []
        for line in lines:
            line = line.rstrip(b"\r")
            if line[:1] != b"?":
                continue
            _, name, mid, args = split(line)
            suffix = b"" if mid is None else b"[" + mid + b"]"
            handler = self._HANDLERS.get(name)
            if handler is None:
                replies.append(b"!" + name + suffix + b" invalid Unknown\\_request.\n")
            else:
                replies.append(getattr(self, handler)(suffix, args))
        if write_now:
            self._out = None
            if replies:
                self.transport.write(b"".join(replies))

    def _watchdog(self, suffix, args):
        return b"!watchdog" + suffix + b" ok\n"

    def _selected(self, args):
        if not args:
            return self.server.readings
        reading = self.server.by_name.get(args[0])
        return [reading] if reading else []

    @staticmethod
    def _informs(name, suffix, lines):
        head = b"#" + name + suffix + b" "
        return head + (b"\n" + head).join(lines) + b"\n"

    def _sensor_value(self, suffix, args):
        readings = self._selected(args)
        if not readings:
            return b"!sensor-value" + suffix + b" fail Unknown\\_sensor\\_name.\n"
        return (self._informs(b"sensor-value", suffix, [r.line for r in readings])
                + b"!sensor-value%s ok %d\n" % (suffix, len(readings)))

    def _sensor_list(self, suffix, args):
        readings = self._selected(args)
        if not readings:
            return b"!sensor-list" + suffix + b" fail Unknown\\_sensor\\_name.\n"
        return (self._informs(b"sensor-list", suffix, [r.list_line for r in readings])
                + b"!sensor-list%s ok %d\n" % (suffix, len(readings)))

    def _sensor_sampling(self, suffix, args):
        names = args[0].split(b",")
        strategy = args[1]
        params = args[2:]
        readings = [self.server.by_name[n] for n in names]
        for reading in readings:
            self._set_strategy(reading, strategy, params)
        return join(b"!", b"sensor-sampling", [b"ok", args[0], strategy] + params,
                    suffix[1:-1] or None) + b"\n"

    def _set_strategy(self, reading, strategy, params):
        if self._timers is None:
            self._timers = {}
        timer = self._timers.pop(reading.name, None)
        if timer is not None:
            timer.cancel()
        self.server.event_subscribers[reading.name].discard(self)
        if strategy == b"event":
            self.server.event_subscribers[reading.name].add(self)
            self._send_status(reading)
        elif strategy == b"period":
            loop = self.server.loop
            self._tick(reading, float(params[0]), loop.time())

    def _tick(self, reading, period, when):
        # a failed write closes the transport before connection_lost runs
        if self.transport.is_closing():
            return
        self._send_status(reading)
        when += period
        self._timers[reading.name] = self.server.loop.call_at(
            when, self._tick, reading, period, when)

    def _send_status(self, reading):
        self.send(b"#sensor-status " + reading.line + b"\n")


# -- baseline clients ----------------------------------------------------------


class BlockingLineClient:
    """Blocking-socket client: send a request, read until its reply line.

    The floor of any blocking client: one ``sendall`` and (usually) one ``recv``
    per request on the caller's thread, no other thread, no parsing beyond
    finding the reply line.

    Parameters
    ----------
    host, port : str, int
        Server address.
    """

    def __init__(self, host, port):
        self._sock = socket.create_connection((host, port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tail = b""
        for _ in GREETING:
            self._line()

    def _line(self):
        buf = self._tail
        end = buf.find(b"\n")
        recv = self._sock.recv
        while end < 0:
            chunk = recv(65536)
            if not chunk:
                self._tail = b""
                return b""
            buf += chunk
            end = buf.find(b"\n")
        self._tail = buf[end + 1:]
        return buf[:end + 1]

    def request(self, line):
        """Send ``line`` (bytes with newline) and return the reply line."""
        self._sock.sendall(line)
        while True:
            reply = self._line()
            if reply[:1] == b"!" or not reply:
                return reply

    def close(self):
        """Close the connection."""
        self._sock.close()


class AsyncLineClient(asyncio.BufferedProtocol):
    """asyncio client: each request gets a future resolved by its reply line.

    Replies arrive in request order on one connection, so a FIFO suffices. It
    reads into one preallocated buffer (``BufferedProtocol``), as katcp's
    transports do, rather than letting asyncio allocate a 256 KiB ``bytes`` per
    read.
    """

    def __init__(self):
        self.transport = None
        self._tail = b""
        self._buffer = memoryview(bytearray(65536))
        self._pending = collections.deque()
        self._greeting_left = len(GREETING)
        self.greeted = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self._buffer

    def buffer_updated(self, nbytes):
        lines = (self._tail + self._buffer[:nbytes].tobytes()).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if line[:1] == b"!":
                self._pending.popleft().set_result(line)
            elif self._greeting_left:
                self._greeting_left -= 1
                if not self._greeting_left:
                    self.greeted.set_result(None)

    def request(self, line):
        """Send ``line`` and return a future for its reply line."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        self.transport.write(line)
        return future


class StreamsLineClient:
    """asyncio streams client: ``writer.write()`` a request, ``reader.readline()`` to its reply.

    What the standard library's high-level API gives: each read goes through a
    ``StreamReader`` (asyncio allocates its receive buffer per read).
    :class:`AsyncLineClient` is the lower floor.
    """

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host, port):
        """Connect and read the greeting."""
        reader, writer = await asyncio.open_connection(host, port)
        for _ in GREETING:
            await reader.readline()
        return cls(reader, writer)

    async def request(self, line):
        """Send ``line`` and return its reply line."""
        self.writer.write(line)
        readline = self.reader.readline
        while True:
            reply = await readline()
            if reply[:1] == b"!" or not reply:
                return reply

    def close(self):
        """Close the connection."""
        self.writer.close()


class ThreadHopLineClient:
    """Blocking requests carried by an asyncio loop in its own thread.

    The caller hands each request to the loop with ``call_soon_threadsafe`` and
    blocks on a ``concurrent.futures.Future`` that the loop resolves with the
    reply line: two thread crossings per request, no other work.

    Parameters
    ----------
    host, port : str, int
        Server address.
    timeout : float
        Seconds to wait for the connection and for each reply.
    """

    def __init__(self, host, port, timeout=30.0):
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def connect():
            _, protocol = await self._loop.create_connection(_HopProtocol, host, port)
            await protocol.greeted
            return protocol

        self._protocol = asyncio.run_coroutine_threadsafe(connect(), self._loop).result(
            timeout)

    def request(self, line):
        """Send ``line`` (bytes with newline) and return the reply line."""
        reply = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._protocol.send, line, reply)
        return reply.result(self._timeout)

    def close(self):
        """Close the connection and stop the loop thread."""
        def stop():
            self._protocol.transport.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(self._timeout)
        self._loop.close()


class _HopProtocol(AsyncLineClient):
    """AsyncLineClient whose replies resolve concurrent futures."""

    def send(self, line, reply):
        self._pending.append(reply)
        self.transport.write(line)
