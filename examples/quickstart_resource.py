import asyncio
import sys

from katcp.resource_client import KATCPClientResource


async def main(port):
    device = KATCPClientResource(dict(name="device", address=("127.0.0.1", port),
                                      controlled=True))
    device.start()
    try:
        await device.until_synced(timeout=5)
        print("Requests:", ", ".join(sorted(device.req)))
        print("Sensors:", ", ".join(sorted(device.sensor)))
        reply = await device.req.add(3, 6)
        print("?add 3 6 ->", reply.reply, "succeeded:", reply.succeeded)
        reading = await device.sensor.add_result.get_reading()
        print("add.result =", reading.value, reading.status)
    finally:
        device.stop()


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
