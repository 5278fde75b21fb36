"""The Jupyter recipes of docs/interactive.rst in a real kernel (ipykernel, driven by
jupyter_client), cell by cell, against a device on 127.0.0.1 in this process."""

import pytest
from jupyter_client.manager import start_new_kernel

from subprocess_helpers import python_env
from test_operator_python import WeatherStation, address_of

WAIT = 30.0


class Kernel:
    """A running kernel; :meth:`run` executes one cell and gathers what it showed."""

    def __init__(self):
        self.manager, self.client = start_new_kernel(
            kernel_name="python3", startup_timeout=60, env=python_env())

    def run(self, code):
        """Run `code` as one cell: ``(status, printed text, rich results, error)``."""
        msg_id = self.client.execute(code)
        printed, results, error = [], [], None
        while True:
            msg = self.client.get_iopub_msg(timeout=WAIT)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind == "stream":
                printed.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                results.append(content["data"])
            elif kind == "error":
                error = "%s: %s" % (content["ename"], content["evalue"])
        reply = self.client.get_shell_msg(timeout=WAIT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=WAIT)
        return reply["content"]["status"], "".join(printed), results, error

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def device():
    with WeatherStation("127.0.0.1", 0) as server:
        yield server


@pytest.fixture(scope="module")
def kernel():
    kernel = Kernel()
    yield kernel
    kernel.close()


def test_await_style_cells_on_the_kernels_loop(kernel, device):
    status, _, _, error = kernel.run(
        "from katcp.resource_client import KATCPClientResource\n"
        "r = KATCPClientResource(dict(name='station', address=('127.0.0.1', %d), "
        "controlled=True))\n"
        "r.start()" % device.bind_address[1])
    assert (status, error) == ("ok", None)
    status, _, _, error = kernel.run("await r.until_synced(timeout=10)")
    assert (status, error) == ("ok", None)
    status, printed, _, error = kernel.run(
        "reply = await r.req.echo('hello world')\nprint(repr(reply))")
    assert (status, error) == ("ok", None)
    assert printed == "!echo ok hello world\n"
    status, _, results, _ = kernel.run("r")
    (shown,) = results
    assert "state=synced" in shown["text/plain"]
    assert "<caption>3 sensors</caption>" in shown["text/html"]
    assert "<td>echo</td><td>Echo the text back.</td>" in shown["text/html"]
    status, _, _, error = kernel.run("r.stop()\nawait r.until_stopped(10)")
    assert (status, error) == ("ok", None)


def test_threaded_style_cells_with_connect_resource(kernel, device):
    status, _, _, error = kernel.run(
        "import katcp\nstation = katcp.connect_resource('%s', timeout=10)" % address_of(device))
    assert (status, error) == ("ok", None)
    status, printed, _, error = kernel.run("print(station.sensor.ambient_temperature.get_value())")
    assert (status, printed, error) == ("ok", "21.5\n", None)
    status, _, _, error = kernel.run("station.req.ecko('x')")
    assert status == "error" and "did you mean 'echo'" in error
    status, _, _, error = kernel.run("station.close()")
    assert (status, error) == ("ok", None)
