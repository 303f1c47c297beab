"""revloop serve: the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from core.settings import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: REVLOOP_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: REVLOOP_API_PORT]")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level="info",
    )
