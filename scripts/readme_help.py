"""Write every `gatehouse` command's `--help` into README.md, so the README shows what
the CLI really says (tests/test_readme_help.py fails when the two differ).

    .venv/bin/python scripts/readme_help.py          # rewrite README.md's help blocks
    .venv/bin/python scripts/readme_help.py --check  # exit 1, with a diff, if out of date
    .venv/bin/python scripts/readme_help.py --readme OTHER.md  # another copy

README.md holds regions between `<!-- help:begin NAME -->` and `<!-- help:end NAME -->`;
REGIONS says which commands each one shows. The help is rendered in this process by
click, at the CLI's fixed width of 100 columns, whatever the terminal.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import click  # noqa: E402 - after the path: the checkout's gatehouse, not an installed one

from broker.cli.main import cli  # noqa: E402

README = ROOT / "README.md"
SIMULATORS = ("load", "sim")  # their help is in the load runner's section
# region name -> does a command (its words after `gatehouse`) belong in it
REGIONS: dict[str, Callable[[tuple[str, ...]], bool]] = {
    "cli": lambda words: not words or words[0] not in SIMULATORS,
    "load": lambda words: bool(words) and words[0] in SIMULATORS,
}
REGION = re.compile(
    r"(?P<begin><!-- help:begin (?P<name>[a-z]+) -->\n).*?(?P<end><!-- help:end (?P=name) -->)",
    re.DOTALL,
)


def commands(
    command: click.Command, ctx: click.Context, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Every command under `command`, depth first, each with its context."""
    yield words, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            settings = {**sub.context_settings, "terminal_width": 100, "max_content_width": 100}
            sub_ctx = click.Context(sub, parent=ctx, info_name=name, **settings)
            yield from commands(sub, sub_ctx, (*words, name))


def block(words: tuple[str, ...], command: click.Command, ctx: click.Context) -> str:
    """One command's help, folded under its name and one-line description."""
    name = " ".join(("gatehouse", *words))
    summary = command.get_short_help_str(limit=150) if words else "every command"
    help_text = "\n".join(line.rstrip() for line in command.get_help(ctx).splitlines())
    opened = "" if words else " open"  # the list of commands is shown unfolded
    return (
        f"<details{opened}><summary><code>{name}</code>: {summary}</summary>\n\n"
        f"```text\n{help_text}\n```\n\n</details>\n"
    )


def render(region: str) -> str:
    top = click.Context(cli, info_name="gatehouse", **cli.context_settings)
    belongs = REGIONS[region]
    parts = [block(*found) for found in commands(cli, top) if belongs(found[0])]
    return "\n".join(parts)


def updated(text: str) -> str:
    """`text` (the README) with every help region rendered afresh."""
    found = {m.group("name") for m in REGION.finditer(text)}
    missing = set(REGIONS) - found
    if missing:
        raise SystemExit(f"README.md has no <!-- help:begin {min(missing)} --> region")

    def fill(match: re.Match[str]) -> str:
        return f"{match['begin']}\n{render(match['name'])}\n{match['end']}"

    return REGION.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("--readme", type=Path, default=README, help="the file to bring up to date")
    args = parser.parse_args()
    text = args.readme.read_text()
    fresh = updated(text)
    if not args.check:
        if fresh != text:
            args.readme.write_text(fresh)
        return 0
    if fresh == text:
        return 0
    diff = difflib.unified_diff(
        text.splitlines(keepends=True), fresh.splitlines(keepends=True), str(args.readme), "--help"
    )
    sys.stdout.writelines(diff)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
