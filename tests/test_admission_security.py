"""Admission as an attacker tries it, over real MQTT against a real `gatehouse serve`:
a stranger guessing signs cannot lock the device out, blocks are logged with their end
and can be seen and lifted (API and CLI), a gateway cannot tell another organisation's
devices from none, and sign timestamps are checked (format, `--sign-max-age`, replay).

Strangers connect from 127.0.0.2 with hand-built CONNECTs, the device from 127.0.0.1:
the sign-failure limit counts per source address.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from broker.protocol import enos_connect_params, enos_credentials, enos_sign
from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import ask, connect, eventually, ext_topic, new_device, request, signed_sub
from tests.server import Api, Gatehouse

Device = dict[str, str]
STRANGER = "127.0.0.2"


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    body = _string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60) + _string(client_id)
    body += _string(username) + _string(password)
    assert len(body) < 128 * 128
    return bytes([0x10, 0x80 | len(body) % 128, len(body) // 128]) + body


def raw_connect(port: int, packet: bytes, source: str = STRANGER) -> int:
    """Send one CONNECT from `source`; the CONNACK's return code."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(packet)
        connack = b""
        while len(connack) < 4:
            chunk = s.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError("closed before CONNACK")
            connack += chunk
        if connack[3] == 0:
            s.sendall(b"\xe0\x00")  # DISCONNECT
        return connack[3]


def signed_packet(device: Device, secret: str | None = None, timestamp: str | None = None) -> bytes:
    creds = enos_credentials(
        device["productKey"],
        device["deviceKey"],
        secret or device["deviceSecret"],
        timestamp or str(time.time() * 1000),
    )
    return connect_packet(creds.client_id, creds.username, creds.password)


def guess(device: Device) -> bytes:
    """A stranger's CONNECT: the device's username, any password (mosquitto_pub -u -P)."""
    client_id = f"{device['deviceKey']}|securemode=2,signmethod=hmacsha256,timestamp={time.time()}|"
    return connect_packet(client_id, f"{device['deviceKey']}&{device['productKey']}", "x" * 64)


def query(device: Device) -> dict[str, str]:
    return {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}


def refusals(api: Api, device: Device) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = api(
        "devices", "listMessages", kind="refused", **query(device)
    ).ok()
    return entries


def device_log_lines(gatehouse: Gatehouse, device: Device) -> list[str]:
    return [line for line in gatehouse.log().splitlines() if device["deviceKey"] in line]


def block_lines(gatehouse: Gatehouse, device: Device) -> list[str]:
    """The log's lines that announce a block of the device. A refusal is logged before
    its CONNACK is sent, so every line of the CONNECTs made so far is there."""
    return [line for line in device_log_lines(gatehouse, device) if "refused until" in line]


def logged_end(line: str) -> str:
    found = re.search(r"refused until (\S+Z)", line)
    assert found, line
    return found.group(1)


def near(a: str, b: str) -> bool:
    """Two ISO times within a second (each is rounded down to its second)."""
    parse = datetime.fromisoformat
    return abs((parse(a) - parse(b)).total_seconds()) <= 1


def cli(gatehouse: Gatehouse, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        env=gatehouse.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


# -- item 6: guessing cannot lock the device out --------------------------------------------


def test_a_stranger_guessing_signs_cannot_lock_the_device_out(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    for _ in range(12):  # past the connect limit (4) and the sign-failure limit (5)
        assert raw_connect(gatehouse.mqtt_port, guess(device)) == 5
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted  # the holder of the secret, from another address


def test_a_guessing_address_is_blocked_and_the_block_can_be_seen_and_lifted(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    for _ in range(8):
        assert raw_connect(gatehouse.mqtt_port, guess(device)) == 5
    # From the guessing address even the right sign is refused now: guessing stays slow.
    assert raw_connect(gatehouse.mqtt_port, signed_packet(device)) == 5
    block = api("devices", "getConnectBlock", **query(device)).ok()
    assert block["blocked"] is True
    (entry,) = block["blocks"]
    assert entry["reason"] == "sign-failures" and entry["address"] == STRANGER
    assert 290 < entry["secondsLeft"] <= 300 and entry["blockedUntil"].endswith("Z")
    # The log says so once, with the end of the block; later refusals add nothing.
    lines = block_lines(gatehouse, device)
    assert len(lines) == 1 and STRANGER in lines[0], lines
    assert near(logged_end(lines[0]), entry["blockedUntil"])
    assert 429 in {e["code"] for e in eventually(lambda: refusals(api, device))}

    names = ("--product", device["productKey"], "--key", device["deviceKey"])
    shown = cli(gatehouse, "device", "block", "show", *names)
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["blocks"][0]["address"] == STRANGER
    cleared = cli(gatehouse, "device", "block", "clear", *names)
    assert cleared.returncode == 0 and "1 block(s) lifted" in cleared.stdout, cleared.stderr
    assert api("devices", "getConnectBlock", **query(device)).ok()["blocked"] is False
    assert raw_connect(gatehouse.mqtt_port, signed_packet(device)) == 0


def test_the_connect_limit_block_is_logged_once_with_its_end_and_can_be_lifted(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    # One CONNECT per message, as with mosquitto_pub: the holder trips its own limit.
    codes = [raw_connect(gatehouse.mqtt_port, signed_packet(device), "127.0.0.1") for _ in range(8)]
    assert codes[0] == 0 and codes[-1] == 5
    block = api("devices", "getConnectBlock", **query(device)).ok()
    (entry,) = block["blocks"]
    assert entry["reason"] == "connect-limit" and entry["address"] is None
    lines = block_lines(gatehouse, device)
    assert len(lines) == 1 and near(logged_end(lines[0]), entry["blockedUntil"]), lines
    cleared = api("devices", "clearConnectBlock", **query(device)).ok()
    assert cleared["cleared"] == 1 and cleared["blocked"] is False
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted


def test_another_organisations_device_cannot_see_or_lift_a_block(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    creds = api("organizations", "create", {"name": unique("tenant")}).ok()
    other = Api(gatehouse.url, creds["accessKey"], creds["accessSecret"], None)
    assert other("devices", "getConnectBlock", **query(device)).status == 404
    assert other("devices", "clearConnectBlock", **query(device)).status == 404


# -- item 12: no enumeration through combine/login ------------------------------------------


def test_a_gateway_cannot_tell_another_organisations_device_from_none(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    theirs = new_device(api, make_product(deviceType="subdevice"))
    creds = api("organizations", "create", {"name": unique("tenant")}).ok()
    tenant = Api(gatehouse.url, creds["accessKey"], creds["accessSecret"], creds["orgId"])
    model = unique("model")
    tenant("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    gateway_product = tenant(
        "products",
        "create",
        with_mandatory({"productName": unique("gw"), "modelId": model, "deviceType": "gateway"}),
    ).ok()
    gateway = new_device(tenant, gateway_product)
    nobody = {**theirs, "deviceKey": unique("nobody")}
    with connect(gatehouse.mqtt_port, gateway) as client:
        assert client.accepted
        for sub in (theirs, nobody):
            for entry in (signed_sub(sub, secret="a-guessed-secret"), signed_sub(theirs)):
                entry = {**entry, "deviceKey": sub["deviceKey"]}
                reply = ask(client, ext_topic(gateway, "combine/login"), entry)
                assert reply["code"] == 705, reply
                label = f"{sub['productKey']}/{sub['deviceKey']}"
                assert reply["message"] == f"sub-device {label} does not exist"
        topo = request(client, gateway, "thing/topo/add", [signed_sub(theirs)])
        assert "does not exist" in topo["message"], topo


# -- item 15: sign timestamps ---------------------------------------------------------------


def test_a_timestamp_that_is_no_number_is_refused(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    assert (
        raw_connect(gatehouse.mqtt_port, signed_packet(device, timestamp="banana"), "127.0.0.1")
        == 5
    )
    entry = eventually(lambda: refusals(api, device))[0]
    assert entry["code"] == 742 and "not a number" in entry["detail"]


def test_a_replayed_connect_does_not_kick_the_online_device(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    # No connect limit: the replay must be refused for what it is, not for coming soon.
    server = new_gatehouse(None, "--connect-limit", "off")
    api = server.client()
    device = new_device(api, new_product(api))
    stamp = str(time.time() * 1000)
    with connect(server.mqtt_port, device, timestamp=stamp) as client:
        assert client.accepted
        # The very CONNECT the device sent, captured and replayed byte for byte.
        assert raw_connect(server.mqtt_port, signed_packet(device, timestamp=stamp)) == 5
        post = {"measurepoints": {"temp": 21}}
        assert request(client, device, "thing/measurepoint/post", post)["code"] == 200
        assert not client.disconnected.is_set()
    entry = eventually(lambda: refusals(api, device))[0]
    assert entry["code"] == 742 and "does not take over" in entry["detail"]


def new_product(api: Api, **settings: Any) -> str:
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    body = {"productName": unique("product"), "modelId": model, **settings}
    key: str = api("products", "create", with_mandatory(body)).ok()
    return key


def test_the_sign_max_age_refuses_old_future_and_reused_signs(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    limits = ("--sign-failure-limit", "off", "--connect-limit", "off")
    server = new_gatehouse(None, "--sign-max-age", "60", *limits)
    api = server.client()
    device = new_device(api, new_product(api))
    port = server.mqtt_port
    now = time.time() * 1000
    assert raw_connect(port, signed_packet(device, timestamp=str(int(now - 120_000)))) == 5
    assert raw_connect(port, signed_packet(device, timestamp="99999999999999")) == 5
    fresh = signed_packet(device, timestamp=str(int(now)))
    assert raw_connect(port, fresh) == 0
    assert raw_connect(port, fresh) == 5  # the same sign again, within the window
    seconds = signed_packet(device, timestamp=str(int(time.time())))  # linkkit's unit
    assert raw_connect(port, seconds) == 0
    details = {
        e["detail"]
        for e in eventually(lambda: len(refusals(api, device)) >= 3 and refusals(api, device))
    }
    assert any("s old, over --sign-max-age (60 s)" in d for d in details), details
    assert any("ahead of the server's clock" in d for d in details), details
    assert any("used before" in d for d in details), details


def sub_entry(sub: Device, timestamp: str) -> dict[str, str]:
    client_id = f"{sub['productKey']}.{sub['deviceKey']}"
    params = enos_connect_params(client_id, sub["productKey"], sub["deviceKey"], timestamp)
    return {
        "productKey": sub["productKey"],
        "deviceKey": sub["deviceKey"],
        "clientId": client_id,
        "timestamp": timestamp,
        "signMethod": "sha256",
        "sign": enos_sign(sub["deviceSecret"], params, "sha256"),
    }


def test_sub_device_signs_are_held_to_the_same_rules(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    server = new_gatehouse(None, "--sign-max-age", "60")
    api = server.client()
    gateway = new_device(api, new_product(api, deviceType="gateway"))
    sub = new_device(api, new_product(api, deviceType="subdevice"))
    with connect(server.mqtt_port, gateway) as client:
        assert request(client, gateway, "thing/topo/add", [signed_sub(sub)])["code"] == 200
        login = ext_topic(gateway, "combine/login")
        now = time.time() * 1000
        for stamp in ("banana", str(int(now - 120_000)), "99999999999999"):
            reply = ask(client, login, sub_entry(sub, stamp))
            assert reply["code"] == 742, (stamp, reply)
        fresh = sub_entry(sub, str(int(now)))
        assert ask(client, login, fresh)["code"] == 200
        ask(client, ext_topic(gateway, "combine/logout"), {k: sub[k] for k in query(sub)})
        replay = ask(client, login, fresh)
        assert replay["code"] == 742 and "used before" in replay["message"]
