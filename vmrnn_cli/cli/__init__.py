"""The `vmrnn` command line."""

from vmrnn_cli.cli.main import app, main

__all__ = ["app", "main"]
