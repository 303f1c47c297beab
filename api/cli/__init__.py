"""The `revloop` command line: one module per command group, assembled here in the order `--help` lists them.

`revloop = "api.cli:main"` (pyproject) and `python -m api.cli` both run `main`.
"""

from __future__ import annotations

import os

import typer

from api.cli.db import db_app
from api.cli.demo import demo_app
from api.cli.evals import eval_app
from api.cli.icp import icp_app
from api.cli.imports import import_app
from api.cli.kb import kb_app
from api.cli.leads import leads_app
from api.cli.llm import llm_app
from api.cli.review_app import review_app, review_app_command
from api.cli.sales_agents import sales_agents_app
from api.cli.scans import cadences_app, collections_app
from api.cli.scoring import scoring_app
from api.cli.serve import serve
from api.cli.sync import sync_app
from api.cli.tokens import tokens_app
from api.cli.up import up
from api.cli.users import users_app
from api.cli.webhooks import webhooks_app
from api.cli.worker import worker

app = typer.Typer(
    help="revloop: lead-to-cash with AI agents and a human approving every outbound action.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help text: rich's formatting (rich, markdown-it) took longer to import than the whole command line.
    rich_markup_mode=None,
)
app.command()(serve)
app.command()(worker)
app.command("review-app")(review_app)
app.command()(up)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(tokens_app, name="tokens")
app.add_typer(import_app, name="import")
app.add_typer(leads_app, name="leads")
app.add_typer(scoring_app, name="scoring")
app.add_typer(kb_app, name="kb")
app.add_typer(llm_app, name="llm")
app.add_typer(icp_app, name="icp")
app.add_typer(users_app, name="users")
app.add_typer(sales_agents_app, name="sales-agents")
app.add_typer(collections_app, name="collections")
app.add_typer(cadences_app, name="cadences")
app.add_typer(eval_app, name="eval")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(sync_app, name="sync")

_review_app_command = review_app_command  # the name the browser test imports

__all__ = ["app", "main"]


def main() -> None:
    # Everything revloop creates (SQLite files, checkpoints, the knowledge base, logs, .eml files) is its own
    # user's only; the places that matter most also set 0600/0700 explicitly (core/files.py).
    os.umask(0o077)
    # revloop's numeric work is small (one lead's prediction) and runs in threads of its own: on a shared 2-core
    # box the default one-OpenMP-thread-per-core oversubscribes and a 19 ms prediction took 3 s. One each,
    # unless the operator says otherwise.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    app()
