"""The `kwire` command line.

`kwire.cli.main` holds the click group; each family of verbs lives in its own module
here and is registered in main.py with one `main.add_command(...)` line.
"""
from __future__ import annotations

from typing import IO

import click
from rich.console import Console
from rich.markup import escape


class CLIError(click.ClickException):
    """An expected failure: one message on stderr, exit code 1, no traceback."""

    def show(self, file: IO[str] | None = None) -> None:
        Console(file=file, stderr=file is None, highlight=False, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(self.format_message())}")
