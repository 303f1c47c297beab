"""revloop sales-agents: the sales team routing assigns leads to, and the service types each agent handles."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from api.cli.common import fail, user_errors

sales_agents_app = typer.Typer(
    help="The sales team: list the agents, set the service types routed to each one first.", no_args_is_help=True
)


@sales_agents_app.command("list")
def sales_agents_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the agents as JSON")] = False,
) -> None:
    """List the sales agents: name, the user who works their leads (or "no account": they get no leads),
    regional office, manager, open deals, services."""
    from core.db import session_scope
    from crm.sales_team import list_agents

    with session_scope() as session:
        agents = list_agents(session)
    if as_json:
        typer.echo(json.dumps(agents, indent=2, default=str))
        return
    if not agents:
        typer.echo("no sales agents (revloop import crm ... or revloop demo seed adds them)")
        return
    typer.echo(f"{'name':<24} {'user':<24} {'office':<8} {'manager':<22} {'open deals':>10}  services")
    for a in agents:
        user = a["user_name"] or "no account"
        if a["user_name"] and not a["routable"]:
            user += " (cannot take leads)"  # deactivated, or a role that does not work leads
        typer.echo(
            f"{a['name']:<24} {user:<24} {a['regional_office'] or '-':<8} {a['manager'] or '-':<22} "
            f"{a['open_deals']:>10}  {', '.join(a['services']) or '-'}"
        )
    if any(not a["routable"] for a in agents):
        typer.echo("agents without an active account get no leads: revloop users link <user> <sales agent>")


@sales_agents_app.command("set-services")
def sales_agents_set_services(
    name: Annotated[str, typer.Argument(help="The sales agent's name (as revloop sales-agents list shows it)")],
    service: Annotated[
        list[str] | None, typer.Option("--service", help="A service type (a lead's custom.service), repeatable")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every service type")] = False,
) -> None:
    """Set the service types routed to this agent first (replaces the ones they have)."""
    from core.db import session_scope
    from crm.sales_team import find_agent, set_services

    if not service and not clear:
        fail("give at least one --service, or --clear to remove them all", code=2)
    if service and clear:
        fail("--clear cannot be combined with --service", code=2)
    with user_errors(), session_scope() as session:
        agent = set_services(session, find_agent(session, name).id, service or [], actor="cli")
    typer.echo(f"{agent['name']}: {', '.join(agent['services']) or 'no services'}")
