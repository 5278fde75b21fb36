"""The web side of katcp-web: one static page, its files, and one websocket per page.

Safety rules, each kept in one place here:

* the page is static: device data reaches it only as JSON over the websocket and the page
  script puts it into the document as text, never as markup;
* the websocket accepts only pages of this server (``Origin`` must name the host the
  request was sent to), and while listening on a loopback address only requests naming a
  loopback host are served at all, so a foreign site cannot reach it by DNS rebinding;
* without ``control`` a page's request messages are refused, whoever sends them.
"""

import asyncio
import ipaddress
import json
import logging
import os
import urllib.parse
from typing import Any, Dict, List, Optional, Set, Union

import tornado.web
import tornado.websocket

from katcp.web.monitor import DeviceMonitor, RequestRefused

log = logging.getLogger("katcp.web")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MAX_PAGE_MESSAGE = 64 * 1024
"""Largest message a page may send (a request with its arguments)."""
MAX_UNSENT_MESSAGES = 1000
"""Messages waiting to go out to one page before it is dropped (some 50 s of readings)."""

SECURITY_HEADERS = {
    # Only our own files; scripts never inline; the websocket back to this server only.
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """True if ``host`` (an address or 'localhost') is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(listen_host: str, port: int) -> Optional[Set[str]]:
    """``Host`` header values accepted when listening on a loopback address, else None."""
    loopback = is_loopback(listen_host)
    return {"%s:%d" % (name, port) for name in LOOPBACK_NAMES} if loopback else None


class _Guarded(tornado.web.RequestHandler):
    """Base of the handlers: the Host check and the security headers of every response."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def prepare(self) -> None:
        hosts = self.settings["katcp_allowed_hosts"]
        if hosts is not None and self.request.host.lower() not in hosts:
            raise tornado.web.HTTPError(403, "unexpected Host header")


class PageHandler(_Guarded):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        with open(os.path.join(STATIC_DIR, "index.html"), "rb") as page:
            self.write(page.read())


class StaticHandler(_Guarded, tornado.web.StaticFileHandler):
    pass


class PageSocket(_Guarded, tornado.websocket.WebSocketHandler):
    """One page's websocket: device messages out, request messages in."""

    def check_origin(self, origin: str) -> bool:
        parsed = urllib.parse.urlparse(origin)
        return parsed.scheme in ("http", "https") and \
            parsed.netloc.lower() == self.request.host.lower()

    def open(self) -> None:
        self._unsent = 0
        self._monitor = self.settings["katcp_monitor"]
        self.settings["katcp_pages"].add(self)
        # What this page may do comes first, so the page builds its forms (or not) with it.
        self._answer({"type": "page", "control": self.settings["katcp_control"]})
        self._monitor.subscribe(self._send)

    def _send(self, text: str) -> None:
        if self._unsent >= MAX_UNSENT_MESSAGES:
            # A page that stopped reading would otherwise hold ever more memory here; closed,
            # it reconnects and starts again from a fresh snapshot.
            self._monitor.unsubscribe(self._send)
            self.close(1013, "page too slow")
            return
        try:
            written = self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            self._monitor.unsubscribe(self._send)
            return
        self._unsent += 1
        written.add_done_callback(self._written)

    def _written(self, future: "asyncio.Future[None]") -> None:
        self._unsent -= 1
        if not future.cancelled():
            future.exception()  # a closed connection: on_close() cleans up

    def on_close(self) -> None:
        self.settings["katcp_pages"].discard(self)
        monitor = getattr(self, "_monitor", None)
        if monitor is not None:
            monitor.unsubscribe(self._send)

    async def on_message(self, text: Union[str, bytes]) -> None:
        try:
            message = json.loads(text)
            kind, ident = message["type"], message.get("id")
        except (ValueError, KeyError, TypeError):
            self.close(1003, "not a katcp-web message")
            return
        answer = await self._answer_to(kind, message)
        answer["id"] = ident
        self._answer(answer)

    async def _answer_to(self, kind: Any, message: Dict[str, Any]) -> Dict[str, Any]:
        """What a page's message gets back (without its id)."""
        if kind != "request":
            return {"type": "error", "error": "unknown message"}
        if not self.settings["katcp_control"]:
            log.warning("refused a request from a page: katcp-web runs without --control")
            return {"type": "refused",
                    "reason": "read-only: katcp-web was started without --control"}
        name, arguments = message.get("name"), message.get("arguments", [])
        if not isinstance(name, str) or not isinstance(arguments, list) or \
                not all(isinstance(arg, str) for arg in arguments):
            return {"type": "error", "error": "malformed request"}
        try:
            result = await self._monitor.send_request(name, arguments)
        except RequestRefused as exc:
            return {"type": "error", "error": str(exc)}
        except Exception as exc:  # timeouts, lost connection: the page shows why
            return {"type": "error", "error": "%s: %s" % (type(exc).__name__, exc)}
        return dict(result, type="reply")

    def _answer(self, message: Dict[str, Any]) -> None:
        self._send(json.dumps(message))


def make_application(monitor: DeviceMonitor, control: bool = False,
                     allowed_host_headers: Optional[Set[str]] = None) -> tornado.web.Application:
    """Build the tornado application serving the page for ``monitor``.

    Parameters
    ----------
    monitor : :class:`katcp.web.DeviceMonitor`
        The device the page shows.
    control : bool
        Whether pages may send requests to the device.
    allowed_host_headers : set of str or None
        ``Host`` header values to serve (None: any), see :func:`allowed_hosts`.

    Returns
    -------
    application : tornado.web.Application
    """
    routes: List[Any] = [(r"/", PageHandler), (r"/ws", PageSocket),
                         (r"/static/(.*)", StaticHandler, {"path": STATIC_DIR})]
    return tornado.web.Application(
        routes, katcp_monitor=monitor, katcp_control=bool(control), websocket_ping_interval=10,
        katcp_allowed_hosts=allowed_host_headers, websocket_max_message_size=MAX_PAGE_MESSAGE,
        katcp_pages=set())


def close_pages(application: tornado.web.Application) -> None:
    """Close the websocket of every page that `application` serves ("going away"): a page
    then shows that katcp-web is unreachable, rather than its last readings as current.

    Parameters
    ----------
    application : tornado.web.Application
        As made by :func:`make_application`.
    """
    for page in list(application.settings["katcp_pages"]):
        page.close(1001, "katcp-web stopped")
