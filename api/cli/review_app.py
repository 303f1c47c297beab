"""revloop review-app: the Streamlit review app, a client of the HTTP API."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import get_settings


def review_app_command(port: int, host: str = "127.0.0.1") -> list[str]:
    import review

    script = Path(review.__file__).resolve().parent / "app.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.address",
        host,
        "--client.toolbarMode",
        "viewer",
    ]


def review_app(
    port: Annotated[int | None, typer.Option(help="Port [default: REVLOOP_REVIEW_APP_PORT]")] = None,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 to be reached from other machines (a container, a proxy)")
    ] = "127.0.0.1",
) -> None:
    """Run the Streamlit review app (a client of the HTTP API)."""
    settings = get_settings()
    os.execv(sys.executable, review_app_command(port or settings.review_app_port, host))
