"""One real-browser test: Debian Chromium driven by Playwright (no browser download).

A closer signs in, opens an item, edits the draft, approves it, watches the undo countdown and sees
the message sent once the window has passed. API, worker and Streamlit all run for real.
Needs /usr/bin/chromium (`make test` installs Debian's chromium and chromium-driver).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from api.cli import _review_app_command
from review.outbox import outbox_files
from tests.conftest import free_port, wait_until_healthy
from tests.factories import PASSWORD, lead_payload, token, user

CHROMIUM = os.environ.get("REVLOOP_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def review_app(live_server, subprocess_env):
    port = free_port()
    env = {**subprocess_env, "REVLOOP_API_URL": live_server.url}
    proc = subprocess.Popen(
        _review_app_command(port),  # exactly what `revloop review-app` runs
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/_stcore/health", proc, "the review app")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def background_worker(settings, worker):
    settings.worker_poll_seconds = 0.2
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    yield worker
    worker.stop()
    thread.join(timeout=20)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def test_closer_signs_in_edits_approves_and_sees_it_sent_after_the_undo_window(
    settings, http, review_app, background_worker, browser
):
    settings.undo_seconds = 10  # long enough to see the countdown on a loaded machine
    email = user(settings, "closer", "Casey Jordan")
    r = http.post(
        "/v1/leads", json=lead_payload(), headers={"Authorization": f"Bearer {token(settings, 'integration')}"}
    )
    assert r.status_code == 202
    deadline = time.monotonic() + 30
    while _pending_items(http, settings) == 0:
        assert time.monotonic() < deadline, "the worker did not draft the lead"
        time.sleep(0.3)

    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(review_app)
    _sign_in(page, email)

    page.get_by_text("Everything", exact=True).click()  # the lead sits in whichever queue routing chose
    page.get_by_role("button", name="Edit draft").click()  # the draft is read-only until Edit (E)
    body = page.get_by_label("Body", exact=True)
    body.wait_for()
    assert "Best regards" in body.input_value()
    body.fill(body.input_value().replace("Best regards", "Warm regards from the browser"))
    body.press("Control+Enter")  # Streamlit applies a text area on Ctrl+Enter (or blur)
    page.get_by_text("+Warm regards from the browser").first.wait_for()  # the diff preview
    page.get_by_role("heading", name=re.compile(r"^#\d+ · email")).click()  # focus leaves the text box
    page.keyboard.press("a")  # while editing, A does not approve: a stray letter must not send the unedited draft
    page.wait_for_timeout(1500)
    assert page.get_by_text(re.compile(r"^Approved #\d+")).count() == 0
    assert page.get_by_label("Body", exact=True).is_visible()

    page.get_by_role("button", name="Approve and send").click()
    page.get_by_text(re.compile(r"^Approved #\d+\. Sending in")).wait_for()  # the undo countdown
    assert outbox_files(settings) == []  # nothing leaves during the undo window
    page.get_by_text(re.compile(r"^#\d+ sent to jane\.doe@")).wait_for(timeout=30_000)  # the banner refreshes itself

    [eml] = outbox_files(settings)
    text = eml.read_text()
    assert "Warm regards from the browser" in text and "To: jane.doe@acme-software.com" in text


def test_pages_have_urls_that_open_after_sign_in_when_the_role_has_them(settings, review_app, browser):
    email = user(settings, "manager", "Morgan Demo")
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{review_app}/kpis")  # a bookmark: a new session, so sign-in first, then the page asked for
    _sign_in(page, email)
    page.get_by_role("heading", name="KPIs").wait_for()
    assert page.url == f"{review_app}/kpis"
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    labels = [text.splitlines()[-1] for text in links.all_inner_texts()]  # each label follows its icon's name
    assert labels == [
        "Review queue",
        "Deals",
        "Weekly review",
        "KPIs",
        "Cash",
        "Templates",
        "Sales team",
        "ICP rubric",
        "Evals",
        "Notifications",
        "Integration health",
    ]
    links.filter(has_text="Cash").click()
    page.get_by_role("heading", name="Cash").wait_for()
    assert page.url == f"{review_app}/cash"

    page.goto(f"{review_app}/users")  # managers have no Users page: they get the queue (still signed in: cookie)
    page.get_by_role("heading", name="Review queue").wait_for()
    assert urlsplit(page.url).path == "/"
    assert page.get_by_role("heading", name="Users").count() == 0
    assert page.get_by_text("Page not found").count() == 0


def test_opening_an_item_with_markdown_and_html_from_a_lead_and_a_model_requests_nothing_from_other_hosts(
    settings, http, worker, review_app, browser
):
    """Lead text and model output with image/link Markdown and an <img> tag: shown as the characters they are,
    and the page fetches nothing from any host but the app's own (the attacker's pixel is never requested)."""
    from tests.review.test_untrusted_text import HTML, IMAGE, PAYLOAD, plant_untrusted

    email = user(settings, "closer", "Casey Jordan")
    r = http.post(
        "/v1/leads",
        json=lead_payload(message=f"Please read this: {PAYLOAD}"),
        headers={"Authorization": f"Bearer {token(settings, 'integration')}"},
    )
    assert r.status_code == 202
    worker.run_until_idle()
    items = http.get(
        "/v1/review-items?status=pending", headers={"Authorization": f"Bearer {token(settings, 'manager')}"}
    ).json()["items"]
    assert len(items) == 1
    plant_untrusted(settings, items[0]["id"])  # brief summary (research notes), flags, evidence, draft, reason

    page = browser.new_page(viewport={"width": 1400, "height": 5000})  # tall: nothing is below the fold
    page.set_default_timeout(30_000)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(review_app)
    _sign_in(page, email)
    page.get_by_text("Everything", exact=True).click()
    page.get_by_text("Research notes:").first.wait_for()
    page.get_by_text("Grounding guard").first.wait_for()
    page.wait_for_timeout(2000)  # time for any image, font or link preload to be requested

    own = urlsplit(review_app).netloc
    elsewhere = [u for u in requests if urlsplit(u).scheme in ("http", "https") and urlsplit(u).netloc != own]
    assert elsewhere == [], elsewhere
    assert any(urlsplit(u).netloc == own for u in requests)  # the recording worked
    assert page.locator("img[src*='attacker']").count() == 0
    assert page.locator("a[href*='attacker']").count() == 0  # not even a link to click
    shown = page.evaluate("() => document.body.innerText").replace("\u2060", "")  # md()'s invisible link breaks
    assert shown.count(IMAGE) >= 4 and shown.count(HTML) >= 4  # summary, flags, guard, reason: as written


def _sign_in(page, email: str) -> None:
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for()


def _pending_items(http, settings) -> int:
    headers = {"Authorization": f"Bearer {token(settings, 'manager', 'browser-test-probe')}"}
    return http.get("/v1/review-items?status=pending", headers=headers).json()["total"]


def _queue_leads(settings, http, payloads: list[dict]) -> None:
    headers = {"Authorization": f"Bearer {token(settings, 'integration')}"}
    for payload in payloads:
        assert http.post("/v1/leads", json=payload, headers=headers).status_code == 202
    deadline = time.monotonic() + 180
    while _pending_items(http, settings) < len(payloads):
        assert time.monotonic() < deadline, "the worker did not draft every lead"
        time.sleep(0.3)


@pytest.mark.timeout(600)
def test_a_closer_clears_twenty_items_with_the_keyboard_and_clicks_and_nothing_else_is_sent(
    settings, http, review_app, background_worker, browser
):
    """12 approvals (A), 4 edits then approval (E, type, Ctrl+Enter, click), 4 rejections with a redraft (X, type,
    Enter); after each the next item opens by itself. Every decision is checked through the API, and the outbox
    holds exactly the 16 approved emails. bench/bench_inbox.py runs the same flow and prints the timings."""
    from bench.bench_inbox import EDIT_LINE, REJECT_REASON, clear_inbox, leads, plan, sign_in

    settings.undo_seconds = 2
    email = user(settings, "closer", "Casey Jordan")
    _queue_leads(settings, http, leads(20))
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    sign_in(page, review_app, email, PASSWORD)

    started = time.monotonic()
    run = clear_inbox(page, plan(20))
    print(f"20 decisions in {time.monotonic() - started:.1f} s")  # the figure is the bench's job, not an assertion
    assert [d.kind for d in run.decisions] == plan(20)
    assert len({d.item_id for d in run.decisions}) == 20  # each decision on a different item, none skipped
    for before, after in zip(run.decisions, run.decisions[1:], strict=False):
        assert before.next_item == after.item_id  # the item that opened by itself is the one decided next

    headers = {"Authorization": f"Bearer {token(settings, 'manager', 'browser-test-check')}"}
    deadline = time.monotonic() + 60
    while True:
        items = {d.item_id: http.get(f"/v1/review-items/{d.item_id}", headers=headers).json() for d in run.decisions}
        if all(i["status"] != "approved" for i in items.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for decision in run.decisions:
        item = items[decision.item_id]
        made = item["decision"]
        assert made["actor"] == "closer:Casey Jordan"
        if decision.kind == "reject":
            assert item["status"] == "rejected" and made["action"] == "reject"
            assert made["reason"] == REJECT_REASON and made["redraft"] is True
        else:
            assert item["status"] == "sent", item
            assert made["action"] == "approve" and made["edited"] is (decision.kind == "edit")
            assert (EDIT_LINE in made["final_body"]) is (decision.kind == "edit")
    files = outbox_files(settings)
    assert len(files) == 16  # the 16 approvals, nothing else
    assert sum(EDIT_LINE in f.read_text() for f in files) == 4
    redrafts = http.get("/v1/review-items?status=pending&limit=200", headers=headers).json()["items"]
    rejected = {d.item_id for d in run.decisions if d.kind == "reject"}
    assert {i["redraft_of"] for i in redrafts} <= rejected  # what is left: the redrafts, waiting for a person


def test_a_reload_keeps_the_session_and_an_item_link_opens_that_item_even_after_sign_in(
    settings, http, review_app, background_worker, browser
):
    from bench.bench_inbox import leads

    email = user(settings, "closer", "Casey Jordan")
    _queue_leads(settings, http, leads(2))
    headers = {"Authorization": f"Bearer {token(settings, 'manager', 'browser-test-check')}"}
    ids = sorted(i["id"] for i in http.get("/v1/review-items?status=pending", headers=headers).json()["items"])
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(review_app)
    _sign_in(page, email)
    [cookie] = [c for c in context.cookies() if c["name"] == "revloop_session"]
    assert cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()

    page.goto(f"{review_app}/?view=all&item={ids[-1]}")  # a notification's deep link, in a new page load
    page.get_by_role("heading", name=re.compile(rf"^#{ids[-1]} · ")).wait_for()
    assert page.get_by_role("button", name="Sign in").count() == 0  # the cookie kept the session
    page.reload()
    page.get_by_role("heading", name=re.compile(rf"^#{ids[-1]} · ")).wait_for()  # F5: same user, same item
    assert f"item={ids[-1]}" in page.url

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    page.wait_for_timeout(500)
    assert [c for c in context.cookies() if c["name"] == "revloop_session"] == []  # sign-out clears it
    page.goto(f"{review_app}/?view=all&item={ids[0]}")
    _sign_in(page, email)  # signed out: the link asks for sign-in first, then opens its item
    page.get_by_role("heading", name=re.compile(rf"^#{ids[0]} · ")).wait_for()
    context.close()
