"""What the subcommands share: output helpers, argument types and the API options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from broker.client import ApiClient


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [list(map(str, header)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def json_arg(text: str) -> Any:
    """A JSON value given inline, or @FILE to read it from a file."""
    raw = Path(text[1:]).read_bytes() if text.startswith("@") else text.encode()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


ApiCommand = Callable[[ApiClient, argparse.Namespace], int]


def api_parser(sub: Any, name: str, help_text: str, func: ApiCommand) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--url", help="the API (default $GATEHOUSE_URL or http://127.0.0.1:8080)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("gatehouse-data"),
        help="where to find credentials.json when the environment has none",
    )
    parser.set_defaults(api_func=func)
    return parser
