"""`gatehouse serve`: run the service on a data directory.

Its options are made from `broker.config.SETTINGS`, one per setting of `ServeConfig`;
this module only hands what the command line gave to `load_config`, which adds the
config file and the environment, and then runs `broker.serve.serve`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from broker.cli.common import CONTEXT
from broker.config import CONFIG_ENV, SETTINGS, ConfigError, ServeConfig, Setting, load_config

DESCRIPTION = (
    "Run gatehouse: the MQTT broker, the registry and its REST API, in one process, on one"
    " data directory. A new data directory gets an organisation whose credentials are"
    " printed once and saved to DATA_DIR/credentials.json.\n\n"
    "Every option can also be set by its environment variable or in a TOML file given"
    " with --config (a key per option, e.g. mqtt_port = 1883). The command line wins over"
    " the environment, which wins over the file, which wins over the defaults."
)


def _option(setting: Setting) -> click.Option:
    shown = "" if setting.repeatable else f"; default: {setting.default_text()}"
    env_note = f"  [env var: {setting.env}{shown}]"
    if setting.switch:
        name = setting.flag.removeprefix("--")
        return click.Option(
            [f"--{name}/--no-{name}", setting.name],
            default=None,
            show_default=False,
            help=setting.help + env_note,
        )
    return click.Option(
        [setting.flag, setting.name],
        metavar=setting.metavar,
        type=click.Choice(setting.choices) if setting.choices else str,
        default=None,
        multiple=setting.repeatable,
        show_default=False,
        help=setting.help + env_note,
    )


def _decorate(func: Callable[..., Any]) -> click.Command:
    command = click.command("serve", context_settings=CONTEXT, help=DESCRIPTION)(func)
    command.params.append(
        click.Option(
            ["--config", "config_file"],
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help=f"a TOML file of these settings  [env var: {CONFIG_ENV}]",
        )
    )
    command.params.extend(_option(s) for s in SETTINGS)
    return command


def config_from(
    flags: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None
) -> ServeConfig:
    """The configuration, or exit 2 saying which setting from where is wrong."""
    try:
        return load_config(flags, env, config_file)
    except ConfigError as exc:
        click.echo(f"gatehouse: {exc}", err=True)
        raise click.exceptions.Exit(2) from None


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ServeConfig:
    """What `gatehouse serve ARGV` would run with (for tests and scripts); raises
    `ConfigError` on a bad value and click's `UsageError` on an unknown option."""
    with serve.make_context("serve", list(argv)) as ctx:
        params = dict(ctx.params)
    config_file = params.pop("config_file")
    return load_config(params, env or {}, config_file)


def _serve(config_file: Path | None, **flags: Any) -> None:
    config = config_from(flags, os.environ, config_file)
    code = run(config)
    if code:
        raise click.exceptions.Exit(code)


serve = _decorate(_serve)


def _startup_failure(record: logging.LogRecord) -> bool:
    """amqtt logs its own traceback when a listener cannot start, then raises: serve
    says it in one line (the port and why), so that record is dropped."""
    return record.getMessage() != "Broker startup failed"


def run(config: ServeConfig) -> int:
    """Run gatehouse until SIGTERM or Ctrl-C; 2 when a setting or the data cannot be used."""
    from broker.gate.codecs import CodecError
    from broker.serve import event_loop
    from broker.serve import serve as serve_forever
    from certs import CertificateError
    from registry import RegistryError

    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if config.log_level != "debug":
        # amqtt logs every connection at INFO: a reconnect storm would flood the log;
        # websockets (the subscription server) says at INFO that it listens and closes.
        for noisy in ("amqtt", "transitions", "websockets"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("amqtt.broker").addFilter(_startup_failure)
    try:
        with contextlib.suppress(KeyboardInterrupt), event_loop(config.event_loop) as runner:
            runner.run(serve_forever(config))
    except RegistryError as exc:
        # A bad --provision file or option: say what to fix, without a traceback.
        print(f"gatehouse: {exc.msg}", file=sys.stderr)
        return 2
    except (CodecError, CertificateError) as exc:
        print(f"gatehouse: {exc}", file=sys.stderr)
        return 2
    return 0
