"""Custom data format end to end (issue 17): a product's Alibaba-style JavaScript (the
binary temperature/humidity frame of examples/th_frame) or a Python codec turns device
bytes into checked thing-model requests and replies, and commands into bytes, against a
real `gatehouse serve` and real MQTT clients."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.protocol import encode_request
from simulators.platform import with_mandatory
from tests.conftest import unique
from tests.devices import connect, eventually, new_device, topic
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse
from tests.test_linkkit import linkkit_python  # noqa: F401  # the session's linkkit venv

EXAMPLE = Path(__file__).parent.parent / "examples" / "th_frame"
PLATFORM_JS = (EXAMPLE / "platform.js").read_text()
MODEL = json.loads((EXAMPLE / "model.json").read_text())
REPORT, SET, REPORT_REPLY, SET_REPLY, REBOOT, SERVICE_REPLY, OTHER = 0, 1, 2, 3, 4, 5, 0xFF
# The example's script, but its decoder loops forever (a later declaration wins in JS),
# except on command byte 0x7e, for which it returns a string instead of an object.
RUNAWAY_JS = (
    PLATFORM_JS
    + """
function rawDataToProtocol(bytes) {
    if ((bytes[0] & 0xff) === 0x7e) { return 'not an object'; }
    while (true) {}
}
"""
)
TIME_LIMIT_S = 0.1  # broker.protocol.scripts.TIME_LIMIT_S, what the README promises


def report(request_id: int, temperature: float, humidity: int) -> bytes:
    return struct.pack(">BihB", REPORT, request_id, round(temperature * 10), humidity)


def reply_frame(payload: bytes) -> tuple[int, int, int]:
    """(command byte, id, code) of a 7-byte reply frame from the platform."""
    command, request_id, code = struct.unpack(">BiH", payload)
    return command, request_id, code


@pytest.fixture
def th_model(api: Api) -> str:
    model = unique("thframe")
    api("thing-models", "create", {"modelId": model, "tsl": MODEL}).ok()
    return model


@pytest.fixture
def th_product(api: Api, th_model: str) -> Callable[..., str]:
    """A Custom product on the example's model, with `script` uploaded if given."""

    def make(script: str | None = PLATFORM_JS, **settings: Any) -> str:
        body = {"productName": unique("th"), "modelId": th_model, "dataFormat": "Custom"}
        product_key: str = api("products", "create", with_mandatory({**body, **settings})).data
        if script is not None:
            upload = {"scriptType": "JavaScript", "scriptContent": script}
            api("product-scripts", "upload", upload, productKey=product_key).ok()
        return product_key

    return make


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def post_raw(client: Client, device: dict[str, str], frame: bytes) -> bytes:
    up = topic(device, "thing/model/up_raw")
    client.publish(up, frame, qos=1)
    return client.next_received(up + "_reply").payload


def latest(api: Api, device: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = api(
        "devices", "getLatest", productKey=device["productKey"], deviceKey=device["deviceKey"]
    ).ok()
    return found


def command(api: Api, action: str, device: dict[str, str], body: Any, **query: Any) -> Any:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"], **query}
    return api("commands", action, body, **query).ok()


# -- up: bytes to a checked post, and its reply back to bytes ------------------------------


def test_a_script_turns_a_frame_into_a_checked_post_and_encodes_its_reply(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    device = new_device(api, th_product())
    with connect(gatehouse.mqtt_port, device) as client:
        assert reply_frame(post_raw(client, device, report(41, 21.5, 55))) == (
            REPORT_REPLY,
            41,
            200,
        )
        assert {k: v["value"] for k, v in latest(api, device).items()} == {
            "temperature": 21.5,
            "humidity": 55,
        }
        # 300.0 C is above the model's 125: the thing model's fault, in the frame.
        assert reply_frame(post_raw(client, device, report(42, 300.0, 55))) == (
            REPORT_REPLY,
            42,
            460,
        )
        # A command byte the script does not know: it throws, the device gets 26002.
        assert reply_frame(post_raw(client, device, b"\x09\x00\x00\x00\x01")) == (OTHER, 0, 26002)
    assert latest(api, device)["temperature"]["value"] == 21.5  # nothing of the bad ones


def test_alink_method_names_decode_through_a_python_codec(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product(dataFormat="Custom", codec="json"))
    with connect(gatehouse.mqtt_port, device) as client:
        post = encode_request("9", "thing.event.property.post", {"temp": 19.5})
        assert orjson.loads(post_raw(client, device, post))["code"] == 200
        event = encode_request("10", "thing.event.overheat.post", {"value": {"temp": 99.0}})
        assert orjson.loads(post_raw(client, device, event))["code"] == 200
    assert latest(api, device)["temp"]["value"] == 19.5


# -- down: commands as bytes, raw replies end them -----------------------------------------


def test_commands_go_down_as_frames_and_raw_replies_end_them(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str], pool: ThreadPoolExecutor
) -> None:
    device = new_device(api, th_product())
    down = topic(device, "thing/model/down_raw")
    with connect(gatehouse.mqtt_port, device) as client:
        body = {"inputData": {"delay": 7}}
        call = pool.submit(command, api, "invokeService", device, body, serviceId="reboot")
        frame = client.next_received(down).payload
        command_byte, request_id, delay = struct.unpack(">BiH", frame)
        assert (command_byte, delay) == (REBOOT, 7)
        client.publish(down + "_reply", struct.pack(">BiHB", SERVICE_REPLY, request_id, 200, 1))
        ended = call.result(10)
        assert ended["state"] == "succeeded" and ended["outputData"] == {"ok": True}

        call = pool.submit(
            command, api, "setMeasurepoint", device, {"measurepoints": {"interval": 60}}
        )
        command_byte, request_id, interval = struct.unpack(
            ">BiH", client.next_received(down).payload
        )
        assert (command_byte, interval) == (SET, 60)
        client.publish(down + "_reply", struct.pack(">BiH", SET_REPLY, request_id, 461))
        failed = call.result(10)
        assert failed["state"] == "failed" and failed["replyCode"] == 461
        # Nothing went out as JSON on thing/service/*.
        assert client.received.empty()


def test_a_python_codec_carries_the_same_frames_both_ways(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    server = new_gatehouse(tmp_path / "data", "--codec", "th=examples.th_frame.codec:ThFrameCodec")
    api = server.client()
    model = unique("thframe")
    api("thing-models", "create", {"modelId": model, "tsl": MODEL}).ok()
    body = {"productName": unique("th"), "modelId": model, "dataFormat": "Custom", "codec": "th"}
    device = new_device(api, api("products", "create", with_mandatory(body)).data)
    down = topic(device, "thing/model/down_raw")
    with connect(server.mqtt_port, device) as client:
        # An EnOS reply names no method, so the codec answers with its generic frame.
        assert reply_frame(post_raw(client, device, report(5, -4.5, 80))) == (OTHER, 5, 200)
        call = pool.submit(
            command, api, "invokeService", device, {"inputData": {"delay": 1}}, serviceId="reboot"
        )
        command_byte, request_id, _ = struct.unpack(">BiH", client.next_received(down).payload)
        assert command_byte == REBOOT
        client.publish(down + "_reply", struct.pack(">BiHB", SERVICE_REPLY, request_id, 200, 0))
        assert call.result(10)["outputData"] == {"ok": False}
    assert latest(api, device)["temperature"]["value"] == -4.5


# -- limits: a runaway script costs its own devices, no one else ---------------------------


def test_a_looping_script_is_cut_off_and_other_devices_keep_being_served(
    gatehouse: Gatehouse,
    api: Api,
    th_product: Callable[..., str],
    make_product: Callable[..., str],
) -> None:
    runaway = new_device(api, th_product(RUNAWAY_JS))
    good = new_device(api, th_product())
    plain = new_device(api, make_product())
    up = topic(runaway, "thing/model/up_raw")
    with (
        connect(gatehouse.mqtt_port, runaway) as looping,
        connect(gatehouse.mqtt_port, good) as well,
        connect(gatehouse.mqtt_port, plain) as json_device,
    ):
        started = time.monotonic()
        assert reply_frame(post_raw(looping, runaway, report(1, 20.0, 50))) == (OTHER, 0, 26002)
        assert time.monotonic() - started < TIME_LIMIT_S + 1.0  # cut off, not stuck
        # Eight looping frames at once hold the runaway's lane for ~0.8 s; meanwhile a
        # device of another script and a JSON device are answered at once.
        for n in range(8):  # not waiting for each PUBACK, which follows its reply
            looping.paho.publish(up, report(n, 20.0, 50), qos=1)
        time.sleep(TIME_LIMIT_S)  # the first of them is running now
        started = time.monotonic()
        assert reply_frame(post_raw(well, good, report(2, 22.0, 40)))[2] == 200
        json_post = encode_request("3", "thing.measurepoint.post", {"measurepoints": {"temp": 1}})
        json_device.publish(topic(plain, "thing/measurepoint/post"), json_post, qos=1)
        reply = json_device.next_received(topic(plain, "thing/measurepoint/post_reply"))
        assert orjson.loads(reply.payload)["code"] == 200
        served_in = time.monotonic() - started
        codes = [reply_frame(looping.next_received(up + "_reply").payload)[2] for _ in range(8)]
        looped_for = time.monotonic() - started
        assert codes == [26002] * 8
        assert served_in < looped_for / 2, (served_in, looped_for)
        # A result of the wrong shape is its own code.
        assert reply_frame(post_raw(looping, runaway, b"\x7e\x00\x00\x00\x01"))[2] == 26007


# -- the API: upload, replace, read, delete, dry-run; every bad input a clear error --------


def test_scripts_are_uploaded_read_replaced_and_deleted(
    api: Api, th_product: Callable[..., str]
) -> None:
    product_key = th_product(None)
    assert api("product-scripts", "get", productKey=product_key).status == 404
    upload = {"scriptContent": PLATFORM_JS}
    first = api("product-scripts", "upload", upload, productKey=product_key).ok()
    assert first["scriptType"] == "JavaScript" and "scriptContent" not in first
    stored = api("product-scripts", "get", productKey=product_key).ok()
    assert stored["scriptContent"] == PLATFORM_JS and stored["version"] == first["version"]
    replaced = api(
        "product-scripts", "upload", {"scriptContent": RUNAWAY_JS}, productKey=product_key
    ).ok()
    assert replaced["version"] != first["version"]
    assert api("product-scripts", "delete", productKey=product_key).ok() is None
    assert api("product-scripts", "delete", productKey=product_key).status == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"scriptContent": "function rawDataToProtocol( {"}, "SyntaxError"),
        ({"scriptContent": "function rawDataToProtocol(b) { return {}; }"}, "26006"),
        ({"scriptContent": "while (true) {}"}, "time limit"),
        ({"scriptContent": "throw new Error('at load');"}, "at load"),
        ({"scriptContent": "   "}, "scriptContent is required"),
        ({"scriptContent": "//" + "x" * 70_000}, "at most 65536"),
        ({"scriptContent": PLATFORM_JS, "scriptType": "Python"}, "scriptType must be"),
        ({"scriptContent": PLATFORM_JS, "extra": 1}, "unknown body field extra"),
        ([PLATFORM_JS], "JSON object"),
    ],
)
def test_a_bad_upload_is_refused_with_its_reason(
    api: Api, th_product: Callable[..., str], body: Any, says: str
) -> None:
    product_key = th_product(None)
    reply = api("product-scripts", "upload", body, productKey=product_key)
    assert reply.status == 400 and says in reply.body["msg"], reply.body
    assert api("product-scripts", "get", productKey=product_key).status == 404


def test_uploads_need_a_custom_product_of_your_own(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    upload = {"scriptContent": PLATFORM_JS}
    json_product = api("product-scripts", "upload", upload, productKey=make_product())
    assert json_product.status == 400 and "Custom" in json_product.body["msg"]
    missing = api("product-scripts", "upload", upload, productKey="nosuchproduct")
    assert missing.status == 404


def test_a_dry_run_answers_what_the_script_produced(
    api: Api, th_product: Callable[..., str]
) -> None:
    product_key = th_product()

    def debug(**body: Any) -> Any:
        return api("product-scripts", "debug", body, productKey=product_key)

    up = debug(direction="up", payloadHex=report(7, 23.4, 61).hex()).ok()
    assert up["code"] == 200 and up["output"] == {
        "method": "thing.event.property.post",
        "id": "7",
        "version": "1.0",
        "params": {"temperature": 23.4, "humidity": 61},
    }
    as_b64 = base64.b64encode(report(8, 1.0, 2)).decode()
    assert debug(payloadBase64=as_b64).ok()["output"]["id"] == "8"
    message = {"method": "thing.service.reboot", "id": "12", "params": {"delay": 3}}
    down = debug(direction="down", payload=message).ok()
    assert down["output"]["payloadHex"] == struct.pack(">BiH", REBOOT, 12, 3).hex()
    thrown = debug(payloadHex="0900000001").ok()
    assert thrown["code"] == 26002 and "unknown command byte 9" in thrown["message"]
    # An unsaved script is tried without storing it.
    trial = debug(payloadHex="7e00000001", scriptContent=RUNAWAY_JS).ok()
    assert trial["code"] == 26007 and trial["output"] is None
    looped = debug(payloadHex="00", scriptContent=RUNAWAY_JS).ok()
    assert looped["code"] == 26002 and "time limit" in looped["message"]
    for body, says in [
        ({"payloadHex": "zz"}, "payloadHex is not valid hex"),
        ({"payloadBase64": "!!"}, "payloadBase64 is not valid base64"),
        ({}, "one of payloadHex or payloadBase64"),
        ({"direction": "down"}, "needs payload"),
        ({"direction": "sideways", "payloadHex": "00"}, "direction must be"),
    ]:
        reply = debug(**body)
        assert reply.status == 400 and says in reply.body["msg"], (body, reply.body)


# -- Alibaba's SDK and the simulator ------------------------------------------------------

LINKKIT_RAW_DRIVER = Path(__file__).parent / "linkkit" / "raw_driver.py"


def test_linkkit_raw_api_posts_frames_and_answers_raw_commands(
    request: pytest.FixtureRequest, gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    venv_python: Path = request.getfixturevalue("linkkit_python")
    device = new_device(api, th_product())
    process = subprocess.Popen(
        [
            str(venv_python),
            str(LINKKIT_RAW_DRIVER),
            "127.0.0.1",
            str(gatehouse.mqtt_port),
            device["productKey"],
            device["deviceKey"],
            device["deviceSecret"],
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(lambda: latest(api, device).get("humidity", {}).get("value") == 48)
        body = {"inputData": {"delay": 2}}
        called = command(api, "invokeService", device, body, serviceId="reboot")
        assert called["state"] == "succeeded" and called["outputData"] == {"ok": True}
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    seen = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert seen and seen[-1]["event"] == "done", err[-2000:]
    replies = [bytes.fromhex(e["hex"]) for e in seen if e["event"] == "raw_post_reply"]
    assert [reply_frame(r) for r in replies] == [(REPORT_REPLY, 77, 200)]
    commands = [bytes.fromhex(e["hex"]) for e in seen if e["event"] == "raw_down"]
    assert [c[0] for c in commands] == [REBOOT]


def test_the_simulator_speaks_custom_with_a_payload_script(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str], tmp_path: Path
) -> None:
    device = new_device(api, th_product())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "sim",
            "device",
            "--product",
            device["productKey"],
            "--key",
            device["deviceKey"],
            "--secret",
            device["deviceSecret"],
            "--rate",
            "10",
            "--duration",
            "0.3",
            "--payload-script",
            str(EXAMPLE / "device.js"),
            "--mqtt-port",
            str(gatehouse.mqtt_port),
            "--url",
            gatehouse.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=gatehouse.env(),
    )
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert replies and all(r["code"] == 200 and r["reply"] == "report" for r in replies)
    assert "faults 0" in result.stderr
    assert set(latest(api, device)) >= {"temperature", "humidity"}
    bad = tmp_path / "bad.js"
    bad.write_text("function deviceToRaw(m) { return [0]; }")
    refused = subprocess.run(
        [*result.args[:-6], "--payload-script", str(bad), *result.args[-4:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=gatehouse.env(),
    )
    assert refused.returncode == 1 and "rawToDevice" in refused.stderr
