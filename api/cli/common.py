"""What every command group shares: errors a user can fix, logging, a progress bar."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from core.settings import Settings


def get_settings() -> Settings:
    """The service's settings, imported on first use: pydantic-settings takes a few tenths of a second to import,
    which `revloop --help` and every command's --help should not pay."""
    from core.settings import get_settings as settings

    return settings()


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """A mistake the user can fix (bad input, unknown version...) ends the command with its message, exit 2."""
    from core.errors import AppError

    try:
        yield
    except AppError as exc:
        fail(exc.message, code=2)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def progress_bar(total: int, label: str):
    """A progress bar on stderr; the returned callback advances it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = progress.add_task(label, total=total)
    return progress, lambda n: progress.advance(task, n)
