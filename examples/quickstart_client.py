import sys

from katcp import BlockingClient, Message

port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
client = BlockingClient("127.0.0.1", port)
client.start()
try:
    client.wait_protocol(timeout=5)
    reply, informs = client.blocking_request(Message.request("add", 3, 6))
    print(reply)
    reply, informs = client.blocking_request(Message.request("sensor-value", "add.result"))
    for inform in informs:
        print(inform)
    print(reply)
finally:
    client.stop()
    client.join()
