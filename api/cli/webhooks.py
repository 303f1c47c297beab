"""revloop webhooks: sign a payload to test an integration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import fail, get_settings

webhooks_app = typer.Typer(help="Signed webhooks: sign a payload to test an integration.", no_args_is_help=True)


@webhooks_app.command("sign")
def webhooks_sign(
    source: Annotated[str, typer.Argument(help="Which webhook: leads | payments | esign")],
    body: Annotated[Path, typer.Argument(help="The JSON body file to sign", exists=True, dir_okay=False)],
) -> None:
    """Print the X-Revloop-Timestamp and X-Revloop-Signature headers for BODY, signed with the source's secret."""
    from core import webhooks

    secret = getattr(get_settings(), f"webhook_secret_{source.replace('-', '_')}", None)
    if not secret:
        fail(f"no secret for {source!r}: set REVLOOP_WEBHOOK_SECRET_{source.upper()}", code=2)
    for name, value in webhooks.signed_headers(secret, body.read_bytes()).items():
        typer.echo(f"{name}: {value}")
