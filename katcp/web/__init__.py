"""katcp-web: a live view of a KATCP device in the browser.

A tornado web application that watches one device through the high-level client
(:class:`katcp.KATCPClientResource`) and serves one page: the device's sensors, updated as
they change, its identity and connection state, and its requests (which the page may send
only when started with ``control=True``).

Example, on a running tornado/asyncio loop::

    from katcp.web import WebServer

    web = WebServer(("127.0.0.1", 5000), listen=("127.0.0.1", 8080))
    web.start()
    print(web.url)
    ...
    web.stop()

The ``katcp-web`` program does the same from the command line.
"""

from typing import Any, Optional, Sequence, Tuple

import tornado.httpserver
import tornado.netutil
import tornado.web

from katcp.web.app import allowed_hosts, close_pages, make_application
from katcp.web.monitor import DeviceMonitor
from katcp.wire.types import address_text

__all__ = ["WebServer", "DeviceMonitor", "make_application", "DEFAULT_LISTEN"]

DEFAULT_LISTEN = ("127.0.0.1", 8080)


class WebServer:
    """Serve the live page of one KATCP device.

    Parameters
    ----------
    device : tuple of (str, int)
        Host and port of the KATCP device.
    listen : tuple of (str, int)
        Address for the web server; port 0 picks a free one (see :attr:`url`). The
        default, 127.0.0.1, serves this machine only.
    control : bool
        Let pages send requests to the device. Without it the pages can only watch.
    strategy : str
        Sampling strategy set on every sensor (default ``"event"``).
    """

    def __init__(self, device: Sequence[Any], listen: Sequence[Any] = DEFAULT_LISTEN,
                 control: bool = False, strategy: str = "event") -> None:
        self.monitor = DeviceMonitor(device, strategy=strategy)
        self.listen: Tuple[Any, ...] = tuple(listen)
        self.control = control
        self._http: Optional[tornado.httpserver.HTTPServer] = None
        self._app: Optional[tornado.web.Application] = None
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        """URL of the page (valid once started)."""
        return "http://%s/" % address_text((self.listen[0] or "127.0.0.1", self.port))

    def start(self) -> None:
        """Connect to the device and start serving, on the current tornado loop."""
        host, port = self.listen
        sockets = tornado.netutil.bind_sockets(port, host or None)
        self.port = sockets[0].getsockname()[1]
        self._app = make_application(self.monitor, self.control,
                                     allowed_hosts(host or "0.0.0.0", self.port))
        self._http = tornado.httpserver.HTTPServer(self._app)
        self._http.add_sockets(sockets)
        self.monitor.start()

    def stop(self) -> None:
        """Stop serving, close the open pages and disconnect from the device."""
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._app is not None:
            close_pages(self._app)
            self._app = None
        self.monitor.stop()
