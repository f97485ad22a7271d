"""Downlink: commands from the API to devices on a real `gatehouse serve`, answered by
the unchanged EnOS SDK's handlers and by paho devices; sleeping devices; restarts."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from enos.core.MqttClient import MqttClient
from enos.message.downstream.tsl.MeasurepointSetCommand import MeasurepointSetCommand
from enos.message.downstream.tsl.MeasurepointSetReply import MeasurepointSetReply
from enos.message.downstream.tsl.ServiceInvocationCommand import ServiceInvocationCommand
from enos.message.downstream.tsl.ServiceInvocationReply import ServiceInvocationReply

from broker.protocol import encode_reply
from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import connect, eventually, new_device, request, topic
from tests.mqtt_client import Client, Message
from tests.server import Api, Gatehouse

# What these tests check is stored: they run on each store (--store both).
pytestmark = pytest.mark.both_stores


Device = dict[str, str]
PSM = {"networkMethod": "NB-IoT", "powerSaving": {"mode": "PSM"}}


def command(api: Api, action: str, device: Device, body: Any, **query: Any) -> Any:
    return api(
        "commands",
        action,
        body,
        productKey=device["productKey"],
        deviceKey=device["deviceKey"],
        **query,
    )


def device_state(api: Api, device: Device) -> str:
    keys = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    return str(api("devices", "get", **keys).ok()["state"])


def state_of(api: Api, command_id: str) -> dict[str, Any]:
    data: dict[str, Any] = api("commands", "get", commandId=command_id).ok()
    return data


def reboot(api: Api, device: Device, delay: int, **query: Any) -> Any:
    """Invoke the thermostat's `reboot` service with `delay`."""
    return command(
        api, "invokeService", device, {"inputData": {"delay": delay}}, serviceId="reboot", **query
    )


def has_state(api: Api, command_id: str, state: str) -> bool:
    return bool(state_of(api, command_id)["state"] == state)


def answer(client: Client, message: Message, code: int = 200, data: Any = "") -> None:
    request_id = orjson.loads(message.payload)["id"]
    client.publish(message.topic + "_reply", encode_reply(request_id, code, data), qos=1)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


@pytest.fixture
def device(api: Api, make_product: Callable[..., str]) -> Device:
    return new_device(api, make_product())


@pytest.fixture
def online(gatehouse: Gatehouse, api: Api, device: Device) -> Iterator[Client]:
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted
        yield client


# -- the EnOS SDK's handlers -------------------------------------------------------------------


@pytest.fixture
def sdk_device(gatehouse: Gatehouse, api: Api, device: Device) -> Iterator[Any]:
    client = MqttClient(
        f"tcp://127.0.0.1:{gatehouse.mqtt_port}",
        device["productKey"],
        device["deviceKey"],
        device["deviceSecret"],
    )
    client.get_profile().set_auto_reconnect(False)

    def reboot(message: Any, args: Any) -> Any:
        delay = message.get_params()["delay"]
        return (
            ServiceInvocationReply.builder().add_output_data("ok", delay < 10).set_code(200).build()
        )

    def set_points(message: Any, args: Any) -> Any:
        assert message.get_params()["measurepoints"] == {"target": 21}
        return MeasurepointSetReply.builder().set_code(200).build()

    client.register_arrived_message_handler(ServiceInvocationCommand.get_class(), reboot)
    client.register_arrived_message_handler(MeasurepointSetCommand.get_class(), set_points)
    client.connect()
    yield client
    client.close()


def test_a_synchronous_invoke_returns_the_sdk_handlers_result(
    api: Api, device: Device, sdk_device: Any
) -> None:
    result = command(api, "invokeService", device, {"inputData": {"delay": 3}}, serviceId="reboot")
    data = result.ok()
    assert data["state"] == "succeeded" and data["replyCode"] == 200
    assert data["outputData"] == {"ok": True}
    assert data["mismatch"] == ""
    assert state_of(api, data["commandId"])["state"] == "succeeded"


def test_measurepoints_are_set_through_the_sdks_handler(
    api: Api, device: Device, sdk_device: Any
) -> None:
    data = command(api, "setMeasurepoint", device, {"measurepoints": {"target": 21}}).ok()
    assert data["state"] == "succeeded"


# -- inputs and outputs checked against the thing model --------------------------------------


@pytest.mark.parametrize(
    ("action", "body", "query", "fault"),
    [
        ("invokeService", {"inputData": {"delay": 1}}, {"serviceId": "explode"}, "not a service"),
        ("invokeService", {"inputData": {"delay": "soon"}}, {"serviceId": "reboot"}, "delay"),
        ("invokeService", {}, {"serviceId": "reboot"}, "inputData is required"),
        ("setMeasurepoint", {"measurepoints": {"temp": 5}}, {}, "read-only"),
        ("setMeasurepoint", {"measurepoints": {"target": 99}}, {}, "above max"),
        ("sendRaw", {"payloadBase64": "AQI="}, {}, "dataFormat is Custom"),
        ("invokeService", {"inputData": {}}, {"serviceId": "reboot", "timeout": "0"}, "timeout"),
        (
            "invokeService",
            {"inputData": {}},
            {"serviceId": "reboot", "pendingTtl": "-1"},
            "pendingTtl",
        ),
    ],
)
def test_bad_commands_are_refused_before_anything_is_sent(
    api: Api, device: Device, online: Client, action: str, body: Any, query: Any, fault: str
) -> None:
    reply = command(api, action, device, body, **query)
    assert reply.status == 400 and fault in reply.msg
    online.barrier()  # anything sent before the refusal would be here by now
    assert online.received.empty()


def test_a_command_to_an_offline_device_needs_a_pending_ttl(api: Api, device: Device) -> None:
    reply = command(api, "invokeService", device, {"inputData": {"delay": 1}}, serviceId="reboot")
    assert reply.status == 409 and "pendingTtl" in reply.msg


def test_a_device_that_never_answers_times_out(api: Api, device: Device, online: Client) -> None:
    data = reboot(api, device, 1, timeout="1").ok()
    assert data["state"] == "timed_out"
    assert online.next_received(topic(device, "thing/service/reboot"))  # it was sent


def test_a_failing_reply_and_an_output_that_breaks_the_model_are_recorded(
    api: Api, device: Device, online: Client, pool: ThreadPoolExecutor
) -> None:
    service = topic(device, "thing/service/reboot")
    call: Future[Any] = pool.submit(
        command, api, "invokeService", device, {"inputData": {"delay": 1}}, serviceId="reboot"
    )
    answer(online, online.next_received(service), data={"ok": "yes"})
    data = call.result(10).ok()
    assert data["state"] == "succeeded" and "ok" in data["mismatch"]
    call = pool.submit(
        command, api, "invokeService", device, {"inputData": {"delay": 2}}, serviceId="reboot"
    )
    answer(online, online.next_received(service), code=500)
    failed = call.result(10).ok()
    assert failed["state"] == "failed" and failed["replyCode"] == 500


def test_raw_bytes_go_down_and_the_raw_reply_comes_back(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], pool: ThreadPoolExecutor
) -> None:
    device = new_device(api, make_product(dataFormat="Custom"))
    with connect(gatehouse.mqtt_port, device) as client:
        call = pool.submit(command, api, "sendRaw", device, {"payloadBase64": "AAEC"})
        down = client.next_received(topic(device, "thing/model/down_raw"))
        assert down.payload == b"\x00\x01\x02"
        client.publish(down.topic + "_reply", b"\x09", qos=1)
        data = call.result(10).ok()
    assert data["state"] == "succeeded" and data["outputBase64"] == "CQ=="


def test_a_pending_command_is_cancelled_or_expires(api: Api, device: Device) -> None:
    held = reboot(api, device, 1, pendingTtl="60").ok()
    assert held["state"] == "pending"
    cancelled = api("commands", "cancel", commandId=held["commandId"]).ok()
    assert cancelled["state"] == "cancelled"
    again = api("commands", "cancel", commandId=held["commandId"])
    assert again.status == 409 and "only a pending one" in again.msg
    brief = reboot(api, device, 1, pendingTtl="1").ok()
    eventually(lambda: state_of(api, brief["commandId"])["state"] == "expired")
    listed = command(api, "list", device, None).ok()
    assert [c["state"] for c in listed[:2]] == ["expired", "cancelled"]


def test_a_full_queue_is_refused(api: Api, device: Device) -> None:
    for _ in range(50):
        reboot(api, device, 1, pendingTtl="600").ok()
    refused = reboot(api, device, 1, pendingTtl="600")
    assert refused.status == 409 and "50 commands waiting" in refused.msg


def test_a_command_held_for_an_offline_device_goes_out_when_it_connects(
    gatehouse: Gatehouse, api: Api, device: Device
) -> None:
    held = command(
        api, "setMeasurepoint", device, {"measurepoints": {"target": 10}}, pendingTtl="60"
    ).ok()
    with connect(gatehouse.mqtt_port, device) as client:
        message = client.next_received(topic(device, "thing/service/measurepoint/set"))
        assert orjson.loads(message.payload)["params"] == {"measurepoints": {"target": 10}}
        answer(client, message)
        eventually(lambda: state_of(api, held["commandId"])["state"] == "succeeded")


# -- devices that sleep ------------------------------------------------------------------------


def test_a_psm_device_gets_its_commands_in_order_after_its_next_uplink(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product(**PSM))
    with connect(gatehouse.mqtt_port, device) as client:
        held = [reboot(api, device, n, pendingTtl="60").ok() for n in (1, 2, 3)]
        assert all(c["state"] == "pending" and c["timeoutMs"] == 300_000 for c in held)
        client.barrier()
        assert client.received.empty()  # connected, but a PSM device does not listen
        assert (
            request(client, device, "thing/measurepoint/post", {"measurepoints": {"temp": 1}})[
                "code"
            ]
            == 200
        )
        service = topic(device, "thing/service/reboot")
        delays = []
        for _ in held:
            message = client.next_received(service)
            delays.append(orjson.loads(message.payload)["params"]["delay"])
            answer(client, message, data={"ok": True})
        assert delays == [1, 2, 3]
    for held_command in held:
        eventually(functools.partial(has_state, api, held_command["commandId"], "succeeded"))


def test_edrx_and_drx_timeouts_follow_the_product(
    api: Api, make_product: Callable[..., str]
) -> None:
    edrx = new_device(
        api, make_product(networkMethod="NB-IoT", powerSaving={"mode": "eDRX", "edrxCycle": 20.48})
    )
    drx = new_device(api, make_product(networkMethod="NB-IoT", powerSaving={"mode": "DRX"}))
    body = {"inputData": {"delay": 1}}
    held = command(api, "invokeService", edrx, body, serviceId="reboot", pendingTtl="60").ok()
    assert held["timeoutMs"] == int((2 * 20.48 + 120) * 1000)
    drx_held = command(api, "invokeService", drx, body, serviceId="reboot", pendingTtl="60").ok()
    assert drx_held["timeoutMs"] == 300_000


# -- through a gateway ---------------------------------------------------------------------------


def test_a_sub_devices_command_travels_through_its_gateway(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], pool: ThreadPoolExecutor
) -> None:
    from tests.test_gateway_rules import login, topo_add

    gateway = new_device(api, make_product(deviceType="gateway"))
    sub = new_device(api, make_product(deviceType="subdevice"))
    with connect(gatehouse.mqtt_port, gateway) as client:
        assert topo_add(client, gateway, sub)["code"] == 200
        assert login(client, gateway, sub)["code"] == 200
        call = pool.submit(
            command, api, "invokeService", sub, {"inputData": {"delay": 4}}, serviceId="reboot"
        )
        message = client.next_received(topic(sub, "thing/service/reboot"))
        answer(client, message, data={"ok": True})
        assert call.result(10).ok()["state"] == "succeeded"


# -- restarts --------------------------------------------------------------------------------------


def test_a_restart_keeps_the_queue_and_sends_nothing_twice(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    first = new_gatehouse(tmp_path / "data")
    api = first.client()
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    product = api(
        "products", "create", with_mandatory({"productName": unique("p"), "modelId": model})
    ).ok()
    device = new_device(api, product)
    body = {"inputData": {"delay": 1}}
    with connect(first.mqtt_port, device) as client:
        sent = command(
            api, "invokeService", device, body, serviceId="reboot", pendingTtl="60", timeout="30"
        ).ok()
        client.next_received(topic(device, "thing/service/reboot"))  # received, never answered
    # Offline on the server first: to a device still online the next one goes out at once.
    eventually(lambda: device_state(api, device) == "offline")
    waiting = reboot(api, device, 2, pendingTtl="600").ok()
    first.stop()

    second = new_gatehouse(
        tmp_path / "data",
        http_port=first.http_port,
        mqtt_port=first.mqtt_port,
        org_id=first.org_id,
        access_key=first.access_key,
        access_secret=first.access_secret,
    )
    api = second.client()
    assert state_of(api, sent["commandId"])["state"] == "sent"
    with connect(second.mqtt_port, device) as client:
        message = client.next_received(topic(device, "thing/service/reboot"))
        assert orjson.loads(message.payload)["params"] == {"delay": 2}  # only the waiting one
        answer(client, message, data={"ok": True})
        eventually(lambda: state_of(api, waiting["commandId"])["state"] == "succeeded")
        client.barrier()
        assert client.received.empty()


def test_every_answered_synchronous_invoke_survives_kill_9(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """Commands are written in the write-behind's group commits: a 200 still means the
    command's end is stored."""
    first = new_gatehouse(tmp_path / "data")
    api = first.client()
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    product = api(
        "products", "create", with_mandatory({"productName": unique("p"), "modelId": model})
    ).ok()
    device = new_device(api, product)
    answered = []
    with connect(first.mqtt_port, device) as client:
        for delay in range(5):
            call = pool.submit(reboot, api, device, delay)
            answer(client, client.next_received(topic(device, "thing/service/reboot")), data={})
            answered.append(call.result(10).ok())
        assert first.process is not None
        first.process.kill()  # SIGKILL right after the last answer: no shutdown code runs
        first.process.wait()
    assert [c["state"] for c in answered] == ["succeeded"] * 5
    second = new_gatehouse(
        tmp_path / "data",
        org_id=first.org_id,
        access_key=first.access_key,
        access_secret=first.access_secret,
    )
    api = second.client()
    assert [state_of(api, c["commandId"])["state"] for c in answered] == ["succeeded"] * 5
