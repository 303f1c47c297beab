"""Customer data and secrets on disk are the service user's only (0600 files, 0700 folders, whatever the
umask), and no banner or log line shows a password from a URL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from core.files import redact_url
from review.outbox import outbox_files
from tests.factories import auth, pending_item


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_urls_lose_their_passwords():
    assert redact_url("smtp://mailer:s3cret@mail.example:587?starttls=true") == (
        "smtp://mailer:***@mail.example:587?starttls=true"
    )
    assert redact_url("postgresql+psycopg://app:pw@db/revloop") == "postgresql+psycopg://app:***@db/revloop"
    assert redact_url("sqlite:///var/revloop.db") == "sqlite:///var/revloop.db"
    assert redact_url(None) == ""


def test_the_up_banner_shows_the_smtp_server_without_its_password(tmp_path):
    from api.cli.up import banner
    from core.settings import Settings

    text = banner(Settings(var_dir=tmp_path, smtp_url="smtp://mailer:s3cret@mail.example:587"))
    assert "smtp://mailer:***@mail.example:587" in text and "s3cret" not in text


def test_a_fresh_var_dir_is_private_under_a_permissive_umask(tmp_path):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(REVLOOP_VAR_DIR=str(var), REVLOOP_SMTP_URL="smtp://mailer:s3cret@127.0.0.1:1")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.umask(0o022); sys.argv=['revloop','db','upgrade']; from api.cli import main; main()",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert _mode(var) == 0o700 and _mode(var / "revloop.db") == 0o600


def test_files_written_under_a_permissive_umask_are_private(settings, http, worker):
    old = os.umask(0o022)  # as in a shell; the worker and the API run in this process here
    try:
        item = pending_item(settings, http, worker)
        assert http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer")).status_code == 200
        worker.run_until_idle()
    finally:
        os.umask(old)
    [eml] = outbox_files(settings)
    assert _mode(eml) == 0o600 and _mode(eml.parent) == 0o700
    if settings.is_sqlite:
        checkpoints = settings.resolved_checkpoint_url.split("///", 1)[1]
        database = settings.resolved_database_url.split("///", 1)[1]
        assert _mode(checkpoints) == 0o600 and _mode(database) == 0o600
