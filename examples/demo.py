"""Start the example device server and drive it with a BlockingClient, printing each step.

Run with ``python examples/demo.py`` after installing katcp.
"""

import threading

from katcp import BlockingClient, Message
from katcp.scripts.exampleserver import ExampleServer

# The uptime sensor counts whole seconds, so with the event strategy (an update each time the
# value changes) the first updates read 0, 1 and 2, a second apart: about two seconds in all.
UPDATES_SHOWN = 3


def show(title, reply, informs):
    print("--> %s" % title)
    for inform in informs:
        print("    %s" % inform)
    print("    %s" % reply)


class WatchingClient(BlockingClient):
    """A BlockingClient that collects #sensor-status informs as they arrive."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates = []
        self.enough_updates = threading.Event()

    def inform_sensor_status(self, msg):
        self.updates.append(msg)
        if len(self.updates) >= UPDATES_SHOWN:
            self.enough_updates.set()


def main():
    server = ExampleServer("127.0.0.1", 0)
    server.start(timeout=5.0)
    host, port = server.bind_address
    print("Example server listening on %s:%d" % (host, port))

    client = WatchingClient(host, port)
    client.start(timeout=5.0)
    try:
        if not client.wait_protocol(timeout=5.0):
            raise SystemExit("no protocol information from the server")
        print("Server speaks KATCP %s" % client.protocol_flags)

        reply, informs = client.blocking_request(Message.request("help"))
        print("--> ?help: %d requests, e.g. %s" % (
            len(informs), ", ".join(m.arguments[0].decode() for m in informs[:4])))
        show("?add 3 6", *client.blocking_request(Message.request("add", 3, 6)))
        show("?sensor-value add.result",
             *client.blocking_request(Message.request("sensor-value", "add.result")))
        show("?raw-reverse a b c",
             *client.blocking_request(Message.request("raw-reverse", "a", "b", "c")))
        show("?sensor-sampling uptime event", *client.blocking_request(
            Message.request("sensor-sampling", "uptime", "event")))
        client.enough_updates.wait(timeout=10.0)
        print("--> uptime updates (timestamp, count, name, status, value):")
        for msg in client.updates[:UPDATES_SHOWN]:
            print("    %s" % msg)
        show("?watchdog", *client.blocking_request(Message.request("watchdog")))
    finally:
        client.stop()
        client.join(timeout=5.0)
        server.stop()
        server.join(timeout=5.0)
    print("Done: server stopped.")


if __name__ == "__main__":
    main()
