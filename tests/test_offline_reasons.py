"""Why a device went offline, as its offline event (listMessages' `detail`) and its
lifecycle message say: the core tells the gate how each connection ended, so an
operator can tell a device that said goodbye from one that lost power, went silent,
broke the protocol or was replaced by a second login. Real serve, real sockets."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.protocol import enos_credentials
from tests.devices import connect, eventually, new_device
from tests.raw_mqtt import connect_packet, read_packet
from tests.server import Api, Gatehouse
from tests.test_durability import _product, restart

CONNACK = 0x20


def offline_reasons(api: Api, device: dict[str, str]) -> list[str]:
    keys = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    entries: list[dict[str, Any]] = api("devices", "listMessages", kind="offline", **keys).ok()
    return [entry["detail"] for entry in entries]


def reason_of(api: Api, device: dict[str, str]) -> str:
    """The newest offline event's reason, once there is one."""
    found: list[str] = eventually(lambda: offline_reasons(api, device))
    return found[0]


def raw_device(port: int, device: dict[str, str], keepalive: int = 60) -> socket.socket:
    """A signed device on a plain socket, past its CONNACK."""
    creds = enos_credentials(
        device["productKey"], device["deviceKey"], device["deviceSecret"], str(time.time() * 1000)
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        connect_packet(
            creds.client_id, username=creds.username, password=creds.password, keepalive=keepalive
        )
    )
    packet = read_packet(sock, time.monotonic() + 5)
    assert packet is not None and packet[0] == CONNACK and packet[1][1] == 0, packet
    return sock


def test_a_device_that_says_goodbye_is_disconnected(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    with connect(gatehouse.mqtt_port, device) as client:  # leaves with DISCONNECT
        assert client.accepted
    assert reason_of(api, device) == "disconnected"


def test_a_device_that_loses_power_lost_its_connection(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    client = connect(gatehouse.mqtt_port, device)
    assert client.accepted
    client.drop()  # the socket closes without DISCONNECT
    assert reason_of(api, device) == "connection lost"


def test_a_silent_device_times_out_its_keepalive(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    sock = raw_device(gatehouse.mqtt_port, device, keepalive=1)
    try:
        # Nothing more is sent: the server ends it after 1.5 s, which the socket sees.
        assert read_packet(sock, time.monotonic() + 10) is None
    finally:
        sock.close()
    assert reason_of(api, device) == "keepalive timeout"


def test_a_device_that_breaks_the_protocol_is_told_apart(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    sock = raw_device(gatehouse.mqtt_port, device)
    try:
        sock.sendall(b"\x00\x00")  # packet type 0 is reserved
        assert read_packet(sock, time.monotonic() + 10) is None
    finally:
        sock.close()
    assert reason_of(api, device) == "protocol error"


def test_a_device_logged_in_again_elsewhere_was_taken_over(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    keys = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    with connect(gatehouse.mqtt_port, device) as first:
        assert first.accepted
        api("devices", "clearConnectBlock", **keys).ok()  # EnOS's one CONNECT a second
        with connect(gatehouse.mqtt_port, device) as second:
            assert second.accepted
            assert reason_of(api, device) == "logged in again"
    assert eventually(lambda: len(offline_reasons(api, device)) == 2)
    assert offline_reasons(api, device) == ["disconnected", "logged in again"]


def test_devices_connected_when_the_server_stops_went_offline_for_that(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    server = new_gatehouse(tmp_path / "data")
    api = server.client()
    product = _product(api)
    devices = [new_device(api, product) for _ in range(3)]
    clients = [connect(server.mqtt_port, device) for device in devices]
    assert all(client.accepted for client in clients)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0
    for client in clients:
        client.close()
    restarted = restart(new_gatehouse, server, tmp_path / "data")
    for device in devices:
        assert offline_reasons(restarted, device)[0] == "server shutting down"
