"""How an inspecting client asks its device what requests and sensors it has.

``?help`` (with ``?request-timeout-hint`` where the device has it) for requests and
``?sensor-list`` for sensors, for one item or for all; what is found is stored in the
client's model.
"""

import asyncio
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

from katcp.client import AsyncClient
from katcp.core import AttrDict, Message, future_timeout_manager
from katcp.inspecting_client.index import _Model
from katcp.inspecting_client.parts import (SyncError, _is_unknown_fail, _PendingChanges,
                                           _sensor_list_collector)
from katcp.wire.message import readable_message
from katcp.wire.text import readable
from katcp.wire.util import own_methods, uses_own

# The request methods an inspection may stream through while they are these.
_OWN_REQUESTING = own_methods(AsyncClient, "future_request", "callback_request")


async def _all_outcomes(futures: List[Any]) -> List[Any]:
    """The outcome of each of `futures` (of tornado coroutines): its result or its failure.

    Waits for all, as ``tornado.gen.multi``, but no failure is left for tornado to log: it
    logs as errors each failure after the first, and the failure of a coroutine whose
    future was cancelled (the coroutine runs on regardless). A stop fails every inspection
    in progress, and a test case's teardown cancels the task waiting for them: neither is
    an error. Cancelling this wait leaves the coroutines to run out.
    """
    return await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))


def _to_callback(informs: List[Message], inform_cb: Optional[Callable[[Message], None]]
                 ) -> List[Message]:
    """`informs`, or with `inform_cb` none: each is handed to it instead."""
    if inform_cb is None:
        return informs
    for inform in informs:
        inform_cb(inform)
    return []


class _Inspector:
    """Inspects the device of an :class:`~katcp.inspecting_client.InspectingClientAsync`.

    Its documented inspect methods, which a subclass may override, are called through the
    client; so is its ``_reindex``, which stores what was found.

    Parameters
    ----------
    client : InspectingClientAsync
        The client whose connection is asked, and whose model is updated.
    model : _Model
        That client's model.
    """

    def __init__(self, client: Any, model: _Model) -> None:
        self._client = client
        self._model = model

    def _full_scope(self, kind: str) -> Optional[List[str]]:
        """Names to inspect for 'all requests/sensors' (None: ask for all of them)."""
        if self._client.initial_inspection:
            return None
        return list(self._model.index(kind))

    async def pending(self, pending: _PendingChanges, model_changes: AttrDict,
                      everything: bool = False) -> None:
        """Inspect what `pending` lists, adding the changes found to `model_changes`.

        What has been inspected is removed from `pending` as it goes, so that after a
        failure `pending` holds what is left to do and `model_changes` what was found:
        the changes of items inspected along with one whose inspection failed are in the
        index already, and a retry would not find them again.
        All of a kind is what :meth:`_full_scope` says, or the device's every item if
        `everything` (an explicit ``inspect()``).
        """
        for kind, inspect_one in (("requests", self._client.inspect_requests),
                                  ("sensors", self._client.inspect_sensors)):
            names = getattr(pending, kind)
            if names is _PendingChanges.ALL:
                names = None if everything else self._full_scope(kind)
            if names is None:
                outcomes = await _all_outcomes([inspect_one()])
            else:
                names = list(names)
                outcomes = await _all_outcomes([inspect_one(name) for name in names])
            changes = model_changes.get(kind) or AttrDict(added=set(), removed=set())
            failures = []
            for index, outcome in enumerate(outcomes):
                if isinstance(outcome, BaseException):
                    failures.append(index)
                elif outcome:
                    changes.added |= outcome.added
                    changes.removed |= outcome.removed
            if changes.added or changes.removed:
                model_changes[kind] = changes
            if failures:
                if names is not None:
                    setattr(pending, kind, {names[index] for index in failures})
                raise outcomes[failures[0]]
            setattr(pending, kind, set())

    def requests(self, name: Optional[str], timeout: Optional[float]
                 ) -> Generator[Any, Any, Optional[AttrDict]]:
        """The body of :meth:`InspectingClientAsync.inspect_requests`, for ``yield from``."""
        maybe_timeout: Any = future_timeout_manager(timeout, self._client.ioloop)
        reply, informs = yield from self.request(
            "help", name, maybe_timeout.remaining(), within=maybe_timeout)
        flags = self._client.katcp_client.protocol_flags
        timeout_hints: Dict[str, float] = {}
        if flags is not None and flags.request_timeout_hints and reply.reply_ok():
            timeout_hints = yield from self._timeout_hints(name, maybe_timeout)
        found = {}
        for inform in informs:
            req_name = readable(inform.arguments[0])
            description = readable(inform.arguments[1]) if len(inform.arguments) > 1 else ""
            found[req_name] = {"name": req_name, "description": description,
                               "timeout_hint": timeout_hints.get(req_name)}
        return self._client._reindex(self._model.requests, found, name)

    def sensors(self, name: Optional[str], timeout: Optional[float]
                ) -> Generator[Any, Any, Optional[AttrDict]]:
        """The body of :meth:`InspectingClientAsync.inspect_sensors`, for ``yield from``."""
        found: Dict[str, Dict[str, Any]] = {}
        collect, failures = _sensor_list_collector(found)
        yield from self.request("sensor-list", name, timeout, collect)
        if failures:
            # A malformed inform fails the inspection, as it always did.
            raise failures[0]
        return self._client._reindex(self._model.sensors, found, name)

    def request(self, request: str, name: Optional[str], timeout: Optional[float],
                inform_cb: Optional[Callable[[Message], None]] = None,
                within: Callable[[Any], Any] = lambda future: future
                ) -> Generator[Any, Any, Tuple[Message, List[Message]]]:
        """``?request [name]``; a fail other than 'unknown name' is a :class:`SyncError`.

        For ``yield from`` in an inspection's coroutine (which then waits for the reply
        itself: no task of its own per inspection). Gives ``(reply, informs)``; given
        `inform_cb`, the informs go to it as they arrive instead, each dropped once seen
        (a device's sensor list may be long), and ``informs`` is empty. The wait for
        the reply is ``within(future)`` (a timeout manager's deadline, say).
        """
        args = () if name is None else (name,)
        msg = Message.request(request, *args)
        client = self._client.katcp_client
        # Streamed only through the client's own request methods: code that replaces
        # future_request (a test's fake, say) still gets every inspection through it.
        if inform_cb is None or not uses_own(client, _OWN_REQUESTING):
            reply, informs = yield within(client.future_request(msg, timeout=timeout))
            informs = _to_callback(informs, inform_cb)
        else:
            reply, informs = (yield within(self._streamed(msg, timeout, inform_cb))), []
        if not reply.reply_ok() and name is not None and not _is_unknown_fail(reply):
            # The spec prescribes no text for "no such item", and a device may word it
            # its own way: the whole list settles whether the item is still there.
            reply, informs = yield from self._one_of_whole_list(request, name, reply, timeout,
                                                                inform_cb, within)
        if not reply.reply_ok() and not (name is not None and _is_unknown_fail(reply)):
            raise SyncError("Error reply during sync process for %s: %s"
                            % (client.bind_address_string, readable_message(reply)))
        return reply, informs

    def _one_of_whole_list(self, request: str, name: str, failed: Message,
                           timeout: Optional[float],
                           inform_cb: Optional[Callable[[Message], None]],
                           within: Callable[[Any], Any]
                           ) -> Generator[Any, Any, Tuple[Message, List[Message]]]:
        """``?request`` for all, as :meth:`request` would give ``?request name``.

        The whole list's reply and the item's inform where the device lists `name`; else
        a fail reply saying it is unknown. `failed` (the device's reply to the named
        request) where the whole list fails too.
        """
        reply, informs = yield within(self._client.katcp_client.future_request(
            Message.request(request), timeout=timeout))
        if not reply.reply_ok():
            return failed, []
        wanted = Message.request(request, name).arguments[0]
        informs = [inform for inform in informs
                   if inform.arguments and inform.arguments[0] == wanted]
        if not informs:
            return Message.reply(request, "fail", "Unknown %s (not in the device's list)."
                                 % (name,)), []
        return reply, _to_callback(informs, inform_cb)

    def _streamed(self, msg: Message, timeout: Optional[float],
                  inform_cb: Callable[[Message], None]) -> Any:
        """Future of the reply to `msg`, whose informs go to `inform_cb`."""
        future = self._client._create_future()

        def reply_cb(reply: Message) -> None:
            if not future.done():
                future.set_result(reply)

        self._client.katcp_client.callback_request(msg, reply_cb=reply_cb,
                                                   inform_cb=inform_cb, timeout=timeout)
        return future

    def _timeout_hints(self, name: Optional[str], maybe_timeout: Any
                       ) -> Generator[Any, Any, Dict[str, float]]:
        # For ``yield from``, as request().
        args = () if name is None else (name,)
        client = self._client.katcp_client
        reply, informs = yield maybe_timeout(client.future_request(
            Message.request("request-timeout-hint", *args),
            timeout=maybe_timeout.remaining()))
        if not reply.reply_ok():
            raise SyncError("Error retrieving request timeout hints for %s: %s"
                            % (client.bind_address_string, readable_message(reply)))
        hints = ((readable(inform.arguments[0]), float(inform.arguments[1])) for inform in informs)
        # A zero hint is how a server says there is no hint.
        return {req_name: hint for req_name, hint in hints if hint > 0}
