"""An inspecting client's current state, and who hears of each new one."""

import asyncio
import contextvars
from typing import Any, Callable, Dict, Optional

import tornado.gen

from katcp.core import AttrDict
from katcp.inspecting_client.parts import _DISCONNECTED, InspectingClientStateType
from katcp.loop.futures import with_timeout

StatePredicate = Callable[[InspectingClientStateType], bool]

# The client whose state callback runs in this context (a coroutine callback's task copies
# it): that client's state coroutine waits for the callback, so the callback cannot wait
# for the state coroutine's end.
in_state_callback: "contextvars.ContextVar[Any]" = contextvars.ContextVar(
    "in_state_callback", default=None)


class _StateReport:
    """The current :class:`InspectingClientStateType` of a client, the waits for states
    to come and the user's state callback.

    Parameters
    ----------
    client : InspectingClientAsync
        Whose loop the waits' futures are of, and whose logger (read when used: code
        may replace a client's ``_logger``) tells of a failing state callback.
    """

    def __init__(self, client: Any) -> None:
        self.state = _DISCONNECTED
        # Each pending wait's future and the states it waits for, until it is over.
        self.waiters: Dict["asyncio.Future[Any]", StatePredicate] = {}
        self.callback: Optional[Callable[..., Any]] = None
        self._client = client

    def until(self, predicate: StatePredicate, timeout: Optional[float] = None) -> Any:
        """Future resolving to True once the state satisfies `predicate` (at once if it
        does now); it fails with a timeout error after `timeout` seconds."""
        future = self._client._create_future()
        if predicate(self.state):
            future.set_result(True)
            return future
        self.waiters[future] = predicate
        # A wait that times out or is cancelled is unregistered at once, not at the next
        # state change: a watchdog polling a healthy device must not pile them up.
        future.add_done_callback(self._forget_waiter)
        return with_timeout(future, timeout)

    def _forget_waiter(self, future: "asyncio.Future[Any]") -> None:
        self.waiters.pop(future, None)

    async def report(self, state: InspectingClientStateType,
                     model_changes: Optional[AttrDict] = None) -> None:
        """Make `state` the current state: wake the waits for it, then call the user's
        callback with it and `model_changes`, waiting for the future it may return."""
        self.state = state
        waiters = self.waiters
        for future, predicate in list(waiters.items()):
            # A wait over (cancelled) but not yet forgotten is left to its callback.
            if not future.done() and predicate(state):
                del waiters[future]
                future.set_result(True)
        if self.callback is None:
            return
        try:
            entered = in_state_callback.set(self._client)
            try:
                result = self.callback(state, model_changes)
                callback_done = (None if result is None
                                 else tornado.gen.convert_yielded(result))
            finally:
                in_state_callback.reset(entered)
            if callback_done is not None:
                try:
                    # Shielded, to tell a cancel of the callback's own (as a failure of
                    # it) from one of this coroutine (passed on).
                    await asyncio.shield(callback_done)
                except asyncio.CancelledError:
                    if not callback_done.cancelled():
                        raise
                    client = self._client
                    client._logger.error("State callback for %s was cancelled",
                                         client.katcp_client.bind_address_string)
            else:
                # As in 0.9 (a coroutine yielding the callback's None): the loop
                # turns before the next state, so code woken by this state still
                # sees it as the latest one.
                await asyncio.sleep(0)
        except Exception:
            client = self._client
            client._logger.exception("Error in state callback for %s",
                                     client.katcp_client.bind_address_string)
