"""The closer's inbox in a real browser: 20 pending items cleared with the keyboard and clicks.

    .venv/bin/python bench/bench_inbox.py [--items 20] [--headful]

Starts `revloop serve`, `revloop worker` and `revloop review-app` as their own processes on a fresh SQLite
database in a temporary folder, posts the leads over HTTP, waits until the worker has drafted them, then drives
Debian's Chromium (Playwright, /usr/bin/chromium, 1440x900) as a closer: 12 approvals (key A), 4 edits then
approval (E, type, Ctrl+Enter, click Approve), 4 rejections with a redraft (X, type a reason, Enter). After
each decision the next item opens by itself; nothing else is pressed to get there.

Prints per decision kind: seconds from the decision's last key to the next item shown (heading and URL),
seconds per decision including the typing, interactions per decision, and the totals.
Goals: 20 items under 2 minutes, 1 interaction to reach the next item (the decision itself), decision -> next
item shown under 1 s. The browser test (tests/review/test_browser.py) runs the same flow and asserts what
landed; timings are only printed here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_speed_to_lead import free_port  # noqa: E402

CHROMIUM = os.environ.get("REVLOOP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1440, "height": 900}
EDIT_LINE = "PS: happy to set up a call this week."
REJECT_REASON = "Too generic: mention their team size"


def plan(items: int = 20) -> list[str]:
    """12 approve, 4 edit+approve, 4 reject (for 20), interleaved as a real queue would mix them."""
    edits = rejects = items // 5
    kinds = ["approve"] * (items - edits - rejects) + ["edit"] * edits + ["reject"] * rejects
    order = sorted(range(items), key=lambda i: (i * 7) % items)  # a fixed shuffle
    return [kinds[i] for i in order]


def leads(n: int) -> list[dict]:
    """Distinct companies and people (no duplicates at entry), each a web-form lead with an email."""
    out = []
    for i in range(n):
        company = f"Inbox Bench {i:02d} Ltd"
        out.append(
            {
                "email": f"buyer{i:02d}@inbox-bench-{i:02d}.com",
                "first_name": f"Buyer{i:02d}",
                "last_name": "Bench",
                "company": company,
                "title": "Head of Operations",
                "website": f"https://inbox-bench-{i:02d}.com",
                "message": "Could you send pricing for our team of 40? We are comparing tools this month.",
                "source": "web_form",
                "consent": {"email": True, "call": True},
                "custom": {},
            }
        )
    return out


@dataclass
class Decision:
    item_id: int
    kind: str
    interactions: int
    seconds: float  # from opening this item to the next item shown (typing included)
    next_shown: float  # from the decision's last key or click to the next item shown
    next_item: int | None


@dataclass
class Run:
    decisions: list[Decision] = field(default_factory=list)
    seconds: float = 0.0


def open_item_id(page) -> int | None:
    """The item the detail shows: its heading "#12 · email · pending"."""
    heading = page.locator("h3").filter(has_text=" · pending").first
    if heading.count() == 0:
        return None
    text = heading.inner_text().strip()
    return int(text.split(" ")[0].lstrip("#"))


def _wait_for_next(page, previous: int, timeout: float = 30.0) -> int | None:
    """Wait until the detail shows an item other than `previous` (or the list is empty) and the URL names it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = open_item_id(page)
        if shown is not None and shown != previous and f"item={shown}" in page.url:
            return shown
        if shown is None and page.get_by_text("Nothing here").count():
            return None
        page.wait_for_timeout(25)
    raise TimeoutError(f"no next item after #{previous} within {timeout} s (url {page.url})")


def clear_inbox(page, kinds: list[str]) -> Run:
    """Decide len(kinds) items in the order they open, each with the keyboard and clicks only."""
    run = Run()
    started = time.monotonic()
    for kind in kinds:
        item_id = open_item_id(page)
        assert item_id is not None, "no item is open"
        began = time.monotonic()
        if kind == "approve":
            page.keyboard.press("a")
            interactions = 1
        elif kind == "edit":
            page.keyboard.press("e")
            body = page.get_by_label("Body", exact=True)
            body.click()
            page.keyboard.press("Control+End")
            page.keyboard.type("\n" + EDIT_LINE)
            page.keyboard.press("Control+Enter")  # Streamlit applies a text area on Ctrl+Enter
            page.get_by_text("+" + EDIT_LINE).first.wait_for()  # the diff preview: the edit is in
            # this item's button (a rerun can leave a stale copy of it on the page for a moment)
            page.locator(f".st-key-approve_{item_id} button").first.click()
            interactions = 6  # E, click, Ctrl+End, type, Ctrl+Enter, click Approve
        else:
            page.keyboard.press("x")
            reason = page.get_by_label("Reason for rejecting")
            reason.click()
            page.keyboard.type(REJECT_REASON)
            page.keyboard.press("Enter")  # submits the reject form (redraft is ticked by default)
            interactions = 4  # X, click, type, Enter
        decided = time.monotonic()
        following = _wait_for_next(page, item_id)
        now = time.monotonic()
        run.decisions.append(Decision(item_id, kind, interactions, now - began, now - decided, following))
    run.seconds = time.monotonic() - started
    return run


def report(run: Run) -> None:
    print(f"{len(run.decisions)} decisions in {run.seconds:.1f} s ({run.seconds / len(run.decisions):.2f} s each)")
    print(f"{'decision':<10} {'n':>3} {'s/decision':>11} {'next shown p50':>15} {'max':>6} {'interactions':>13}")
    for kind in ("approve", "edit", "reject"):
        rows = [d for d in run.decisions if d.kind == kind]
        if rows:
            print(
                f"{kind:<10} {len(rows):>3} {statistics.mean(d.seconds for d in rows):>11.2f} "
                f"{statistics.median(d.next_shown for d in rows):>15.2f} {max(d.next_shown for d in rows):>6.2f} "
                f"{statistics.mean(d.interactions for d in rows):>13.1f}"
            )
    shown = [d.next_shown for d in run.decisions]
    print(
        f"decision -> next item shown: p50 {statistics.median(shown):.2f} s, max {max(shown):.2f} s (goal < 1 s); "
        f"interactions to reach the next item: 1 (the decision; goal 1); "
        f"total {run.seconds:.1f} s for {len(run.decisions)} (goal < 120 s)"
    )


def sign_in(page, app_url: str, email: str, password: str) -> None:
    page.goto(f"{app_url}/?view=all")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for()
    page.locator("h3").filter(has_text=" · pending").first.wait_for()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--headful", action="store_true", help="show the browser (needs a display)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from api.auth import create_token
    from core.db import dispose_engines, session_scope
    from core.migrate import upgrade
    from core.settings import Settings
    from core.users import create_user

    with tempfile.TemporaryDirectory(prefix="revloop-inbox-") as tmp:
        var = Path(tmp)
        settings = Settings(var_dir=var, undo_seconds=3)
        upgrade(settings)
        password = "inbox-bench-password"
        with session_scope(settings) as session:
            create_user(
                session, email="closer@inbox.bench", role="closer", password=password, name="Casey", actor="bench"
            )
            _, integration = create_token(session, role="integration", name="bench", actor="bench")
            _, manager = create_token(session, role="manager", name="bench-probe", actor="bench")
        dispose_engines()
        api_port, app_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
        env.update(
            REVLOOP_VAR_DIR=str(var),
            REVLOOP_UNDO_SECONDS="3",
            REVLOOP_API_PORT=str(api_port),
            REVLOOP_API_URL=f"http://127.0.0.1:{api_port}",
            REVLOOP_WORKER_POLL_SECONDS="0.2",
        )
        cli = [sys.executable, "-m", "api.cli"]
        from api.cli import _review_app_command

        procs = [
            subprocess.Popen([*cli, "serve"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL),
            subprocess.Popen([*cli, "worker"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL),
            subprocess.Popen(
                _review_app_command(app_port), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ),
        ]
        api_url, app_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{app_port}"
        try:
            _wait(f"{api_url}/healthz")
            _wait(f"{app_url}/_stcore/health")
            api = httpx.Client(base_url=api_url, timeout=30)
            for lead in leads(args.items):
                r = api.post("/v1/leads", json=lead, headers={"Authorization": f"Bearer {integration}"})
                r.raise_for_status()
            probe = {"Authorization": f"Bearer {manager}"}
            deadline = time.monotonic() + 120
            while api.get("/v1/review-items?status=pending", headers=probe).json()["total"] < args.items:
                if time.monotonic() > deadline:
                    raise SystemExit("the worker did not draft every lead within 120 s")
                time.sleep(0.5)
            with sync_playwright() as pw:
                flags = [a for a in CHROMIUM_ARGS if not (args.headful and a == "--headless")]
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(30_000)
                sign_in(page, app_url, "closer@inbox.bench", password)
                run = clear_inbox(page, plan(args.items))
                browser.close()
            report(run)
            time.sleep(4)  # the undo window passes: the approvals go out
            sent = len(list((var / "outbox").glob("*.eml")))
            approved = sum(1 for d in run.decisions if d.kind != "reject")
            print(f"outbox: {sent} message(s) for {approved} approval(s)")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=20)


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not come up")


if __name__ == "__main__":
    main()
