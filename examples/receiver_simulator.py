"""A simulated radio receiver: many sensors that change over time and a slow ``?configure``.

Usage: ``python examples/receiver_simulator.py [PORT]`` (0 picks a free port and prints it).

Sensors: a cryostat temperature per stage and feed (drifting, with warning and error
thresholds), the LNA bias currents, a discrete ``mode`` and the configured band and centre
frequency. ``?configure BAND FREQ`` takes a few seconds, as real hardware does, and reports
progress with informs while other clients keep being served (``concurrent_reply``).
"""

import math
import random
import sys

import tornado.gen

from katcp import AsyncDeviceServer, Sensor
from katcp.kattypes import Discrete, Float, concurrent_reply, request, return_reply

BANDS = {"L": (900e6, 1670e6), "UHF": (580e6, 1015e6), "S": (1750e6, 3500e6)}
MODES = ["idle", "configuring", "observing", "error"]
STAGES = {"stage1": 70.0, "stage2": 18.0}
FEEDS = ["h", "v"]


class ReceiverSimulator(AsyncDeviceServer):
    """A receiver whose temperatures drift and whose configuration takes time."""

    VERSION_INFO = ("receiver-sim", 1, 0)
    BUILD_INFO = ("receiver-sim", 0, 1, "")

    UPDATE_PERIOD = 0.25
    CONFIGURE_STEPS = 4
    CONFIGURE_STEP_SECONDS = 0.5

    def setup_sensors(self):
        """Temperatures, LNA currents, mode, band and frequency."""
        self._temperatures = {}
        for stage, nominal in STAGES.items():
            for feed in FEEDS:
                sensor = Sensor.float(
                    "cryo.%s.%s.temperature" % (stage, feed),
                    "Cryostat %s temperature, %s feed." % (stage, feed.upper()), "K",
                    [0.0, 320.0], default=nominal, initial_status=Sensor.NOMINAL)
                self._temperatures[sensor] = nominal
                self.add_sensor(sensor)
        self._lna = [Sensor.float("lna.%s.current" % feed, "LNA drain current.", "mA",
                                  [0.0, 50.0], default=12.0, initial_status=Sensor.NOMINAL)
                     for feed in FEEDS]
        for sensor in self._lna:
            self.add_sensor(sensor)
        self._mode = Sensor.discrete("mode", "Receiver mode.", "", MODES, default="idle",
                                     initial_status=Sensor.NOMINAL)
        self._band = Sensor.discrete("band", "Configured band.", "", sorted(BANDS),
                                     default="L", initial_status=Sensor.NOMINAL)
        self._frequency = Sensor.float("centre-frequency", "Configured centre frequency.",
                                       "Hz", [0.0, 4e9], default=1284e6,
                                       initial_status=Sensor.NOMINAL)
        for sensor in (self._mode, self._band, self._frequency):
            self.add_sensor(sensor)
        self._phase = 0.0

    def start(self, *args, **kwargs):
        result = super().start(*args, **kwargs)
        self.ioloop.add_callback(self._drift)
        return result

    @tornado.gen.coroutine
    def _drift(self):
        while self.running():
            self._phase += self.UPDATE_PERIOD
            for sensor, nominal in self._temperatures.items():
                value = nominal * (1 + 0.02 * math.sin(self._phase / 20.0)) + \
                    random.gauss(0, 0.05)
                excess = value / nominal
                status = (Sensor.NOMINAL if excess < 1.015 else
                          Sensor.WARN if excess < 1.03 else Sensor.ERROR)
                sensor.set_value(value, status)
            for sensor in self._lna:
                sensor.set_value(12.0 + random.gauss(0, 0.1))
            yield tornado.gen.sleep(self.UPDATE_PERIOD)

    @request(Discrete(sorted(BANDS)), Float())
    @return_reply(Discrete(sorted(BANDS)), Float())
    @concurrent_reply
    @tornado.gen.coroutine
    def request_configure(self, req, band, frequency):
        """Tune to FREQUENCY (Hz) in BAND; takes a few seconds."""
        low, high = BANDS[band]
        if not low <= frequency <= high:
            raise tornado.gen.Return(
                ("fail", "%g Hz is outside band %s (%g-%g Hz)" % (frequency, band, low, high)))
        previous_mode = self._mode.value()
        self._mode.set_value("configuring")
        for step in range(1, self.CONFIGURE_STEPS + 1):
            yield tornado.gen.sleep(self.CONFIGURE_STEP_SECONDS)
            req.inform("step %d of %d" % (step, self.CONFIGURE_STEPS))
        self._band.set_value(band)
        self._frequency.set_value(frequency)
        self._mode.set_value("observing" if previous_mode != "error" else "idle")
        raise tornado.gen.Return(("ok", band, frequency))


if __name__ == "__main__":
    import asyncio
    import signal

    async def main(port):
        server = ReceiverSimulator("127.0.0.1", port)
        server.set_ioloop()  # this asyncio loop
        server.start()
        print("PORT %d" % server.bind_address[1], flush=True)
        # Ctrl-C and SIGTERM stop the server from the loop itself: a KeyboardInterrupt
        # lands in whatever code runs at that moment, and is lost if that is a finalizer.
        interrupted = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, interrupted.set)
        await interrupted.wait()
        await asyncio.wrap_future(server.stop())

    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
