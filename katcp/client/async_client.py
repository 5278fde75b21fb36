"""AsyncClient: requests whose replies come back as futures, to callbacks or to a thread."""

import concurrent.futures
import logging
from typing import Any, Callable, List, Optional, Tuple

from katcp.client.device import DeviceClient
from katcp.client.lifecycle import _running_loop, log
from katcp.client.protocol import ClientProtocol
from katcp.client.requests import CallbackRequest, FutureRequest, RequestTable, ThreadRequest
from katcp.client.threadsafe import (_checks_request_timeout, make_threadsafe,
                                     make_threadsafe_blocking)
from katcp.core import KatcpClientError, Message
from katcp.loop.crossing import (TIMEOUT_GRACE, check_timeout, on_thread, post_to_loop,
                                 thread_wait_timeout, wait_for_loop)
from katcp.wire.text import show_repr


_REQUEST = Message.REQUEST
# The methods the request fast path (_start_request) may skip while they are these (as
# wire.util.own_methods() gives them).
_SEND_REQUEST = DeviceClient.send_request
_SEND_MESSAGE = DeviceClient.send_message


class IdInUseError(RuntimeError):
    """A request was given the message id of a request still in flight."""


class AsyncClient(DeviceClient):
    """Implement async and callback-based requests on top of DeviceClient.

    This client will use message IDs if the server supports them.

    Parameters
    ----------
    host, port, tb_limit, logger, auto_reconnect
        As for :class:`DeviceClient`.
    timeout : float in seconds, optional
        Default number of seconds to wait before a request times out; each request
        may give its own. None means requests never time out.

    Notes
    -----
    The request methods take the request `msg`, a `timeout` in seconds (default: the
    client's) and `use_mid`: whether to give the request a message id (default: if
    the server supports them). A request that gets no reply in time, or whose
    connection closes or cannot be used, gets a fail reply made by the client.

    """

    def __init__(self, host: str, port: int, tb_limit: int = 20, timeout: Optional[float] = 5.0,
                 logger: Optional[logging.Logger] = log, auto_reconnect: bool = True) -> None:
        super().__init__(host, port, tb_limit=tb_limit, logger=logger,
                         auto_reconnect=auto_reconnect)
        self._request_timeout = timeout
        self._requests = RequestTable(self._handle_timeout)

    # -- bookkeeping -----------------------------------------------------------------

    def _connection_made(self, protocol: ClientProtocol) -> None:
        self._requests.use_clock(self._loop)
        super()._connection_made(protocol)

    def _deliver_reply(self, pending: Any, reply: Message) -> None:
        if not pending.on_reply(reply):
            super().handle_reply(reply)

    def _fail(self, pending: Any, reason: str) -> None:
        """Answer `pending` with a fail reply of the client's own making."""
        msg = pending.msg
        self._deliver_reply(pending, Message.reply(msg.name, "fail", reason, mid=msg.mid))

    def _start_request(self, msg: Message, pending: Any, timeout: Optional[float],
                       use_mid: Optional[bool]) -> None:
        """Register and send a request on the loop; failures resolve it with a fail reply."""
        if msg.mtype != _REQUEST:
            # Raised, not asserted: under python -O an inform or reply would go out as if
            # it were a request, and its caller wait for a reply that never comes.
            raise AssertionError("not a request message: %s" % (msg,))
        if timeout is None:
            timeout = self._request_timeout
        if (timeout.__class__ is not float and timeout.__class__ is not int
                and timeout is not None):
            check_timeout(timeout)  # before anything is sent
        if timeout != timeout:
            # NaN (given, or the client's default): timed out at once, as by every katcp
            # timeout (the deadline timer would never fire for it).
            timeout = 0.0
        id_given = msg.mid is not None
        msg_id = self._assign_mid(msg, use_mid)
        mid = msg.mid
        # _open_protocol(), inline: this runs for every request.
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            self._fail(pending, "Client not connected")
            return
        if mid is not None and not self._server_supports_ids:
            # The reference client answers with a '?'-typed message here; kept so
            # programs see the same reply text (see the v4 wire transcript).
            self._deliver_reply(pending, Message.request(
                msg.name, "fail", "Message IDs not supported by server", mid=msg_id))
            return
        requests = self._requests
        if msg_id in requests.by_id:
            if id_given:
                raise IdInUseError("Message id %s already in use by a request in flight"
                                   % show_repr(msg_id))
            # A drawn id that a caller gave a request still in flight: the next free one,
            # which a counter reaches within as many draws as there are requests in
            # flight (a _next_id replaced by a test might never give one).
            for _ in range(len(requests.by_id)):
                msg.mid = None
                msg_id = self._assign_mid(msg, use_mid)
                if msg_id not in requests.by_id:
                    break
            else:
                raise IdInUseError("Message id %s drawn by _next_id() already in use by a "
                                   "request in flight" % show_repr(msg_id))
        # wire.util.uses_own()'s test, inlined: its call costs more than the two reads.
        try:
            own = (self.send_request.__func__ is _SEND_REQUEST  # type: ignore[attr-defined]
                   and self.send_message.__func__ is _SEND_MESSAGE)  # type: ignore[attr-defined]
        except AttributeError:
            own = False  # a replacement that is no method (a mock, a function)
        if own:
            # Neither is overridden (by a subclass, on a class or on the instance, as
            # mock.patch.object does): sent before the bookkeeping, which then overlaps
            # the server's work; the reply can only be read on a later loop iteration.
            protocol.write(msg.__bytes__() + b"\n")
            requests.add(msg_id, msg.name, pending, timeout)
            return
        requests.add(msg_id, msg.name, pending, timeout)
        try:
            self.send_request(msg)
        except KatcpClientError as exc:
            requests.by_id.pop(msg_id, None)
            self._deliver_reply(pending, Message.request(msg.name, "fail", str(exc), mid=mid))
        except BaseException:
            # Not sent, and its caller told so: left in flight, it would take the reply
            # of the next request of its name (and answer again once it timed out).
            requests.by_id.pop(msg_id, None)
            raise

    def _handle_timeout(self, msg_id: Any, start_time: float) -> None:
        pending = self._requests.by_id.pop(msg_id, None)
        if pending is None:  # answered meanwhile
            return
        self._fail(pending, "Request %s timed out after %f seconds." % (
            pending.msg.name, self._loop.time() - start_time))

    def _connection_closed(self) -> None:
        reason = "%s before reply was received" % (
            "Client stopped" if self._stopping else "Connection closed")
        for pending in self._requests.drain():
            self._fail(pending, reason)

    # -- request API -----------------------------------------------------------------

    @make_threadsafe_blocking
    @_checks_request_timeout
    def future_request(self, msg: Message, timeout: Optional[float] = None,
                       use_mid: Optional[bool] = None) -> Any:
        """Send a request message, with future replies.

        Returns
        -------
        A tornado.concurrent.Future that resolves with:

        reply : Message object
            The reply message received.
        informs : list of Message objects
            A list of the inform messages received.

        Called from another thread with thread safety enabled, it blocks and returns
        (reply, informs) instead.

        Raises
        ------
        AssertionError
            If called from another thread without thread safety enabled.

        """
        loop = self._loop
        # katcp.loop.crossing.on_thread()'s running-loop form, inlined (the first question
        # of _on_loop_thread(), without its call): this runs for every request.
        if loop is None or _running_loop() is not loop:
            self._check_loop_thread()  # raises, unless on the loop's thread before it runs
        future = loop.create_future()
        try:
            self._start_request(msg, FutureRequest(msg, future), timeout, use_mid)
        except Exception as exc:
            future.set_exception(exc)
        return future

    @make_threadsafe
    @_checks_request_timeout
    def callback_request(self, msg: Message, reply_cb: Optional[Callable[..., Any]] = None,
                         inform_cb: Optional[Callable[..., Any]] = None,
                         user_data: Optional[Tuple[Any, ...]] = None,
                         timeout: Optional[float] = None,
                         use_mid: Optional[bool] = None) -> None:
        """Send a request message.

        Parameters
        ----------
        reply_cb : function
            The reply callback with signature ``reply_cb(msg)`` or
            ``reply_cb(msg, *user_data)``.
        inform_cb : function
            The inform callback with signature ``inform_cb(msg)`` or
            ``inform_cb(msg, *user_data)``.
        user_data : tuple
            Optional user data to send to the reply and inform callbacks.

        Raises
        ------
        AssertionError
            If called from another thread without thread safety enabled.

        Notes
        -----
        Without a `reply_cb` the reply goes to the client's reply handlers
        (:meth:`handle_reply`), as informs do without an `inform_cb`.

        """
        self._check_loop_thread()
        pending = CallbackRequest(msg, reply_cb, inform_cb, user_data, self._logger)
        try:
            self._start_request(msg, pending, timeout, use_mid)
        except IdInUseError as exc:
            # reply_cb is the answer a callback request has (an error raised here is
            # lost when the call came from another thread): a fail reply then.
            self._fail(pending, str(exc))

    def blocking_request(self, msg: Message, timeout: Optional[float] = None,
                         use_mid: Optional[bool] = None) -> Tuple[Message, List[Message]]:
        """Send a request message and wait for its reply.

        Returns
        -------
        reply : Message object
            The reply message received.
        informs : list of Message objects
            A list of the inform messages received.

        Raises
        ------
        RuntimeError
            If called from the client's ioloop thread (it would deadlock), once the
            client is stopped (from :meth:`stop` until :meth:`start`), if no reply
            (not even a timeout reply) arrives within timeout + 1 seconds, or, with
            no timeout at all, once no thread runs the client's ioloop any more
            (checked every ``katcp.loop.crossing.NOT_RUNNING_GRACE`` seconds).

        """
        if on_thread(self.ioloop_thread_id):
            raise RuntimeError("blocking_request() cannot be called from the client's "
                               "ioloop thread; use future_request() instead")
        if timeout is None:
            timeout = self._request_timeout
        # Before the request is sent: nothing about the timeout may fail once it is.
        wait = thread_wait_timeout(timeout)
        result: "concurrent.futures.Future[Tuple[Message, List[Message]]]" = (
            concurrent.futures.Future())
        pending = ThreadRequest(msg, result)
        # One crossing, and the request resolves `result` itself. Nothing between
        # waking the loop and blocking: the loop thread needs the GIL. (The gate raises
        # for a client not started or stopped.)
        self._gate.post(self._blocking_request_on_loop, pending, timeout, use_mid)
        try:
            if wait is not None:
                return result.result(wait)
            # Unbounded: ends should the loop stop under the client. A bounded wait ends
            # anyway (below), and a wait that watches the loop costs a call per request.
            return wait_for_loop(result, self.ioloop, None, self._no_reply_text,
                                 thread_id=self.ioloop_thread_id)
        except concurrent.futures.TimeoutError:
            self._serve_deadline_on_loop(pending)
        except BaseException:
            if not result.done():
                # Abandoned (KeyboardInterrupt, say): its deadline must still be served.
                self._serve_deadline_on_loop(pending)
            raise
        # The deadline has passed by this thread's clock: the loop's timer now serves
        # it (by the loop's clock, a moment later) with a timeout reply. The grace only
        # catches a loop that has stopped answering at all.
        try:
            return result.result(TIMEOUT_GRACE)
        except concurrent.futures.TimeoutError:
            raise RuntimeError("Unexpected error: Async request handler did not call "
                               "reply handler within timeout period") from None

    def _no_reply_text(self) -> str:
        return self._not_running_text("blocking_request")

    def _serve_deadline_on_loop(self, pending: Any) -> None:
        """From the thread that made `pending`: the loop's timer serves its deadline now."""
        try:
            post_to_loop(self.ioloop, self._requests_watch, pending)
        except RuntimeError:
            pass  # the loop is closed: nothing will answer

    def _blocking_request_on_loop(self, pending: Any, timeout: Optional[float],
                                  use_mid: Optional[bool]) -> None:
        result = pending.future
        try:
            self._start_request(pending.msg, pending, timeout, use_mid)
        except BaseException as exc:
            if not result.done():
                result.set_exception(exc)

    def _requests_watch(self, pending: Any) -> None:
        self._requests.watch(pending)

    # -- dispatch --------------------------------------------------------------------

    def handle_inform(self, msg: Message) -> Any:
        """Hand an inform to the request in flight it belongs to, if any.

        Others (and those of requests without an inform callback) are dispatched as
        by :meth:`DeviceClient.handle_inform`.
        """
        if msg.mid is not None:
            pending = self._requests.by_id.get(msg.mid)
        else:
            _msg_id, pending = self._requests.peek_by_name(msg.name)
        if pending is None or not pending.on_inform(msg):
            return super().handle_inform(msg)
        return None

    def handle_reply(self, msg: Message) -> Any:
        """Hand a reply to the request in flight it answers, as :meth:`handle_inform`."""
        mid = msg.mid
        requests = self._requests
        if mid is not None:
            pending = requests.by_id.pop(mid, None)
        else:
            # Not the answer of a request sent with an id (that one's timeout stays
            # armed, unlike in the reference client: docs/migrating.rst).
            msg_id, pending = requests.peek_by_name(msg.name)
            if pending is not None:
                del requests.by_id[msg_id]
        if pending is None or not pending.on_reply(msg):
            return super().handle_reply(msg)
        return None
