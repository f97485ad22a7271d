"""Alibaba's linkkit SDK (aliyun-iot-linkkit 1.2.13), unchanged, against a real
`gatehouse serve`. linkkit needs paho-mqtt 1.6.1 (it breaks on paho 2), so the test
setup gives it a virtual environment of its own and drives it through
tests/linkkit/driver.py, which prints what the SDK saw."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.devices import eventually, new_device
from tests.server import Api, Gatehouse

DRIVER = Path(__file__).parent / "linkkit" / "driver.py"
PACKAGES = ("paho-mqtt==1.6.1", "aliyun-iot-linkkit==1.2.13")
# linkkit's own TSL shape: the "post" event lists the properties it may post, the "set"
# service those that may be set; other events and services by their identifiers.
LINKKIT_TSL = {
    "events": [
        {"identifier": "post", "outputData": [{"identifier": "temp"}, {"identifier": "mode"}]},
        {"identifier": "overheat", "outputData": [{"identifier": "temp"}]},
    ],
    "services": [
        {"identifier": "set", "inputData": [{"identifier": "target"}]},
        {"identifier": "reboot", "inputData": [{"identifier": "delay"}]},
    ],
}


@pytest.fixture(scope="session")
def linkkit_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with linkkit and the paho it needs, made once per run."""
    venv = tmp_path_factory.mktemp("linkkit-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PACKAGES],
        check=True,
        timeout=600,
    )
    return python


@pytest.fixture
def drive(
    linkkit_python: Path, gatehouse: Gatehouse, tmp_path: Path
) -> Iterator[Callable[[dict[str, str], float], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    tsl = tmp_path / "tsl.json"
    tsl.write_text(json.dumps(LINKKIT_TSL))

    def start(
        device: dict[str, str], seconds: float, sub: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        extra = [sub["productKey"], sub["deviceKey"], sub["deviceSecret"]] if sub else []
        process = subprocess.Popen(
            [
                str(linkkit_python),
                str(DRIVER),
                "127.0.0.1",
                str(gatehouse.mqtt_port),
                device["productKey"],
                device["deviceKey"],
                device["deviceSecret"],
                str(tsl),
                str(seconds),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def events(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = process.communicate(timeout=60)
    seen = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert seen and seen[-1]["event"] == "done", err[-2000:]
    return seen


def test_linkkit_connects_posts_and_answers_commands(
    api: Api, make_product: Callable[..., str], drive: Callable[..., subprocess.Popen[str]]
) -> None:
    device = new_device(api, make_product(dataFormat="Custom"))
    process = drive(device, 4.0)
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    eventually(lambda: api("devices", "get", **query).ok()["state"] == "online", timeout=20)
    set_points = api("commands", "setMeasurepoint", {"measurepoints": {"target": 20}}, **query)
    assert set_points.ok()["state"] == "succeeded"
    body = {"inputData": {"delay": 3}}
    called = api("commands", "invokeService", body, serviceId="reboot", **query).ok()
    assert called["state"] == "succeeded" and called["outputData"] == {"ok": True}
    seen = {e["event"]: e for e in events(process)}
    assert seen["connect"]["rc"] == 0
    assert seen["prop_post_reply"]["code"] == 200
    assert seen["event_post_reply"] == {
        "event": "event_post_reply",
        "name": "overheat",
        "code": 200,
    }
    assert json.loads(seen["raw_post_reply"]["payload"])["code"] == 200
    assert seen["prop_changed"]["params"] == {"target": 20}
    assert seen["service"]["identifier"] == "reboot" and seen["service"]["params"] == {"delay": 3}


def test_linkkit_with_a_wrong_secret_is_refused_in_alink_form(
    api: Api, make_product: Callable[..., str], drive: Callable[..., subprocess.Popen[str]]
) -> None:
    device = new_device(api, make_product())
    process = drive({**device, "deviceSecret": "not-the-secret"}, 0.5)
    out, _ = process.communicate(timeout=60)
    assert '"no_connect"' in out
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    refused = api("devices", "listMessages", kind="refused", **query).ok()
    assert refused and refused[0]["code"] == 742


def test_a_linkkit_gateway_adds_and_logs_in_a_sub_device(
    api: Api, make_product: Callable[..., str], drive: Callable[..., subprocess.Popen[str]]
) -> None:
    gateway = new_device(api, make_product(deviceType="gateway"))
    sub = new_device(api, make_product(deviceType="subdevice"))
    seen = {e["event"]: e for e in events(drive(gateway, 1.5, sub))}
    assert seen["topo_add_reply"]["code"] == 200
    assert seen["login_reply"]["code"] == 200
    query = {"productKey": gateway["productKey"], "deviceKey": gateway["deviceKey"]}
    subs = api("device-topos", "list", **query).ok()
    assert [s["deviceKey"] for s in subs] == [sub["deviceKey"]]
    where = {"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}
    online = api("devices", "listMessages", kind="online", **where).ok()
    assert online and "through gateway" in online[0]["detail"]
