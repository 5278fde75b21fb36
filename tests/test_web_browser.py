"""katcp-web as a user sees it: the example server, the katcp-web program, and a real
headless Chromium driven with selenium loading its page over 127.0.0.1.

The browser and its driver are Debian's ``chromium`` and ``chromium-driver`` (installed by
``.ci/run``) and selenium comes with the ``test`` extra; where no browser can be installed
these tests skip and say why. Set ``KATCP_WEB_SCREENSHOT=PATH`` to keep the screenshot that
``test_screenshot_of_the_page`` takes (docs/_static/katcp-web.png comes from it).
"""

import os
import shutil
import time

import pytest

from katcp import Sensor
from katcp.scripts.exampleserver import ExampleServer

from bench.bench_web import start_browser
from subprocess_helpers import BackgroundProcess

pytestmark = pytest.mark.timeout(120)

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("no headless browser: Debian's chromium and chromium-driver are not installed "
                "(.ci/run installs them with apt-get where apt is available)",
                allow_module_level=True)

WAIT = 10.0
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold</b>'


class HostileExampleServer(ExampleServer):
    """The example server plus a sensor and a request whose texts are markup."""

    def setup_sensors(self):
        super().setup_sensors()
        self.add_sensor(Sensor.string("hostile.text", HOSTILE, "<i>units</i>",
                                      default=HOSTILE, initial_status=Sensor.NOMINAL))

    def request_hostile_help(self, req, msg):
        """<img src=x onerror="window.pwned=3"> is this request's help."""
        return req.make_reply("ok", HOSTILE)


def start_device(server_class=ExampleServer, port=0):
    server = server_class("127.0.0.1", port)
    server.start(timeout=WAIT)
    return server


def stop_device(server):
    if server.running():
        server.stop(timeout=WAIT)
    server.join(timeout=WAIT)


class WebProgram:
    """The katcp-web program serving the page of a device."""

    def __init__(self, device, control=False):
        host, port = device.bind_address[:2]
        args = ["-m", "katcp.scripts.web", "%s:%d" % (host, port), "--listen", "127.0.0.1:0"]
        self.process = BackgroundProcess(args + (["--control"] if control else []))
        try:
            self.url = self.process.wait_for_line(r"katcp-web serving (http://\S+) ").group(1)
        except Exception:
            self.process.stop()
            raise

    def stop(self):
        assert self.process.stop() == 0, "\n".join(self.process.lines)


@pytest.fixture(scope="module")
def device():
    server = start_device(HostileExampleServer)
    yield server
    stop_device(server)


@pytest.fixture(scope="module")
def watch_page(device):
    web = WebProgram(device)
    yield web.url
    web.stop()


@pytest.fixture(scope="module")
def control_page(device):
    web = WebProgram(device, control=True)
    yield web.url
    web.stop()


@pytest.fixture(scope="module")
def browser():
    driver, profile = start_browser(height=1000)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, timeout=WAIT, message=""):
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: condition(), message)


def text(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def open_synced(driver, url, sensor_count):
    """Load the page and wait until it shows the synced device with all its sensors."""
    driver.get(url)
    wait(driver, lambda: text(driver, "#conn-state") == "synced"
         and len(driver.find_elements(By.CSS_SELECTOR, "#sensor-table tbody tr"))
         == sensor_count, message="page did not show the synced device")


def row_cell(driver, sensor, cell):
    return driver.find_element(
        By.CSS_SELECTOR, '#sensor-table tbody tr[data-name="%s"] td.%s' % (sensor, cell))


def shown_names(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#sensor-table tbody tr'))"
        ".filter(tr => !tr.hidden).map(tr => tr.dataset.name);")


def test_every_sensor_of_the_device_is_in_the_table(browser, device, watch_page):
    sensors = device.get_sensors()
    open_synced(browser, watch_page, len(sensors))
    assert shown_names(browser) == sorted(s.name for s in sensors)
    assert row_cell(browser, "ambient.temperature", "units").text == "degC"
    assert row_cell(browser, "uptime", "description").text == "Seconds since the server started."
    assert "nominal" in row_cell(browser, "uptime", "status").get_attribute("class")
    assert "example-api-1.0" in text(browser, "#identity")
    assert text(browser, "#protocol") == "KATCP 5.0 (multi-client, message ids)"
    # the temperature updates twice a second, so its sparkline soon has a line
    wait(browser, lambda: len(row_cell(browser, "ambient.temperature", "spark").find_element(
        By.TAG_NAME, "polyline").get_attribute("points").split()) >= 2)
    # everything came from katcp-web itself, and nothing failed or was blocked on the way
    origin = watch_page.rstrip("/")
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    assert loaded and all(url.startswith(origin + "/") for url in loaded), loaded
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_sensor_changed_on_the_device_shows_within_a_second(browser, device, watch_page):
    open_synced(browser, watch_page, len(device.get_sensors()))
    for value, status in ((4321.25, Sensor.WARN), (-17.5, Sensor.ERROR)):
        device.get_sensor("add.result").set_value(value, status)
        changed = time.monotonic()
        wait(browser, lambda: row_cell(browser, "add.result", "value").text == str(value),
             timeout=1.0, message="new value not shown within 1 s")
        assert time.monotonic() - changed < 1.0
        status_cell = row_cell(browser, "add.result", "status")
        assert status_cell.text == Sensor.STATUSES[status]
        assert "status-" + Sensor.STATUSES[status] in status_cell.get_attribute("class")


def test_filter_narrows_the_table_as_you_type(browser, device, watch_page):
    names = sorted(s.name for s in device.get_sensors())
    open_synced(browser, watch_page, len(names))
    box = browser.find_element(By.ID, "filter")
    box.send_keys("RESU")
    assert shown_names(browser) == [n for n in names if "resu" in n]
    box.send_keys(Keys.BACKSPACE * 4 + "time.")
    assert shown_names(browser) == ["time.result"]
    box.send_keys("x")
    assert shown_names(browser) == []
    box.send_keys(Keys.BACKSPACE * 6)
    assert shown_names(browser) == names


def test_columns_sort_when_clicked(browser, device, watch_page):
    names = sorted(s.name for s in device.get_sensors())
    open_synced(browser, watch_page, len(names))
    name_header = browser.find_element(By.CSS_SELECTOR, 'th[data-sort="name"]')
    name_header.click()
    assert shown_names(browser) == names[::-1]
    name_header.click()
    assert shown_names(browser) == names
    browser.find_element(By.CSS_SELECTOR, 'th[data-sort="units"]').click()
    units = [row_cell(browser, n, "units").text for n in shown_names(browser)]
    assert units == sorted(units)


def test_with_control_a_request_form_shows_the_reply(browser, device, control_page):
    open_synced(browser, control_page, len(device.get_sensors()))
    add = browser.find_element(By.CSS_SELECTOR, '#request-list div[data-request="add"]')
    add.find_element(By.NAME, "arguments").send_keys("3 4")
    add.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda: add.find_element(By.CLASS_NAME, "request-output").text
         == "!add ok 7.0")
    assert "reply-ok" in add.find_element(By.CLASS_NAME, "reply").get_attribute("class")
    wait(browser, lambda: row_cell(browser, "add.result", "value").text == "7")
    help_box = browser.find_element(By.CSS_SELECTOR, '#request-list div[data-request="help"]')
    help_box.find_element(By.NAME, "arguments").send_keys("add")
    help_box.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda: help_box.find_element(By.CLASS_NAME, "request-output").text
         == "#help add Add two numbers.\n!help ok 1")


def test_without_control_no_form_and_a_forged_request_is_refused(
        browser, device, watch_page):
    open_synced(browser, watch_page, len(device.get_sensors()))
    assert browser.find_elements(By.CSS_SELECTOR, '#request-list div[data-request="add"]')
    assert browser.find_elements(By.CSS_SELECTOR, "#request-list form") == []
    assert "Watch only" in text(browser, "#control-note")
    device.get_sensor("add.result").set_value(0.0)
    # A script in the page itself opens a websocket of its own and asks for ?add.
    answer = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const socket = new WebSocket("ws://" + location.host + "/ws");
        socket.onopen = () => socket.send(JSON.stringify(
            {type: "request", id: 99, name: "add", arguments: ["100", "200"]}));
        socket.onmessage = (event) => {
            const message = JSON.parse(event.data);
            if (message.id === 99) { socket.close(); done(message); }
        };
        setTimeout(() => done(null), 5000);
    """)
    assert answer is not None and answer["type"] == "refused"
    assert device.get_sensor("add.result").value() == 0.0


def test_hostile_texts_from_the_device_show_as_text(browser, device, control_page):
    open_synced(browser, control_page, len(device.get_sensors()))
    assert row_cell(browser, "hostile.text", "description").text == HOSTILE
    assert row_cell(browser, "hostile.text", "value").text == HOSTILE
    assert row_cell(browser, "hostile.text", "units").text == "<i>units</i>"
    request = browser.find_element(By.CSS_SELECTOR,
                                   '#request-list div[data-request="hostile-help"]')
    assert request.find_element(By.CLASS_NAME, "request-help").text == (
        '<img src=x onerror="window.pwned=3"> is this request\'s help.')
    request.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda: request.find_element(By.CLASS_NAME, "request-output").text
         == "!hostile-help ok " + HOSTILE)
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script, main b, main i") == []
    assert browser.execute_script("return window.pwned === undefined;")


@pytest.fixture
def plain_device():
    server = start_device()
    yield server
    stop_device(server)


def test_device_going_away_shows_disconnected_then_resyncs_without_reload(
        browser, plain_device):
    web = WebProgram(plain_device)
    restarted = None
    try:
        count = len(plain_device.get_sensors())
        open_synced(browser, web.url, count)
        browser.execute_script("window.sameDocument = true;")
        port = plain_device.bind_address[1]
        stop_device(plain_device)
        wait(browser, lambda: text(browser, "#conn-state") == "disconnected")
        assert "conn-disconnected" in browser.find_element(By.ID, "connection") \
            .get_attribute("class")
        assert all("stale" in tr.get_attribute("class") for tr in
                   browser.find_elements(By.CSS_SELECTOR, "#sensor-table tbody tr"))
        restarted = start_device(port=port)
        wait(browser, lambda: text(browser, "#conn-state") == "synced")
        assert "reconnected 1 time" in text(browser, "#conn-detail")
        assert browser.execute_script("return window.sameDocument === true;")
        restarted.get_sensor("add.result").set_value(99.5)
        wait(browser, lambda: row_cell(browser, "add.result", "value").text == "99.5")
        assert not any("stale" in tr.get_attribute("class") for tr in
                       browser.find_elements(By.CSS_SELECTOR, "#sensor-table tbody tr"))
    finally:
        web.stop()
        if restarted is not None:
            stop_device(restarted)


def test_screenshot_of_the_page(browser, plain_device, tmp_path):
    web = WebProgram(plain_device, control=True)
    try:
        open_synced(browser, web.url, len(plain_device.get_sensors()))
        add = browser.find_element(By.CSS_SELECTOR, '#request-list div[data-request="add"]')
        add.find_element(By.NAME, "arguments").send_keys("20.5 1.25")
        add.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(browser, lambda: "!add ok 21.75" in add.text)
        wait(browser, lambda: len(row_cell(browser, "ambient.temperature", "spark")
                                  .find_element(By.TAG_NAME, "polyline")
                                  .get_attribute("points").split()) >= 4)
        path = os.environ.get("KATCP_WEB_SCREENSHOT") or str(tmp_path / "katcp-web.png")
        assert browser.save_screenshot(path)
        with open(path, "rb") as shot:
            assert shot.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 20000
    finally:
        web.stop()
