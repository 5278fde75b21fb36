"""The parts a client resource is built from: its inspecting client, requests and sensors.

:class:`ReplyWrappedInspectingClientAsync` talks to the device,
:class:`KATCPClientResourceRequest` wraps one of its requests and
:class:`KATCPClientResourceSensorsManager` sets, remembers and reapplies the sampling
strategies of its sensors.
"""

import collections
import logging
import sys

import tornado.gen

from katcp import resource
from katcp.core import Message
from katcp.inspecting_client import InspectingClientAsync
from katcp.resource import KATCPReply, KATCPSensorError, escape_name

# The package's logger: the one 0.9 logged to.
log = logging.getLogger("katcp.resource_client")

__all__ = ["transform_future", "ReplyWrappedInspectingClientAsync",
           "KATCPClientResourceRequest", "KATCPClientResourceSensorsManager"]

_NONE_STRATEGY = ("none",)


def transform_future(transformation, future):
    """Returns a new future that will resolve with a transformed value.

    Takes the resolution value of `future` and applies ``transformation`` to it before
    setting the result of the new future with the transformed value. If future()
    resolves with an exception, it is passed through to the new future.

    Assumes `future` is a tornado Future.

    Parameters
    ----------
    transformation : callable
        Called with the result of `future`.
    future : tornado Future

    Returns
    -------
    new_future : tornado Future
        On the same loop as `future`.
    """
    new_future = future.get_loop().create_future()

    def _transform(done):
        if done.cancelled():
            new_future.cancel()
        elif done.exception() is not None:
            new_future.set_exception(done.exception())
        else:
            try:
                new_future.set_result(transformation(done.result()))
            except Exception as exc:
                new_future.set_exception(exc)

    if future.done():
        # Resolved now rather than on a later loop turn (as tornado futures did).
        _transform(future)
    else:
        future.add_done_callback(_transform)
    return new_future


class ReplyWrappedInspectingClientAsync(InspectingClientAsync):
    """Adds wrapped_request() method that wraps reply in a KATCPReply"""

    @staticmethod
    def reply_wrapper(x):
        """Turn a ``(reply, informs)`` tuple into a :class:`KATCPReply`."""
        return KATCPReply(*x)

    def wrapped_request(self, request, *args, timeout=None, mid=None, use_mid=None):
        """Create and send a request to the server.

        This method implements a very small subset of the options
        possible to send an request. It is provided as a shortcut to
        sending a simple wrapped request.

        Parameters
        ----------
        request : str
            The request to call.
        *args : list of objects
            Arguments to pass on to the request.

        Keyword Arguments
        -----------------
        timeout : float or None, optional
            Timeout after this amount of seconds (keyword argument).
        mid : None or int, optional
            Message identifier to use for the request message. If None, use either
            auto-incrementing value or no mid depending on the KATCP protocol version
            (mid's were only introduced with KATCP v5) and the value of the `use_mid`
            argument. Defaults to None.
        use_mid : bool
            Use a mid for the request if True.

        Returns
        -------
        future object that resolves with the
        :meth:`katcp.client.DeviceClient.future_request` response wrapped in
        self.reply_wrapper
        """
        msg = Message.request(request, *args, mid=mid)
        return transform_future(
            self.reply_wrapper, self.katcp_client.future_request(msg, timeout, use_mid))


class KATCPClientResourceRequest(resource.KATCPRequest):
    """Callable wrapper around a KATCP request

    Parameters
    ----------
    request_description : dict
        ``name``, ``description`` and ``timeout_hint`` of the request.
    client : :class:`ReplyWrappedInspectingClientAsync` or similar
        Provides ``wrapped_request()``.
    is_active : callable, optional
        Returns True if the owning resource is active.
    """

    def __init__(self, request_description, client, is_active=lambda: True):
        self._client = client
        super().__init__(request_description, is_active)

    def issue_request(self, *args, timeout=None, mid=None, use_mid=None):
        """Issue the wrapped request to the server.

        Parameters
        ----------
        *args : list of objects
            Arguments to pass on to the request.

        Keyword Arguments
        -----------------
        timeout : float or None, optional
            Timeout after this amount of seconds (keyword argument).
        mid : None or int, optional
            Message identifier to use for the request message. If None, use either
            auto-incrementing value or no mid depending on the KATCP protocol version
            (mid's were only introduced with KATCP v5) and the value of the `use_mid`
            argument. Defaults to None.
        use_mid : bool
            Use a mid for the request if True.

        Returns
        -------
        future object that resolves with an :class:`katcp.resource.KATCPReply`
        instance
        """
        if timeout is None:
            timeout = self.timeout_hint
        return self._client.wrapped_request(self.name, *args, timeout=timeout, mid=mid,
                                            use_mid=use_mid)


class KATCPClientResourceSensorsManager(resource.KATCPSensorsManager):
    """Implementation of KATSensorsManager ABC for a directly-connected client

    Assumes that all methods are called from the same ioloop context

    Parameters
    ----------
    inspecting_client : :class:`ReplyWrappedInspectingClientAsync` or similar
    resource_name : str
        Name of the resource owning the sensors (their ``parent_name``).
    logger : :class:`logging.Logger`, optional
    """

    def __init__(self, inspecting_client, resource_name, logger=log):
        self._inspecting_client = inspecting_client
        self.resource_name = resource_name
        self._logger = logger
        # Normalised strategies keyed by KATCP sensor name, reapplied after each sync.
        self._strategy_cache = {}

    def sensor_factory(self, **sensor_description):
        """Create the :class:`katcp.resource.KATCPSensor` the inspecting client uses."""
        return resource.KATCPSensor(sensor_description, self)

    def _get_strategy_cache_key(self, sensor_name):
        if sensor_name in self._strategy_cache:
            return sensor_name
        escaped_name = escape_name(sensor_name)
        for key in self._strategy_cache:
            if escape_name(key) == escaped_name:
                return key
        return sensor_name

    def get_sampling_strategy(self, sensor_name):
        """Get the current sampling strategy for the named sensor

        Parameters
        ----------
        sensor_name : str
            Name of the sensor (normal or escaped form)

        Returns
        -------
        strategy : tuple of str
            contains (<strat_name>, [<strat_parm1>, ...]) where the strategy names and
            parameters are as defined by the KATCP spec
        """
        key = self._get_strategy_cache_key(sensor_name)
        return self._strategy_cache.get(key, _NONE_STRATEGY)

    def cache_sampling_strategy(self, sensor_name, strategy_and_params):
        """Memorise a strategy to be applied by the next :meth:`reapply_sampling_strategies`.

        Parameters
        ----------
        sensor_name : str
            KATCP name of the sensor.
        strategy_and_params : seq of str or str
            Strategy as for :meth:`set_sampling_strategy`.
        """
        self._strategy_cache[sensor_name] = resource.normalize_strategy_parameters(
            strategy_and_params
        )

    @tornado.gen.coroutine
    def set_sampling_strategy(self, sensor_name, strategy_and_params):
        """Set the sampling strategy for the named sensor

        Parameters
        ----------
        sensor_name : str
            Name of the sensor
        strategy_and_params : seq of str or str
            As tuple contains (<strat_name>, [<strat_parm1>, ...]) where the strategy
            names and parameters are as defined by the KATCP spec. As str contains the
            same elements in space-separated form.

        Returns
        -------
        sensor_strategy : tuple
            (success, info) with

            success : bool
                True if setting succeeded for this sensor, else False
            info : tuple
                Normalised sensor strategy and parameters as tuple if
                success == True else, sys.exc_info() tuple for the error
                that occurred.
        """
        try:
            strategy_and_params = resource.normalize_strategy_parameters(
                strategy_and_params
            )
            self._strategy_cache[sensor_name] = strategy_and_params
            reply = yield self._inspecting_client.wrapped_request(
                "sensor-sampling", sensor_name, *strategy_and_params
            )
            if not reply.succeeded:
                raise KATCPSensorError(
                    "Error setting strategy for sensor %s:\n%s" % (sensor_name, reply)
                )
        except Exception:
            return (False, sys.exc_info())
        return (True, strategy_and_params)

    def drop_sampling_strategy(self, sensor_name):
        """Drop the sampling strategy for the named sensor from the cache

        Calling :meth:`set_sampling_strategy` requires the sensor manager to
        memorise the requested strategy so that it can automatically be reapplied.
        If the client is no longer interested in the sensor, or knows the sensor
        may be removed from the server, then it can use this method to ensure the
        manager forgets about the strategy.  This method will not change the current
        strategy.  No error is raised if there is no strategy to drop.

        Parameters
        ----------
        sensor_name : str
            Name of the sensor (normal or escaped form)
        """
        self._strategy_cache.pop(self._get_strategy_cache_key(sensor_name), None)

    @tornado.gen.coroutine
    def reapply_sampling_strategies(self):
        """Reapply all sensor strategies using cached values

        Strategies of sensors the device does not (or no longer) have are kept in the
        cache but not sent.
        """
        known_sensors = set(self._inspecting_client.sensors)
        by_strategy = collections.defaultdict(list)
        for name, strategy in self._strategy_cache.items():
            if name in known_sensors:
                by_strategy[strategy].append(name)
        flags = self._inspecting_client.katcp_client.protocol_flags
        if flags is not None and flags.bulk_set_sensor_sampling:
            # KATCP v5.1 bulk sampling: one request per distinct strategy.
            batches = [(",".join(names), strategy)
                       for strategy, names in by_strategy.items()]
        else:
            batches = [(name, strategy)
                       for strategy, names in by_strategy.items() for name in names]
        # Sent together: one round trip instead of one per request.
        yield [self._reapply(names, strategy) for names, strategy in batches]

    @tornado.gen.coroutine
    def _reapply(self, names, strategy):
        # Errors are only logged: one bad strategy must not stop the resync.
        try:
            reply = yield self._inspecting_client.wrapped_request(
                "sensor-sampling", names, *strategy
            )
            if reply.succeeded:
                return
            problem = repr(reply)
        except Exception as exc:
            problem = exc
        self._logger.error(
            "Error reapplying strategy %r for sensors %s: %s", strategy, names, problem
        )

    @tornado.gen.coroutine
    def poll_sensor(self, sensor_name):
        """Poll sensor and arrange for sensor object to be updated

        Returns
        -------
        done_future : tornado Future
            Resolves when the poll is complete, or raises KATCPSensorError
        """
        reply = yield self._inspecting_client.wrapped_request(
            "sensor-value", sensor_name
        )
        if not reply.succeeded:
            raise KATCPSensorError(
                "Error polling sensor %s:\n%s" % (sensor_name, reply)
            )
