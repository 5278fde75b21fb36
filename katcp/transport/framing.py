"""Line framing and write batching, shared by the server and client transports.

Neither does I/O: :class:`LineFramer` turns received bytes into lines, and
:class:`WriteBatcher` turns the bytes of many messages into one call of the write
function it is given, once per loop turn.
"""

from typing import Any, Callable, List, Optional, Sequence, Tuple

__all__ = ["LineFramer", "WriteBatcher"]

_NOTHING: Tuple[bytes, ...] = ()


class LineFramer:
    """Split a received byte stream into KATCP lines.

    A newline or a carriage return ends a line (so ``\\r\\n`` also gives an empty line,
    which callers skip like any empty line).

    Parameters
    ----------
    max_line : int
        Longest line allowed, in bytes, ended or not.

    Attributes
    ----------
    overflow : bool
        True once a line longer than `max_line` arrived: :meth:`feed` returned the lines
        before it and drops everything from there on.

    """

    __slots__ = ("max_line", "overflow", "_partial", "_partial_size")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.overflow = False
        # The unended line's pieces, joined once it ends: joining them as each arrives
        # would copy a long line trickling in over and over.
        self._partial: Sequence[bytes] = _NOTHING
        self._partial_size = 0

    def feed(self, data: bytes) -> List[bytes]:
        """Add received bytes and return the lines they complete.

        Parameters
        ----------
        data : bytes

        Returns
        -------
        lines : list of bytes
            Complete lines, without their terminators, possibly empty ones.

        """
        if self.overflow:
            return []
        pieces = self._partial
        if pieces:
            if 10 not in data and 13 not in data:
                size = self._partial_size + len(data)
                if size > self.max_line:
                    return self._overflowed([])
                pieces.append(data)  # type: ignore[attr-defined]
                self._partial_size = size
                return []
            pieces.append(data)  # type: ignore[attr-defined]
            data = b"".join(pieces)
        # An int is looked up with memchr; b"\r" would go through the buffer protocol
        # after a failed int conversion (an exception raised and cleared per chunk).
        if 13 in data:
            data = data.replace(b"\r", b"\n")
        lines = data.split(b"\n")
        partial = lines.pop()
        max_line = self.max_line
        if len(data) > max_line:
            # Only a chunk longer than a line may hold a line that is too long.
            for index, line in enumerate(lines):
                if len(line) > max_line:
                    return self._overflowed(lines[:index])
            if len(partial) > max_line:
                return self._overflowed(lines)
        if partial:
            self._partial = [partial]
            self._partial_size = len(partial)
        else:
            self._partial = _NOTHING
        return lines

    def _overflowed(self, lines: List[bytes]) -> List[bytes]:
        self.overflow = True
        self._partial = _NOTHING
        return lines


class WriteBatcher:
    """Collect outgoing bytes and write them with one call per loop turn.

    Parameters
    ----------
    write : callable or None
        Called as ``write(data)`` with the collected bytes; None for a subclass that
        overrides :meth:`write_out` instead (a connection that is its own batcher).
    call_soon : callable
        Schedules a callback for the end of this loop turn (``loop.call_soon``).
    limit : int
        Once more than this many bytes are collected they are written at once, so that
        a peer that does not read is noticed while a long batch is still being made.
    coalesce : bool, optional
        With True, bytes sent outside :meth:`hold` wait for the end of the loop turn
        (many informs per turn, one write); with False they are written at once (lowest
        latency for a client's requests).

    """

    __slots__ = ("_write", "_call_soon", "_limit", "_coalesce", "_chunks", "_size", "_held")

    def __init__(self, write: Optional[Callable[[bytes], Any]], call_soon: Callable[..., Any],
                 limit: int, coalesce: bool = True) -> None:
        self._write = write
        self._call_soon = call_soon
        self._limit = limit
        self._coalesce = coalesce
        # A list only while something waits: idle connections hold no list.
        self._chunks: Sequence[bytes] = _NOTHING
        self._size = 0
        self._held = False

    def send(self, data: bytes) -> None:
        """Queue `data` for the next write.

        Parameters
        ----------
        data : bytes

        """
        chunks = self._chunks
        if chunks:
            chunks.append(data)  # type: ignore[attr-defined]
            self._size += len(data)
            if self._size > self._limit:
                self.flush()
        elif self._held:
            self._chunks = [data]
            self._size = len(data)
        elif self._coalesce:
            self._chunks = [data]
            self._size = len(data)
            self._call_soon(self.flush)
        else:
            # Write-through (a client's request): nothing to join it with.
            self.write_out(data)

    def send_now(self, data: bytes) -> None:
        """Send `data` with what was collected, written at once unless held.

        For the last bytes of a burst (a reply from another thread): written now rather
        than at the end of the loop turn.

        Parameters
        ----------
        data : bytes

        """
        if self._held:
            self.send(data)
            return
        self._held = True
        self.send(data)
        self._held = False
        self.flush()

    @staticmethod
    def group_sender(batchers: Sequence["WriteBatcher"]) -> Callable[[bytes], None]:
        """One function that sends its data to each of `batchers` (a line for many clients).

        Parameters
        ----------
        batchers : sequence of WriteBatcher
            Batchers whose :meth:`send` is this class's.

        Returns
        -------
        send : callable
            ``send(data)``: as each batcher's :meth:`send`, in one call.

        """
        return _BatchGroup(batchers).send

    def hold(self) -> None:
        """Collect everything sent until :meth:`release` (while a received chunk is handled)."""
        self._held = True

    def release(self) -> None:
        """Stop holding and write what was collected."""
        self._held = False
        self.flush()

    def flush(self) -> None:
        """Write what was collected, in one call."""
        chunks = self._chunks
        if not chunks:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = _NOTHING
        self._size = 0
        self.write_out(data)

    def write_out(self, data: bytes) -> None:
        """Write a batch: call the `write` function given (subclasses may override this).

        Parameters
        ----------
        data : bytes

        """
        self._write(data)  # type: ignore[misc]

    def clear(self) -> None:
        """Drop what was collected (the connection is gone)."""
        self._chunks = _NOTHING
        self._size = 0


class _BatchGroup:
    """Sends data to several write batchers in one call (:meth:`WriteBatcher.group_sender`).

    Their batches' sizes are brought up to date once per ``ACCOUNT_EVERY`` bytes sent,
    not per line: a batch is written at most that far past its limit. The count is an
    upper bound (some bytes may have been written meanwhile), so a batch may be written
    early, never late.
    """

    __slots__ = ("_batchers", "_unaccounted")

    ACCOUNT_EVERY = 64 * 1024

    def __init__(self, batchers: Sequence[WriteBatcher]) -> None:
        self._batchers = tuple(batchers)
        self._unaccounted = 0

    def send(self, data: bytes) -> None:
        for batcher in self._batchers:
            chunks = batcher._chunks
            if chunks:
                # send() for a batch under way, the size counted in _account().
                chunks.append(data)  # type: ignore[attr-defined]
            else:
                batcher.send(data)
        self._unaccounted += len(data)
        if self._unaccounted > self.ACCOUNT_EVERY:
            self._account()

    def _account(self) -> None:
        unaccounted, self._unaccounted = self._unaccounted, 0
        for batcher in self._batchers:
            if batcher._chunks:
                batcher._size += unaccounted
                if batcher._size > batcher._limit:
                    batcher.flush()
