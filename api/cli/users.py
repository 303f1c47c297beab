"""revloop users: people who sign in to the review app."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from api.cli.common import fail, user_errors
from core.enums import Role

users_app = typer.Typer(help="People who sign in to the review app (passwords, roles).", no_args_is_help=True)


def read_password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The new password and whether it was generated (then it is printed once)."""
    import getpass
    import secrets

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            fail("--password-stdin: nothing was read from stdin", code=2)
        return password, False
    if generate or not sys.stdin.isatty():
        return secrets.token_urlsafe(15), True
    password = getpass.getpass("Password (at least 10 characters): ")
    if getpass.getpass("Repeat it: ") != password:
        fail("the two passwords differ; nothing was changed", code=2)
    return password, False


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="Sign-in email")],
    role: Annotated[str, typer.Option("--role", help=" | ".join(r for r in Role if r is not Role.INTEGRATION))],
    name: Annotated[
        str | None,
        typer.Option(help="Queue name (routing assigns leads to sales-agent names) [default: email's local part]"),
    ] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    generate: Annotated[
        bool, typer.Option("--generate-password", help="Generate a password and print it once")
    ] = False,
) -> None:
    """Create a user. Asks for the password on a terminal; without one, generates it and prints it once."""
    from core.db import session_scope
    from core.users import create_user

    password, generated = read_password(password_stdin, generate)
    with user_errors():
        with session_scope() as session:
            user = create_user(session, email=email, role=role, password=password, name=name, actor="cli")
            summary = f"created {user.role} {user.name} <{user.email}>"
    typer.echo(summary)
    if generated:
        typer.secho("password (shown only now):", err=True)
        typer.echo(password)


@users_app.command("list")
def users_list() -> None:
    """List users: email, name, role, active, last sign-in."""
    from core.db import session_scope
    from core.users import list_users

    with session_scope() as session:
        for u in list_users(session):
            last = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
            typer.echo(f"{u.email:<36} {u.name:<24} {u.role:<10} {'active' if u.active else 'inactive':<9} {last}")


@users_app.command("set-password")
def users_set_password(
    email: Annotated[str, typer.Argument(help="Sign-in email")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    generate: Annotated[
        bool, typer.Option("--generate-password", help="Generate a password and print it once")
    ] = False,
) -> None:
    """Set a new password (signs the user out everywhere and clears a lockout)."""
    from core.db import session_scope
    from core.users import get_user, update_user

    password, generated = read_password(password_stdin, generate)
    with user_errors():
        with session_scope() as session:
            update_user(session, get_user(session, email=email).id, actor="cli", password=password)
    typer.echo(f"password of {email} changed")
    if generated:
        typer.secho("password (shown only now):", err=True)
        typer.echo(password)


@users_app.command("deactivate")
def users_deactivate(email: Annotated[str, typer.Argument(help="Sign-in email")]) -> None:
    """Deactivate a user (signs them out; their history stays)."""
    from core.db import session_scope
    from core.users import get_user, update_user

    with user_errors():
        with session_scope() as session:
            update_user(session, get_user(session, email=email).id, actor="cli", active=False)
    typer.echo(f"{email} deactivated")


@users_app.command("link")
def users_link(
    user: Annotated[str, typer.Argument(help="The user's sign-in email or name")],
    sales_agent: Annotated[str, typer.Argument(help="The sales agent's name (revloop sales-agents list)")],
) -> None:
    """Link a sales agent to the user who works their leads: routing then assigns the agent's leads to this
    user (an active closer or manager). An agent with no linked user gets no leads (they go to the team queue)."""
    from core.db import session_scope
    from crm.sales_team import find_agent, find_user, link_user

    with user_errors(), session_scope() as session:
        agent = link_user(session, find_agent(session, sales_agent).id, find_user(session, user).id, actor="cli")
    typer.echo(f"sales agent {agent['name']} -> {agent['user_name']} <{agent['user_email']}>")


@users_app.command("unlink")
def users_unlink(
    sales_agent: Annotated[str, typer.Argument(help="The sales agent's name (revloop sales-agents list)")],
) -> None:
    """Unlink a sales agent from its user: its leads go to the team queue until it is linked again."""
    from core.db import session_scope
    from crm.sales_team import find_agent, link_user

    with user_errors(), session_scope() as session:
        agent = link_user(session, find_agent(session, sales_agent).id, None, actor="cli")
    typer.echo(f"sales agent {agent['name']}: no account (its leads go to the team queue)")
