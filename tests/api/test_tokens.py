"""API tokens can be listed, scoped, expired and revoked (API and CLI); logout ends sessions only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app as cli
from core.db import session_scope
from core.models import ApiToken, utcnow
from tests.factories import auth, lead_payload, token


def _bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def test_an_admin_creates_a_scoped_token_lists_it_and_revokes_it(settings, http):
    admin = auth(settings, "admin")
    r = http.post(
        "/v1/tokens",
        json={"name": "web-form", "role": "integration", "scopes": ["leads:write"], "expires_in_days": 30},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    form = _bearer(created["token"])
    assert created["details"]["scopes"] == ["leads:write"] and created["details"]["expires_at"]

    assert http.post("/v1/leads", json=lead_payload(), headers=form).status_code == 202  # in scope
    r = http.post("/v1/leads/999999/events", json={"type": "reply"}, headers=form)
    assert r.status_code == 404  # same area, allowed past authorization
    listed = {t["name"]: t for t in http.get("/v1/tokens", headers=admin).json()}
    assert listed["web-form"]["last_used_at"] is not None  # recorded on use

    r = http.post(f"/v1/tokens/{created['details']['id']}/revoke", headers=admin)
    assert r.status_code == 200 and r.json()["revoked_at"]
    r = http.post("/v1/leads", json=lead_payload(email="x@y.example"), headers=form)
    assert r.status_code == 401 and "revoked" in r.json()["message"]


def test_a_scope_outside_the_token_is_refused_and_unknown_scopes_are_named(settings, http):
    admin = auth(settings, "admin")
    r = http.post("/v1/tokens", json={"name": "reader", "role": "manager", "scopes": ["kpis:read"]}, headers=admin)
    reader = _bearer(r.json()["token"])
    assert http.get("/v1/kpis", headers=reader).status_code == 200
    r = http.get("/v1/deals", headers=reader)
    assert r.status_code == 403 and "deals:read" in r.json()["message"]
    r = http.post("/v1/tokens", json={"name": "deals", "role": "manager", "scopes": ["deals:write"]}, headers=admin)
    assert http.get("/v1/deals", headers=_bearer(r.json()["token"])).status_code == 200  # write includes read
    assert http.get("/v1/me", headers=reader).status_code == 200  # who am I needs no scope
    r = http.post("/v1/tokens", json={"name": "x", "role": "integration", "scopes": ["leads:delete"]}, headers=admin)
    assert r.status_code == 422 and "leads:delete" in r.json()["message"]
    assert http.get("/v1/tokens", headers=auth(settings, "manager")).status_code == 403


def test_an_expired_token_stops_working(settings, http):
    plaintext = token(settings, "integration", "old-form")
    with session_scope(settings) as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "old-form")).one()
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    r = http.post("/v1/leads", json=lead_payload(), headers=_bearer(plaintext))
    assert r.status_code == 401


def test_logout_with_an_api_token_says_it_ends_sessions_only_and_the_token_keeps_working(settings, http):
    headers = auth(settings, "integration")
    r = http.post("/v1/auth/logout", headers=headers)
    assert r.status_code == 409 and "revoke" in r.json()["message"]
    assert http.get("/v1/me", headers=headers).status_code == 200


def test_cli_lists_and_revokes_tokens(settings, subprocess_env, monkeypatch):
    for key, value in subprocess_env.items():
        if key.startswith("REVLOOP_"):
            monkeypatch.setenv(key, value)
    from core.settings import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    made = runner.invoke(
        cli, ["tokens", "create", "--role", "integration", "--name", "crm-sync", "--scope", "leads:write"]
    )
    assert made.exit_code == 0, made.output
    listed = runner.invoke(cli, ["tokens", "list"])
    assert "crm-sync" in listed.output and "leads:write" in listed.output and "active" in listed.output
    token_id = int(listed.output.splitlines()[1].split()[0])
    revoked = runner.invoke(cli, ["tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0 and "revoked token" in revoked.output
    assert "revoked" in runner.invoke(cli, ["tokens", "list"]).output
    missing = runner.invoke(cli, ["tokens", "revoke", "99999"])
    assert missing.exit_code != 0 and "not found" in missing.output
    get_settings.cache_clear()
