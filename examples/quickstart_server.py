import sys

from katcp import DeviceServer, Sensor
from katcp.kattypes import Float, request, return_reply


class MyServer(DeviceServer):
    VERSION_INFO = ("example-api", 1, 0)
    BUILD_INFO = ("example-implementation", 0, 1, "")

    def setup_sensors(self):
        self._result = Sensor.float("add.result", "Last ?add result.", "")
        self.add_sensor(self._result)

    @request(Float(), Float())
    @return_reply(Float())
    def request_add(self, req, x, y):
        """Add two numbers."""
        self._result.set_value(x + y)
        return ("ok", x + y)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    server = MyServer("127.0.0.1", port)
    server.start()
    print("Listening on %s:%d" % server.bind_address, flush=True)
    try:
        server.join()
    except KeyboardInterrupt:  # Ctrl-C
        server.stop()
        server.join()
