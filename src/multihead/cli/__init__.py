"""The ``multihead`` command: one module per command group, each a thin shell over a public Python function."""

from multihead.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
