"""revloop serve: the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: REVLOOP_API_HOST, else 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: REVLOOP_API_PORT, else 8000)")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="API processes on this port, for more cores (default: REVLOOP_API_WORKERS, else 1)"
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log one line per request")] = True,
) -> None:
    """Run the HTTP API."""
    import os

    import uvicorn

    from api.serving import uvicorn_options

    if workers is not None:
        os.environ["REVLOOP_API_WORKERS"] = str(workers)  # the worker processes' settings say so too
    uvicorn.run(**uvicorn_options(get_settings(), host=host, port=port, workers=workers, access_log=access_log))
