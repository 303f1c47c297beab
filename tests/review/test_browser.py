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

import httpx
import pytest

from api.cli import _review_app_command
from review.outbox import outbox_files
from tests.conftest import free_port
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
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the review app did not start")
            time.sleep(0.3)
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
    settings.undo_seconds = 4
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
    body = page.get_by_label("Body", exact=True)
    body.wait_for()
    assert "Best regards" in body.input_value()
    body.fill(body.input_value().replace("Best regards", "Warm regards from the browser"))
    body.press("Control+Enter")  # Streamlit applies a text area on Ctrl+Enter (or blur)
    page.get_by_text("+Warm regards from the browser").first.wait_for()  # the diff preview

    page.get_by_role("button", name="Approve and send").click()
    page.get_by_text(re.compile(r"^Approved\. Sending in")).wait_for()  # the undo countdown
    assert outbox_files(settings) == []  # nothing leaves during the undo window
    page.get_by_text(re.compile(r"^Sent at \d")).wait_for(timeout=30_000)  # the banner refreshes itself

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

    page.goto(f"{review_app}/users")  # managers have no Users page: after sign-in they get the queue
    _sign_in(page, email)
    page.get_by_role("heading", name="Review queue").wait_for()
    assert page.url == f"{review_app}/"
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
