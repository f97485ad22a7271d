"""Two-way TLS on a real `gatehouse serve`: device certificates from its CA, the TLS
listener, and every bad certificate; the unchanged EnOS SDK with a client certificate."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from enos.core.MqttClient import MqttClient
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest

from broker.protocol import enos_credentials
from certs import CertificateAuthority, make_key_and_csr
from tests.devices import eventually, lift_connect_limit, new_device, request
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

Device = dict[str, str]


@dataclass
class Files:
    ca: Path
    cert: Path
    key: Path
    serial: str


def issue(api: Api, device: Device, where: Path, **body: Any) -> Files:
    key_pem, csr_pem = make_key_and_csr(device["productKey"], device["deviceKey"])
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    data = api("device-certificates", "apply", {"csr": csr_pem, **body}, **query).ok()
    where.mkdir(parents=True, exist_ok=True)
    files = Files(where / "ca.pem", where / "cert.pem", where / "key.pem", data["certSN"])
    files.ca.write_text(data["caCert"])
    files.cert.write_text(data["cert"])
    files.key.write_text(key_pem)
    return files


def context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_client(gatehouse: Gatehouse, device: Device, ctx: ssl.SSLContext) -> Client:
    creds = enos_credentials(
        device["productKey"], device["deviceKey"], device["deviceSecret"], "1795300635825"
    )
    return Client(gatehouse.mqtts_port, creds.client_id, creds.username, creds.password, tls=ctx)


def refused_reason(api: Api, device: Device) -> dict[str, Any]:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    entries = eventually(lambda: api("devices", "listMessages", kind="refused", **query).ok())
    return entries[0]  # type: ignore[no-any-return]


@pytest.fixture
def two_way(make_product: Callable[..., str]) -> str:
    return make_product(biDirectionalAuth=True, defaultValidDay=30, maxValidDay=60)


@pytest.fixture
def device(api: Api, two_way: str) -> Device:
    return new_device(api, two_way)


def test_the_sdk_connects_with_its_client_certificate(
    gatehouse: Gatehouse, api: Api, device: Device, tmp_path: Path
) -> None:
    files = issue(api, device, tmp_path)
    client = MqttClient(
        f"ssl://127.0.0.1:{gatehouse.mqtts_port}",
        device["productKey"],
        device["deviceKey"],
        device["deviceSecret"],
    )
    client.get_profile().set_auto_reconnect(False)
    client.get_profile().set_ssl_context(str(files.ca), str(files.cert), str(files.key))
    try:
        client.connect()
        assert client.is_connected()
        post = MeasurepointPostRequest.builder().add_measurepoint("temp", 22.0).build()
        assert client.publish(post).get_code() == 200
    finally:
        client.close()


def test_a_two_way_device_needs_a_certificate_and_the_tls_listener(
    gatehouse: Gatehouse, api: Api, device: Device, tmp_path: Path
) -> None:
    files = issue(api, device, tmp_path)
    with tls_client(gatehouse, device, context(files.ca)) as bare:
        assert bare.connack == 5
    assert "client certificate" in refused_reason(api, device)["detail"]


def test_server_authenticated_tls_for_any_product(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], device: Device, tmp_path: Path
) -> None:
    files = issue(api, device, tmp_path)  # only for the CA file
    plain = new_device(api, make_product())
    with tls_client(gatehouse, plain, context(files.ca)) as client:
        assert client.accepted
        reply = request(client, plain, "thing/measurepoint/post", {"measurepoints": {"temp": 1}})
        assert reply["code"] == 200


def test_a_certificate_for_another_device_is_refused(
    gatehouse: Gatehouse, api: Api, two_way: str, device: Device, tmp_path: Path
) -> None:
    other = new_device(api, two_way)
    files = issue(api, other, tmp_path)
    with tls_client(gatehouse, device, context(files.ca, files.cert, files.key)) as client:
        assert client.connack == 5
    assert (
        f"issued to {other['productKey']}/{other['deviceKey']}"
        in refused_reason(api, device)["detail"]
    )


def test_revoking_a_certificate_ends_its_connection_and_refuses_it(
    gatehouse: Gatehouse, api: Api, device: Device, tmp_path: Path
) -> None:
    files = issue(api, device, tmp_path)
    ctx = context(files.ca, files.cert, files.key)
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    with tls_client(gatehouse, device, ctx) as client:
        assert client.accepted
        api("device-certificates", "revoke", {"certSN": files.serial}, **query).ok()
        assert client.disconnected.wait(5)
    lift_connect_limit(api, device)  # instead of waiting out one CONNECT a second
    with tls_client(gatehouse, device, ctx) as again:
        assert again.connack == 5
    assert "revoked" in refused_reason(api, device)["detail"]
    listed = api("device-certificates", "list", **query).ok()
    assert [(c["certSN"], c["revoked"]) for c in listed] == [(files.serial, True)]


@pytest.mark.parametrize("which", ["expired", "foreign"])
def test_certificates_the_ca_does_not_vouch_for_fail_the_handshake(
    gatehouse: Gatehouse, api: Api, device: Device, tmp_path: Path, which: str
) -> None:
    files = issue(api, device, tmp_path)
    key_pem, csr_pem = make_key_and_csr(device["productKey"], device["deviceKey"])
    if which == "expired":
        ca = CertificateAuthority.load_or_create(gatehouse.data_dir / "ca")
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
        issued = ca.issue(csr_pem, device["productKey"], device["deviceKey"], 1, not_before=past)
    else:
        stranger = CertificateAuthority.load_or_create(tmp_path / "stranger")
        issued = stranger.issue(csr_pem, device["productKey"], device["deviceKey"], 30)
    (tmp_path / "bad.pem").write_text(issued.cert_pem)
    (tmp_path / "bad.key").write_text(key_pem)
    ctx = context(files.ca, tmp_path / "bad.pem", tmp_path / "bad.key")
    try:
        client = tls_client(gatehouse, device, ctx)
    except (ssl.SSLError, OSError):
        return  # refused in the handshake (TLS 1.2)
    with client:
        assert not client.accepted  # refused in the handshake (TLS 1.3: after the client's)


def test_valid_days_follow_the_product(
    api: Api, device: Device, make_product: Callable[..., str], tmp_path: Path
) -> None:
    _, csr = make_key_and_csr(device["productKey"], device["deviceKey"])
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    too_long = api("device-certificates", "apply", {"csr": csr, "validDay": 61}, **query)
    assert too_long.status == 400 and "maxValidDay (60)" in too_long.msg
    zero = api("device-certificates", "apply", {"csr": csr, "validDay": 0}, **query)
    assert zero.status == 400
    default = api("device-certificates", "apply", {"csr": csr}, **query).ok()
    assert default["notAfter"] - default["notBefore"] == 30 * 86_400_000
    renewed = api(
        "device-certificates", "renew", {"certSN": default["certSN"], "validDay": 60}, **query
    ).ok()
    assert renewed["certSN"] != default["certSN"]
    assert renewed["notAfter"] - renewed["notBefore"] == 60 * 86_400_000
    garbage = api("device-certificates", "apply", {"csr": "not a csr"}, **query)
    assert garbage.status == 400 and "certificate signing request" in garbage.msg
    plain = new_device(api, make_product())
    where = {"productKey": plain["productKey"], "deviceKey": plain["deviceKey"]}
    refused = api("device-certificates", "apply", {"csr": csr}, **where)
    assert refused.status == 403 and "biDirectionalAuth" in refused.msg
    assert "BEGIN CERTIFICATE" in api("device-certificates", "getCaCert").ok()["caCert"]
