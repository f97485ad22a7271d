"""`gatehouse serve`'s one typed configuration, and where its values come from.

Every setting has a name (`mqtt_port`), a flag (`--mqtt-port`), an environment variable
(`GATEHOUSE_MQTT_PORT`) and a key in a TOML config file (`mqtt_port`, or `mqtt-port`).
`load_config` fills a `ServeConfig` from all of them, later sources winning:

    built-in default  <  config file (--config)  <  environment  <  command line

Each value is parsed and checked by the same function whichever source gave it, and a
bad one is a `ConfigError` naming its source. This module imports only the standard
library (and the light `ConnectLimit`), so `gatehouse serve --help` starts fast; the
server's parts are built from a `ServeConfig` in `broker.serve`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from broker.gate.connect_guard import SIGN_FAILURE_LIMIT, ConnectLimit

ENV_PREFIX = "GATEHOUSE_"
CONFIG_ENV = "GATEHOUSE_CONFIG"  # the config file, when --config is not given


class ConfigError(ValueError):
    """A setting that cannot be used, with where it came from."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    data_dir: Path = Path("gatehouse-data")
    database: str | None = None  # sqlite:///PATH or postgresql://...; None: DATA_DIR's
    host: str = "127.0.0.1"
    http_port: int = 8080
    mqtt_port: int = 1883
    mqtts_port: int = 8883  # the TLS listener; 0 for none
    ca_cert: Path | None = None  # a CA to use instead of the data directory's own
    ca_key: Path | None = None
    allow_anonymous: bool = False
    max_payload: int = 512 * 1024  # EnOS's; broker.gate.routing.DEFAULT_MAX_PAYLOAD
    max_retained_messages: int = 10_000
    max_retained_bytes: int = 64 * 1024 * 1024
    connect_limit: ConnectLimit = field(default_factory=ConnectLimit)
    sign_failure_limit: ConnectLimit = SIGN_FAILURE_LIMIT
    sign_max_age: float | None = None  # seconds a sign's timestamp may be off; None: any
    max_subdevices_per_gateway: int = 200
    on_refused_publish: str = "drop"
    message_log_size: int = 100_000
    codecs: tuple[tuple[str, str], ...] = ()  # (NAME, module:attribute)
    codec_workers: int = 2  # processes the codecs run in; broker.gate.codec_workers
    max_queued_messages: int = 1000
    max_inflight: int = 100
    connect_timeout: float = 10.0
    event_loop: str = "auto"
    provision_file: Path | None = None
    max_devices_per_product: int = 10_000
    max_api_body: int = 8 * 1024 * 1024  # broker.api.limits.DEFAULT_MAX_BODY
    subscribe_port: int = 9001  # EnOS data subscription (enos-subscribe); 0 for none
    subscription_retention: int = 100_000  # messages kept per subscription partition
    subscription_max_age: float = 7 * 24 * 3600.0  # seconds a retained message is kept
    log_level: str = "info"


# ---------------------------------------------------------------------------- parsers
# Each takes the text of a flag, a variable or a file's value and returns the typed value.


def _integer(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if value < low:
            raise ValueError(f"must be at least {low}, not {value}")
        return value

    return parse


def _port(text: str) -> int:
    value = _integer(0)(text)
    if value > 65_535:
        raise ValueError(f"{value} is not a port (0 to 65535)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"must be above 0 seconds, not {text}")
    return value


def _sign_max_age(text: str) -> float | None:
    """Seconds, or `off` (or 0) for no window."""
    if text.strip().lower() in ("off", "0"):
        return None
    try:
        return _seconds(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds above 0, or off") from None


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _codecs(texts: Iterable[str]) -> tuple[tuple[str, str], ...]:
    found = []
    for text in texts:
        name, eq, target = text.partition("=")
        if not eq or not name or ":" not in target:
            raise ValueError(f"wants NAME=module:attribute, not {text!r}")
        found.append((name, target))
    return tuple(found)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def _show_limit(limit: ConnectLimit) -> str:
    return f"{limit.burst}/{limit.window:g}:{limit.block:g}" if limit.enabled else "off"


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its field of `ServeConfig`, how its text is read, and its help."""

    name: str  # the field; the flag is --name-with-dashes, the variable GATEHOUSE_NAME
    parse: Callable[[str], Any]
    help: str
    metavar: str = ""  # "" for a switch
    choices: tuple[str, ...] = ()
    repeatable: bool = False  # given more than once; the environment separates with commas
    show: Callable[[Any], str] = str  # the default, as --help and the README show it
    flag_name: str = ""  # when the flag is not the field's name

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name).replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + (self.flag_name or self.name).upper()

    @property
    def key(self) -> str:
        return self.flag_name or self.name

    @property
    def switch(self) -> bool:
        return not self.metavar

    def default_text(self) -> str:
        value = getattr(ServeConfig(), self.name)
        if value is None or value == ():
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        return self.show(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", Path, "where the registry and credentials.json live", "DIR"),
    Setting(
        "database",
        str,
        "the registry's database: sqlite:///PATH or postgresql://USER@HOST[:PORT]/DB"
        " (a password in the URL, PGPASSWORD or ~/.pgpass); none: DATA_DIR/registry.db",
        "URL",
    ),
    Setting("host", str, "the address the broker and the API listen on", "ADDRESS"),
    Setting("http_port", _port, "the REST API's port", "PORT"),
    Setting("mqtt_port", _port, "the MQTT 3.1.1 port", "PORT"),
    Setting(
        "mqtts_port",
        _port,
        "MQTT over TLS (client certificates for two-way products); 0 for none",
        "PORT",
    ),
    Setting(
        "ca_cert",
        Path,
        "a CA certificate (PEM) to use instead of DATA_DIR/ca's own (with --ca-key)",
        "FILE",
    ),
    Setting("ca_key", Path, "the private key (PEM) of --ca-cert", "FILE"),
    Setting(
        "allow_anonymous",
        _boolean,
        "admit MQTT clients without credentials, outside /sys/, /ext/ and $SYS only",
    ),
    Setting(
        "max_payload",
        _integer(1),
        "largest payload in bytes of every PUBLISH and will; a bigger device request gets"
        " reply code 1220, and a packet over twice this ends the connection (EnOS's)",
        "BYTES",
    ),
    Setting(
        "max_retained_messages",
        _integer(1),
        "retained messages kept at once; a retained PUBLISH to a new topic past it is"
        " routed but not retained",
        "N",
    ),
    Setting(
        "max_retained_bytes",
        _integer(1),
        "payload bytes of all retained messages together, bounded the same way",
        "BYTES",
    ),
    Setting(
        "connect_limit",
        ConnectLimit.parse,
        "per-device CONNECT limit: at most one a second and BURST within WINDOW seconds,"
        " else refused for BLOCK seconds; counts only CONNECTs that proved the secret;"
        " 'off' to disable (EnOS's)",
        "BURST/WINDOW:BLOCK",
        show=_show_limit,
    ),
    Setting(
        "sign_failure_limit",
        lambda text: ConnectLimit.parse(text, interval=0.0),
        "per device and source address: more than BURST wrong (or stale, or replayed) signs"
        " within WINDOW seconds, and that address's CONNECTs for the device are refused for"
        " BLOCK seconds; others' are not; 'off' to disable",
        "BURST/WINDOW:BLOCK",
        show=_show_limit,
    ),
    Setting(
        "sign_max_age",
        _sign_max_age,
        "refuse a sign (CONNECT or sub-device login) whose timestamp is more than SECONDS"
        " off the server's clock, or used before; off (or 0): any age, for devices without"
        " a clock and SDKs that sign once per process",
        "SECONDS|off",
    ),
    Setting(
        "max_subdevices_per_gateway",
        _integer(1),
        "sub-devices online through one gateway at once (EnOS's); a login past it gets 429",
        "N",
    ),
    Setting(
        "on_refused_publish",
        _choice("drop", "disconnect"),
        "what happens to a PUBLISH outside the client's topics: dropped and counted, or"
        " the connection is closed too",
        "drop|disconnect",
        choices=("drop", "disconnect"),
    ),
    Setting(
        "message_log_size",
        _integer(1),
        "device messages and events the registry keeps, newest first",
        "N",
    ),
    Setting(
        "codecs",
        str,
        "load a codec for Custom products (repeatable); 'json' is built in",
        "NAME=MODULE:ATTR",
        repeatable=True,
        flag_name="codec",
    ),
    Setting(
        "codec_workers",
        _integer(1),
        "worker processes that run the --codec codecs (time and memory limits per call);"
        " one product's calls use at most all but one",
        "N",
    ),
    Setting(
        "max_queued_messages",
        _integer(1),
        "QoS 1/2 messages kept per client while it is offline or behind; when full the"
        " oldest is dropped",
        "N",
    ),
    Setting("max_inflight", _integer(1), "unacknowledged QoS 1/2 messages per client", "N"),
    Setting(
        "connect_timeout",
        _seconds,
        "seconds a new MQTT connection may take to send CONNECT",
        "SECONDS",
        show="{:g}".format,
    ),
    Setting(
        "event_loop",
        _choice("auto", "uvloop", "asyncio"),
        "auto uses uvloop where it is installed",
        "auto|uvloop|asyncio",
        choices=("auto", "uvloop", "asyncio"),
    ),
    Setting(
        "provision_file",
        Path,
        "a TOML or JSON file of models, products and devices, applied at start",
        "FILE",
        flag_name="provision",
    ),
    Setting(
        "max_devices_per_product",
        _integer(1),
        "EnOS's device limit per product (code 11739 past it)",
        "N",
    ),
    Setting(
        "max_api_body",
        _integer(1),
        "largest API request body in bytes; a bigger one is refused with 413 before it is"
        " read (over twice a 10,000-device batchCreate)",
        "BYTES",
    ),
    Setting(
        "subscribe_port",
        _port,
        "EnOS data subscription for applications (enos-subscribe's WebSocket); 0 for none",
        "PORT",
    ),
    Setting(
        "subscription_retention",
        _integer(1),
        "messages each data subscription keeps per partition (two partitions), newest"
        " first; a consumer group further behind loses the oldest",
        "N",
    ),
    Setting(
        "subscription_max_age",
        _seconds,
        "seconds a data subscription keeps a message, consumed or not",
        "SECONDS",
        show="{:g}".format,
    ),
    Setting(
        "log_level",
        _choice("debug", "info", "warning", "error"),
        "amqtt's own per-connection lines show only at debug",
        "debug|info|warning|error",
        choices=("debug", "info", "warning", "error"),
    ),
)
BY_KEY = {s.key: s for s in SETTINGS} | {s.key.replace("_", "-"): s for s in SETTINGS}


# ---------------------------------------------------------------------------- loading


def _parse(setting: Setting, value: Any, source: str) -> Any:
    try:
        if setting.repeatable:
            texts = [value] if isinstance(value, str) else list(value)
            return _codecs(str(t) for t in texts)
        if isinstance(value, bool):
            value = "true" if value else "false"
        return setting.parse(str(value))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML file's settings by field name. Unknown keys are errors, not ignored."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: not TOML: {exc}") from None
    section = data.get("serve", data)  # settings at the top, or under [serve]
    found: dict[str, Any] = {}
    for key, value in section.items():
        setting = BY_KEY.get(key)
        if setting is None:
            raise ConfigError(f"{path}: {key!r} is not a serve setting")
        if setting.repeatable and isinstance(value, str):
            value = [value]
        if isinstance(value, dict | list) and not setting.repeatable:
            raise ConfigError(f"{path}: {key} takes one value")
        found[setting.name] = _parse(setting, value, f"{path}: {key}")
    return found


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for setting in SETTINGS:
        text = env.get(setting.env)
        if text is None:
            continue
        value: Any = [t for t in text.split(",") if t] if setting.repeatable else text
        found[setting.name] = _parse(setting, value, setting.env)
    return found


def load_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> ServeConfig:
    """Defaults, then the file's settings, then the environment's, then the flags'.

    `flags` maps field names to what the command line gave (text, or a list for a
    repeatable setting); a name absent or None was not given.
    """
    env = env if env is not None else {}
    if file is None and env.get(CONFIG_ENV):
        file = Path(env[CONFIG_ENV])
    values: dict[str, Any] = read_config_file(file) if file is not None else {}
    values.update(_from_env(env))
    by_name = {s.name: s for s in SETTINGS}
    for name, value in (flags or {}).items():
        if value is None or value == () or value == []:
            continue
        setting = by_name[name]
        values[name] = _parse(setting, value, setting.flag)
    config = replace(ServeConfig(), **values)
    if (config.ca_cert is None) != (config.ca_key is None):
        raise ConfigError("give --ca-cert and --ca-key together")
    return config


def _check_settings_cover_the_config() -> None:
    missing = {f.name for f in fields(ServeConfig)} ^ {s.name for s in SETTINGS}
    if missing:
        raise RuntimeError(f"ServeConfig fields without a Setting (or the reverse): {missing}")


_check_settings_cover_the_config()
