"""The Streamlit review app (AppTest), driving the real API over a socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.factories import lead_payload, token
from tools.mail import outbox_files

APP = str(Path(__file__).resolve().parents[2] / "review" / "app.py")


def _signed_in(live_server, tok: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    at.text_input(key="login_api_url").input(live_server.url)
    at.text_input(key="login_token").input(tok)
    next(b for b in at.button if b.label == "Sign in").click()
    at.run()
    assert not at.exception, at.exception
    return at


def _queue_a_lead(settings, http, worker, **overrides) -> None:
    r = http.post(
        "/v1/leads",
        json=lead_payload(**overrides),
        headers={"Authorization": f"Bearer {token(settings, 'integration')}"},
    )
    assert r.status_code == 202
    worker.run_until_idle()


def test_login_rejects_a_bad_token(settings, live_server):
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.text_input(key="login_api_url").input(live_server.url)
    at.text_input(key="login_token").input("rl_wrong")
    next(b for b in at.button if b.label == "Sign in").click()
    at.run()
    assert "token" not in at.session_state
    assert any("invalid or revoked token" in e.value for e in at.error)


def test_queue_shows_brief_and_draft_then_edit_and_approve(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, token(settings, "closer", "casey"))
    assert at.title[0].value == "Review queue"
    assert any("1 item(s) pending" in c.value for c in at.caption)
    item_id = at.selectbox(key="selected").value
    api_item = http.get(
        f"/v1/review-items/{item_id}", headers={"Authorization": f"Bearer {at.session_state['token']}"}
    ).json()
    assert at.metric[0].value == str(api_item["brief"]["score"])
    assert any("Jane Doe, VP Sales at Acme Software" in m.value for m in at.markdown)
    assert at.text_input(key=f"subject_{item_id}").value.startswith("Acme Software")
    body = at.text_area(key=f"body_{item_id}")
    body.input(body.value.replace("Best regards", "Warm regards"))
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert not at.exception, at.exception
    assert any(f"Approved item #{item_id} (edited)" in s.value for s in at.success)
    assert any("0 item(s) pending" in c.value for c in at.caption)

    worker.run_until_idle()
    [eml] = outbox_files(settings)
    assert "Warm regards" in eml.read_text()
    at.selectbox(key="status_filter").select("sent")
    at.run()
    assert any(f"#{item_id} · email · sent" in s.value for s in at.subheader)
    assert any("+Warm regards" in c.value for c in at.code)  # the edit diff is shown


def test_reject_needs_a_reason(settings, live_server, http, worker):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, token(settings, "closer"))
    item_id = at.selectbox(key="selected").value
    at.button(key=f"reject_{item_id}").click()
    at.run()
    assert any("needs a reason" in e.value for e in at.error)
    at.text_input(key=f"reason_{item_id}").input("Wrong contact for this account")
    at.button(key=f"reject_{item_id}").click()
    at.run()
    assert any(f"Rejected item #{item_id}" in s.value for s in at.success)
    worker.run_until_idle()
    assert outbox_files(settings) == []


@pytest.mark.parametrize("role", ["evaluator"])
def test_a_role_that_may_not_decide_sees_the_api_refusal(settings, live_server, http, worker, role):
    _queue_a_lead(settings, http, worker)
    at = _signed_in(live_server, token(settings, role))
    item_id = at.selectbox(key="selected").value
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert any("Not approved" in e.value and "may not" in e.value for e in at.error)
    assert outbox_files(settings) == []


def test_icp_page_validates_backtests_and_publishes(settings, live_server, http):
    from core.db import session_scope
    from tools.imports import import_crm

    root = Path(__file__).resolve().parents[2]
    with session_scope(settings) as session:
        import_crm(session, root.parent / "shared" / "datasets" / "maven-crm-sales-opportunities", "maven")
    at = _signed_in(live_server, token(settings, "manager", "morgan"))
    at.radio(key="page").set_value("ICP rubric")
    at.run()
    assert at.title[0].value == "ICP rubric"
    assert "default-2026.11" in at.caption[0].value
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
    assert [m.label for m in at.metric][:2] == ["AUC maven-sector-size-1", "AUC default-2026.11 (published)"]
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the win-rate chart is drawn

    at.button(key="icp_save").click()
    at.run()
    at.button(key="icp_publish").click()
    at.run()
    assert any("Published maven-sector-size-1" in s.value for s in at.success)
    manager = {"Authorization": f"Bearer {at.session_state['token']}"}
    assert http.get("/v1/icp/rubrics/active", headers=manager).json()["version"] == "maven-sector-size-1"


def test_closers_do_not_get_the_icp_page(settings, live_server):
    at = _signed_in(live_server, token(settings, "closer"))
    assert not at.radio  # a single page: no page switcher
    assert at.title[0].value == "Review queue"


def test_brief_shows_the_model_and_managers_promote_a_challenger(settings, live_server, http, worker):
    from tests.factories import trained_models

    first, second = trained_models(settings)
    _queue_a_lead(settings, http, worker, source="referral")
    closer = _signed_in(live_server, token(settings, "closer"))
    assert any(
        m.value.startswith("**Model**") and "likely to close" in m.value and "For: source = referral" in m.value
        for m in closer.markdown
    )

    at = _signed_in(live_server, token(settings, "manager"))
    at.radio(key="page").set_value("ICP rubric")
    at.run()
    assert any("Outcome models" in s.value for s in at.subheader)
    assert at.selectbox(key="promote_version").value == second
    at.button(key="promote").click()
    at.run()
    assert not at.exception, at.exception
    models = http.get("/v1/scoring/models", headers={"Authorization": f"Bearer {at.session_state['token']}"}).json()
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
    at = _signed_in(live_server, token(settings, "closer"))
    item_id = at.selectbox(key="selected").value
    assert any("LLM scripted-model: 2 call(s), 300 tokens" in c.value for c in at.caption)
    assert any("ungrounded number '30%'" in e.value for e in at.error)
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert any("Not approved" in e.value and "grounding flags" in e.value for e in at.error)
    at.checkbox(key=f"ack_{item_id}").check()
    at.button(key=f"approve_{item_id}").click()
    at.run()
    assert any(f"Approved item #{item_id}" in s.value for s in at.success)
