"""The `gatehouse` command, one module per command group; `main` dispatches."""

from broker.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
