"""The tutorial's "Using the Blocking Client": ``python examples/blocking_client.py [HOST [PORT]]``."""

import sys

from katcp import BlockingClient, Message

device_host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
device_port = int(sys.argv[2]) if len(sys.argv) > 2 else 5000

client = BlockingClient(device_host, device_port)
client.start()
client.wait_protocol()  # Optional

reply, informs = client.blocking_request(
    Message.request("help"))

print(reply)
for msg in informs:
    print(msg)

client.stop()
client.join()
