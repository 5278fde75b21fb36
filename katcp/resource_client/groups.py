"""Groups of client resources, acted on together."""

import math
from typing import Any, Dict, Generator, Iterable, Iterator, Mapping, Optional, Sequence

import tornado.gen

from katcp.core import until_some
from katcp.loop.futures import failed_future
from katcp.display import help_docstring, object_repr
from katcp.resource import StrategySpec
from katcp.resource_client.namespaces import _find_request, _RequestNamespace


class GroupResults(dict):
    """The result of a group request.

    This has a dictionary interface, with the client names as keys and the
    corresponding replies from each client as values. The replies are stored as
    :class:`KATCPReply` objects, or are None for clients that did not support the
    request.

    The result will evaluate to a truthy value if all the requests succeeded, i.e.
    ::

        if result:
            handle_success()
        else:
            handle_failure()

    should work as expected.
    """

    def __bool__(self) -> bool:
        return self.succeeded

    @property
    def succeeded(self) -> bool:
        """True if katcp request succeeded on all clients."""
        return all(self.values())


class GroupRequest:
    """Couroutine wrapper around a specific KATCP request for a group of clients.

    Each available KATCP request supported by group has an associated
    :class:`GroupRequest` object in the hierarchy. This wrapper is mainly for
    interactive convenience. It provides the KATCP request help string as a
    docstring accessible via IPython's question mark operator.

    Call parameters are all forwarded to the :class:`KATCPRequest` instance of each
    client in the group.

    Returns a tornado future that resolves with a :class:`GroupResults` instance that
    contains the replies of each client. If a particular client does not have the
    request, its result is None.

    Parameters
    ----------
    group : :class:`ClientGroup`
    name : str
        Python identifier of the request.
    description : str
        Help text of the request.
    """

    def __init__(self, group: "ClientGroup", name: str, description: Optional[str]) -> None:
        self.group = group
        self.name = name
        self.description = description
        self.__doc__ = help_docstring(description, (
            "Calling this object sends the request to every client of group %s; it gives a "
            "future of their GroupResults." % group.name))

    def __repr__(self) -> str:
        return object_repr(self, name=self.name, group=self.group.name)

    @tornado.gen.coroutine
    def __call__(self, *args: Any, **kwargs: Any) -> Generator[Any, Any, GroupResults]:
        futures = {}
        for client in self.group.clients:
            request = _find_request(client.req, self.name)
            if request is not None:
                futures[client.name] = request(*args, **kwargs)
        replies = yield futures
        return GroupResults((client.name, replies.get(client.name))
                            for client in self.group.clients)


def _requests_of(client: Any) -> Mapping[str, Any]:
    """A client's requests by name: none if its ``req`` is no mapping (as for a mock
    standing in for a resource, whose group is made only to test its waits)."""
    requests = getattr(client, "req", None)
    return requests if isinstance(requests, Mapping) else {}


class ClientGroup:
    """Create a group of similar clients.

    Parameters
    ----------
    name : str
        Name of the group of clients.
    clients : list of :class:`KATCPResource` objects
        Clients to put into the group.
    """

    def __init__(self, name: str, clients: Sequence[Any]) -> None:
        self.name = name
        self.clients = tuple(clients)
        # Clients with dummy unknown requests make the group offer them too.
        offers_dummies = any(getattr(client, "dummy_unknown_requests", False)
                             for client in self.clients)
        self.req = _RequestNamespace(self._dummy_request if offers_dummies else None)
        for client in self.clients:
            self.client_updated(client)

    def _dummy_request(self, name: str) -> GroupRequest:
        return GroupRequest(self, name, "Dummy request")

    def __iter__(self) -> Iterator[Any]:
        return iter(self.clients)

    def __len__(self) -> int:
        return len(self.clients)

    def __getitem__(self, index: int) -> Any:
        return self.clients[index]

    def __repr__(self) -> str:
        return object_repr(self, name=self.name, clients=[client.name for client in self.clients])

    def client_updated(self, client: Any) -> None:
        """Called to notify this group that a client has been updated."""
        if client not in self.clients:
            raise ValueError("Client %r is not in group %r" % (client.name, self.name))
        for name, request in _requests_of(client).items():
            known = self.req.get(name)
            # A request the device modified brings its new help (the updated client's).
            if known is None or known.description != request.description:
                self.req[name] = GroupRequest(self, name, request.description)
        # Requests that no client offers any more disappear from the group.
        for name in list(self.req):
            if not any(name in _requests_of(client) for client in self.clients):
                del self.req[name]

    def is_connected(self) -> bool:
        """Indication of the connection state of all clients in the group"""
        return all(client.is_connected() for client in self.clients)

    @tornado.gen.coroutine
    def _on_each_client(self, method: str, *args: Any) -> Generator[Any, Any, Dict[str, Any]]:
        """Call `method` of every client; a future of their results keyed by client name."""
        return (yield {client.name: getattr(client, method)(*args) for client in self.clients})

    def set_sampling_strategies(self, filter: str, strategy_and_params: StrategySpec) -> Any:
        """Set sampling strategy for the sensors of all the group's clients.

        Only sensors that match the specified filter are considered: see
        :meth:`katcp.resource.KATCPResource.set_sampling_strategies`.

        Returns
        -------
        sensors_strategies : tornado Future
            Resolves with a dict keyed by client name whose values are what each
            client's ``set_sampling_strategies`` resolved with.
        """
        return self._on_each_client("set_sampling_strategies", filter, strategy_and_params)

    def set_sampling_strategy(self, sensor_name: str, strategy_and_params: StrategySpec) -> Any:
        """Set sampling strategy for the named sensor on all the group's clients.

        See :meth:`katcp.resource.KATCPResource.set_sampling_strategy`. The future
        resolves as that of :meth:`set_sampling_strategies`, with what each client's
        ``set_sampling_strategy`` resolved with.
        """
        return self._on_each_client("set_sampling_strategy", sensor_name, strategy_and_params)

    def wait(self, sensor_name: str, condition_or_value: Any,
             timeout: Optional[float] = 5.0, quorum: Any = None,
             max_grace_period: Optional[float] = 1.0) -> Any:
        """Wait for sensor present on all group clients to satisfy a condition.

        Parameters
        ----------
        sensor_name : string
            The name of the sensor to check
        condition_or_value : obj or callable, or seq of objs or callables
            As for :meth:`katcp.resource.KATCPSensor.wait`.
        timeout : float or None
            The total timeout in seconds (None means wait forever)
        quorum : None or int or float
            The number of clients that are required to satisfy the condition,
            as either an explicit integer or a float between 0 and 1 indicating
            a fraction of the total number of clients, rounded up. If None,
            this means that all clients are required (the default). Be warned
            that a value of 1.0 (float) indicates all clients while a value
            of 1 (int) indicates a single client...
        max_grace_period : float or None
            After a quorum or initial timeout is reached, wait up to this long
            in an attempt to get the rest of the clients to satisfy condition
            as well (achieving effectively a full quorum if all clients behave)

        Returns
        -------
        This command returns a tornado Future that resolves with True when a
        quorum of clients satisfy the sensor condition, or False if a quorum
        is not reached after a given timeout period (including a grace period).
        The result is a dict of per-client booleans keyed by client name that
        evaluates to True or False as described.

        Raises
        ------
        :class:`KATCPSensorError`
            If any of the sensors do not have a strategy set, or if the named
            sensor is not present
        """
        num_clients = len(self.clients)
        try:
            quorum = _clients_needed(quorum, num_clients)
        except Exception as exc:
            return failed_future(exc)  # as from the coroutine this was in 0.9
        grace_period: Optional[float]
        initial_timeout: Optional[float]
        if timeout and max_grace_period:
            # The grace period comes out of the total timeout, never all of it.
            grace_period = min(max_grace_period, timeout / 2.0)
            initial_timeout = timeout - grace_period
        else:
            grace_period = max_grace_period
            initial_timeout = timeout
        # One wait per client for the whole group wait, bounded by the group's deadlines:
        # each resolves True or fails.
        waits = {client.name: client.wait(sensor_name, condition_or_value, None)
                 for client in self.clients}
        outcome = _quorum_of(waits, quorum, initial_timeout, grace_period)
        # Nothing outlives the group wait, also one given up (cancelled) by its caller.
        outcome.add_done_callback(lambda _: _cancel_all(waits.values()))
        return outcome


@tornado.gen.coroutine
def _quorum_of(waits: Dict[str, Any], quorum: int, initial_timeout: Optional[float],
               grace_period: Optional[float]) -> Generator[Any, Any, Dict[str, bool]]:
    """The results of the clients' `waits` for :meth:`ClientGroup.wait`: until `quorum`
    of them succeeded or `initial_timeout`, then up to `grace_period` for the others."""
    try:
        try:
            yield until_some(done_at_least=quorum, timeout=initial_timeout, **waits)
        except tornado.gen.TimeoutError:
            pass
        stragglers = {name: wait for name, wait in waits.items() if not wait.done()}
        if stragglers and grace_period:
            try:
                yield until_some(timeout=grace_period, **stragglers)
            except tornado.gen.TimeoutError:
                pass
        return _QuorumResults({name: _succeeded(wait) for name, wait in waits.items()},
                              quorum)
    finally:
        # A client's wait still pending is cancelled, which removes its sensor listener
        # before the caller resumes (ClientGroup.wait cancels them too when the caller
        # gives up first).
        _cancel_all(waits.values())


def _cancel_all(futures: Iterable[Any]) -> None:
    for future in futures:
        future.cancel()


def _succeeded(wait: Any) -> bool:
    """Whether a client's wait of :meth:`ClientGroup.wait` ended with its condition met."""
    return wait.done() and not wait.cancelled() and wait.exception() is None \
        and wait.result() is True


def _clients_needed(quorum: Any, num_clients: int) -> int:
    """Number of clients a :meth:`ClientGroup.wait` quorum asks for."""
    if quorum is None:
        return num_clients
    if isinstance(quorum, bool) or not isinstance(quorum, (int, float)):
        raise TypeError("Quorum parameter %r must be an int, a float or None" % (quorum,))
    if quorum > 1:
        if not isinstance(quorum, int):
            raise TypeError("Quorum parameter %r must be an integer if outside range "
                            "[0, 1]" % (quorum,))
        return quorum
    if quorum < 0:
        raise ValueError("Quorum parameter %r must not be negative" % (quorum,))
    if isinstance(quorum, float):
        # A fraction of the clients, rounded up (1.0 is all of them, int 1 is one).
        return int(math.ceil(quorum * num_clients))
    return quorum


class _QuorumResults(dict):
    """Per-client results of :meth:`ClientGroup.wait`, true if a quorum succeeded."""

    def __init__(self, results: Dict[str, bool], quorum: int) -> None:
        super().__init__(results)
        self.quorum = quorum

    def __bool__(self) -> bool:
        return sum(bool(value) for value in self.values()) >= self.quorum
