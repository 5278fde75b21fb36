"""The tutorial's "Using the Callback Client": ``python examples/callback_client.py [HOST [PORT]]``.

The callbacks run in the client's event-loop thread; a threading.Event tells the main thread
that the reply has arrived.
"""

import sys
import threading

from katcp import CallbackClient, Message

device_host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
device_port = int(sys.argv[2]) if len(sys.argv) > 2 else 5000

done = threading.Event()


def reply_cb(msg):
    print("Reply:", msg)
    done.set()


def inform_cb(msg):
    print("Inform:", msg)


client = CallbackClient(device_host, device_port)
client.start()
client.wait_protocol(timeout=5)

client.callback_request(
    Message.request("help"),
    reply_cb=reply_cb,
    inform_cb=inform_cb,
)
done.wait(timeout=5)

client.stop()
client.join()
