"""revloop kb: the offline knowledge base (won deals, case studies, product facts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import fail, get_settings, progress_bar, user_errors

kb_app = typer.Typer(help="Knowledge base: won deals, case studies, product facts (offline).", no_args_is_help=True)


@kb_app.command("add")
def kb_add(
    title: Annotated[str, typer.Option(help="Short title shown in briefs")],
    text: Annotated[str | None, typer.Option(help="The document text")] = None,
    file: Annotated[Path | None, typer.Option(help="Read the text from this file", exists=True, dir_okay=False)] = None,
    kind: Annotated[str, typer.Option(help="case_study | product_fact | won_deal")] = "case_study",
    doc_id: Annotated[str | None, typer.Option("--id", help="Document id (re-adding an id replaces it)")] = None,
    industry: Annotated[
        str | None, typer.Option(help="The customer's industry: similar cases of the same industry rank first")
    ] = None,
    employees: Annotated[
        int | None, typer.Option(min=0, help="The customer's employee count: similar size ranks first")
    ] = None,
) -> None:
    """Add (or replace) a document in the knowledge base."""
    import re

    from tools import kb

    if (text is None) == (file is None):
        fail("give exactly one of --text or --file", code=2)
    body = text if text is not None else file.read_text(encoding="utf-8")
    identifier = doc_id or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80]
    with user_errors():
        kb.add(
            get_settings(), doc_id=identifier, kind=kind, title=title, text=body, industry=industry, employees=employees
        )
    typer.echo(f"added {kind} {identifier!r}")


@kb_app.command("index-deals")
def kb_index_deals() -> None:
    """Put every won deal of the CRM in the knowledge base (safe to re-run)."""
    from tools import kb

    typer.echo(f"indexed {kb.index_won_deals(get_settings())} won deal(s)")


@kb_app.command("search")
def kb_search(text: Annotated[str, typer.Argument(help="What to look for")], limit: int = 3) -> None:
    """The documents most similar to TEXT."""
    from tools import kb

    for match in kb.search(get_settings(), text, limit):
        typer.echo(f"{match['similarity']:.3f}  {match['kind']:<12} {match['title']}  ({match['record']})")


@kb_app.command("rebuild")
def kb_rebuild() -> None:
    """Re-embed a knowledge base built with an earlier embedding into the current one (WordLlama), with a progress
    bar. The first knowledge-base call does it too, without the bar; nothing to do prints 0."""
    from tools import kb

    bars = []

    def bar(total: int):
        progress, advance = progress_bar(total, "re-embedding the knowledge base")
        progress.start()
        bars.append(progress)
        return advance

    settings = get_settings()
    try:
        moved = kb.rebuild_stale(settings, progress=bar)
    finally:
        for progress in bars:
            progress.stop()
    typer.echo(f"re-embedded {moved} document(s) with {kb.COLLECTION}; {kb.collection(settings).count()} in total")
