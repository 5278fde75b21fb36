"""How an inspecting client looks up its device's requests and sensors by name.

A name the model has is answered from it; one it lacks is inspected (where allowed)
before the answer. The request and sensor objects are made from the model's entries on
first use, by the client's factories.
"""

from operator import attrgetter, methodcaller
from typing import Any, Callable, Dict, Iterable, NamedTuple, Optional

import tornado.gen

from katcp.core import Sensor
from katcp.inspecting_client.index import Index, _Model
from katcp.inspecting_client.parts import _objects, katcp_major
from katcp.inspecting_client.states import _StateReport

Maker = Callable[[str, Dict[str, Any]], Any]
# Gets a method (or a maker) of the client, as it is at the time of the lookup.
_OfClient = Callable[[Any], Any]


class _Kind(NamedTuple):
    """The client's methods for one kind of item ('sensors' or 'requests'), got from the
    client at each use: a subclass or a user may override or replace them.

    Sensors have two makers, both hooks of the client: ``_make_sensor`` makes one sensor,
    and ``_sensor_maker()`` gives the maker of a batch, asked once for the batch.
    """

    inspect: _OfClient
    future_check: _OfClient
    future_get: _OfClient
    maker: _OfClient
    batch_maker: _OfClient


_KINDS = {
    "sensors": _Kind(inspect=attrgetter("inspect_sensors"),
                     future_check=attrgetter("future_check_sensor"),
                     future_get=attrgetter("future_get_sensor"),
                     maker=attrgetter("_make_sensor"),
                     batch_maker=methodcaller("_sensor_maker")),
    "requests": _Kind(inspect=attrgetter("inspect_requests"),
                      future_check=attrgetter("future_check_request"),
                      future_get=attrgetter("future_get_request"),
                      maker=attrgetter("_make_request"),
                      batch_maker=attrgetter("_make_request")),
}


class _Lookup:
    """Looks up requests and sensors for an
    :class:`~katcp.inspecting_client.InspectingClientAsync`.

    What a subclass or a user may override or replace (the documented ``future_*``
    methods, ``inspect_requests``/``inspect_sensors``, ``until_data_synced``, the
    factories and the object makers ``_sensor_maker``, ``_make_sensor``,
    ``_sensor_description`` and ``_make_request``) is called through the client.

    Parameters
    ----------
    client : InspectingClientAsync
        The client whose model is looked in, and whose device is inspected.
    model : _Model
        That client's model.
    states : _StateReport
        That client's state, which says whether the model is up to date.
    """

    def __init__(self, client: Any, model: _Model, states: _StateReport) -> None:
        self._client = client
        self._model = model
        self._states = states

    async def check(self, kind: str, name: str, update: Optional[bool]) -> bool:
        """The body of ``future_check_sensor`` (`kind` 'sensors') and
        ``future_check_request`` ('requests')."""
        client = self._client
        index = self._model.index(kind)
        await client.until_data_synced()
        if name in index:
            return True
        if update or (update is None and client._update_on_lookup):
            await _KINDS[kind].inspect(client)(name)
            return name in index
        return False

    def get(self, kind: str, name: str, update: Optional[bool]) -> Any:
        """The body of ``future_get_sensor`` (`kind` 'sensors') and ``future_get_request``
        ('requests')."""
        index = self._model.index(kind)
        if self._states.state.data_synced and name in index:
            # Known and up to date: nothing to wait for or inspect, so no coroutine (a
            # resource's sync gets every sensor of its device this way).
            return _outcome_of(self._client, _object, name, index,
                               _KINDS[kind].maker(self._client))
        return self._check_and_get(kind, name, update, index)

    @tornado.gen.coroutine
    def _check_and_get(self, kind: str, name: str, update: Optional[bool], index: Index
                       ) -> Any:
        client = self._client
        kind_of = _KINDS[kind]
        exists = yield kind_of.future_check(client)(name, update)
        return _object(name, index, kind_of.maker(client)) if exists else None

    def many(self, kind: str, names: Iterable[str]) -> Any:
        """The body of the client's ``_future_get_many``."""
        client = self._client
        names = list(names)
        index = self._model.index(kind)
        kind_of = _KINDS[kind]
        if not (self._states.state.data_synced and all(map(index.__contains__, names))):
            get_one = kind_of.future_get(client)
            return tornado.gen.multi([get_one(name) for name in names])
        return _outcome_of(client, _objects, names, index, kind_of.batch_maker(client))

    def make_sensor(self, name: str, info: Dict[str, Any]) -> Any:
        """The sensor object of index entry `info` of sensor `name`, by the client's
        ``sensor_factory``."""
        client = self._client
        return client.sensor_factory(**client._sensor_description(name, info))

    def sensor_description(self, name: str, info: Dict[str, Any]) -> Dict[str, Any]:
        """The keyword arguments of the client's ``sensor_factory`` for sensor `name` of
        the index."""
        sensor_type = Sensor.parse_type(info["sensor_type"])
        params = Sensor.parse_params(sensor_type, info["params"],
                                     katcp_major(self._client.katcp_client))
        return dict(name=name, sensor_type=sensor_type, description=info["description"],
                    units=info["units"], params=params)

    def make_request(self, name: str, info: Dict[str, Any]) -> Any:
        """The request object of index entry `info` of request `name`, by the client's
        ``request_factory``."""
        return self._client.request_factory(name=name, description=info["description"],
                                            timeout_hint=info["timeout_hint"])


def _outcome_of(client: Any, make: Callable[..., Any], *args: Any) -> Any:
    """A future of `client`'s loop, resolved to ``make(*args)``, or failed with what it
    raises (a factory's error, a sensor type the device made up): as the coroutine that
    0.9.3's lookups are, which never raises at the call."""
    future = client._create_future()
    try:
        made = make(*args)
    except Exception as exc:
        future.set_exception(exc)
    else:
        future.set_result(made)
    return future


def _object(name: str, index: Index, make: Maker) -> Any:
    """The object of item `name` of `index`, made on first use; None if unknown."""
    return _objects([name], index, make)[0] if name in index else None
