"""`gatehouse completion SHELL`: the script that makes the shell complete gatehouse."""

from __future__ import annotations

import click

from broker.cli.common import CONTEXT

SHELLS = ("bash", "zsh", "fish")


@click.command(
    context_settings=CONTEXT,
    help="Print the completion script for SHELL. Install it with, e.g., "
    "`gatehouse completion bash > ~/.local/share/bash-completion/completions/gatehouse`, "
    'or `eval "$(gatehouse completion zsh)"` in ~/.zshrc.',
)
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    from click.shell_completion import get_completion_class

    from broker.cli.main import cli

    found = get_completion_class(shell)
    assert found is not None  # every name in SHELLS is one of click's
    script = found(cli, {}, "gatehouse", "_GATEHOUSE_COMPLETE").source()
    click.echo(script)
