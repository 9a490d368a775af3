"""The error and warning lines every command prints, and the exit code of bad input.

One place for the CLI (``broker.cli``) and the shells it drives that have commands of their own
(``broker simulate``, ``broker roads check``), so their messages read alike.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print the error line; the caller raises the Exit (code 2 unless told). ``message`` is
    plain text, printed as it is: "[west, south, east, north]" or a path with brackets is no
    markup (rich ate them)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print a warning line (plain text, as :func:`fail`)."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}")
