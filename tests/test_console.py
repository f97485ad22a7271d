"""The web console end to end: Debian's headless chromium, driven by Playwright, against
a real `gatehouse serve`, with real MQTT devices. Every wait is on the page (Playwright's
auto-waiting `expect`), never a sleep.

`GATEHOUSE_SCREENSHOTS=DIR` keeps the screenshots the tests make (the README's are made
with `GATEHOUSE_SCREENSHOTS=docs`); otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from broker.protocol import encode_reply
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import connect, request, sync, topic
from tests.server import Api, Gatehouse

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

    # A real MQTT device connects: the row turns Online without a reload.
    device = {**rows[0]}
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted
        expect(row.locator(".state")).to_have_text("Online")
        expect(page.locator("#stat-online")).to_have_text("1")
        expect(page.locator("#codes-consumed")).to_have_text("1")  # it took a code
        expect(page.locator("#codes-available")).to_have_text("24")
        shots(page, "product")
        row.get_by_role("link").click()
        expect(page.locator("#device-state")).to_have_text("Online")
        reply = request(
            client, device, "thing/measurepoint/post", {"measurepoints": {"temp": 21.5}}
        )
        assert reply["code"] == 200
        expect(page.locator('#latest tr[data-point="temp"] .value')).to_have_text("21.5")
        expect(page.locator("#log tr[data-kind=up]").first).to_contain_text("200")
        request(client, device, "thing/measurepoint/post", {"measurepoints": {"temp": 22.5}})
        expect(page.locator('#latest tr[data-point="temp"] .value')).to_have_text("22.5")
        expect(page.locator('#latest tr[data-point="temp"] polyline')).to_have_count(1)

        # A service call from the thing model's form, followed to its end.
        form = page.locator('form[data-service="reboot"]')
        form.get_by_label("delay (int)").fill("3")
        form.get_by_role("button", name="Call reboot").click()
        down = client.next_received(topic(device, "thing/service/reboot"))
        sent = orjson.loads(down.payload)
        assert sent["params"] == {"delay": 3}
        client.publish(down.topic + "_reply", encode_reply(sent["id"], 200, {"ok": True}), qos=1)
        command = page.locator("#commands tbody tr").first
        expect(command.locator(".command-state")).to_have_text("succeeded")
        shots(page, "device")
    expect(page.locator("#device-state")).to_have_text("Offline")
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
