"""The Streamlit review app (AppTest), signed in with a password, driving the real API over a socket."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.db import session_scope
from core.models import ReviewItem
from review.outbox import outbox_files
from tests.factories import PASSWORD, lead_payload, token, user

APP = str(Path(__file__).resolve().parents[2] / "review" / "app.py")


def _app(live_server) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    at.text_input(key="login_api_url").input(live_server.url)
    return at


def _sign_in(at: AppTest, email: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login_email").input(email)
    at.text_input(key="login_password").input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    at.run()
    assert not at.exception, at.exception
    return at


def _signed_in(live_server, settings, role: str = "closer", name: str | None = None) -> AppTest:
    at = _sign_in(_app(live_server), user(settings, role, name))
    assert "token" in at.session_state
    return at


def _queue_a_lead(settings, http, worker, **overrides) -> None:
    r = http.post(
        "/v1/leads",
        json=lead_payload(**overrides),
        headers={"Authorization": f"Bearer {token(settings, 'integration')}"},
    )
    assert r.status_code == 202
    worker.run_until_idle()


def _api(at: AppTest) -> dict[str, str]:
    return {"Authorization": f"Bearer {at.session_state['token']}"}


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _open(at: AppTest, url_path: str) -> AppTest:
    """Go to a page as its sidebar link does (/kpis runs review/ui/kpis.py)."""
    at.switch_page(f"ui/{url_path}.py")
    at.run()
    assert not at.exception, at.exception
    return at


# --- sign-in -------------------------------------------------------------------------------------


def test_login_with_a_wrong_password_fails_and_the_right_one_signs_in(settings, live_server):
    email = user(settings, "closer", "Casey Jordan")
    at = _sign_in(_app(live_server), email, "not-the-password")
    assert "token" not in at.session_state
    assert any("wrong email or password" in e.value for e in at.error)
    at = _sign_in(at, email)
    assert at.session_state["me"]["name"] == "Casey Jordan"
    assert at.session_state["token"].startswith("rs_")
    assert at.title[0].value == "Review queue"
    assert any("Signed in as **Casey Jordan** (closer)" in m.value for m in at.markdown)


def test_sign_out_ends_the_session_on_the_server(settings, live_server, http):
    at = _signed_in(live_server, settings)
    headers = _api(at)
    assert http.get("/v1/me", headers=headers).status_code == 200
    at.button(key="logout").click()
    at.run()
    assert "token" not in at.session_state
    assert http.get("/v1/me", headers=headers).status_code == 401


def test_an_expired_session_sends_the_user_back_to_sign_in(settings, live_server):
    from core.models import UserSession

    at = _signed_in(live_server, settings)
    with session_scope(settings) as session:
        for row in session.query(UserSession).all():
            row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    at.button(key="refresh").click()
    at.run()
    assert "token" not in at.session_state
    assert any("session expired" in w.value for w in at.warning)
    assert any(b.label == "Sign in" for b in at.button)


# --- queue and item page -------------------------------------------------------------------------


def test_queue_shows_brief_and_draft_then_edit_and_approve(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "closer", "Casey Jordan")
    at.radio(key="view").set_value("Everything")
    at.run()
    assert any("1 item(s) pending · Everything" in c.value for c in at.caption)
    item_id = at.selectbox(key="selected").value
    api_item = http.get(f"/v1/review-items/{item_id}", headers=_api(at)).json()
    assert api_item["first_opened_at"] is not None  # opening the item started the review clock
    assert any(m.value.startswith(f"**Score {api_item['brief']['score']}** · grade") for m in at.markdown)
    assert any("Jane Doe, VP Sales at Acme Software" in t.value for t in at.text)  # the summary, as plain text
    assert any(m.value.startswith("**Subject:** Acme Software") for m in at.markdown)  # read-only until Edit
    assert not [t for t in at.text_area if t.key == f"body_{item_id}"]
    at.button(key=f"edit_{item_id}").click()
    at.run()
    assert at.text_input(key=f"subject_{item_id}").value.startswith("Acme Software")
    body = at.text_area(key=f"body_{item_id}")
    body.input(body.value.replace("Best regards", "Warm regards"))
    at.run()
    assert any("+Warm regards" in c.value for c in at.code)  # the diff is shown before approving
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert not at.exception, at.exception
    assert any(f"Approved item #{item_id} (edited)" in s.value for s in at.success)
    assert at.selectbox(key="status_filter").value == "pending"  # the decision leaves the filters alone

    worker.run_until_idle()
    [eml] = outbox_files(settings)
    assert "Warm regards" in eml.read_text()
    at.selectbox(key="status_filter").select("sent")
    at.run()
    assert any(f"#{item_id} · email · sent" in s.value for s in at.subheader)
    assert any("+Warm regards" in c.value for c in at.code)  # the stored edit diff is shown
    timeline = at.dataframe[-1].value
    kinds = list(timeline["what"])
    assert kinds[0] == "captured" and kinds.index("review_item") < kinds.index("decision") < kinds.index("message")
    assert any("Approved with edits" in d for d in timeline["detail"])
    assert any("sent to jane.doe@acme-software.com" in d for d in timeline["detail"])


def test_approval_waits_in_the_undo_window_and_undo_cancels_the_send(settings, live_server, http, worker):
    settings.undo_seconds = 60
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "manager")
    at.radio(key="view").set_value("Everything")
    at.run()
    item_id = at.selectbox(key="selected").value
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert any("unless you undo it" in s.value for s in at.success)
    assert at.selectbox(key="status_filter").value == "pending"  # the filter stays; Undo stays in reach
    assert any(f"Approved #{item_id}. Sending in" in w.value for w in at.warning)
    worker.run_until_idle()
    assert outbox_files(settings) == []  # still inside the window: nothing sent
    at.button(key=f"undo_{item_id}").click()
    at.run()
    assert not at.exception, at.exception
    assert any("undone: nothing was sent" in s.value for s in at.success)
    assert http.get(f"/v1/review-items/{item_id}", headers=_api(at)).json()["status"] == "pending"
    assert at.selectbox(key="selected").value == item_id  # the restored item is open again
    with session_scope(settings) as session:  # the send job is gone, so it cannot fire later
        from core.models import Job

        assert session.query(Job).filter(Job.kind == "review.resume").count() == 0
    worker.run_until_idle()
    assert outbox_files(settings) == []


def test_reject_needs_a_reason_and_can_ask_for_a_redraft(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "closer")
    at.radio(key="view").set_value("Everything")
    at.run()
    item_id = at.selectbox(key="selected").value
    at.button(key=f"start_reject_{item_id}").click()
    at.run()
    at.button(key=f"reject_{item_id}").click()
    at.run()
    assert any("needs a reason" in e.value for e in at.error)
    at.text_input(key=f"reason_{item_id}").input("Too pushy for a nurture lead")
    assert at.checkbox(key=f"redraft_{item_id}").value  # a redraft is asked for unless unticked
    at.selectbox(key=f"redraft_template_{item_id}").select("first_touch_nurture")
    at.button(key=f"reject_{item_id}").click()
    at.run()
    assert any(f"Rejected item #{item_id}. A new draft will appear" in s.value for s in at.success)
    worker.run_until_idle()
    assert outbox_files(settings) == []
    at.button(key="refresh").click()
    at.run()
    new_id = at.selectbox(key="selected").value
    assert new_id != item_id
    assert any(f"redraft of #{item_id}" in m.value for m in at.markdown)
    assert any("Too pushy for a nurture lead" in i.value for i in at.info)
    assert any(m.value == "**Subject:** Thanks for getting in touch, Jane" for m in at.markdown)


def test_evaluators_read_the_queue_but_get_no_decision_buttons(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "evaluator")
    _open(at, "queue")
    at.radio(key="view").set_value("Everything")
    at.run()
    item_id = at.selectbox(key="selected").value
    assert not [b for b in at.button if b.key in (f"approve_{item_id}", f"reject_{item_id}")]
    assert any("closers and managers decide" in c.value for c in at.caption)
    with session_scope(settings) as session:
        assert session.get(ReviewItem, item_id).first_opened_at is None  # reading is not reviewing


def test_closers_take_items_snooze_them_and_see_them_in_my_queue(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "closer", "Robin Lee")
    assert any("Nothing assigned to you" in i.value for i in at.info)  # My queue is the default view
    at.radio(key="view").set_value("Everything")
    at.run()
    item_id = at.selectbox(key="selected").value
    _button(at, "Take it").click()
    at.run()
    assert any(f"#{item_id} is yours" in s.value for s in at.success)
    at.radio(key="view").set_value("My queue")
    at.run()
    assert at.selectbox(key="selected").value == item_id
    assert at.dataframe[0].value["assignee"].tolist() == ["Robin Lee"]

    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date()
    at.date_input(key=f"snooze_day_{item_id}").set_value(tomorrow)
    at.button(key=f"snooze_{item_id}").click()
    at.run()
    assert any("snoozed until" in s.value for s in at.success)
    assert any("Nothing assigned to you" in i.value for i in at.info)  # hidden while snoozed
    at.checkbox(key="snoozed_filter").check()
    at.run()
    assert at.selectbox(key="selected").value == item_id


def test_bulk_approve_needs_a_confirmation_and_skips_flagged_items(settings, live_server, http, worker):
    for n in range(3):
        _queue_a_lead(settings, http, worker, email=f"buyer{n}@acme-software.com", first_name=f"Buyer{n}")
    with session_scope(settings) as session:
        items = session.query(ReviewItem).order_by(ReviewItem.id).all()
        for item in items:
            item.grade, item.queue = "B", "main"
        items[2].guard_flags = ["ungrounded number '30%'"]
        ids = [i.id for i in items]
    at = _signed_in(live_server, settings, "manager")
    at.radio(key="view").set_value("Team queue")
    at.run()
    offered = at.multiselect(key="bulk_ids")
    assert len(offered.options) == 2  # the flagged item is not offered
    offered.select(ids[0]).select(ids[1])
    at.run()
    at.button(key="bulk_start").click()
    at.run()
    assert any("Approve and send 2 draft(s) exactly as written" in w.value for w in at.warning)
    worker.run_until_idle()
    assert outbox_files(settings) == []  # nothing before the confirmation
    at.button(key="bulk_confirm_yes").click()
    at.run()
    assert any("Approved 2 item(s)" in s.value for s in at.success)
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 2
    with session_scope(settings) as session:
        assert session.get(ReviewItem, ids[2]).status == "pending"


# --- other pages ---------------------------------------------------------------------------------


def test_closers_only_get_the_queue(settings, live_server):
    at = _signed_in(live_server, settings, "closer")
    assert at.radio(key="view")  # the queue's view switcher...
    assert at.title[0].value == "Review queue"
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # ...but no other page
        at.switch_page("ui/kpis.py")


def test_kpi_page_shows_the_numbers_and_charts(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    approver = _signed_in(live_server, settings, "closer", "Casey Jordan")
    approver.radio(key="view").set_value("Everything")
    approver.run()
    item_id = approver.selectbox(key="selected").value
    approver.button(key=f"approve_{item_id}").click()
    approver.run()
    worker.run_until_idle()

    at = _signed_in(live_server, settings, "manager")
    _open(at, "kpis")
    assert not at.exception, at.exception
    assert at.title[0].value == "KPIs"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Next action inside SLA"] == "100%"
    assert metrics["Leads captured"] == "1"
    assert metrics["Median time to first touch"].endswith(" min")
    assert any("Reviews per closer" in s.value for s in at.subheader)
    reviewers = next(d.value for d in at.dataframe if "reviewer" in d.value.columns)
    assert reviewers["reviewer"].tolist() == ["closer:Casey Jordan"]
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")


def test_admin_creates_a_user_who_can_then_sign_in(settings, live_server):
    at = _signed_in(live_server, settings, "admin")
    _open(at, "users")
    assert at.title[0].value == "Users"
    at.text_input(key="new_user_email").input("dana@revloop.test")
    at.text_input(key="new_user_name").input("Dana Closer")
    at.text_input(key="new_user_password").input("short")
    _button(at, "Create user").click()
    at.run()
    assert any("Not created" in e.value and "password" in e.value for e in at.error)
    at.text_input(key="new_user_email").input("dana@revloop.test")
    at.text_input(key="new_user_name").input("Dana Closer")
    at.text_input(key="new_user_password").input("a-long-enough-password")
    _button(at, "Create user").click()
    at.run()
    assert any("Created closer Dana Closer" in s.value for s in at.success)
    dana = _sign_in(_app(live_server), "dana@revloop.test", "a-long-enough-password")
    assert dana.session_state["me"]["role"] == "closer"


def test_audit_page_filters_by_actor_and_item(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    closer = _signed_in(live_server, settings, "closer", "Casey Jordan")
    closer.radio(key="view").set_value("Everything")
    closer.run()
    item_id = closer.selectbox(key="selected").value
    closer.button(key=f"start_reject_{item_id}").click()
    closer.run()
    closer.text_input(key=f"reason_{item_id}").input("Not a fit")
    closer.button(key=f"reject_{item_id}").click()
    closer.run()

    at = _signed_in(live_server, settings, "admin")
    _open(at, "audit")
    assert at.title[0].value == "Audit"
    at.text_input(key="audit_actor").input("closer:Casey Jordan")
    at.run()
    events = at.dataframe[0].value
    assert set(events["actor"]) == {"closer:Casey Jordan"}
    assert "review_item.rejected" in set(events["action"])
    at.text_input(key="audit_actor").input("")
    at.selectbox(key="audit_entity_type").select("review_item")
    at.text_input(key="audit_entity_id").input(str(item_id))
    at.run()
    assert set(at.dataframe[0].value["entity"]) == {f"review_item {item_id}"}


@pytest.mark.parametrize("role", ["closer", "evaluator"])
def test_admin_pages_are_not_offered_to_other_roles(settings, live_server, role):
    at = _signed_in(live_server, settings, role)
    for page in ("users", "audit"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"ui/{page}.py")


PAGE_URLS = {
    "Review queue": "queue",
    "Deals": "deals",
    "Weekly review": "weekly",
    "KPIs": "kpis",
    "Cash": "cash",
    "Templates": "templates",
    "Sales team": "team",
    "ICP rubric": "icp",
    "Evals": "evals",
    "Notifications": "notifications",
    "Integration health": "health",
    "Users": "users",
    "Audit": "audit",
}
ROLE_PAGES = {
    "closer": {"Review queue", "Deals", "Notifications"},
    "manager": {
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
    },
    "evaluator": {"Review queue", "Evals", "ICP rubric", "Notifications"},
    "admin": set(PAGE_URLS),
}


@pytest.mark.parametrize("role", list(ROLE_PAGES))
def test_each_role_gets_exactly_its_pages(settings, live_server, role):
    from review.ui.pages import PAGES

    assert {p.title: p.url_path for p in PAGES} == PAGE_URLS  # so every page the app has is checked below
    at = _signed_in(live_server, settings, role)
    # the default page, at the app's root URL: evaluators cannot act on the queue and land on Evals
    assert at.title[0].value == ("Evals" if role == "evaluator" else "Review queue")
    for title, url_path in PAGE_URLS.items():
        if title in ROLE_PAGES[role]:
            assert _open(at, url_path).title[0].value == title
        else:  # st.navigation serves only the pages it was given
            with pytest.raises(ValueError, match="Could not find a navigation page"):
                at.switch_page(f"ui/{url_path}.py")


@pytest.mark.parametrize(("role", "lands_on"), [("admin", "Users"), ("closer", "Review queue")])
def test_a_page_url_opens_after_sign_in_only_for_roles_that_have_the_page(settings, live_server, role, lands_on):
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("ui/users.py")  # what opening /users asks for: a new session, so sign-in comes first
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "revloop review"
    at.text_input(key="login_api_url").input(live_server.url)
    _sign_in(at, user(settings, role))
    assert at.title[0].value == lands_on


# --- pages kept from before: ICP and models ------------------------------------------------------


def test_icp_page_validates_backtests_and_publishes(settings, live_server, http):
    from crm.imports import import_crm

    root = Path(__file__).resolve().parents[2]
    with session_scope(settings) as session:
        import_crm(session, root.parent / "shared" / "datasets" / "maven-crm-sales-opportunities", "maven")
    at = _signed_in(live_server, settings, "manager", "Morgan Demo")
    _open(at, "icp")
    assert at.title[0].value == "ICP rubric"
    assert "default-2026.12" in at.caption[0].value
    assert at.text_area(key="icp_content").value.startswith("# revloop ICP rubric")

    at.text_area(key="icp_content").input(
        "version: x\ncriteria:\n  - {id: a, label: A, kind: present, field: lead.fax, weight: 1}\n"
        "grades: {A: 75, B: 50, C: 30}\n"
    )
    at.button(key="icp_validate").click()
    at.run()
    assert any("criterion 'a': unknown field 'lead.fax'" in e.value for e in at.error)

    maven_rubric = (root / "scoring" / "rubrics" / "examples" / "maven-sector-size.yaml").read_text()
    at.text_area(key="icp_content").input(maven_rubric)
    at.selectbox(key="icp_source").select("maven")
    at.button(key="icp_run_backtest").click()
    at.run()
    assert not at.exception, at.exception
    assert any("Backtest on 4984 closed deals (maven)" in s.value for s in at.subheader)
    assert [m.label for m in at.metric][:2] == ["AUC maven-sector-size-1", "AUC default-2026.12 (published)"]
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the win-rate chart is drawn

    at.button(key="icp_save").click()
    at.run()
    at.button(key="icp_publish").click()
    at.run()
    assert any("Published maven-sector-size-1" in s.value for s in at.success)
    assert "maven-sector-size-1" in at.caption[0].value  # the page shows the new state without Refresh
    assert http.get("/v1/icp/rubrics/active", headers=_api(at)).json()["version"] == "maven-sector-size-1"


def test_brief_shows_the_model_and_managers_promote_a_challenger(settings, live_server, http, worker):
    from tests.factories import trained_models

    first, second = trained_models(settings)
    _queue_a_lead(settings, http, worker, source="referral")
    closer = _signed_in(live_server, settings, "closer")
    closer.radio(key="view").set_value("Everything")
    closer.run()
    assert any(
        m.value.startswith("**Model**") and "likely to close" in m.value and "For: source = referral" in m.value
        for m in closer.markdown
    )

    at = _signed_in(live_server, settings, "manager")
    _open(at, "icp")
    assert any("Outcome models" in s.value for s in at.subheader)
    # The champion's calibration and lift charts, from GET /v1/scoring/models/{version}/charts.
    assert at.selectbox(key="charts_version").value == first
    assert len(at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")) == 2
    assert any(m.value.startswith("**Lift by decile**") for m in at.markdown)
    assert list(at.dataframe[1].value["decile"]) == list(range(1, 11))
    assert at.selectbox(key="promote_version").value == second
    at.button(key="promote").click()
    at.run()
    assert not at.exception, at.exception
    assert any(f"Promoted {second}: it is now the champion" in s.value for s in at.success)  # a confirmation
    assert "champion" in at.dataframe[0].value.set_index("version").loc[second, "status"]  # and the new state
    models = http.get("/v1/scoring/models", headers=_api(at)).json()
    assert {m["version"]: m["status"] for m in models} == {first: "retired", second: "champion"}


def test_item_page_shows_llm_usage_and_blocks_flagged_drafts_until_checked(settings, live_server, http, worker, llm):
    import json

    llm.add(
        {"content": "ok"},
        {
            "content": json.dumps(
                {"summary": "s", "opening_line": "Save 30% today!", "pain_points": [], "injection_suspected": False}
            )
        },
    )
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "closer")
    at.radio(key="view").set_value("Everything")
    at.run()
    item_id = at.selectbox(key="selected").value
    assert any("LLM scripted-model: 2 call(s), 300 tokens" in c.value for c in at.caption)
    assert any("Grounding guard" in e.value and "a number ('30%')" in e.value for e in at.error)  # in words
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert any("Not approved" in e.value and "acknowledge" in e.value for e in at.error)
    at.checkbox(key=f"ack_{item_id}").check()
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert any(f"Approved item #{item_id}" in s.value for s in at.success)


def test_an_edit_with_unsupported_facts_asks_for_each_one_and_an_over_cap_discount_names_the_field(
    settings, live_server, http, worker
):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, settings, "closer")
    at.radio(key="view").set_value("Everything")
    at.run()
    item_id = at.selectbox(key="selected").value
    at.button(key=f"edit_{item_id}").click()
    at.run()
    body = at.text_area(key=f"body_{item_id}")
    greeting, _, rest = body.value.partition("\n\n")
    edit = "Good news: {} for Acme Software. Our CEO Jane Smith would like to join; reach her on +1 415 555 0199."

    body.input(f"{greeting}\n\n{edit.format('50 % off')}\n\n{rest}")
    at.run()
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert not at.exception, at.exception
    assert any("Not approved: the body offers a discount above the cap" in e.value for e in at.error)

    at.text_area(key=f"body_{item_id}").input(f"{greeting}\n\n{edit.format('10 % off')}\n\n{rest}")
    at.run()
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert not at.exception, at.exception
    boxes = [c for c in at.checkbox if c.label.startswith("I checked: ")]
    assert [c.label for c in boxes] == ["I checked: +1 415 555 0199", "I checked: 10 % off", "I checked: Jane Smith"]
    assert any("no record or the approved template supports" in w.value for w in at.warning)
    boxes[0].check()
    boxes[2].check()
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert not any(f"Approved item #{item_id}" in s.value for s in at.success)  # 10 % off is not checked yet
    assert any("tick each fact once you have checked it (10 % off)" in e.value for e in at.error)  # says why
    assert http.get(f"/v1/review-items/{item_id}", headers=_api(at)).json()["status"] == "pending"
    next(c for c in at.checkbox if c.label == "I checked: 10 % off").check()
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert any(f"Approved item #{item_id} (edited)" in s.value for s in at.success)
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 1
