"""`revloop serve --workers N` and `revloop up` run as a user runs them (subprocesses on free ports): up prints one
banner with every address and where the logs go, and the services' output goes to var/log/*.log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

REVLOOP = [sys.executable, "-m", "api.cli"]


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env["REVLOOP_VAR_DIR"] = str(tmp_path / "var")
    return env


def _wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds:.0f} s")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(stat.parent.name))
        except OSError:
            continue
    return found


def test_up_help_shows_the_port_flags():
    out = " ".join(
        subprocess.run(REVLOOP + ["up", "--help"], capture_output=True, text=True, timeout=60).stdout.split()
    )
    assert "--api-port" in out and "REVLOOP_API_PORT, else 8000" in out
    assert "--app-port" in out and "REVLOOP_REVIEW_APP_PORT, else 8501" in out
    assert "var/log" in out


def test_serve_with_two_workers_answers_from_two_processes(tmp_path):
    env = _clean_env(tmp_path)
    subprocess.run(REVLOOP + ["db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(REVLOOP + ["serve", "--workers", "2", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        _wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200, 90, "serve answered")
        _wait_for(lambda: len(_children(proc.pid)) >= 2, 30, "two API worker processes ran")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert text.count("Started server process") >= 2, text


def test_up_on_given_ports_prints_one_banner_and_sends_service_output_to_log_files(tmp_path):
    api_port, app_port = free_port(), free_port()
    env = _clean_env(tmp_path)
    proc = subprocess.Popen(
        REVLOOP + ["up", "--api-port", str(api_port), "--app-port", str(app_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    lines: list[str] = []
    logs = tmp_path / "var" / "log"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        banner = "".join(lines)
        assert "Press Ctrl-C to stop." in banner, banner
        assert f"API         http://127.0.0.1:{api_port}\n" in banner
        assert f"http://127.0.0.1:{api_port}/docs" in banner and f"http://127.0.0.1:{api_port}/redoc" in banner
        assert f"review app  http://127.0.0.1:{app_port}\n" in banner
        assert f"logs        {logs}/  (api.log, worker.log, review-app.log)" in banner
        assert "demo closer" in banner and "sign-in: " in banner
        # One banner: nothing from uvicorn, the worker or Streamlit reaches the terminal.
        assert "INFO" not in banner and "Uvicorn" not in banner and "Streamlit" not in banner, banner
        assert banner.count("revloop is running") == 1

        assert httpx.get(f"http://127.0.0.1:{api_port}/v1/health").status_code == 200
        _wait_for(lambda: httpx.get(f"http://127.0.0.1:{app_port}/_stcore/health").status_code == 200, 60, "app up")
        _wait_for(lambda: '"GET /v1/health HTTP/1.1" 200' in (logs / "api.log").read_text(), 10, "access logged")
        assert f"http://127.0.0.1:{api_port}" in (logs / "api.log").read_text()
        _wait_for(lambda: "worker started" in (logs / "worker.log").read_text(), 60, "worker logged its start")
        assert str(app_port) in (logs / "review-app.log").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert "stopped." in rest and "INFO" not in rest, rest
