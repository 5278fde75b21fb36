"""Device servers with a few sensors and requests, for testing clients."""

import concurrent.futures
import queue
import threading
from typing import Any, Dict, Generator, List, Set, Tuple

import tornado.gen
from tornado.concurrent import Future

from katcp import server
from katcp.core import (AsyncEvent, AsyncReply, FailReply, Message, ProtocolFlags,
                        Sensor, steal_docstring_from)
from katcp.kattypes import (Bool, Float, Int, Str, concurrent_reply, request,
                            request_timeout_hint, return_reply)
from katcp.loop.call_queue import CallQueue
from katcp.loop.futures import set_result_if_pending


class DeviceTestSensor(Sensor):
    """Test sensor: a Sensor created with a given reading."""

    def __init__(self, sensor_type: Any, name: str, description: str, units: str,
                 params: Any, timestamp: float, status: int, value: Any) -> None:
        super().__init__(sensor_type, name, description, units, params)
        self.set(timestamp, status, value)


class DeviceTestServer(server.DeviceServer):
    """Test server: a DeviceServer with a few sensors and requests, recording messages."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__msgs: List[Message] = []
        self.__msg_waiters: List[Tuple[int, concurrent.futures.Future]] = []
        # until_messages() may be called from a test thread while messages arrive.
        self.__msg_lock = threading.Lock()
        self.restart_queue: "queue.Queue[Any]" = queue.Queue()
        self.set_restart_queue(self.restart_queue)
        self._cancel_slow_command = threading.Event()
        # Kept as 0.9 API (a test may read it to see ?slow-command waiting): nothing
        # here reads it.
        self.slow_waiting = False
        # Clear to hold back the #version-connect informs (and anything else a new
        # connection gets) until it is set again, on the server's ioloop.
        self.proceed_on_client_connect = AsyncEvent()
        self.proceed_on_client_connect.set()
        # Set to an error text to make ?help / ?sensor-list fail with it.
        self.break_help = False
        self.break_sensor_list = False

    @property
    def request_names(self) -> Set[str]:
        """The names of the requests the server handles."""
        return set(self._request_handlers)

    @property
    def sensor_names(self) -> Set[str]:
        """The names of the server's sensors."""
        return set(sensor.name for sensor in self.get_sensors())

    @tornado.gen.coroutine
    def on_client_connect(self, client_conn: Any) -> Generator[Any, Any, None]:
        # Yield only when there is something to wait for: a coroutine that yields needs
        # a running loop, and tests call this directly from their own thread.
        if not self.proceed_on_client_connect.is_set():
            yield self.proceed_on_client_connect.until_set()
        ready = super().on_client_connect(client_conn)
        if ready is not None and not ready.done():
            yield ready

    def setup_sensors(self) -> None:
        self.restarted = False
        for sensor_type, name, description, units, params, value in (
                (Sensor.INTEGER, "an.int", "An Integer.", "count", [-5, 5], 3),
                (Sensor.FLOAT, "a.float", "A Float.", "", [-123.4, 123.4], 12.0),
                (Sensor.FLOAT, "a.floatwithzero", "A Float with zero.", "", [-123.0, 123.0], 12.0),
                (Sensor.DISCRETE, "a.discrete", "A Discrete.", "", ["one", "two", "three"],
                 "one")):
            self.add_sensor(DeviceTestSensor(sensor_type, name, description, units, params,
                                             timestamp=12345, status=Sensor.NOMINAL, value=value))

    def request_new_command(self, req: Any, msg: Message) -> Message:
        """A new command."""
        return Message.reply(msg.name, "ok", "param1", "param2")

    def request_raise_exception(self, req: Any, msg: Message) -> Message:
        """A handler which raises an exception."""
        raise Exception("An exception occurred!")

    def request_raise_fail(self, req: Any, msg: Message) -> Message:
        """A handler which raises a FailReply."""
        raise FailReply("There was a problem with your request.")

    @request_timeout_hint(99)
    def request_slow_command(self, req: Any, msg: Message) -> Message:
        """A slow command, waits for msg.arguments[0] seconds."""
        # The wait happens in a thread of its own, so the server goes on handling other
        # requests (such as ?cancel-slow-command); the reply is sent from the ioloop, where
        # any connection (thread-safe or not) may send.
        wait_time = float(msg.arguments[0])
        cancelled = self._cancel_slow_command
        ioloop = self.ioloop

        def wait_and_reply() -> None:
            self.slow_waiting = True
            cancelled.wait(wait_time)
            self.slow_waiting = False
            CallQueue.of(ioloop).call(req.reply, "ok")

        threading.Thread(target=wait_and_reply, name="slow-command", daemon=True).start()
        raise AsyncReply

    def request_cancel_slow_command(self, req: Any, msg: Message) -> Message:
        """Cancel slow command request, resulting in it replying immediately."""
        # Each slow command waits on the event it found; later ones get a fresh one.
        self._cancel_slow_command, cancelled = threading.Event(), self._cancel_slow_command
        cancelled.set()
        return req.make_reply("ok")

    @request(Str(), Float(), Int(), Bool())
    @return_reply(Str(), Float(), Int(), Bool())
    def request_decorated(self, req: Any, _string: str, _float: float, _int: int,
                          do_raise: bool) -> Tuple[Any, ...]:
        """Decorated handler, return params, optionally raise exception."""
        if do_raise:
            raise Exception("An exception occurred!")
        req.inform("_string", type(_string))
        req.inform("_float", type(_float))
        req.inform("_int", type(_int))
        req.inform("do_raise", type(do_raise))
        return ("ok", _string, _float, _int, do_raise)

    @return_reply()
    def request_decorated_return_exception(self, req: Any, msg: Message) -> Tuple[Any, ...]:
        """Decorated handler, return fail with exception object."""
        return ("fail", Exception("An exception occurred!"))

    def handle_message(self, req: Any, msg: Message) -> Any:
        with self.__msg_lock:
            self.__msgs.append(msg)
            ready = [w for w in self.__msg_waiters if len(self.__msgs) >= w[0]]
            for waiter in ready:
                self.__msg_waiters.remove(waiter)
            received = list(self.__msgs) if ready else None
        for _count, future in ready:
            # One that the test gave up (cancelled) takes no result; the message goes on.
            if future.set_running_or_notify_cancel():
                future.set_result(received)
        return super().handle_message(req, msg)

    @steal_docstring_from(server.DeviceServer.request_help)
    def request_help(self, req: Any, msg: Message) -> Any:
        if self.break_help:
            raise FailReply(self.break_help)
        return super().request_help(req, msg)

    @steal_docstring_from(server.DeviceServer.request_sensor_list)
    def request_sensor_list(self, req: Any, msg: Message) -> Any:
        if self.break_sensor_list:
            raise FailReply(self.break_sensor_list)
        return super().request_sensor_list(req, msg)

    @property
    def messages(self) -> List[Message]:
        """The messages the server received, oldest first."""
        return self.__msgs

    def until_messages(self, cnt: int) -> concurrent.futures.Future:
        """Return a future that resolves once ``cnt`` messages have been received.

        It resolves to the list of messages received so far. It is a thread-safe
        :class:`concurrent.futures.Future`, as in katcp 0.9: test threads block on
        ``result(timeout)`` and coroutines on the loop can yield it.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.__msg_lock:
            if len(self.__msgs) < cnt:
                self.__msg_waiters.append((cnt, future))
                return future
            received = list(self.__msgs)
        future.set_result(received)
        return future

    def stop(self, *args: Any, **kwargs: Any) -> Any:
        # A blocked ?slow-command would otherwise hold up the handler thread.
        self._cancel_slow_command.set()
        return super().stop(*args, **kwargs)


class AsyncDeviceTestServer(DeviceTestServer):
    """DeviceTestServer with handlers on the ioloop (no handler thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_concurrency_options(thread_safe=False, handler_thread=False)
        self._slow_futures: List["Future[None]"] = []

    @request(Float())
    @return_reply()
    @request_timeout_hint(99)
    @concurrent_reply
    @tornado.gen.coroutine
    def request_slow_command(self, req: Any, wait_time: float) -> Generator[Any, Any, Tuple[str]]:
        """A slow coroutine request, waits for msg.arguments[0] seconds."""
        self.slow_waiting = True
        future: "Future[None]" = Future()
        self._slow_futures.append(future)
        try:
            yield tornado.gen.with_timeout(self.ioloop.time() + wait_time, future)
        except tornado.gen.TimeoutError:
            pass
        finally:
            self.slow_waiting = False
        return ("ok",)

    def request_cancel_slow_command(self, req: Any, msg: Message) -> Message:
        """Cancel slow command request, resulting in it replying immediately."""
        for future in self._slow_futures:
            set_result_if_pending(future, None)
        self._slow_futures = []
        return req.make_reply("ok")


class DeviceTestServerWithTimeoutHints(DeviceTestServer):
    """DeviceTestServer whose ?request-timeout-hint reports configurable hints."""

    # Timeout hints are a KATCP v5.1 feature, announced with the T flag.
    PROTOCOL_INFO = ProtocolFlags(5, 1, {ProtocolFlags.MULTI_CLIENT, ProtocolFlags.MESSAGE_IDS,
                                         ProtocolFlags.REQUEST_TIMEOUT_HINTS})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout_hints: Dict[str, float] = {}

    @request(Str(optional=True))
    @return_reply(Int())
    def request_request_timeout_hint(self, req: Any, name: str) -> Tuple[Any, ...]:
        """Return timeout hints for requests"""
        if name:
            hints = {name: self.request_timeout_hints.get(name, 0)}
            if name not in self._request_handlers:
                raise FailReply("Unknown request method.")
        else:
            hints = self.request_timeout_hints
        for request_name, hint in sorted(hints.items()):
            req.inform(request_name, float(hint))
        return ("ok", len(hints))
