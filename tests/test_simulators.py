"""The simulators and the load runner, driven as a library and as a CLI, against a
real `gatehouse serve`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from broker.protocol.credentials_file import write_credentials
from broker.protocol.dialects import ALINK
from simulators import DeviceCredentials, ModelValues, SimDevice, SimGateway
from simulators.load import LoadConfig, run_load
from simulators.platform import OrgCredentials, Platform, with_mandatory
from tests.brokers import stock_core
from tests.conftest import THERMOSTAT_TSL
from tests.devices import eventually, new_device
from tests.server import Api, Gatehouse


def creds(device: dict[str, str]) -> DeviceCredentials:
    return DeviceCredentials(device["productKey"], device["deviceKey"], device["deviceSecret"])


def platform_of(gatehouse: Gatehouse) -> Platform:
    org = OrgCredentials(gatehouse.org_id, gatehouse.access_key, gatehouse.access_secret)
    return Platform(gatehouse.url, org)


def gatehouse_cli(gatehouse: Gatehouse | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`gatehouse ARGS` (with the ports and credentials of `gatehouse`, when given)."""
    # The API comes from GATEHOUSE_URL in the server's environment; MQTT is on its host.
    ports = (
        ["--mqtt-port", str(gatehouse.mqtt_port)]
        if gatehouse is not None
        and args[0] == "load"
        and args[1:2] not in (("report",), ("merge",))
        else []
    )
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args, *ports],
        env=gatehouse.env() if gatehouse is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Running:
    """A `gatehouse` subprocess whose output is read as it comes (the load's progress
    line ends in a carriage return, not a newline)."""

    def __init__(self, gatehouse: Gatehouse, *args: str) -> None:
        ports = ["--mqtt-port", str(gatehouse.mqtt_port)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", *args, *ports],
            env=gatehouse.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out, self.err = bytearray(), bytearray()
        self._readers = [
            threading.Thread(target=self._read, args=(pipe, into), daemon=True)
            for pipe, into in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: object, into: bytearray) -> None:
        assert hasattr(pipe, "read1")
        while chunk := pipe.read1(65536):
            into.extend(chunk)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> None:
        """Until stderr shows `pattern` (the progress line)."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.err.decode(errors="replace")):
            assert self.process.poll() is None, f"exited early: {self.text()}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s: {self.text()}"
            time.sleep(0.05)  # a bounded poll: a thread reads the pipe

    def ended_within(self, seconds: float) -> int:
        """Its exit code, if it ended by itself within `seconds` (else it is killed)."""
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running after {seconds} s: {self.text()}") from None
        for reader in self._readers:
            reader.join(5)
        return code

    def text(self) -> str:
        return f"stdout: {self.out.decode(errors='replace')}\nstderr: {self.err.decode()[-2000:]}"


def posting_load(
    gatehouse: Gatehouse, api: Api, product: str, tmp_path: Path, devices: int, *extra: str
) -> Running:
    """`gatehouse load` of `devices` new devices of `product`, posting for a minute."""
    file = tmp_path / "devices.json"
    write_credentials(file, [new_device(api, product) for _ in range(devices)])
    load = Running(
        gatehouse, "load", "--credentials", str(file), "--rate", "20", "--duration", "60",
        "--progress", *extra,
    )  # fmt: skip
    if "--workers" not in extra:  # workers draw no progress line
        load.wait_for(rf"connected {devices}/{devices}  sent [1-9]")
    return load


def rates_of(report: str) -> dict[str, tuple[float, float, float]]:
    """(count, rate, seconds) of the report's connect and post lines."""
    connects = re.search(r"devices connected  (\d+) of.*\nconnect rate +([\d.]+)/s over ([\d.]+) s",
                         report)  # fmt: skip
    posts = re.search(r"posts sent +(\d+) \(([\d.]+)/s over ([\d.]+) s\)", report)
    assert connects and posts, report
    return {
        "connects": tuple(float(x) for x in connects.groups()),  # type: ignore[dict-item]
        "posts": tuple(float(x) for x in posts.groups()),  # type: ignore[dict-item]
    }


def the_rate_is_count_over_seconds(count: float, rate: float, seconds: float) -> bool:
    # The report rounds a rate to 0.1/s and a time to the millisecond: allow for that.
    return abs(rate * seconds - count) <= 0.02 * count + 0.001 * rate + 0.05 * seconds


def assert_rates_are_over_the_time_it_ran(report: str, posting_for: float) -> None:
    """Each rate is its count over its time, and the posting time is the time it posted
    before Ctrl-C (not 0 s, nor --duration)."""
    rates = rates_of(report)
    for count, rate, seconds in rates.values():
        assert count > 0 and seconds > 0, report
        assert the_rate_is_count_over_seconds(count, rate, seconds), report
    count, rate, seconds = rates["posts"]
    assert posting_for * 0.8 <= seconds <= posting_for + 3, (posting_for, report)
    assert 10 <= rate <= 25, report  # --rate 20


def test_a_load_whose_devices_are_all_disconnected_ends_and_says_so(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], tmp_path: Path
) -> None:
    load = posting_load(gatehouse, api, make_product(), tmp_path, devices=3)
    rows = json.loads((tmp_path / "devices.json").read_text())
    for row in rows:  # the platform ends their connections
        query = {"productKey": row["productKey"], "deviceKey": row["deviceKey"]}
        api("devices", "disable", **query).ok()
    # It spun without yielding once none was connected: neither the end of --duration
    # nor Ctrl-C could get through.
    code = load.ended_within(15)
    assert code == 1, load.text()
    report = load.out.decode()
    assert "devices connected  3 of 3" in report
    assert "every device was disconnected while posting" in report, report


def test_ctrl_c_stops_a_load_with_its_report(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], tmp_path: Path
) -> None:
    load = posting_load(gatehouse, api, make_product(), tmp_path, devices=2)
    posting_since = time.monotonic()
    load.wait_for(r"sent ([3-9]\d|\d{3,})")  # some 30 posts: 1.5 s at --rate 20
    load.process.send_signal(signal.SIGINT)
    posted_for = time.monotonic() - posting_since
    assert load.ended_within(15) == 1, load.text()
    report = load.out.decode()
    assert "devices connected  2 of 2" in report and "interrupted" in report, report
    assert_rates_are_over_the_time_it_ran(report, posted_for)


def test_ctrl_c_stops_a_load_of_workers_with_their_report(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], tmp_path: Path
) -> None:
    product = make_product()
    load = posting_load(gatehouse, api, product, tmp_path, 4, "--workers", "2")
    started = time.monotonic()
    rows = json.loads((tmp_path / "devices.json").read_text())

    def posted(row: dict[str, str]) -> bool:
        query = {"productKey": row["productKey"], "deviceKey": row["deviceKey"]}
        return "temp" in api("devices", "getLatest", **query).ok()

    eventually(lambda: all(posted(row) for row in rows))  # both workers are posting
    posting_for = time.monotonic() - started
    # `kill -INT` of the runner alone, as a supervisor would send it: before, the workers
    # never heard of it and the runner waited for the whole --duration.
    load.process.send_signal(signal.SIGINT)
    assert load.ended_within(15) == 1, load.text()
    report = load.out.decode()
    assert "devices connected  4 of 4" in report and "interrupted" in report, report
    count, rate, seconds = rates_of(report)["posts"]
    assert count > 0 and the_rate_is_count_over_seconds(count, rate, seconds), report
    assert seconds <= posting_for + 3, report


def test_values_walk_within_the_model() -> None:
    values = ModelValues(THERMOSTAT_TSL, seed=1)
    for _ in range(200):
        point = values.next()
        assert -40 <= point["temp"] <= 120 and 5 <= point["target"] <= 30
        assert isinstance(point["target"], int) and point["mode"] in (0, 1, 2)


async def test_a_simulated_gateway_logs_in_and_posts_for_its_sub_devices(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    gateway = new_device(api, make_product(deviceType="gateway"))
    sub_product = make_product(deviceType="subdevice")
    subs = [creds(new_device(api, sub_product)) for _ in range(5)]
    sim = SimGateway(creds(gateway), subs, port=gatehouse.mqtt_port)
    await sim.connect()
    try:
        assert all(r and r["code"] == 200 for r in await sim.add_topology(batch=2))
        assert all(r and r["code"] == 200 for r in await sim.login_all(batch=2))
        assert len(sim.logged_in) == 5
        for sub in subs:
            reply = await sim.post_for(sub, {"temp": 20.5})
            assert reply is not None and reply["code"] == 200
        assert (await sim.logout(subs[0]) or {}).get("code") == 200
    finally:
        await sim.close()


async def test_a_simulated_psm_device_answers_its_queued_command(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product(networkMethod="NB-IoT", powerSaving={"mode": "PSM"})
    device = new_device(api, product)
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    body = {"inputData": {"delay": 2}}
    held = api("commands", "invokeService", body, serviceId="reboot", pendingTtl="60", **query)
    command_id = held.ok()["commandId"]
    sim = SimDevice(creds(device), port=gatehouse.mqtt_port)
    await sim.sleep_cycle(awake=0.5, asleep=0.0, cycles=1, points=lambda: {"temp": 18.0})
    assert sim.stats.commands == 1
    done = await asyncio.to_thread(
        eventually,
        lambda: api("commands", "get", commandId=command_id).ok()["state"] == "succeeded",
    )
    assert done


async def test_posts_made_offline_are_resumed_on_connect(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    sim = SimDevice(creds(device), port=gatehouse.mqtt_port)
    assert await sim.post({"temp": 11.0}) is None  # offline: buffered
    assert await sim.post({"temp": 12.0}) is None
    await sim.connect()  # uploads the buffer with resume/batch
    await sim.close()
    assert sim.stats.reply_codes == {"200": 1} and not sim.buffer
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    latest = await asyncio.to_thread(
        eventually, lambda: api("devices", "getLatest", **query).ok().get("temp")
    )
    assert latest["value"] == 12.0


async def test_a_load_with_bad_behaviour_reports_the_refusals(gatehouse: Gatehouse) -> None:
    config = LoadConfig(
        devices=20,
        gateways=1,
        subdevices_per_gateway=5,
        rate=100,
        duration=1.5,
        mqtt_port=gatehouse.mqtt_port,
        wrong_secret_share=0.25,
        bad_value_share=0.5,
        progress=False,
    )
    report = await run_load(platform_of(gatehouse), config)
    assert report.devices == 21 and report.connected == 16
    assert report.failures == {"refused (CONNACK 5)": 5}
    assert report.reply_codes.get("460", 0) > 0 and report.reply_codes.get("200", 0) > 0
    assert report.sent == report.replied + report.unanswered and report.unanswered == 0
    assert set(report.latency_ms) == {"p50", "p90", "p99", "max"}


async def test_a_load_of_which_no_device_connects_says_so(gatehouse: Gatehouse) -> None:
    config = LoadConfig(
        devices=2, mqtt_port=gatehouse.mqtt_port, wrong_secret_share=1.0, progress=False
    )
    report = await run_load(platform_of(gatehouse), config)
    assert report.connected == 0 and report.failures == {"refused (CONNACK 5)": 2}
    assert report.stopped == "no device connected" and report.sent == 0


def test_the_load_cli_prints_and_writes_its_report(gatehouse: Gatehouse, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = gatehouse_cli(
        gatehouse,
        "load",
        "--devices",
        "10",
        "--rate",
        "50",
        "--duration",
        "1",
        "--no-progress",
        "--report",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "devices connected  10 of 10" in result.stdout
    report = json.loads(out.read_text())
    assert report["connected"] == 10 and report["sent"] > 0
    # The rate is over the second it posted, not with the wait for the last replies.
    assert report["publish_seconds"] == 1.0, report["publish_seconds"]
    assert abs(report["sent_per_s"] - report["sent"]) <= 0.1
    assert report["connect_cpu_seconds"] > 0 and report["publish_cpu_seconds"] > 0
    bad = gatehouse_cli(None, "load", "--rate", "-1")
    assert bad.returncode == 2 and "Invalid value for '--rate'" in bad.stderr


def test_a_scenario_of_bad_behaviour_over_two_workers(gatehouse: Gatehouse, tmp_path: Path) -> None:
    scenario = tmp_path / "field-problem.toml"
    scenario.write_text(
        "devices = 20\nrate = 80\nduration = 1.5\nqos = 1\n"
        "[bad]\nwrong_secret_share = 0.1\nmalformed_share = 0.25\n"
        "reconnect_storm_share = 0.1\nstorm_reconnects = 3\n"
    )
    out = tmp_path / "report.json"
    result = gatehouse_cli(
        gatehouse,
        "load",
        "--scenario",
        str(scenario),
        "--workers",
        "2",
        "--no-progress",
        "--report",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["workers"] == 2 and report["devices"] == 20
    assert report["failures"]["refused (CONNACK 5)"] == 2  # one wrong secret per worker
    assert report["failures"]["storm: refused (CONNACK 5)"] >= 2  # the connect limit
    assert report["reply_codes"].get("6207", 0) > 0 and report["reply_codes"].get("200", 0) > 0


def test_a_bad_scenario_says_what_is_wrong(tmp_path: Path) -> None:
    scenario = tmp_path / "typo.toml"
    scenario.write_text("devices = 5\nrat = 10\n[bad]\nwrong_secret_share = 2\n")
    result = gatehouse_cli(None, "load", "--scenario", str(scenario))
    assert result.returncode == 1
    assert "rat" in result.stderr and "wrong_secret_share" in result.stderr


def test_the_load_runs_exported_devices(gatehouse: Gatehouse, api: Api, tmp_path: Path) -> None:
    api("thing-models", "create", {"modelId": "exported", "tsl": THERMOSTAT_TSL}).ok()
    product = api(
        "products", "create", with_mandatory({"productName": "exported", "modelId": "exported"})
    ).ok()
    for _ in range(5):
        new_device(api, product)
    exported = tmp_path / "devices.csv"
    export = gatehouse_cli(gatehouse, "device", "export", "--product", product, str(exported))
    assert export.returncode == 0, export.stderr
    result = gatehouse_cli(
        gatehouse,
        "load",
        "--credentials",
        str(exported),
        "--rate",
        "20",
        "--duration",
        "1",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "devices connected  5 of 5" in result.stdout, result.stdout
    assert "reply codes        200: " in result.stdout, result.stdout


async def test_a_simulated_device_posts_events_and_answers_a_service(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    answers: list[str] = []

    def reboot(service: str, params: Mapping[str, object]) -> tuple[int, object]:
        answers.append(service)
        return 200, {"ok": True}

    sim = SimDevice(creds(device), port=gatehouse.mqtt_port, on_service=reboot)
    await sim.connect()
    try:
        reply = await sim.post_event("overheat", {"temp": 99.0})
        assert reply is not None and reply["code"] == 200
        query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
        body = {"inputData": {"delay": 1}}
        result = await asyncio.to_thread(
            lambda: api("commands", "invokeService", body, serviceId="reboot", **query).ok()
        )
        assert result["state"] == "succeeded" and result["outputData"] == {"ok": True}
        assert answers == ["reboot"]
    finally:
        await sim.close()


async def test_a_load_in_the_alink_dialect(gatehouse: Gatehouse) -> None:
    config = LoadConfig(
        devices=10,
        rate=50,
        duration=1.0,
        mqtt_port=gatehouse.mqtt_port,
        dialect="alink",
        progress=False,
    )
    report = await run_load(platform_of(gatehouse), config)
    assert report.connected == 10 and report.failures == {}
    assert report.reply_codes == {"200": report.replied} and report.replied > 0


def test_a_simulated_device_with_a_wrong_secret_says_why_and_gives_up(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    ports = ["--mqtt-port", str(gatehouse.mqtt_port)]
    where = ["--product", device["productKey"], "--key", device["deviceKey"]]
    wrong = ["--secret", "wrong", "--max-attempts", "2"]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "sim", "device", *where, *wrong, *ports],
        env=gatehouse.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 20  # it retried quietly for two minutes
    refusals = [line for line in result.stderr.splitlines() if "refused" in line]
    assert len(refusals) == 2, result.stderr
    # Each refusal names the CONNACK code, and the first EnOS's reason (742: wrong sign).
    assert all("CONNACK 5" in line for line in refusals), result.stderr
    assert "742" in refusals[0], result.stderr
    assert "gave up after 2 attempts" in result.stderr


def test_a_load_with_thresholds_series_and_cleanup(gatehouse: Gatehouse, tmp_path: Path) -> None:
    api = gatehouse.client()
    before = {p["productKey"] for p in api("products", "list", pageSize=1000).data}
    series, out = tmp_path / "series.csv", tmp_path / "report.json"
    run = ["load", "--devices", "4", "--rate", "20", "--duration", "2.5", "--no-progress"]
    result = gatehouse_cli(
        gatehouse, *run, "--cleanup", "--series", str(series), "--report", str(out),
        "--fail-if", "p99>0.001ms,connected<100%",
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert "failed --fail-if p99>0.001ms: measured" in result.stderr
    assert "connected<100%" not in result.stderr  # all 4 connected: that one is met
    rows = series.read_text().splitlines()
    assert rows[0] == "t,connected,sent,replied,errors,p50,p99" and len(rows) >= 3
    assert sum(int(r.split(",")[2]) for r in rows[1:]) > 0
    report = json.loads(out.read_text())
    assert report["cleaned_up"] == "deleted 4 devices, 1 products"
    assert report["settings"]["devices"] == 4 and report["connect_latency_ms"]["p99"] > 0
    after = {p["productKey"] for p in api("products", "list", pageSize=1000).data}
    assert after <= before  # nothing left behind
    passed = gatehouse_cli(None, "load", "report", str(out), "--fail-if", "error_rate>50%")
    assert passed.returncode == 0 and "devices connected  4 of 4" in passed.stdout


def test_shards_split_the_fleet_and_merge_exactly(gatehouse: Gatehouse, tmp_path: Path) -> None:
    run = ["load", "--devices", "5", "--rate", "20", "--duration", "1", "--no-progress"]
    parts = []
    for k in (1, 2):
        part = tmp_path / f"shard{k}.json"
        done = gatehouse_cli(gatehouse, *run, "--shard", f"{k}/2", "--report", str(part))
        assert done.returncode == 0, done.stderr
        parts.append(json.loads(part.read_text()))
    assert [p["devices"] for p in parts] == [3, 2]
    merged_file = tmp_path / "merged.json"
    merged = gatehouse_cli(None, "load", "merge", *(str(tmp_path / f"shard{k}.json")
                           for k in (1, 2)), "--report", str(merged_file))  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    report = json.loads(merged_file.read_text())
    assert report["devices"] == 5 and report["connected"] == 5
    assert report["sent"] == sum(p["sent"] for p in parts)
    assert report["shards"] == ["1/2", "2/2"]
    assert report["latency_ms"]["max"] == max(p["latency_ms"]["max"] for p in parts)


def test_load_and_sim_find_the_platform_by_its_url(tmp_path: Path) -> None:
    env = {**os.environ, "GATEHOUSE_URL": "http://127.0.0.1:1", "GATEHOUSE_ACCESS_KEY": "k",
           "GATEHOUSE_ACCESS_SECRET": "s"}  # fmt: skip
    for args in (["load", "--devices", "1"], ["sim", "device", "--product", "p", "--key", "k",
                                                "--secret", "s"]):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "broker.cli", *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "cannot reach the API at http://127.0.0.1:1" in result.stderr


async def test_a_simulated_alink_gateway_logs_in_and_posts_for_its_sub_devices(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    gateway = replace(creds(new_device(api, make_product(deviceType="gateway"))), dialect=ALINK)
    sub_product = make_product(deviceType="subdevice")
    subs = [creds(new_device(api, sub_product)) for _ in range(3)]
    sim = SimGateway(gateway, subs, port=gatehouse.mqtt_port)
    await sim.connect()
    try:
        assert all(r and r["code"] == 200 for r in await sim.add_topology(batch=2))
        assert all(r and r["code"] == 200 for r in await sim.login_all(batch=2))
        assert len(sim.logged_in) == 3
        reply = await sim.post_for(subs[0], {"temp": 20.5})
        # Alink's reply names its method; the post went on linkkit's property topic.
        assert reply is not None and reply["code"] == 200, reply
        assert reply["method"] == "thing.event.property.post"
        assert (await sim.logout(subs[0]) or {}).get("code") == 200
        assert len(sim.logged_in) == 2
    finally:
        await sim.close()


def messages(api: Api, product: str, device: str, **query: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = api(
        "devices", "listMessages", productKey=product, deviceKey=device, limit=100, **query
    ).ok()
    return found


def test_a_load_of_sleeping_devices_and_alink_gateways(
    gatehouse: Gatehouse, api: Api, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    result = gatehouse_cli(
        gatehouse, "load", "--devices", "4", "--psm-share", "0.5", "--edrx-share", "0.25",
        "--psm-cycle", "1.5", "--psm-awake", "0.3", "--edrx-cycle", "20.48",
        "--gateways", "1", "--subdevices-per-gateway", "2", "--dialect", "alink",
        "--rate", "20", "--duration", "3.5", "--no-progress", "--report", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["connected"] == 5 and report["failures"] == {}, report["failures"]
    psm, edrx = report["sleepers"]["PSM"], report["sleepers"]["eDRX"]
    # Each PSM device woke in the connect phase and again every 1.5 s of the 3.5 s.
    assert psm["devices"] == 2 and psm["wakes"] >= 4 and psm["posts"] == psm["wakes"], psm
    assert edrx == {"devices": 1, "posts": 1}  # one post a 20.48 s cycle
    assert report["reply_codes"] == {"200": report["sent"]}
    assert "sleeping devices   PSM 2: " in result.stdout
    run = report["settings"]["run_id"]
    products = {p["productName"]["defaultValue"]: p for p in
                api("products", "list", pageSize=1000).ok()}  # fmt: skip
    for name, mode in ((f"load-psm-{run}", "PSM"), (f"load-edrx-{run}", "eDRX")):
        product = products[name]
        assert (product["networkMethod"], product["connectedPlatform"]) == (
            "NB-IoT",
            "ChinaTelecomAEP",
        )
        assert product["powerSaving"]["mode"] == mode
    # The platform saw a PSM device come and go with each wake.
    events = messages(api, products[f"load-psm-{run}"]["productKey"], f"p{run}000000",
                      kinds="online,offline")  # fmt: skip
    assert sum(e["kind"] == "offline" for e in events) >= 2, events
    # The gateway logged its sub-devices in as linkkit does, and posted for them so.
    gateway = (products[f"load-gw-{run}"]["productKey"], f"g{run}0000")
    uplinks = messages(api, *gateway, kind="up")
    assert any(str(m["topic"]).endswith("/combine/batch_login") for m in uplinks), uplinks
    sub = messages(api, products[f"load-sub-{run}"]["productKey"], f"g{run}0000s00000", kind="up")
    assert sub and all(str(m["topic"]).endswith("/thing/event/property/post") for m in sub), sub


def test_sleeping_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    for args, said in (
        (["--psm-share", "0.6", "--edrx-share", "0.6"], "add up to more than 1"),
        (["--psm-share", "0.1", "--psm-cycle", "2", "--psm-awake", "2"], "shorter than"),
        (["--edrx-share", "0.1", "--edrx-cycle", "5"], "Invalid value for '--edrx-cycle'"),
    ):
        result = gatehouse_cli(None, "load", *args)
        assert result.returncode in (1, 2) and said in result.stderr, result.stderr


async def test_devices_subscribe_to_their_replies_on_a_broker_that_does_not(
    tmp_path: Path,
) -> None:
    """Stock amqtt, like mosquitto, puts nobody on a topic: with `subscribe_replies` the
    device hears the reply that a platform stand-in publishes there."""
    server, core = stock_core(tmp_path)
    try:
        with core.client("platform") as platform:
            platform.subscribe("/sys/+/+/thing/measurepoint/post")
            heard = []
            for subscribe in (False, True):
                sim = SimDevice(
                    DeviceCredentials("pk", f"dk{subscribe}", "s"),
                    port=core.port,
                    subscribe_replies=subscribe,
                )
                await sim.connect()
                post = asyncio.create_task(sim.post({"temp": 1.0}, reply_within=2))
                topic, payload, _ = await asyncio.to_thread(platform.next_message)
                reply = {"id": json.loads(payload)["id"], "code": 200, "data": None}
                platform.publish(topic + "_reply", json.dumps(reply).encode())
                heard.append(await post)  # without the subscription, after 2 s: None
                await sim.close()
        assert heard[0] is None and heard[1] == reply
    finally:
        server.stop()
