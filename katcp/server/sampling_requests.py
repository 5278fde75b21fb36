"""The sensor sampling requests of a DeviceServer and the strategies they keep.

The public functions are methods of :class:`katcp.server.DeviceServer`, which takes them
into its class body (as the fake devices of :mod:`katcp.fake_clients` do): `self` is the
device server, whose ``_strategies`` holds the strategies of each client (only touched on
the loop). The docstrings of the requests, which ``?help`` sends, keep the indentation of
method docstrings.
"""

import functools
from typing import Any, Callable, List, Sequence

from katcp.core import SEC_TS_KATCP_MAJOR, FailReply, Message, Reading, Sensor
from katcp.kattypes import request
from katcp.sampling import SampleStrategy, sensor_status_inform, wire_strategy
from katcp.server.connection import ClientConnection, ClientRequestConnection
from katcp.server.standard_requests import SensorHost, _name_argument
from katcp.wire.text import readable
from katcp.wire.types import ms_to_seconds

# Strategies that KATCP v4 does not have.
_STRATEGIES_AFTER_V4 = frozenset([b"event-rate", b"differential-rate"])

# Time parameters of each sampling strategy, which a v4 server exchanges in milliseconds.
_V4_TIME_PARAMS = {b"period": (0,), b"event-rate": (0, 1), b"differential-rate": (1, 2)}


class _V4Time(float):
    """A time parameter from a KATCP v4 client: seconds, whose text is the client's own.

    Its value is what the strategy samples by; its str() is the milliseconds as the client
    sent them, which the strategy quotes in its errors and keeps as its parameter (the
    reply to a query), so that nothing converts back.
    """

    __slots__ = ("_text",)
    _text: str

    def __new__(cls, ms_param: bytes) -> "_V4Time":
        self = super().__new__(cls, ms_to_seconds(float(ms_param)))
        self._text = readable(ms_param)
        return self

    def __str__(self) -> str:
        return self._text


def _ms_param_to_seconds(ms_param: bytes) -> float:
    try:
        return _V4Time(ms_param)
    except ValueError:
        raise FailReply("Invalid time parameter %r." % (readable(ms_param),)) from None


def clear_strategies(self: SensorHost, client_conn: Any, remove_client: bool = False) -> None:
    """Clear the sensor strategies of a client connection.

    Parameters
    ----------
    client_conn : ClientConnection instance
        The connection that should have its sampling strategies cleared
    remove_client : bool, optional
        Remove the client connection from the strategies data-structure. Useful for
        clients that disconnect.

    """
    take = self._strategies.pop if remove_client else self._strategies.get
    strategies = take(client_conn, {})
    for strategy in strategies.values():
        strategy.cancel()
    strategies.clear()


def cancel_sensor_strategies(self: SensorHost, sensor: Sensor) -> None:
    """Cancel every client's strategy for `sensor` (which is being removed)."""
    for strategies in self._strategies.values():
        strategy = strategies.pop(sensor, None)
        if strategy is not None:
            strategy.cancel()


def request_sensor_sampling(self: SensorHost, req: ClientRequestConnection,
                            msg: Message) -> Any:
    """Configure or query the way a sensor is sampled.

        Sampled values are reported asynchronously using the #sensor-status
        message.

        Parameters
        ----------
        names : str
            One or more names of sensors whose sampling strategy will be queried
            or configured. If specifying multiple sensors, these must be provided
            as a comma-separated list. A query can only be done on a single sensor.
            However, configuration can be done on many sensors with a single
            request, as long as they all use the same strategy.
            Note: prior to KATCP v5.1 only a single sensor could be configured.
            Multiple sensors are only allowed if the device server sets the protocol
            version to KATCP v5.1 or higher and enables the BULK_SET_SENSOR_SAMPLING
            flag in its PROTOCOL_INFO class attribute.
        strategy : {'none', 'auto', 'event', 'differential', 'differential-rate',
                    'period', 'event-rate'}, optional
            Type of strategy to use to report the sensor value. The
            differential strategy types may only be used with integer or float
            sensors. If this parameter is supplied, it sets the new strategy.
        params : list of str, optional
            Additional strategy parameters (dependent on the strategy type).
            For the differential strategy, the parameter is an integer or float
            giving the amount by which the sensor value may change before an
            updated value is sent.
            For the period strategy, the parameter is the sampling period
            in float seconds.
            The event strategy has no parameters. Note that this has changed
            from KATCPv4.
            For the event-rate strategy, a minimum period between updates and
            a maximum period between updates (both in float seconds) must be
            given. If the event occurs more than once within the minimum period,
            only one update will occur. Whether or not the event occurs, the
            sensor value will be updated at least once per maximum period.
            For the differential-rate strategy there are 3 parameters. The first
            is the same as the differential strategy parameter. The second and
            third are the minimum and maximum periods, respectively, as with the
            event-rate strategy.

        Informs
        -------
        timestamp : float
            Timestamp of the sensor reading in seconds since the Unix
            epoch, or milliseconds for katcp versions <= 4.
        count : {1}
            Number of sensors described in this #sensor-status inform. Will
            always be one. It exists to keep this inform compatible with
            #sensor-value.
        name : str
            Name of the sensor whose value is being reported.
        value : object
            Value of the named sensor. Type depends on the type of the sensor.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether the sensor-sampling request succeeded.
        names : str
            Name(s) of the sensor queried or configured. If multiple sensors,
            this will be a comma-separated list.
        strategy : {'none', 'auto', 'event', 'differential', 'differential-rate',
                    'period', 'event-rate'}.
            Name of the new or current sampling strategy for the sensor(s).
        params : list of str
            Additional strategy parameters (see description under Parameters).

        Examples
        --------
        ::

            ?sensor-sampling cpu.power.on
            !sensor-sampling ok cpu.power.on none

            ?sensor-sampling cpu.power.on period 0.5
            #sensor-status 1244631611.415231 1 cpu.power.on nominal 1
            !sensor-sampling ok cpu.power.on period 0.5

        if BULK_SET_SENSOR_SAMPLING is enabled then:

            ?sensor-sampling cpu.power.on,fan.speed
            !sensor-sampling fail Cannot_query_multiple_sensors

            ?sensor-sampling cpu.power.on,fan.speed period 0.5
            #sensor-status 1244631611.415231 1 cpu.power.on nominal 1
            #sensor-status 1244631611.415200 1 fan.speed nominal 10.0
            !sensor-sampling ok cpu.power.on,fan.speed period 0.5

        """
    # Strategies are started and cancelled in the loop thread: from another thread
    # (the handler thread) the work hops to the loop, and a future is returned.
    return self._call_on_loop(_sensor_sampling, self, req, msg)


def _sensor_sampling(self: SensorHost, req: ClientRequestConnection, msg: Message) -> Message:
    if not msg.arguments:
        raise FailReply("No sensor name given.")
    names_arg = _name_argument(msg.arguments[0])
    bulk = self.PROTOCOL_INFO.bulk_set_sensor_sampling
    names = names_arg.split(",") if bulk else [names_arg]
    strategy_and_params = msg.arguments[1:]
    if not strategy_and_params and len(names) > 1:
        raise FailReply("Cannot query multiple sensors.")
    unknown = [name for name in names if name not in self._sensors]
    if unknown:
        if bulk:
            raise FailReply("Unknown sensor names: %r." % (unknown,))
        raise FailReply("Unknown sensor name: %s." % (names_arg,))
    sensors = [self._sensors[name] for name in names]
    # "is True": a test's mock connection answers any attribute with a (true) mock.
    if getattr(req.client_connection, "_disconnect_called", False) is True:
        # The client left while this request was on its way here (from the handler
        # thread, or a handler that awaited first): its strategies were cleared when it
        # left, and new ones would sample for nobody for good.
        raise FailReply("Client disconnected.")
    client_strategies = self._strategies.setdefault(req.client_connection, {})
    v4 = self._katcp_major < SEC_TS_KATCP_MAJOR
    if not strategy_and_params:
        strategy = client_strategies.get(sensors[0])
        if strategy is None:
            return req.make_reply("ok", names_arg, "none")
        strategy_name, params = strategy.get_sampling_formatted()
        return req.make_reply("ok", names_arg, strategy_name, *params)
    strategy_name, params = strategy_and_params[0], strategy_and_params[1:]
    if v4 and strategy_name in _STRATEGIES_AFTER_V4:
        raise FailReply("Strategy %s not allowed for version %d of katcp" % (
            readable(strategy_name), self._katcp_major))
    # The reply echoes the parameters as the client gave them.
    sampling_params = _v4_times(v4, strategy_name, params)
    make_strategy = _strategy_factory(self, req.client_connection, strategy_name)
    try:
        new_strategies = [make_strategy(sensor, *sampling_params) for sensor in sensors]
    except (ValueError, TypeError) as exc:
        raise FailReply(str(exc))
    for sensor, strategy in zip(sensors, new_strategies):
        old = client_strategies.pop(sensor, None)
        if old is not None:
            old.cancel()
        if strategy.get_sampling() != SampleStrategy.NONE:
            client_strategies[sensor] = strategy
            strategy.start()
    return req.make_reply("ok", names_arg, strategy_name, *params)


def _v4_times(v4: bool, strategy_name: bytes, params: Sequence[Any]) -> List[Any]:
    """`params` of strategy `strategy_name`, its time parameters in seconds if `v4`.

    A KATCP v4 server exchanges them in milliseconds; its strategies take seconds.
    """
    params = list(params)
    if not v4:
        return params
    for i in _V4_TIME_PARAMS.get(strategy_name, ()):
        if i < len(params):
            params[i] = _ms_param_to_seconds(params[i])
    return params


def _strategy_factory(self: SensorHost, client_conn: Any,
                      strategy_name: bytes) -> Callable[..., SampleStrategy]:
    """``make(sensor, *params)``: new strategies of `strategy_name` informing `client_conn`."""
    major = self._katcp_major
    ioloop = self.ioloop
    # Strategies call back on the loop thread, so the sender need not be thread-safe.
    send = (client_conn.wire_sender(threadsafe=False)
            if isinstance(client_conn, ClientConnection) else None)
    if send is not None:
        # Informs as bytes, each reading formatted once for all its clients.
        return functools.partial(wire_strategy, strategy_name, send, major, ioloop=ioloop)
    inform = client_conn.inform

    def inform_callback(sensor: Sensor, reading: Reading) -> None:
        inform(sensor_status_inform(sensor, reading, major))
    return functools.partial(SampleStrategy.get_strategy, strategy_name, inform_callback,
                             ioloop=ioloop)


@request()
def request_sensor_sampling_clear(self: SensorHost, req: ClientRequestConnection) -> Any:
    """Set all sampling strategies for this client to none.

        Returns
        -------
        success : {'ok', 'fail'}
            Whether sending the list of devices succeeded.

        Examples
        --------
        ?sensor-sampling-clear
        !sensor-sampling-clear ok

        """
    # Strategies are cancelled in the loop thread; from another thread the work hops
    # to the loop, and a future is returned.
    def clear() -> Message:
        self.clear_strategies(req.client_connection)
        return req.make_reply("ok")
    return self._call_on_loop(clear)

