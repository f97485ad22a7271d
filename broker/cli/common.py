"""What the subcommands share: the API options, errors, and output.

Imports only click at the top: httpx (the API client) and rich (tables) are loaded when
a command runs, so `--help` stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_DATA_DIR = Path("gatehouse-data")
# Defaults shown in every --help; help laid out 100 wide whatever the terminal, so the
# README can quote it as it is.
CONTEXT = {
    "show_default": True,
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
    "terminal_width": 100,
}


class Failure(click.ClickException):
    """A command that could not do its job: one line on stderr, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"gatehouse: {self.format_message()}", err=True)


def print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    """Rows under a header, columns aligned; never cut or wrapped when piped."""
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in header:
        grid.add_column(name, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*(str(cell) for cell in row))
    terminal = sys.stdout.isatty()
    Console(width=None if terminal else 100_000, highlight=False, soft_wrap=not terminal).print(
        grid
    )


def iso_time(epoch_ms: int | None) -> str:
    """Epoch milliseconds as ISO-8601 in UTC, to the second."""
    if not epoch_ms:
        return ""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def json_value(text: str) -> Any:
    """A JSON value given inline, or @FILE to read it from a file."""
    import orjson

    try:
        raw = Path(text[1:]).read_bytes() if text.startswith("@") else text.encode()
    except OSError as exc:
        raise click.BadParameter(f"{text[1:]}: {exc.strerror or exc}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None


def json_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """An option's callback: its text read as JSON (or @FILE)."""
    return None if value is None else json_value(value)


ApiCommand = Callable[..., int | None]


def url_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--url",
        envvar="GATEHOUSE_URL",
        default=DEFAULT_URL,
        show_envvar=True,
        help="the API's address",
    )(func)


def data_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        envvar="GATEHOUSE_DATA_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_envvar=True,
        help="where credentials.json is, when GATEHOUSE_ACCESS_KEY and _SECRET are not set",
    )(func)


def with_api(func: ApiCommand) -> Callable[..., None]:
    """Give the command `--url` and `--data-dir`, call it with an `ApiClient` as its first
    argument, and turn the API's errors into one line and exit code 1."""

    @functools.wraps(func)
    def run(url: str, data_dir: Path, **kwargs: Any) -> None:
        from broker.client import ApiClient, ApiError

        try:
            api = ApiClient.from_env(url, data_dir)
            try:
                code = func(api, **kwargs)
            finally:
                api.close()
        except ApiError as exc:
            raise Failure(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise Failure(f"{where}{exc.strerror or exc}") from None
        if code:
            raise click.exceptions.Exit(code)

    return url_option(data_dir_option(run))


def write_secret(path: Path, text: str) -> None:
    """A file only its owner can read (keys, credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
