"""revloop serve: the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: REVLOOP_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: REVLOOP_API_PORT]")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from api.serving import uvicorn_options

    uvicorn.run(**uvicorn_options(get_settings(), host=host, port=port))
