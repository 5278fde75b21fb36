"""The tutorial's "Using the high-level client API", against tutorial_server.py.

Usage: ``python examples/highlevel_client.py [HOST [PORT]]``.
"""

import asyncio
import sys
import time

import tornado
import tornado.gen

from katcp import resource_client

device_host = sys.argv[1] if len(sys.argv) > 1 else "localhost"
device_port = int(sys.argv[2]) if len(sys.argv) > 2 else 5000

client = resource_client.KATCPClientResource(dict(
    name='demo-client',
    address=(device_host, device_port),
    controlled=True))


@tornado.gen.coroutine
def demo():
    try:
        # Wait until the client has finished inspecting the device
        yield client.until_synced()
        help_response = yield client.req.help()
        print("device help:\n ", help_response)
        add_response = yield client.req.add(3, 6)
        print("3 + 6 response:\n", add_response)
        # By not yielding we are not waiting for the response
        asked = time.time()
        pick_response_future = client.req.pick_fruit()
        # Instead we wait for the fruit.result sensor status to change to
        # nominal. Before we can wait on a sensor, a strategy must be set:
        client.sensor.fruit_result.set_strategy('event')
        # If the condition does not occur within the timeout (5 s here; without one
        # wait() waits forever), we get a tornado.gen.TimeoutError. The device fails
        # some picks ("No fruit."), and then the sensor does not become nominal. A
        # reading from before this pick (an earlier run's) does not count: this
        # assumes the device's clock agrees with ours, as it does on one machine.
        try:
            yield client.sensor.fruit_result.wait(
                lambda reading: reading.status == 'nominal' and reading.timestamp >= asked,
                timeout=5)
        except tornado.gen.TimeoutError:
            print('No fruit picked within 5 s')
        else:
            fruit = yield client.sensor.fruit_result.get_value()
            print('Fruit picked: ', fruit)
        # And see how the ?pick-fruit request responded by yielding on its future
        pick_response = yield pick_response_future
        print('pick response: \n', pick_response)
    finally:
        client.stop()
        # Finally wait until the client has stopped, so that the program exits cleanly
        yield client.until_stopped()


async def main():
    # The client runs on this asyncio loop (the tornado ioloop of the thread wraps it)
    client.start()
    await demo()


asyncio.run(main())
