"""The `gatehouse` command, one module per command group; `main` dispatches."""

from broker.cli.main import main

__all__ = ["main"]
