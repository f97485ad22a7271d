"""The `gatehouse` command as its users meet it: fast help, --version, completion, the
serve configuration from flags, environment and a file, and errors that say what and
where."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest

from broker.cli.main import COMMANDS, cli
from broker.cli.serve import parse_args
from broker.config import SETTINGS, ConfigError, ServeConfig, load_config
from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL
from tests.server import Gatehouse, free_port

HEAVY = ("httpx", "amqtt", "fastapi", "uvicorn", "aiosqlite", "broker.serve", "simulators")


def gatehouse_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def bare_env(**extra: str) -> dict[str, str]:
    """The environment without any GATEHOUSE_ variable, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}, **extra}


def test_device_list_help_loads_only_the_device_command() -> None:
    probe = (
        "import sys\n"
        "from broker.cli import main\n"
        "code = main(['device', 'list', '--help'])\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "--product" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_version_and_completion() -> None:
    version = gatehouse_cli("--version")
    assert version.returncode == 0 and re.fullmatch(r"gatehouse \S+\n", version.stdout)
    script = gatehouse_cli("completion", "bash")
    assert script.returncode == 0 and "_GATEHOUSE_COMPLETE=bash_complete" in script.stdout
    completed = subprocess.run(
        [sys.executable, "-m", "broker.cli"],
        env={**os.environ, "_GATEHOUSE_COMPLETE": "bash_complete", "COMP_WORDS": "gatehouse de",
             "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert "plain,device" in completed.stdout.split()


def _commands(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append((name, command))
        if isinstance(command, click.Group):
            sub = click.Context(command, info_name=name, parent=ctx, **command.context_settings)
            found.extend((f"{name} {n}", c) for n, c in _commands(command, sub))
    return found


def test_every_subcommand_has_a_description_and_shows_its_defaults() -> None:
    ctx = click.Context(cli, info_name="gatehouse", **cli.context_settings)
    commands = _commands(cli, ctx)
    assert {"serve", "device list", "device block clear", "load merge", "sim device"} <= {
        name for name, _ in commands
    }
    for name, command in commands:
        assert command.get_short_help_str(limit=200), f"`gatehouse {name}` has no description"
        sub = click.Context(command, info_name=name, parent=ctx, **command.context_settings)
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            if param.to_info_dict()["default"] not in (None, False, ()):
                record = param.get_help_record(sub)
                assert record is not None and "default: " in record[1], f"{name} {param.name}"
    assert set(COMMANDS) == set(cli.list_commands(ctx))


def test_serve_settings_come_from_file_environment_and_flags_in_that_order(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "gatehouse.toml"
    config_file.write_text(
        'mqtt_port = 1001\nhttp-port = 1002\nconnect_limit = "off"\ncodec = ["a=m:x"]\n'
        "allow_anonymous = true\nmax_payload = 1000\n"
    )
    env = {"GATEHOUSE_HTTP_PORT": "2002", "GATEHOUSE_MAX_PAYLOAD": "2000"}
    config = parse_args(["--config", str(config_file), "--max-payload", "3000"], env)
    assert (config.mqtt_port, config.http_port, config.max_payload) == (1001, 2002, 3000)
    assert config.connect_limit.enabled is False and config.allow_anonymous is True
    assert config.codecs == (("a", "m:x"),)
    assert (
        parse_args(["--config", str(config_file), "--no-allow-anonymous"]).allow_anonymous is False
    )
    assert parse_args([], {"GATEHOUSE_CONFIG": str(config_file)}).mqtt_port == 1001
    assert parse_args([]) == ServeConfig()


@pytest.mark.parametrize(
    ("flags", "env", "file_text", "message"),
    [
        ({}, {"GATEHOUSE_MQTT_PORT": "many"}, None, "GATEHOUSE_MQTT_PORT: 'many' is not a whole"),
        ({"max_payload": "0"}, {}, None, "--max-payload: must be at least 1, not 0"),
        ({}, {}, "mqtt_prot = 1\n", "'mqtt_prot' is not a serve setting"),
        ({}, {}, "max_inflight = 0\n", "gatehouse.toml: max_inflight: must be at least 1"),
        ({}, {}, "mqtt_port = [1]\n", "mqtt_port takes one value"),
        ({}, {}, "not toml", "not TOML"),
    ],
)
def test_a_bad_setting_names_where_it_came_from(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], file_text: str | None, message: str
) -> None:
    config_file = None
    if file_text is not None:
        config_file = tmp_path / "gatehouse.toml"
        config_file.write_text(file_text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(flags, env, config_file)


def test_the_settings_defaults_are_the_parts_defaults() -> None:
    """ServeConfig repeats the defaults of the parts it configures; they must agree."""
    from broker.api.limits import DEFAULT_MAX_BODY
    from broker.core import CoreLimits
    from broker.gate import GateConfig
    from broker.serve import core_limits, gate_config

    assert core_limits(ServeConfig()) == CoreLimits()
    assert gate_config(ServeConfig()) == GateConfig()
    assert ServeConfig().max_api_body == DEFAULT_MAX_BODY
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_serve_reads_its_ports_from_a_config_file_and_the_environment(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    (tmp_path / "g.toml").write_text(f"http_port = {http_port}\nmqtts_port = 0\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "serve", "--data-dir", str(tmp_path / "data"),
         "--config", str(tmp_path / "g.toml")],
        env=bare_env(GATEHOUSE_MQTT_PORT=str(mqtt_port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = ""
        while "MQTT on" not in line and process.poll() is None:
            line = process.stderr.readline()
        assert f"MQTT on 127.0.0.1:{mqtt_port}," in line, line
        assert f"API on http://127.0.0.1:{http_port}" in line and "TLS" not in line
        with socket.create_connection(("127.0.0.1", mqtt_port), timeout=5):
            pass
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize("taken", ["--http-port", "--mqtt-port"])
def test_a_port_in_use_stops_serve_naming_it_before_the_ready_line(
    tmp_path: Path, taken: str
) -> None:
    ports = {"--http-port": free_port(), "--mqtt-port": free_port(), "--mqtts-port": free_port()}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[taken]))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "broker.cli", "serve", "--data-dir", str(tmp_path / "d"),
             *(str(part) for pair in ports.items() for part in pair)],
            env=bare_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
    assert result.returncode != 0
    assert f"127.0.0.1:{ports[taken]}" in result.stderr
    assert "gatehouse: MQTT on" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gatehouse: cannot run") and f":{ports[taken]}" in last


def test_an_mqtt_port_in_use_is_one_line_without_amqtts_traceback(tmp_path: Path) -> None:
    ports = {"--http-port": free_port(), "--mqtt-port": free_port(), "--mqtts-port": free_port(),
             "--subscribe-port": free_port()}  # fmt: skip
    # Given credentials, a new data directory prints none: all that is left is the error.
    env = bare_env(GATEHOUSE_ORG_ID="o1", GATEHOUSE_ACCESS_KEY="k", GATEHOUSE_ACCESS_SECRET="s")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["--mqtt-port"]))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "broker.cli", "serve", "--data-dir", str(tmp_path / "d"),
             *(str(part) for pair in ports.items() for part in pair)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"gatehouse: cannot run MQTT on 127.0.0.1:{ports['--mqtt-port']}")


def test_local_errors_say_where_they_looked_without_an_http_status(tmp_path: Path) -> None:
    result = gatehouse_cli("device", "list", "--product", "p", "--data-dir", str(tmp_path),
                           env=bare_env())  # fmt: skip
    assert result.returncode == 1
    assert "(HTTP 0" not in result.stderr
    assert str(tmp_path.resolve() / "credentials.json") in result.stderr
    assert "GATEHOUSE_ACCESS_KEY and GATEHOUSE_ACCESS_SECRET not set" in result.stderr
    unreachable = gatehouse_cli("product", "list", "--data-dir", str(tmp_path),
                                env=bare_env(GATEHOUSE_URL="http://127.0.0.1:1",
                                             GATEHOUSE_ACCESS_KEY="k",
                                             GATEHOUSE_ACCESS_SECRET="s"))  # fmt: skip
    assert unreachable.returncode == 1
    assert "cannot reach http://127.0.0.1:1" in unreachable.stderr
    assert "(HTTP 0" not in unreachable.stderr


def test_tables_show_times_as_iso_8601(gatehouse: Gatehouse) -> None:
    api = gatehouse.client()
    api("thing-models", "create", {"modelId": "cli-iso", "tsl": THERMOSTAT_TSL}).ok()
    product = api(
        "products", "create", with_mandatory({"productName": "iso", "modelId": "cli-iso"})
    ).ok()
    device = api(
        "devices", "create", {"productKey": product, "deviceName": "d", "timezone": "+00:00"}
    ).ok()
    where = ["--product", product, "--key", device["deviceKey"]]
    held = gatehouse_cli("command", "invoke", *where, "--service", "reboot",
                         "--pending-ttl", "60", env=gatehouse.env())  # fmt: skip
    assert held.returncode == 0, held.stderr
    listing = gatehouse_cli("command", "list", *where, env=gatehouse.env())
    row = next(line for line in listing.stdout.splitlines() if "reboot" in line)
    assert re.search(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b", row), row
    assert json.loads(held.stdout)["commandId"] in row
