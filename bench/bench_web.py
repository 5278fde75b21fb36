"""katcp-web under load (opt-in: ``python -m bench --only web``; it needs Chromium).

100 float sensors of a device server (in this process) are updated 10 times a second for a
minute (10 s with ``--quick``, 2 s at ``--size tiny``) while 5 pages of one ``katcp-web``
program (a child process) are open in a headless Chromium. Reported: whether every page ends
on the device's latest values and how long that took after the last update, and the CPU time
of the katcp-web process (user + system, from ``/proc``) per second and per sensor reading.
There is no baseline: no other program does this job.
"""

import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from bench.harness import Row, benchmark

SENSORS = 100
RATE = 10.0
PAGES = 5
SECONDS = {"full": 60.0, "quick": 10.0, "tiny": 2.0}
SETTLE_TIMEOUT = 15.0
START_TIMEOUT = 20.0
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _device():
    from katcp import DeviceServer, ProtocolFlags, Sensor

    class LoadDevice(DeviceServer):
        VERSION_INFO = ("web-load", 1, 0)
        BUILD_INFO = ("web-load", 1, 0, "")
        PROTOCOL_INFO = ProtocolFlags(5, 0, {ProtocolFlags.MULTI_CLIENT,
                                             ProtocolFlags.MESSAGE_IDS})

        def setup_sensors(self):
            for i in range(SENSORS):
                self.add_sensor(Sensor.float("load.s%03d" % i, "Load sensor %d." % i, "V",
                                             default=0.0, initial_status=Sensor.NOMINAL))

    device = LoadDevice("127.0.0.1", 0)
    device.start(timeout=START_TIMEOUT)
    return device


def _value(i, counter):
    return counter + i / 1000.0


def _update(device, seconds):
    """Update every sensor RATE times a second for ``seconds``; return the last round."""
    sensors = [device.get_sensor("load.s%03d" % i) for i in range(SENSORS)]
    start = time.monotonic()
    counter = 0
    while True:
        counter += 1
        for i, sensor in enumerate(sensors):
            sensor.set_value(_value(i, counter))
        next_round = start + counter / RATE
        if next_round - start >= seconds:
            return counter
        time.sleep(max(0.0, next_round - time.monotonic()))


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _WebProcess:
    def __init__(self, address):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "katcp.scripts.web", "%s:%d" % address,
             "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        match = re.search(r"serving (http://\S+) ", line)
        if match is None:
            self.close()
            raise RuntimeError("katcp-web did not start: %r" % line)
        self.url = match.group(1)

    def cpu(self):
        return _cpu_seconds(self.process.pid)

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_browser(height=900):
    """A headless Chromium (selenium driver) with a fresh profile: ``(driver, profile dir)``.

    The machine's network is closed, so Chromium's background connections are off, and
    the driver's path is given so that selenium's driver manager downloads nothing.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise RuntimeError("selenium is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise RuntimeError("no chromium/chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + ["--window-size=1200,%d" % height]:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="katcp-web-chromium-")
    options.add_argument("--user-data-dir=" + profile)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options), profile


SHOWN_VALUES = """
return Object.fromEntries(Array.from(document.querySelectorAll('#sensor-table tbody tr'))
    .map(tr => [tr.dataset.name, tr.querySelector('td.value').textContent]));
"""


def _page_values(driver, handle):
    driver.switch_to.window(handle)
    return driver.execute_script(SHOWN_VALUES)


def _on_values(shown, expected):
    try:
        return len(shown) == len(expected) and all(
            abs(float(shown[name]) - value) < 1e-6 for name, value in expected.items())
    except (KeyError, ValueError):
        return False


def _wait_pages(driver, handles, expected, timeout):
    """Wait until every page shows ``expected``; return the pages that do."""
    deadline = time.monotonic() + timeout
    done = set()
    while True:
        for handle in handles:
            if handle not in done and _on_values(_page_values(driver, handle), expected):
                done.add(handle)
        if len(done) == len(handles) or time.monotonic() > deadline:
            return done
        time.sleep(0.05)


@benchmark("web", opt_in=True)
def run_web(ctx):
    """5 katcp-web pages watching 100 sensors updated at 10 Hz."""
    seconds = SECONDS.get(ctx.size.name, SECONDS["full"])
    device = _device()
    web = driver = profile = None
    try:
        web = _WebProcess(device.bind_address[:2])
        driver, profile = start_browser()
        driver.get(web.url)
        for _ in range(PAGES - 1):
            driver.switch_to.new_window("window")
            driver.get(web.url)
        handles = list(driver.window_handles)
        initial = {"load.s%03d" % i: 0.0 for i in range(SENSORS)}
        if len(_wait_pages(driver, handles, initial, START_TIMEOUT)) != PAGES:
            raise RuntimeError("the pages did not show the device within %g s" % START_TIMEOUT)
        ctx.say("   %d pages open, updating %d sensors at %g Hz for %g s"
                % (PAGES, SENSORS, RATE, seconds))
        # Measured while the updates run; a thread updates so that this one stays free.
        result = {}
        cpu0, t0 = web.cpu(), time.monotonic()
        updater = threading.Thread(target=lambda: result.update(rounds=_update(device, seconds)))
        updater.start()
        updater.join(seconds + 30)
        cpu1, t1 = web.cpu(), time.monotonic()
        rounds = result["rounds"]
        final = {"load.s%03d" % i: _value(i, rounds) for i in range(SENSORS)}
        on_latest = _wait_pages(driver, handles, final, SETTLE_TIMEOUT)
        settle = time.monotonic() - t1
        readings = rounds * SENSORS
        cpu = cpu1 - cpu0
        extra = {"pages": PAGES, "sensors": SENSORS, "rate_hz": RATE, "seconds": t1 - t0,
                 "rounds": rounds, "web_cpu_seconds": cpu, "browser": "chromium (headless)"}
        return [
            Row("web.pages_on_latest_values", "fraction", len(on_latest) / PAGES, None,
                ("value", ">=", 1.0), extra),
            Row("web.settle_after_last_update", "s", settle, None),
            Row("web.cpu_per_second", "cpu s/s", cpu / (t1 - t0), None),
            Row("web.cpu_per_reading", "us", cpu / readings * 1e6, None),
            Row("web.readings_per_second", "1/s", readings / (t1 - t0), None),
        ]
    finally:
        if driver is not None:
            driver.quit()
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)
        if web is not None:
            web.close()
        device.stop(timeout=10)
        device.join(timeout=10)
