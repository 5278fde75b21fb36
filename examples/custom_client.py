"""The tutorial's "Writing your own Client": ``python examples/custom_client.py [HOST [PORT]]``."""

import sys
import threading

from katcp import DeviceClient, Message

device_host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
device_port = int(sys.argv[2]) if len(sys.argv) > 2 else 5000

watchdog_replied = threading.Event()


class MyClient(DeviceClient):

    def reply_help(self, msg):
        """Print out help replies."""
        print(msg.name, msg.arguments)

    def inform_help(self, msg):
        """Print out help inform messages."""
        meth, desc = msg.arguments[:2]
        print("---------", meth.decode(), "---------")
        print()
        print(desc.decode())
        print("----------------------------")

    def unhandled_reply(self, msg):
        """Print out unhandled replies."""
        print("Unhandled reply", msg.name)
        if msg.name == "watchdog":
            watchdog_replied.set()

    def unhandled_inform(self, msg):
        """Print out unhandled informs."""
        print("Unhandled inform", msg.name)


client = MyClient(device_host, device_port)
# This thread is not the client's ioloop thread: without thread safety, request() and
# send_message() from here raise AssertionError (as in katcp 0.9).
client.enable_thread_safety()
client.start()
client.wait_protocol(timeout=5)

client.request(Message.request("help"))
client.request(Message.request("watchdog"))
# The tutorial sleeps here; waiting for the last reply is both faster and certain.
watchdog_replied.wait(timeout=5)

client.stop()
client.join()
