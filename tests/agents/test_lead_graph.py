from sqlalchemy import func, select

from core.db import session_scope
from core.models import AuditEvent, Lead, ReviewItem
from core.schemas import LeadCreate
from crm.capture import capture_lead
from tests.factories import account, lead_payload


def _capture(settings, **overrides) -> int:
    with session_scope(settings) as session:
        lead, _ = capture_lead(session, LeadCreate.model_validate(lead_payload(**overrides)), actor="test")
        return lead.id


def _items(settings, lead_id):
    with session_scope(settings) as session:
        return session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead_id)).all()


def test_lead_graph_scores_briefs_drafts_and_stops_at_review(settings, worker):
    account(settings)  # Acme Software: software, 250 employees
    lead_id = _capture(settings)
    assert worker.run_until_idle() == 1
    [item] = _items(settings, lead_id)
    assert item.status == "pending" and item.kind == "email"
    brief = item.brief
    assert brief["grade"] == "A" and 75 <= brief["score"] <= 100
    assert brief["next_action"] == "call_now"
    assert brief["model"] is None and "rubric_only" in brief["flags"]
    assert brief["fallback"] == "rubric only: the outcome model needs at least 100 closed deals (0 so far)"
    assert "Scored by the rubric alone" in brief["summary"]
    assert "Jane Doe, VP Sales at Acme Software (Software, 250 employees)" in brief["summary"]
    met = {c["id"] for c in brief["criteria"] if c["met"]}
    sources = {c["id"]: c["source"] for c in brief["criteria"]}
    with session_scope(settings) as session:
        account_id = session.get(Lead, lead_id).account_id
    assert sources["industry"] == f"account:{account_id}" and sources["decision_maker"] == f"lead:{lead_id}"
    assert {"industry", "company_size", "decision_maker", "buying_intent", "company_email"} <= met
    draft = item.draft
    assert draft["to"] == "jane.doe@acme-software.com"
    assert draft["body"].startswith("Hi Jane,")
    assert "Acme Software" in draft["subject"] and settings.sender_name in draft["body"]
    assert "unsubscribe" in draft["body"].lower()
    assert "reaching out to Revloop Demo Co about a demo and pricing." in draft["body"]
    assert "this quarter" not in draft["body"]  # the lead's words stay out of the draft
    # The graph is paused at the review node, checkpointed under the lead's thread.
    with worker_graph_state(worker, settings, lead_id) as state:
        assert state.next == ("review",)
        assert [i.id for i in state.interrupts] == [item.dedupe_key]
    with session_scope(settings) as session:
        lead = session.get(Lead, lead_id)
        assert (lead.status, lead.grade, lead.score) == ("in_review", "A", brief["score"])
        assert "lead.scored" in session.scalars(select(AuditEvent.action)).all()


class worker_graph_state:
    """Read a lead thread's checkpoint through a fresh runner (a new graph instance)."""

    def __init__(self, worker, settings, lead_id):
        self.worker, self.settings, self.lead_id = worker, settings, lead_id

    def __enter__(self):
        from agents.runtime import LeadGraphRunner, open_checkpointer

        self._cm = open_checkpointer(self.settings)
        runner = LeadGraphRunner(self.settings, self._cm.__enter__())
        with session_scope(self.settings) as session:
            thread_id = session.get(Lead, self.lead_id).thread_id
        return runner.graph.get_state({"configurable": {"thread_id": thread_id}})

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


def test_weak_lead_gets_a_polite_decline_and_flags(settings, worker):
    lead_id = _capture(
        settings,
        email="kid@gmail.com",
        company=None,
        title=None,
        phone=None,
        website=None,
        message="I am a student writing my thesis, can you help?",
    )
    worker.run_until_idle()
    [item] = _items(settings, lead_id)
    assert item.brief["grade"] == "D"
    assert item.brief["next_action"] == "polite_decline"
    assert {"missing_company", "missing_title", "free_mail_domain", "disqualified:not_a_buyer"} <= set(
        item.brief["flags"]
    )
    assert item.template == "polite_decline"
    # The lead's own words never reach the draft.
    assert "thesis" not in item.draft["body"]


def test_no_email_consent_gets_no_email_draft_but_a_call_task(settings, worker):
    lead_id = _capture(settings, consent={"email": False, "call": True})
    worker.run_until_idle()
    [item] = _items(settings, lead_id)
    assert item.kind == "call_task" and item.draft["kind"] == "call_task"
    assert "do not send email" in item.draft["body"].lower()
    assert item.guard_flags == []  # an internal call note, not a message to the customer


def test_no_consent_at_all_queues_nothing(settings, worker):
    lead_id = _capture(settings, consent={"email": False, "call": False})
    worker.run_until_idle()
    assert _items(settings, lead_id) == []
    with session_scope(settings) as session:
        assert session.get(Lead, lead_id).status == "no_contact_allowed"


def test_opt_out_is_permanent_across_a_later_lead(settings, worker):
    from core.models import Contact

    first = _capture(settings, consent={"email": False, "call": False})
    with session_scope(settings) as session:
        session.delete(session.get(Lead, first))  # the lead goes, the contact's opt-out stays
    _capture(settings, consent={"email": True, "call": True})
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact)).one()
        assert contact.do_not_email and contact.do_not_call
    worker.run_until_idle()
    with session_scope(settings) as session:
        assert session.scalar(select(func.count(ReviewItem.id))) == 0


def test_rerunning_the_job_never_queues_a_second_item(settings, worker):
    from agents.runtime import LeadGraphRunner, open_checkpointer

    lead_id = _capture(settings)
    worker.run_until_idle()
    with open_checkpointer(settings) as cp:
        LeadGraphRunner(settings, cp).run_lead(lead_id)  # e.g. a job retried after a lost ack
    assert len(_items(settings, lead_id)) == 1
