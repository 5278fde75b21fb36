"""asyncio protocol helpers shared by the client and server transports."""

import asyncio
import threading

__all__ = ["SharedBufferProtocol", "thread_receive_view"]


class _ReceiveBuffer(threading.local):
    """One receive buffer per thread, shared by all the connections of its loop."""

    SIZE = 256 * 1024  # what asyncio reads at most per call with a plain Protocol

    def __init__(self) -> None:
        self.view = memoryview(bytearray(self.SIZE))


_receive_buffer = _ReceiveBuffer()


def thread_receive_view() -> memoryview:
    """Return the calling thread's receive buffer, shared by its loop's connections.

    For a protocol that keeps it rather than look it up per read (one thread-local
    lookup is several times an attribute read): it must then be read only on this
    thread.

    Returns
    -------
    view : memoryview
        A writable view of the thread's buffer, for ``get_buffer()`` to hand out (asyncio
        and uvloop read into any writable buffer) and ``buffer_updated()`` to copy from.

    """
    return _receive_buffer.view


class SharedBufferProtocol(asyncio.BufferedProtocol):
    """A protocol that receives with ``data_received(data)``, as a plain one does.

    asyncio reads into a plain protocol through a fresh 256 KiB ``bytes`` per call,
    shrunk to what arrived; here it reads into one buffer per thread instead, and only
    the bytes that arrived are copied out. asyncio fills the buffer and calls
    ``buffer_updated`` at once on the loop's thread, and the bytes are copied before any
    of them is handled, so connections sharing the buffer never see each other's data.
    """

    __slots__ = ()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _receive_buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_receive_buffer.view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        """Handle bytes that arrived (a subclass's job), as asyncio's own method does.

        Parameters
        ----------
        data : bytes
            A copy of what arrived, for the protocol to keep.

        """
        raise NotImplementedError
