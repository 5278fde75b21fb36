"""The routing of a device's sensor readings to an inspecting client's sensor objects."""

import types
from typing import Any

from katcp.core import Message
from katcp.inspecting_client.index import _Model
from katcp.inspecting_client.parts import _readings_of, katcp_major
from katcp.loop.futures import run_returned


class _SensorUpdates:
    """Sets the sensor objects of a model to the readings a device sends.

    Only sensors whose object has been made (looked up) are set: the others have no one
    to tell.

    Parameters
    ----------
    client : InspectingClientAsync
        Whose connection the readings come from (its protocol version says how to read
        a timestamp), and whose logger (read when used: code may replace a client's
        ``_logger``) tells of malformed informs and readings that cannot be set.
    model : _Model
        The client's model, whose sensor index holds the objects.
    own_update : function
        The client class's own ``update_sensor``, which sets each reading as
        :meth:`set_formatted` does.
    """

    def __init__(self, client: Any, model: _Model, own_update: Any) -> None:
        self._client = client
        self._model = model
        # Bound once: comparing bound methods is cheaper than reading their __func__.
        self._own_update = types.MethodType(own_update, client)
        # The connection whose informs are hooked to this.
        self._katcp_client = client.katcp_client

    def set_formatted(self, name: str, timestamp: bytes, status: bytes, value: bytes) -> None:
        """Set the object of sensor `name` (if one was made) to a reading as sent."""
        sensor = self._model.sensors.get(name, {}).get("obj")
        if sensor is None:
            return
        try:
            sensor.set_formatted(timestamp, status, value, katcp_major(self._katcp_client))
        except Exception:
            self._client._logger.exception("Could not update sensor %r to (%r, %r, %r)",
                                           name, timestamp, status, value)

    def on_inform(self, msg: Message) -> None:
        """Set the sensor objects from a #sensor-status (or #sensor-value) inform."""
        readings = _readings_of(msg)
        if readings is None:
            self._client._logger.warning("Malformed %s inform: %s", msg.name, msg)
            return
        # 0.9.3 set each reading through the client's update_sensor(), which a subclass
        # or a test may replace, also once the client runs: asked for each inform.
        # wire.util.uses_own()'s test, inlined and on the bound method: its call would
        # cost a tenth of this one.
        update = self._client.update_sensor
        if update == self._own_update:
            set_formatted = self.set_formatted
            for name, timestamp, status, value in readings:
                set_formatted(name, timestamp, status, value)
            return
        for name, timestamp, status, value in readings:
            done = update(name, timestamp, status, value)
            if done is not None:
                # update_sensor() is a coroutine, so an override may be async def (whose
                # coroutine must be run) or fail in its future (which nobody else reads).
                run_returned(self._client._logger, done, "update_sensor(%r) failed", name)
