"""People (argon2 passwords, sessions that expire, lockout, deactivation) and HMAC-signed webhooks."""

from __future__ import annotations

import datetime as dt
import json
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from core import users, webhooks
from core.db import session_scope
from core.models import Lead, User, UserSession
from tests.api.test_cli import run
from tests.factories import PASSWORD, lead_payload, session_token, token, user


def _login(http, email: str, password: str = PASSWORD):
    return http.post("/v1/auth/login", json={"email": email, "password": password})


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


# --- users and sessions --------------------------------------------------------------------------


def test_users_create_cli_then_sign_in_over_http(settings, subprocess_env, http):
    done = run(
        ["users", "create", "Dana@Example.com", "--role", "closer", "--name", "Dana Closer", "--password-stdin"],
        subprocess_env,
        input="a-long-password-1\n",
    )
    assert done.returncode == 0, done.stderr
    assert "created closer Dana Closer <dana@example.com>" in done.stdout
    with session_scope(settings) as session:
        stored = session.scalars(select(User)).one()
        assert stored.password_hash.startswith("$argon2id$") and "a-long-password-1" not in stored.password_hash
    r = _login(http, "dana@example.com", "a-long-password-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == {"name": "Dana Closer", "role": "closer", "email": "dana@example.com", "kind": "user"}
    assert body["token"].startswith("rs_")
    assert http.get("/v1/me", headers=_bearer(body["token"])).json()["name"] == "Dana Closer"

    again = run(
        ["users", "create", "dana@example.com", "--role", "closer", "--password-stdin"],
        subprocess_env,
        input="another-password\n",
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    bad_role = run(
        ["users", "create", "x@example.com", "--role", "boss", "--password-stdin"],
        subprocess_env,
        input="another-password\n",
    )
    assert bad_role.returncode == 2 and "role must be one of closer, manager, evaluator, admin" in bad_role.stderr
    short = run(
        ["users", "create", "y@example.com", "--role", "closer", "--password-stdin"], subprocess_env, input="short\n"
    )
    assert short.returncode == 2 and "password must be at least 10 characters" in short.stderr


def test_users_create_without_a_terminal_generates_a_password_once(settings, subprocess_env, http):
    done = run(["users", "create", "gen@example.com", "--role", "manager"], subprocess_env, input="")
    assert done.returncode == 0, done.stderr
    password = done.stdout.strip().splitlines()[-1]
    assert len(password) >= 16
    r = _login(http, "gen@example.com", password)
    assert r.status_code == 200, r.text


def test_wrong_password_and_unknown_email_get_the_same_answer(settings, http):
    email = user(settings, "closer")
    wrong = _login(http, email, "wrong-password")
    unknown = _login(http, "nobody@example.com", "wrong-password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"] == "wrong email or password"


@pytest.fixture
def login_clock(monkeypatch):
    """The sign-in throttle's clock, stopped: a first wait is 1 s, which a slow box (argon2 on a loaded core)
    could otherwise let run out between two requests. The test moves it on."""
    clock = SimpleNamespace(now=dt.datetime.now(dt.UTC))
    monkeypatch.setattr(users, "utcnow", lambda: clock.now)
    return clock


def test_repeated_failures_slow_down_that_address_only_and_nobody_is_locked_out(settings, http, login_clock):
    settings.login_max_failures = 3
    email = user(settings, "closer")
    attacker, closer = {"X-Forwarded-For": "203.0.113.66"}, {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(3):
        r = http.post("/v1/auth/login", json={"email": email, "password": "wrong-password"}, headers=attacker)
        assert r.status_code == 401
    # That address must now wait, even with the right password...
    r = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=attacker)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "try again in" in r.json()["message"]
    # ...while the closer, elsewhere, signs in as usual.
    assert http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=closer).status_code == 200
    login_clock.now += dt.timedelta(seconds=1)  # the wait ends by itself
    r = http.post("/v1/auth/login", json={"email": email, "password": "wrong-password"}, headers=attacker)
    assert r.status_code == 401
    r = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=attacker)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 2  # doubled after one more failure


def test_sessions_expire_absolutely_and_when_idle(settings, http):
    absolute = session_token(settings, "closer", "Absolute")
    idle = session_token(settings, "closer", "Idle")
    live = session_token(settings, "closer", "Live")
    now = dt.datetime.now(dt.UTC)
    with session_scope(settings) as session:
        rows = {s.user.name: s for s in session.scalars(select(UserSession)).all()}
        rows["Absolute"].expires_at = now - dt.timedelta(seconds=1)
        rows["Idle"].last_seen_at = now - dt.timedelta(minutes=settings.session_idle_minutes + 1)
    for expired in (absolute, idle):
        r = http.get("/v1/me", headers=_bearer(expired))
        assert r.status_code == 401 and "expired" in r.json()["message"]
    assert http.get("/v1/me", headers=_bearer(live)).status_code == 200


def test_login_sets_the_configured_lifetime(settings, http):
    settings.session_hours = 2
    r = _login(http, user(settings, "manager"))
    expires = dt.datetime.fromisoformat(r.json()["expires_at"])
    assert dt.timedelta(hours=1, minutes=59) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=2)


def test_admin_deactivation_or_password_change_ends_sessions(settings, http):
    admin = session_token(settings, "admin", "Root")
    email = user(settings, "closer", "Sam")
    sam = _login(http, email).json()["token"]
    sam_id = next(u["id"] for u in http.get("/v1/users", headers=_bearer(admin)).json() if u["email"] == email)

    r = http.patch(f"/v1/users/{sam_id}", json={"password": "a-brand-new-password"}, headers=_bearer(admin))
    assert r.status_code == 200, r.text
    assert http.get("/v1/me", headers=_bearer(sam)).status_code == 401
    assert _login(http, email).status_code == 401
    sam = _login(http, email, "a-brand-new-password").json()["token"]

    assert http.patch(f"/v1/users/{sam_id}", json={"active": False}, headers=_bearer(admin)).status_code == 200
    assert http.get("/v1/me", headers=_bearer(sam)).status_code == 401
    refused = _login(http, email, "a-brand-new-password")
    assert refused.status_code == 401 and "deactivated" in refused.json()["message"]


def test_admins_cannot_lock_themselves_out_and_bad_input_names_the_field(settings, http):
    admin = session_token(settings, "admin", "Root")
    me_id = http.get("/v1/users", headers=_bearer(admin)).json()[0]["id"]
    r = http.patch(f"/v1/users/{me_id}", json={"active": False}, headers=_bearer(admin))
    assert r.status_code == 409
    r = http.post("/v1/users", json={"email": "not-an-email", "role": "pilot", "password": "x"}, headers=_bearer(admin))
    assert r.status_code == 422
    assert set(r.json()["fields"]) == {"email", "role", "password"}


# --- signed webhooks -----------------------------------------------------------------------------

SECRET = "whsec-test-secret"


def _post_signed(http, body: bytes, headers: dict[str, str]):
    return http.post("/v1/webhooks/leads", content=body, headers={"Content-Type": "application/json", **headers})


def test_a_signed_lead_webhook_is_accepted_once(settings, http, worker):
    settings.webhook_secret_leads = SECRET
    body = json.dumps(lead_payload()).encode()
    headers = webhooks.signed_headers(SECRET, body)
    r = _post_signed(http, body, headers)
    assert r.status_code == 202, r.text
    replay = _post_signed(http, body, headers)
    assert replay.status_code == 409 and "replay" in replay.json()["message"]
    with session_scope(settings) as session:
        [lead] = session.scalars(select(Lead)).all()
        assert lead.email == "jane.doe@acme-software.com"
    worker.run_until_idle()  # the webhook lead goes through the same graph to the review queue
    assert http.get("/v1/review-items", headers=_bearer(token(settings, "closer"))).json()["total"] == 1


def test_webhook_refusals(settings, http):
    settings.webhook_secret_leads = SECRET
    body = json.dumps(lead_payload()).encode()
    now = int(time.time())
    stale = webhooks.signed_headers(SECRET, body, now - settings.webhook_tolerance_seconds - 5)
    assert _post_signed(http, body, stale).status_code == 401
    future = webhooks.signed_headers(SECRET, body, now + settings.webhook_tolerance_seconds + 5)
    assert _post_signed(http, body, future).status_code == 401
    wrong_secret = webhooks.signed_headers("another-secret", body)
    assert _post_signed(http, body, wrong_secret).status_code == 401
    tampered = webhooks.signed_headers(SECRET, body)
    r = _post_signed(http, body.replace(b"Jane", b"Eve"), tampered)
    assert r.status_code == 401 and "does not match" in r.json()["message"]
    assert _post_signed(http, body, {}).status_code == 401
    # A correctly signed but invalid body is a validation error naming the field, and records nothing.
    bad = json.dumps(lead_payload(email="not-an-email")).encode()
    r = _post_signed(http, bad, webhooks.signed_headers(SECRET, bad))
    assert r.status_code == 422 and "email" in r.json()["fields"]
    with session_scope(settings) as session:
        assert session.scalars(select(Lead)).all() == []


def test_an_unconfigured_webhook_says_how_to_configure_it(settings, http):
    body = json.dumps(lead_payload()).encode()
    r = _post_signed(http, body, webhooks.signed_headers("anything", body))
    assert r.status_code == 503 and "REVLOOP_WEBHOOK_SECRET_LEADS" in r.json()["message"]


def test_webhooks_sign_cli_produces_headers_the_api_accepts(settings, subprocess_env, http, tmp_path):
    settings.webhook_secret_leads = SECRET
    path = tmp_path / "lead.json"
    path.write_bytes(json.dumps(lead_payload()).encode())
    done = run(["webhooks", "sign", "leads", str(path)], {**subprocess_env, "REVLOOP_WEBHOOK_SECRET_LEADS": SECRET})
    assert done.returncode == 0, done.stderr
    headers = dict(line.split(": ", 1) for line in done.stdout.strip().splitlines())
    assert set(headers) == {webhooks.TIMESTAMP_HEADER, webhooks.SIGNATURE_HEADER}
    assert _post_signed(http, path.read_bytes(), headers).status_code == 202


def test_the_review_app_passes_the_browsers_address_so_one_browser_cannot_slow_another(
    settings, live_server, login_clock
):
    from review.client import ApiError, login

    settings.login_max_failures = 2
    email = user(settings, "closer")
    for _ in range(2):
        with pytest.raises(ApiError) as wrong:
            login(live_server.url, email, "wrong-password", client_ip="203.0.113.66")
        assert wrong.value.status_code == 401
    with pytest.raises(ApiError) as slowed:
        login(live_server.url, email, PASSWORD, client_ip="203.0.113.66")
    assert slowed.value.status_code == 429
    assert login(live_server.url, email, PASSWORD, client_ip="198.51.100.7").token.startswith("rs_")
