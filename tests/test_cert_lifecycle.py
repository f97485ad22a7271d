"""A device's certificates live and die with it: deleting a device and creating it again
with the same key and secret does not bring back any certificate of the one deleted,
neither at once nor after a restart. Real `gatehouse serve`, real TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import eventually, lift_connect_limit, new_device
from tests.server import Api, Gatehouse
from tests.test_tls import Device, context, issue, tls_client

# What these tests check is stored: they run on each store (--store both).
pytestmark = pytest.mark.both_stores


@pytest.fixture
def device(api: Api, make_product: Callable[..., str]) -> Device:
    return new_device(api, make_product(biDirectionalAuth=True))


def _recreate(api: Api, device: Device) -> None:
    """Delete the device, then create it again with the same key and secret."""
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    api("devices", "delete", **query).ok()
    again = api(
        "devices",
        "create",
        {
            "productKey": device["productKey"],
            "deviceKey": device["deviceKey"],
            "deviceSecret": device["deviceSecret"],
            "deviceName": unique("dev"),
            "timezone": "+08:00",
        },
    ).ok()
    assert again["deviceSecret"] == device["deviceSecret"]


def _refused_naming(api: Api, device: Device, serial: str) -> str:
    """The device's refusal that names the certificate, once it is written."""
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}

    def find() -> str | None:
        refused = api("devices", "listMessages", kind="refused", **query).ok()
        return next((e["detail"] for e in refused if serial in e["detail"]), None)

    detail: str = eventually(find)
    return detail


def _certificates(api: Api, device: Device) -> list[str]:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    return [c["certSN"] for c in api("device-certificates", "list", **query).ok()]


def test_an_unrevoked_certificate_of_a_deleted_device_is_refused_for_its_successor(
    gatehouse: Gatehouse, api: Api, device: Device, tmp_path: Path
) -> None:
    files = issue(api, device, tmp_path)
    ctx = context(files.ca, files.cert, files.key)
    with tls_client(gatehouse, device, ctx) as first:
        assert first.accepted  # the certificate works for the device it was issued to
    _recreate(api, device)
    assert _certificates(api, device) == []  # the new device has none of the old ones
    lift_connect_limit(api, device)  # instead of waiting out one CONNECT a second
    with tls_client(gatehouse, device, ctx) as client:
        assert client.connack == 5
    _refused_naming(api, device, files.serial)


def test_a_revoked_certificate_of_a_deleted_device_stays_refused_after_a_restart(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    server = new_gatehouse()
    api = server.client()
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    product = api(
        "products",
        "create",
        with_mandatory({"productName": unique("p"), "modelId": model, "biDirectionalAuth": True}),
    ).data
    device: Device = api(
        "devices",
        "create",
        {"productKey": product, "deviceName": unique("dev"), "timezone": "+08:00"},
    ).ok()
    revoked = issue(api, device, tmp_path / "revoked")
    kept = issue(api, device, tmp_path / "kept")
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    api("device-certificates", "revoke", {"certSN": revoked.serial}, **query).ok()
    _recreate(api, device)

    server.stop()
    server.start()
    api = server.client()
    for files in (revoked, kept):
        with tls_client(server, device, context(files.ca, files.cert, files.key)) as client:
            assert client.connack == 5, f"certificate {files.serial} of the deleted device"
        lift_connect_limit(api, device)  # instead of waiting out one CONNECT a second
    # Refusals are recorded once a minute per reason: the first one names its certificate.
    _refused_naming(api, device, revoked.serial)
    # The device's own new certificate is admitted: the refusals above are the old ones'.
    fresh = issue(api, device, tmp_path / "fresh")
    with tls_client(server, device, context(fresh.ca, fresh.cert, fresh.key)) as client:
        assert client.accepted
