"""The web console end to end: Debian's headless chromium, driven by Playwright, against
a real `gatehouse serve`, with real simulated devices (`gatehouse sim device` and `sim
gateway` subprocesses, each bounded by its --duration and stopped at the test's end).
Every wait is on the page (Playwright's auto-waiting `expect`), never a sleep.

`GATEHOUSE_SCREENSHOTS=DIR` keeps the screenshots the tests make (the README's are made
with `GATEHOUSE_SCREENSHOTS=docs`); otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import connect, new_device, request, sync
from tests.server import API, Api, Gatehouse

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A 1x1 PNG, made here (the console checks nothing of it; the API checks the signature).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    context.set_default_timeout(10_000)
    errors: list[str] = []
    opened = context.new_page()
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Page, str], None]:
    folder = Path(os.environ.get("GATEHOUSE_SCREENSHOTS") or tmp_path)

    def shoot(page: Page, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"console-{name}.png"))

    return shoot


def sign_in(page: Page, gatehouse: Gatehouse) -> None:
    page.goto(f"{gatehouse.url}/console/")
    page.get_by_label("Access key").fill(gatehouse.access_key)
    page.get_by_label("Access secret").fill(gatehouse.access_secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Product Management")).to_be_visible()
    expect(page.locator("#live")).to_have_text("Live")  # the stream is open


@contextlib.contextmanager
def simulated(
    gatehouse: Gatehouse, out: Path, kind: str, device: dict[str, str], *options: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`gatehouse sim KIND` for `device` (30 s at most), stopped when the block ends."""
    command = [sys.executable, "-m", "broker.cli", "sim", kind, "--url", gatehouse.url]
    command += ["--mqtt-port", str(gatehouse.mqtt_port), "--product", device["productKey"]]
    command += ["--key", device["deviceKey"], "--secret", device["deviceSecret"]]
    command += ["--duration", "30", *options]
    with out.open("wb") as log:
        process = subprocess.Popen(command, env=gatehouse.env(), stdout=log, stderr=log)
        try:
            yield process
        except BaseException:
            print(f"{' '.join(command[3:5])}: {out.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def field(page: Page, name: str) -> Any:
    return page.locator(f'#create-dialog [data-field="{name}"]')


def test_sign_in_create_a_product_in_the_dialog_and_find_it_first(
    page: Page, gatehouse: Gatehouse, api: Api, shots: Callable[[Page, str], None]
) -> None:
    page.goto(f"{gatehouse.url}/console/")
    page.get_by_label("Access key").fill(gatehouse.access_key)
    page.get_by_label("Access secret").fill("not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_have_text("wrong access key or secret")
    assert gatehouse.access_secret not in page.url
    sign_in(page, gatehouse)
    assert "gatehouse_session" not in page.evaluate("document.cookie")  # HttpOnly

    page.get_by_role("button", name="Create a Product").click()
    dialog = page.locator("#create-dialog")
    expect(dialog).to_be_visible()
    # The conditional fields appear and vanish as the seed says.
    for name in (
        "connectedPlatform",
        "encryption",
        "powerSaving",
        "edrxCycle",
        "gatewayAccessMode",
    ):
        expect(field(page, name)).to_be_hidden()
    network = dialog.get_by_label("Network Connection Method")
    expect(network.locator("option")).to_have_text(
        ["2G", "3G", "4G", "5G", "Wi-Fi", "NB-IoT", "Bluetooth"]
    )
    dialog.get_by_label("Gateway", exact=True).check()
    expect(network.locator("option")).to_have_text(["2G", "3G", "4G", "5G", "Wi-Fi"])
    dialog.get_by_label("Gateway sub-device").check()
    expect(field(page, "networkMethod")).to_be_hidden()
    expect(field(page, "specifiedGateway")).to_be_visible()
    expect(field(page, "gatewayAccessMode")).to_be_visible()
    dialog.get_by_label("Directly connected device").check()
    expect(field(page, "gatewayAccessMode")).to_be_hidden()
    network.select_option("NB-IoT")
    expect(field(page, "connectedPlatform")).to_be_visible()
    expect(field(page, "powerSaving")).to_be_hidden()
    dialog.get_by_label("China Telecom AEP").check()
    expect(field(page, "encryption")).to_be_visible()
    expect(field(page, "powerSaving")).to_be_visible()
    expect(field(page, "edrxCycle")).to_be_hidden()
    dialog.get_by_label("eDRX mode").check()
    expect(field(page, "edrxCycle")).to_be_visible()

    # The API's refusal, shown at the field it is about.
    name = unique("console")
    dialog.get_by_label("Product Name").fill(name)
    dialog.get_by_label("eDRX cycle (seconds)").fill("5")
    shots(page, "create-dialog")
    dialog.get_by_role("button", name="Create", exact=True).click()
    cycle_error = page.locator("#error-edrxCycle")
    expect(cycle_error).to_contain_text("edrxCycle must be 20.48 to 10485.76 seconds")
    expect(dialog.get_by_label("eDRX cycle (seconds)")).to_be_focused()
    expect(dialog.get_by_label("eDRX cycle (seconds)")).to_have_attribute("aria-invalid", "true")
    assert name not in str(api("products", "list").data)  # nothing stored

    dialog.get_by_label("PSM mode").check()
    expect(field(page, "edrxCycle")).to_be_hidden()
    dialog.get_by_role("button", name="Create", exact=True).click()
    expect(dialog.get_by_role("status")).to_contain_text(f"The product {name} is created")
    dialog.get_by_role("button", name="Stay").click()
    first = page.locator(".panel").first
    expect(first.get_by_role("heading")).to_have_text(name)
    expect(first).to_contain_text("In development")
    expect(first).to_contain_text("Self-defined Development")
    stored = api("products", "get", productKey=first.get_attribute("data-product-key")).data
    assert stored["connectedPlatform"] == "ChinaTelecomAEP"
    assert stored["powerSaving"] == {"mode": "PSM", "edrxCycle": None, "qmode": False}
    assert stored["encryption"] == "DTLS"
    shots(page, "products")

    # The same name again: the API's 409, at the name.
    page.get_by_role("button", name="Create a Product").click()
    page.locator("#create-dialog").get_by_label("Product Name").fill(name)
    page.locator("#create-dialog").get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#error-productName")).to_contain_text(f"a product named '{name}' exists")
    page.locator("#create-dialog").get_by_role("button", name="Cancel").click()

    page.get_by_label("Search").fill("no-such-product-anywhere")
    expect(page.locator(".panel")).to_have_count(0)
    page.get_by_label("Search").fill(name)
    expect(page.locator(".panel")).to_have_count(1)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    answer = page.request.post(f"{gatehouse.url}/connect-service/v2.1/products?action=list")
    assert answer.status == 401  # the cookie names no session any more


def test_product_details_and_a_device_coming_online_live(
    page: Page,
    gatehouse: Gatehouse,
    api: Api,
    make_product: Callable[..., str],
    shots: Callable[[Page, str], None],
    tmp_path: Path,
) -> None:
    product_key = make_product(networkMethod="Wi-Fi")
    sign_in(page, gatehouse)
    page.goto(f"{gatehouse.url}/console/#/products/{product_key}")
    expect(page.get_by_role("heading", name="Basic information")).to_be_visible()

    # Basic information: sharing, the image, activation codes.
    sharing = page.get_by_role("switch", name="Device sharing")
    expect(sharing).to_be_checked()
    sharing.uncheck()
    expect(page.locator("#toast")).to_have_text("Saved")
    assert api("products", "get", productKey=product_key).data["sharingEnabled"] is False
    page.get_by_label("Product image").set_input_files(
        {"name": "product.png", "mimeType": "image/png", "buffer": PNG}
    )
    expect(page.locator("#product-image img")).to_be_visible()
    assert api("products", "get", productKey=product_key).data["hasImage"] is True
    page.get_by_label("Product image").set_input_files(
        {"name": "product.png", "mimeType": "image/png", "buffer": b"not an image"}
    )
    expect(page.locator("#error-image")).to_contain_text("must be a PNG or a JPEG")
    page.get_by_label("Add codes").fill("25")
    page.locator("#codes").get_by_role("button", name="Add").click()
    expect(page.locator("#codes-total")).to_have_text("25")
    expect(page.locator("#codes-available")).to_have_text("25")

    # The thing model, and where devices connect.
    expect(page.locator("#thing-model")).to_contain_text("reboot")
    expect(page.locator("#mqtt-port")).to_have_text(str(gatehouse.mqtt_port))

    # A device, created in the page; its credentials as CSV.
    page.get_by_label("Device name").fill("kitchen")
    page.get_by_label("DeviceKey").fill("a bad key!")
    page.get_by_role("button", name="Add device").click()
    expect(page.locator("#error-device-key")).to_contain_text("deviceKey")
    device_key = unique("dk")
    page.get_by_label("DeviceKey").fill(device_key)
    page.get_by_role("button", name="Add device").click()
    credentials = page.locator("#credentials-dialog")
    expect(credentials).to_contain_text(device_key)
    with page.expect_download() as download:
        credentials.get_by_role("button", name="Download credentials (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["deviceKey"] for r in rows] == [device_key]
    credentials.get_by_role("button", name="Close").click()
    row = page.locator(f'tr[data-device-key="{device_key}"]')
    expect(row.locator(".state")).to_have_text("Inactive")

    # A simulated device connects: the row turns Online without a reload.
    device = {**rows[0]}
    with simulated(gatehouse, tmp_path / "sim.log", "device", device, "--rate", "4"):
        expect(row.locator(".state")).to_have_text("Online")
        expect(page.locator("#stat-online")).to_have_text("1")
        expect(page.locator("#codes-consumed")).to_have_text("1")  # it took a code
        expect(page.locator("#codes-available")).to_have_text("24")
        shots(page, "product")
        row.get_by_role("link").click()
        expect(page.locator("#device-state")).to_have_text("Online")
        # Its posts (within the thing model's range), their replies, a chart of them.
        value = page.locator('#latest tr[data-point="temp"] .value')
        expect(value).to_have_text(re.compile(r"^-?\d+(\.\d+)?$"))
        expect(page.locator("#log tr[data-kind=up]").first).to_contain_text("200")
        expect(page.locator('#latest tr[data-point="temp"] polyline')).to_have_count(1)

        # A service call from the thing model's form, followed to its end: the simulator
        # answers a service with its input.
        form = page.locator('form[data-service="reboot"]')
        form.get_by_label("delay (int)").fill("3")
        form.get_by_role("button", name="Call reboot").click()
        command = page.locator("#commands tbody tr").first
        expect(command.locator(".command-state")).to_have_text("succeeded")
        expect(command).to_contain_text('{"delay":3}')
        shots(page, "device")
    expect(page.locator("#device-state")).to_have_text("Offline")

    # A CONNECT refused (a wrong secret): its code and reason reach the page through the
    # live stream, well before the 5 s poll the page once had would have brought them.
    wrong = {**device, "deviceSecret": "not-its-secret"}
    with simulated(gatehouse, tmp_path / "wrong.log", "device", wrong, "--max-attempts", "1"):
        refused = page.locator("#log tr.refused[data-kind=refused]").first
        expect(refused.locator(".code")).to_have_text("742", timeout=4_000)
        expect(refused.locator(".reason")).to_contain_text("sign")
    sync(api)

    # Back on the product: disable, then delete, the device.
    page.go_back()
    row = page.locator(f'tr[data-device-key="{device_key}"]')
    row.get_by_role("button", name="Disable").click()
    expect(row.locator(".state")).to_have_text("Disabled")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    gone = api("devices", "get", productKey=product_key, deviceKey=device_key)
    assert gone.status == 404


def test_a_thing_model_is_imported_from_a_file(
    page: Page, gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product_key = make_product()
    model_id = api("products", "get", productKey=product_key).data["modelId"]
    sign_in(page, gatehouse)
    page.goto(f"{gatehouse.url}/console/#/products/{product_key}")
    tsl = {
        **THERMOSTAT_TSL,
        "properties": [
            *THERMOSTAT_TSL["properties"],
            {
                "identifier": "humidity",
                "dataType": {"type": "float", "specs": {"min": "0", "max": "100"}},
            },
        ],
    }
    page.get_by_label("Import a TSL file").set_input_files(
        {"name": "model.json", "mimeType": "application/json", "buffer": orjson.dumps(tsl)}
    )
    expect(page.locator("#thing-model")).to_contain_text("humidity")
    stored = api("thing-models", "get", modelId=model_id).data["tsl"]
    assert [p["identifier"] for p in stored["properties"]][-1] == "humidity"
    bad = {
        "properties": [
            {"identifier": "x", "dataType": {"type": "int", "specs": {"min": "5", "max": "1"}}}
        ]
    }
    page.get_by_label("Import a TSL file").set_input_files(
        {"name": "bad.json", "mimeType": "application/json", "buffer": orjson.dumps(bad)}
    )
    expect(page.locator("#error-model")).to_contain_text(re.compile("min 5 is above"))


def test_a_gateways_topology_live_and_a_sub_devices_gateway(
    page: Page, gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], tmp_path: Path
) -> None:
    gateway = new_device(api, make_product(deviceType="gateway"))
    sub_product = make_product(deviceType="subdevice")
    spare = new_device(api, sub_product)
    sign_in(page, gatehouse)
    where = f"{gateway['productKey']}/devices/{gateway['deviceKey']}"
    page.goto(f"{gatehouse.url}/console/#/products/{where}")
    topology = page.locator("#sub-devices")
    expect(topology).to_contain_text("No sub-devices.")
    subs = topology.locator("tbody tr")
    added = ["--subdevice-product", sub_product, "--subdevices", "2", "--rate", "2"]
    with simulated(gatehouse, tmp_path / "sim.log", "gateway", gateway, *added):
        # The simulator adds two sub-devices and logs them in: they appear, Online.
        expect(subs).to_have_count(2)
        expect(subs.locator(".sub-state")).to_have_text(["Online", "Online"])
        first = f"{gateway['deviceKey']}-sub0000"
        online = topology.locator(f'tr[data-sub-device="{first}"]')
        online.get_by_role("button", name="Remove").click()  # the API's 409, with its reason
        expect(page.locator("#error-topo")).to_contain_text("online")
        expect(subs).to_have_count(2)
    # The gateway gone, its sub-devices go offline with it.
    expect(subs.locator(".sub-state")).to_have_text(["Offline", "Offline"])

    # Add one from the page, then remove it and an offline one.
    topology.get_by_label("Sub-device ProductKey").fill(spare["productKey"])
    topology.get_by_label("Sub-device DeviceKey").fill(spare["deviceKey"])
    topology.get_by_role("button", name="Add sub-device").click()
    expect(subs).to_have_count(3)
    expect(topology.locator(f'tr[data-sub-device="{spare["deviceKey"]}"] .sub-state')).to_have_text(
        "Inactive"
    )
    topology.locator(f'tr[data-sub-device="{spare["deviceKey"]}"]').get_by_role(
        "button", name="Remove"
    ).click()
    online.get_by_role("button", name="Remove").click()
    expect(subs).to_have_count(1)
    query = {"productKey": gateway["productKey"], "deviceKey": gateway["deviceKey"]}
    assert [s["deviceKey"] for s in api("device-topos", "list", **query).ok()] == [
        f"{gateway['deviceKey']}-sub0001"
    ]

    # A sub-device's page names its gateway.
    subs.get_by_role("link").click()
    expect(page.locator("#gateway-of")).to_contain_text(
        f"{gateway['productKey']}/{gateway['deviceKey']}"
    )
    expect(page.locator("#sub-devices")).to_have_count(0)


def test_the_live_stream_carries_refusals_when_asked(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    """The device page's refusals come from the stream's `refused` kind: a refused
    CONNECT and an uplink answered with an error, each with its code and reason."""
    device = new_device(api, make_product())
    auth = (gatehouse.access_key, gatehouse.access_secret)
    events: list[dict[str, Any]] = []
    got_two = threading.Event()

    def read(response: httpx.Response) -> None:
        with contextlib.suppress(httpx.HTTPError):  # closed by the test when done
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(orjson.loads(line.removeprefix("data: ")))
                    if len(events) == 2:
                        got_two.set()

    query = {"productKey": device["productKey"], "kinds": "refused"}
    with (
        httpx.Client(base_url=gatehouse.url, auth=auth, timeout=30) as client,
        client.stream("GET", f"{API}/stream", params=query) as response,
    ):
        assert response.status_code == 200, response.read()
        reader = threading.Thread(target=read, args=(response,), daemon=True)
        reader.start()
        with connect(gatehouse.mqtt_port, {**device, "deviceSecret": "wrong"}) as refused:
            assert not refused.accepted
        with connect(gatehouse.mqtt_port, device) as client_:
            bad = {"measurepoints": {"temp": "hot"}}
            assert request(client_, device, "thing/measurepoint/post", bad)["code"] != 200
        assert got_two.wait(10), events
        response.close()
    connect_refusal, uplink_refusal = events
    assert connect_refusal["kind"] == "refused" and connect_refusal["code"] == 742
    assert connect_refusal["deviceKey"] == device["deviceKey"] and connect_refusal["reason"]
    assert uplink_refusal["topic"].endswith("thing/measurepoint/post")
    assert uplink_refusal["code"] not in (0, 200) and "temp" in uplink_refusal["reason"]
    # The kinds applications retain are unchanged: a subscription cannot ask for it.
    refusal = api("subscriptions", "create", {"kinds": ["refused"]})
    assert refusal.status == 400 and "unknown kind" in refusal.msg
