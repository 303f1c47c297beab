"""The `revloop` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from sqlalchemy import func, select

from api.auth import hash_token
from core.db import session_scope
from core.models import ApiToken, Job, Lead, ReviewItem
from tests.conftest import free_port

REVLOOP = [sys.executable, "-m", "api.cli"]


def run(args, env, **kw):
    return subprocess.run(REVLOOP + args, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_help_lists_every_command():
    out = run(["--help"], os.environ.copy()).stdout
    for command in ("up", "serve", "worker", "review-app", "db", "demo", "tokens", "users", "webhooks"):
        assert f" {command} " in out
    assert "upgrade" in run(["db", "--help"], os.environ.copy()).stdout
    assert "seed" in run(["demo", "--help"], os.environ.copy()).stdout
    assert "create" in run(["tokens", "--help"], os.environ.copy()).stdout


def test_tokens_create_prints_a_token_stored_only_as_a_hash(settings, subprocess_env):
    done = run(["tokens", "create", "--role", "manager", "--name", "morgan"], subprocess_env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("rl_") and "\n" not in token
    with session_scope(settings) as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "morgan")).one()
        assert row.role == "manager" and row.token_hash == hash_token(token)
    bad = run(["tokens", "create", "--role", "king", "--name", "x"], subprocess_env)
    assert bad.returncode == 2 and "role must be one of closer, manager" in bad.stderr


def test_demo_seed_fills_an_empty_database_once(settings, subprocess_env):
    first = run(["demo", "seed"], subprocess_env)
    assert first.returncode == 0, first.stderr
    assert "seeded 5 accounts, 3 deals, 5 leads" in first.stdout
    assert "closer" in first.stdout and "rl_" in first.stdout
    again = run(["demo", "seed"], subprocess_env)
    assert again.returncode == 2 and "already has data" in again.stderr
    worked = run(["worker", "--until-idle"], subprocess_env)
    assert worked.returncode == 0, worked.stderr
    with session_scope(settings) as session:
        ran = dict(session.execute(select(Job.kind, func.count()).where(Job.status == "done").group_by(Job.kind)).all())
        # the five lead graphs, and for each of the two A leads its closer's email and the team webhook (not set)
        assert ran == {"lead.run": 5, "notification.deliver": 4}
        assert f"ran {sum(ran.values())} job(s)" in worked.stdout
        grades = sorted(lead.grade for lead in session.scalars(select(Lead)))
        assert grades == ["A", "A", "B", "C", "D"]
        kinds = sorted(item.kind for item in session.scalars(select(ReviewItem).where(ReviewItem.lead_id.is_not(None))))
        assert kinds == ["call_task", "email", "email", "email", "email"]
    scanned = run(["collections", "scan"], subprocess_env)
    assert scanned.returncode == 0 and "drafted 1" in scanned.stdout
    with session_scope(settings) as session:
        [reminder] = session.scalars(select(ReviewItem).where(ReviewItem.thread_id.like("dunning-%"))).all()
        # the demo invoice is 10 days overdue (+7 step), one tone firmer: the customer paid its last invoice late
        assert reminder.draft["subject"] == "Action needed: invoice INV-DEMO-001 (USD 4,800.00) is 10 days overdue"


def test_up_migrates_seeds_serves_and_stops_on_ctrl_c(tmp_path):
    api_port, app_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(
        REVLOOP_VAR_DIR=str(tmp_path / "var"),
        REVLOOP_API_PORT=str(api_port),
        REVLOOP_REVIEW_APP_PORT=str(app_port),
        REVLOOP_WORKER_POLL_SECONDS="0.2",
    )
    proc = subprocess.Popen(
        REVLOOP + ["up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "Press Ctrl-C to stop." in text, text
        assert f"http://127.0.0.1:{api_port}" in text and f"http://127.0.0.1:{app_port}" in text
        sign_in = next(line.split("sign-in: ")[1].strip() for line in lines if "demo closer" in line)
        email, password = sign_in.split(" / ")
        login = httpx.post(f"http://127.0.0.1:{api_port}/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        # The worker drafts the five demo leads into the queue.
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        drafted = 0
        for _ in range(100):
            items = httpx.get(
                f"http://127.0.0.1:{api_port}/v1/review-items?status=pending&limit=200", headers=headers
            ).json()["items"]
            drafted = sum(1 for item in items if item["lead_id"] is not None)
            if drafted == 5:
                break
            time.sleep(0.2)
        assert drafted == 5
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{app_port}/_stcore/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError("review app did not come up")
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    assert (tmp_path / "var" / "revloop.db").exists()


def test_review_app_binds_loopback_unless_given_a_host(monkeypatch):
    """docs/deploy.md runs the review app in its own container or behind a proxy: `--host 0.0.0.0` makes it
    reachable from another machine; by default it listens on 127.0.0.1 only."""
    from typer.testing import CliRunner

    from api.cli import app as cli

    ran = []
    monkeypatch.setattr(os, "execv", lambda path, argv: ran.append(argv))
    for args in (["review-app", "--port", "8599"], ["review-app", "--port", "8599", "--host", "0.0.0.0"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    (default, everywhere) = ran
    assert default[default.index("--server.address") + 1] == "127.0.0.1"
    assert everywhere[everywhere.index("--server.address") + 1] == "0.0.0.0"
    assert everywhere[everywhere.index("--server.port") + 1] == "8599"
