"""asyncio protocol helpers shared by the client and server transports."""

import asyncio
from typing import Any

from katcp.loop.per_loop import one_per_loop

__all__ = ["SharedBufferProtocol", "loop_receive_view"]

RECEIVE_SIZE = 256 * 1024  # what asyncio reads at most per call with a plain Protocol


def loop_receive_view(ioloop: Any) -> memoryview:
    """Return the receive buffer of `ioloop`, shared by the connections it reads.

    Kept by each protocol (or by what its connections share): a thread-local buffer,
    looked up per read, costs several attribute reads. A loop reads one connection at a
    time, on whichever thread runs it, so its connections never see each other's data;
    the buffer of a thread, kept, would be shared with another loop should this one
    move to another thread.

    Parameters
    ----------
    ioloop : :class:`tornado.ioloop.IOLoop` (or an asyncio loop with a ``__dict__``)
        The loop whose connections read into the buffer.

    Returns
    -------
    view : memoryview
        A writable view of the loop's buffer, for ``get_buffer()`` to hand out (asyncio
        and uvloop read into any writable buffer) and ``buffer_updated()`` to copy from.

    """
    return one_per_loop(ioloop, "_katcp_receive_view",
                        lambda _: memoryview(bytearray(RECEIVE_SIZE)))


class SharedBufferProtocol(asyncio.BufferedProtocol):
    """A protocol that receives with ``data_received(data)``, as a plain one does.

    asyncio reads into a plain protocol through a fresh 256 KiB ``bytes`` per call,
    shrunk to what arrived; here it reads into its loop's buffer instead
    (:func:`loop_receive_view`, which a subclass keeps as ``_receive_view`` before it
    is connected), and only the bytes that arrived are copied out. asyncio fills the
    buffer and calls ``buffer_updated`` at once on the loop's thread, and the bytes are
    copied before any of them is handled, so connections sharing the buffer never see
    each other's data.
    """

    __slots__ = ()

    _receive_view: memoryview

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._receive_view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        """Handle bytes that arrived (a subclass's job), as asyncio's own method does.

        Parameters
        ----------
        data : bytes
            A copy of what arrived, for the protocol to keep.

        """
        raise NotImplementedError
