"""`gatehouse serve` itself: first start, credentials, restarts, provisioning, the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL
from tests.server import Api, Gatehouse

PROVISION = """
[[models]]
modelId = "thermo"
name = "Thermostat"
tslFile = "thermo.json"

[[products]]
productKey = "thermoPK01"
productSecret = "productsecret01"
productName = "Thermostats"
modelId = "thermo"
networkMethod = "Wi-Fi"

[[products.devices]]
deviceKey = "living-room"
deviceSecret = "flashedSecret001"

[[products.devices]]
deviceKey = "bedroom"

[[products]]
productName = "Hubs"
productType = "Gateway"
modelId = "thermo"
"""


def run_cli(
    server: Gatehouse, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_restart_keeps_everything(new_gatehouse: Callable[..., Gatehouse], tmp_path: Path) -> None:
    first = new_gatehouse(tmp_path / "data")
    api = first.client()
    api("thing-models", "create", {"modelId": "m", "tsl": THERMOSTAT_TSL}).ok()
    key = api(
        "products",
        "create",
        with_mandatory({"productName": "p", "modelId": "m", "bindingMode": "single"}),
    ).data
    device = api(
        "devices", "create", {"productKey": key, "deviceName": "d", "timezone": "+00:00"}
    ).data
    where = {"productKey": key, "deviceKey": device["deviceKey"]}
    api("bindings", "bind", {"userId": "alice"}, **where).ok()
    api("devices", "disable", **where).ok()
    first.stop()

    again = new_gatehouse(
        tmp_path / "data",
        org_id=first.org_id,
        access_key=first.access_key,
        access_secret=first.access_secret,
    )
    api = again.client()
    assert api("products", "get", productKey=key).data["bindingMode"] == "single"
    assert api("devices", "get", **where).data["state"] == "disabled"
    assert api("devices", "get", assetId=device["assetId"]).data["deviceKey"] == device["deviceKey"]
    assert [b["userId"] for b in api("bindings", "list", **where).data] == ["alice"]
    assert api("thing-models", "get", modelId="m").data["tsl"] == THERMOSTAT_TSL
    exported = api("devices", "exportCredentials", productKey=key).data
    assert exported == [device]


def test_generated_credentials_are_saved_privately_and_printed_once(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    server = Gatehouse(tmp_path / "fresh")
    server.env = lambda: env_free  # type: ignore[method-assign]
    server.start()
    try:
        path = tmp_path / "fresh" / "credentials.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        saved = json.loads(path.read_text())
        assert server.log().count(saved["accessSecret"]) == 1
        api = Api(server.url, saved["accessKey"], saved["accessSecret"], saved["orgId"])
        assert api("organizations", "get").data["admin"] is True
        server.stop()
        server.start()
        assert server.log().count(saved["accessSecret"]) == 1
        assert json.loads(path.read_text()) == saved
    finally:
        server.stop()


def test_environment_credentials_make_the_first_organisation(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    server = new_gatehouse()
    org = server.client()("organizations", "get").data
    assert org["orgId"] == server.org_id and org["accessKey"] == server.access_key
    assert server.access_secret not in server.log()


def test_provisioning_is_idempotent(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    (tmp_path / "thermo.json").write_text(json.dumps(THERMOSTAT_TSL))
    (tmp_path / "setup.toml").write_text(PROVISION)
    server = new_gatehouse(tmp_path / "data", "--provision", str(tmp_path / "setup.toml"))
    api = server.client()
    product = api("products", "get", productKey="thermoPK01").data
    assert product["productSecret"] == "productsecret01"
    assert product["networkMethod"] == "Wi-Fi"
    creds = api("devices", "exportCredentials", productKey="thermoPK01").data
    assert [c["deviceKey"] for c in creds] == ["living-room", "bedroom"]
    assert creds[0]["deviceSecret"] == "flashedSecret001"
    assert "provisioned: 5 created, 0 already present" in server.log()
    server.stop()

    server = new_gatehouse(
        tmp_path / "data",
        "--provision",
        str(tmp_path / "setup.toml"),
        org_id=server.org_id,
        access_key=server.access_key,
        access_secret=server.access_secret,
    )
    assert "provisioned: 0 created, 5 already present" in server.log()
    products = server.client()("products", "list").data
    assert sorted(p["productName"]["defaultValue"] for p in products) == ["Hubs", "Thermostats"]


def test_a_bad_provisioning_file_stops_serve_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[[products]]\nproductName = "x"\nmodelId = "missing"\n')
    server = Gatehouse(tmp_path / "data", extra_args=("--provision", str(tmp_path / "bad.toml")))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "serve",
            "--data-dir",
            str(server.data_dir),
            "--http-port",
            str(server.http_port),
            "--mqtt-port",
            str(server.mqtt_port),
            "--provision",
            str(tmp_path / "bad.toml"),
        ],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "modelId 'missing' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_against_a_running_gatehouse(gatehouse: Gatehouse, tmp_path: Path) -> None:
    tsl = tmp_path / "model.json"
    tsl.write_text(json.dumps({"modelId": "cli-model", "name": "CLI", "tsl": THERMOSTAT_TSL}))
    assert run_cli(gatehouse, "model", "import", str(tsl)).stdout.strip() == "cli-model"
    assert "cli-model" in run_cli(gatehouse, "model", "list").stdout

    made = run_cli(
        gatehouse,
        "product",
        "create",
        "--name",
        "cli product",
        "--model",
        "cli-model",
        "--type",
        "gateway",
        "--network",
        "4G",
    )
    assert made.returncode == 0, made.stderr
    product_key = made.stdout.strip()
    listing = run_cli(gatehouse, "product", "list").stdout
    assert product_key in listing and "cli product" in listing
    shown = json.loads(run_cli(gatehouse, "product", "show", product_key).stdout)
    assert shown["deviceType"] == "gateway" and shown["statistics"]["total"] == 0

    export = tmp_path / "creds.csv"
    made = run_cli(
        gatehouse,
        "device",
        "create",
        "--product",
        product_key,
        "--count",
        "25",
        "--export",
        str(export),
    )
    assert made.returncode == 0, made.stderr
    rows = export.read_text().splitlines()
    assert rows[0] == "productKey,deviceKey,deviceSecret,assetId" and len(rows) == 26
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    again = tmp_path / "again.json"
    assert (
        run_cli(gatehouse, "device", "export", "--product", product_key, str(again)).returncode == 0
    )
    assert {d["deviceKey"] for d in json.loads(again.read_text())} == {
        r.split(",")[1] for r in rows[1:]
    }
    one = json.loads(
        run_cli(gatehouse, "device", "create", "--product", product_key, "--key", "cli-one").stdout
    )
    assert one["deviceKey"] == "cli-one"
    assert "cli-one" in run_cli(gatehouse, "device", "list", "--product", product_key).stdout


def test_cli_errors_are_one_clear_line(gatehouse: Gatehouse, tmp_path: Path) -> None:
    result = run_cli(gatehouse, "product", "show", "nosuchproduct")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "gatehouse: product 'nosuchproduct' does not exist (HTTP 404, code 99404)"
    )
    result = run_cli(gatehouse, "product", "list", "--url", "http://127.0.0.1:1")
    assert result.returncode == 1 and "cannot reach" in result.stderr
    bare = {k: v for k, v in gatehouse.env().items() if not k.startswith("GATEHOUSE_")}
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "product", "list", "--data-dir", str(tmp_path)],
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "no credentials" in result.stderr
    result = run_cli(gatehouse, "--help")
    assert (
        result.returncode == 0
        and "serve" in result.stdout
        and "GATEHOUSE_ACCESS_KEY" in result.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--codec", "nonsense"], "NAME=module:attribute"),
        (["--codec", "mine=no_such_module:decode"], "cannot load codec"),
        (["--codec", "mine=json:dumps"], "has no decode(raw) and encode(reply)"),
        (["--connect-limit", "many"], "BURST/WINDOW:BLOCK"),
        (["--max-payload", "0"], "must be at least 1"),
    ],
)
def test_bad_device_options_stop_serve_with_their_reason(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "serve", "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_cli_stats_prints_the_brokers_counters(gatehouse: Gatehouse) -> None:
    result = run_cli(gatehouse, "stats")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert set(stats) == {"mqtt", "devices", "writer"}
    assert "refused_publish" in stats["mqtt"] and "online" in stats["devices"]


def test_cli_commands_against_a_running_gatehouse(gatehouse: Gatehouse, tmp_path: Path) -> None:
    api = gatehouse.client()
    api("thing-models", "create", {"modelId": "cli-cmd", "tsl": THERMOSTAT_TSL}).ok()
    product = api(
        "products", "create", with_mandatory({"productName": "cli cmd", "modelId": "cli-cmd"})
    ).ok()
    device = api(
        "devices", "create", {"productKey": product, "deviceName": "d", "timezone": "+00:00"}
    ).ok()
    where = ["--product", product, "--key", device["deviceKey"]]
    held = run_cli(
        gatehouse,
        "command",
        "invoke",
        *where,
        "--service",
        "reboot",
        "--input",
        '{"delay": 1}',
        "--pending-ttl",
        "60",
    )
    assert held.returncode == 0, held.stderr
    command_id = json.loads(held.stdout)["commandId"]
    assert command_id in run_cli(gatehouse, "command", "list", *where).stdout
    cancelled = run_cli(gatehouse, "command", "cancel", command_id)
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    refused = run_cli(gatehouse, "command", "set", *where, "--points", '{"temp": 1}')
    assert refused.returncode == 1 and "read-only" in refused.stderr
    bad_hex = run_cli(gatehouse, "command", "raw", *where, "--hex", "zz")
    assert bad_hex.returncode != 0 and "not hexadecimal" in bad_hex.stderr


def test_cli_certificates_end_to_end(gatehouse: Gatehouse, tmp_path: Path) -> None:
    api = gatehouse.client()
    api("thing-models", "create", {"modelId": "cli-tls", "tsl": THERMOSTAT_TSL}).ok()
    body = {"productName": "cli tls", "modelId": "cli-tls", "biDirectionalAuth": True}
    product = api("products", "create", with_mandatory(body)).ok()
    device = api(
        "devices", "create", {"productKey": product, "deviceName": "d", "timezone": "+00:00"}
    ).ok()
    where = ["--product", product, "--key", device["deviceKey"]]
    made = run_cli(gatehouse, "cert", "keygen", *where, "--out", str(tmp_path))
    assert made.returncode == 0, made.stderr
    key = tmp_path / f"{device['deviceKey']}.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    applied = run_cli(
        gatehouse,
        "cert",
        "apply",
        *where,
        "--csr",
        str(tmp_path / f"{device['deviceKey']}.csr"),
        "--out",
        str(tmp_path / "cert.pem"),
        "--ca-out",
        str(tmp_path / "ca.pem"),
    )
    assert applied.returncode == 0, applied.stderr
    serial = applied.stdout.strip()
    assert "BEGIN CERTIFICATE" in (tmp_path / "cert.pem").read_text()
    assert serial in run_cli(gatehouse, "cert", "list", *where).stdout
    assert run_cli(gatehouse, "cert", "revoke", *where, "--sn", serial).returncode == 0
    assert "revoked" in run_cli(gatehouse, "cert", "list", *where).stdout


def test_serve_wants_the_ca_certificate_and_key_together(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--ca-cert",
            "x.pem",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "--ca-cert and --ca-key together" in result.stderr
