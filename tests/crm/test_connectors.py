"""CRM connectors against local servers speaking HubSpot's and Pipedrive's documented shapes: import with paging and
rejections, incremental sync by cursor, conflicts, 429 with Retry-After, 5xx, 401, write-back once (also when the
CRM's answer to a create was lost), the agent tools reading through the configured backend, and health."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from sqlalchemy import func, select, update

from core.db import session_scope
from core.models import AuditEvent, Contact, CrmLink, CrmSyncState, CrmWriteback, Deal, Job, ReviewItem, utcnow
from crm import writeback as crm_writeback
from crm.connectors import backend
from crm.connectors.base import CrmAuthError
from crm.sync import sync_crm
from tests.crm_servers import FakeHubSpot, FakePipedrive
from tests.factories import auth, pending_item, queued_item
from tools.agent_tools import LEAD_GRAPH_SCOPES, LEAD_GRAPH_TOOLS
from tools.registry import Toolbox, ToolContext


def _hubspot(settings, hs, **changes):
    settings.hubspot_access_token, settings.hubspot_base_url, settings.crm_page_size = hs.token, hs.url, 2
    for k, v in changes.items():
        setattr(settings, k, v)
    return settings


def _pipedrive(settings, pd, **changes):
    settings.pipedrive_api_token, settings.pipedrive_base_url, settings.crm_page_size = pd.token, pd.url, 2
    for k, v in changes.items():
        setattr(settings, k, v)
    return settings


def _local(settings, model, source, object_type, remote_id):
    with session_scope(settings) as session:
        local_id = session.scalar(
            select(CrmLink.local_id).where(
                CrmLink.source == source, CrmLink.object_type == object_type, CrmLink.remote_id == str(remote_id)
            )
        )
        row = session.get(model, local_id)
        session.expunge(row)
        return row


def _writeback_jobs_due_now(settings) -> None:
    with session_scope(settings) as session:
        session.execute(update(Job).where(Job.kind == "crm.writeback").values(run_after=utcnow()))


def test_hubspot_import_pages_retries_rejects_then_syncs_only_changes_and_shows_conflicts(settings, subprocess_env):
    with FakeHubSpot() as hs:
        acme = hs.put(
            "companies",
            {"name": "Acme Software", "domain": "acme-software.com", "industry": "Software", "numberofemployees": 250},
        )
        globex = hs.put("companies", {"name": "Globex", "domain": "globex.example"})
        jane = hs.put(
            "contacts",
            {
                "email": "Jane.Doe@acme-software.com",
                "firstname": "Jane",
                "jobtitle": "VP Sales",
                "associatedcompanyid": acme,
            },
        )
        bob = hs.put("contacts", {"email": "bob@globex.example", "firstname": "Bob", "associatedcompanyid": globex})
        nomail = hs.put("contacts", {"firstname": "No", "lastname": "Address"})
        deal = hs.put("deals", {"dealname": "Acme rollout", "amount": "12000", "dealstage": "qualifiedtobuy"})
        hs.associate("deals", deal, "companies", acme)
        hs.associate("deals", deal, "contacts", jane)
        odd = hs.put("deals", {"dealname": "Other pipeline", "dealstage": "custom-stage-9"})
        hs.fail("POST", "/contacts/search", 429, headers={"Retry-After": "1"})
        hs.fail("POST", "/companies/search", 503)  # a read: retried after a short backoff
        sleeps: list[float] = []
        seen: list[tuple[str, int]] = []

        report = sync_crm(
            _hubspot(settings, hs), "hubspot", sleep=sleeps.append, progress=lambda t, n: seen.append((t, n))
        )

        assert report.mode == "initial" and report.error is None
        assert report.created == {"account": 2, "contact": 2, "deal": 1}
        assert {(r["object"], r["remote_id"]) for r in report.rejected} == {("contact", nomail), ("deal", odd)}
        reasons = " ".join(r["reason"] for r in report.rejected)
        assert "no email address" in reasons and "'custom-stage-9' is not in REVLOOP_HUBSPOT_STAGE_MAP" in reasons
        assert 1.0 in sleeps and len(sleeps) == 2  # the Retry-After was honoured; the 503 was retried once
        assert seen[:2] == [("account", 2), ("contact", 2)]  # progress per page of 2
        assert any((body or {}).get("after") for _, _, _, body in hs.calls("POST", "/contacts/search"))  # paged
        contact = _local(settings, Contact, "hubspot", "contact", jane)
        assert contact.email == "jane.doe@acme-software.com" and contact.title == "VP Sales"
        account_id = contact.account_id
        row = _local(settings, Deal, "hubspot", "deal", deal)
        assert (row.stage, row.amount, row.account_id, row.contact_id) == ("engaging", 12000, account_id, contact.id)

        # Nothing changed: the second run reads from the cursor and changes nothing.
        again = sync_crm(settings, "hubspot")
        assert again.mode == "incremental" and again.created == {} and again.updated == {}
        searches = hs.calls("POST", "/contacts/search")
        assert searches[-1][3]["filterGroups"][0]["filters"][0]["operator"] == "GTE"

        # Both sides edit: Jane's title in revloop (now) and in HubSpot (earlier) -> revloop's later edit stays;
        # Bob's first name in revloop (now) and in HubSpot (an hour later) -> HubSpot's; Jane's phone only in HubSpot.
        with session_scope(settings) as session:
            for c in session.scalars(select(Contact)):
                if c.email.startswith("jane"):
                    c.title = "Chief Revenue Officer"
                else:
                    c.first_name = "Robert"
        hs.put("contacts", {"jobtitle": "CRO", "phone": "+1 415 555 0199"}, jane)
        hs.clock = utcnow() + dt.timedelta(hours=1)
        hs.put("contacts", {"firstname": "Bobby"}, bob)
        env = {
            **subprocess_env,
            "REVLOOP_HUBSPOT_ACCESS_TOKEN": hs.token,
            "REVLOOP_HUBSPOT_BASE_URL": hs.url,
        }
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "sync", "crm", "--from", "hubspot"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "hubspot incremental sync" in done.stdout and "conflicts 2" in done.stdout
        assert (
            "conflict contact" in done.stdout
            and "title: revloop 'Chief Revenue Officer', hubspot 'CRO'; kept revloop" in (done.stdout)
        )
        assert "first_name: revloop 'Robert', hubspot 'Bobby'; kept hubspot" in done.stdout
        jane_row = _local(settings, Contact, "hubspot", "contact", jane)
        assert (jane_row.title, jane_row.phone) == ("Chief Revenue Officer", "+1 415 555 0199")
        assert _local(settings, Contact, "hubspot", "contact", bob).first_name == "Bobby"
        with session_scope(settings) as session:
            assert session.scalar(select(func.count()).where(AuditEvent.action == "crm.sync_conflict")) == 2
            assert session.scalar(select(func.count()).select_from(Contact)) == 2  # re-runs never duplicate


def test_a_wrong_token_fails_clearly_and_health_shows_the_crm_down_then_its_sync_lag(settings, http):
    with FakeHubSpot() as hs:
        hs.put("contacts", {"email": "ann@example.com", "firstname": "Ann"})
        _hubspot(settings, hs, hubspot_access_token="pat-revoked", crm_backend="hubspot")
        with pytest.raises(CrmAuthError, match="REVLOOP_HUBSPOT_ACCESS_TOKEN"):
            sync_crm(settings, "hubspot")
        assert len(hs.requests) == 1  # a 401 is not retried
        manager = auth(settings, "manager")
        found = {i["name"]: i for i in http.get("/v1/health/integrations", headers=manager).json()["integrations"]}
        crm = found["crm"]
        assert crm["healthy"] is False and "refused the token (401)" in crm["detail"]
        assert "refused the token" in crm["sync"]["last_error"] and crm["sync"]["last_success_at"] is None

        settings.hubspot_access_token = hs.token
        sync_crm(settings, "hubspot")
        crm = {i["name"]: i for i in http.get("/v1/health/integrations", headers=manager).json()["integrations"]}["crm"]
        assert crm["healthy"] is True and crm["status"] == "ok", crm
        assert crm["sync"]["lag_seconds"] < 60 and crm["sync"]["last_error"] is not None  # the old error stays shown
        assert crm["sync"]["writebacks_failed"] == 0


def test_with_hubspot_configured_the_lead_graph_reads_it_and_the_sent_email_is_logged_once(settings, http, worker):
    with FakeHubSpot() as hs:
        acme = hs.put(
            "companies",
            {"name": "Acme Software", "domain": "acme-software.com", "industry": "Software", "numberofemployees": 250},
        )
        jane = hs.put(
            "contacts",
            {
                "email": "jane.doe@acme-software.com",
                "firstname": "Jane",
                "lastname": "Doe",
                "associatedcompanyid": acme,
            },
        )
        _hubspot(settings, hs, crm_backend="hubspot")
        sync_crm(settings, "hubspot")
        item = pending_item(settings, http, worker)

        # The agent tools read HubSpot: the contact by email, the company's history through its link.
        records = [e["record"] for e in item["brief"]["evidence"]]
        assert f"hubspot:contact:{jane}" in records and f"hubspot:company:{acme}" in records, records
        lookups = [b for _, _, _, b in hs.calls("POST", "/contacts/search") if b["filterGroups"]]
        assert lookups[-1]["filterGroups"][0]["filters"][0]["value"] == "jane.doe@acme-software.com"
        # A model calling the tools gets revloop's account id from the contact, and the history takes it.
        box = Toolbox("lead", LEAD_GRAPH_TOOLS, ToolContext(settings, crm=backend(settings)), scopes=LEAD_GRAPH_SCOPES)
        found = box.call("crm_find_contact", {"email": "jane.doe@acme-software.com"}).data
        assert found["record"] == f"hubspot:contact:{jane}" and found["account"]["remote_id"] == acme
        history = box.call("crm_account_history", {"account_id": found["account"]["id"]})
        assert history.ok and history.data["account"]["record"] == f"hubspot:company:{acme}", history.content

        # HubSpot creates the email engagement but the answer is lost (502): the retry finds it, creates none.
        hs.fail("POST", "/crm/v3/objects/emails", 502, after=True)
        r = http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer"))
        assert r.status_code == 200, r.text
        worker.run_until_idle()
        with session_scope(settings) as session:
            wb = session.scalars(select(CrmWriteback)).one()
            assert (wb.status, wb.attempts, wb.remote_id) == ("pending", 1, None) and "502" in wb.last_error
        _writeback_jobs_due_now(settings)
        worker.run_until_idle()
        [(email_id, email)] = hs.objects["emails"].items()
        assert email["properties"]["hs_email_subject"] == item["draft"]["subject"]
        assert hs.assoc[("emails", email_id, "contacts")] == [jane]
        assert len(hs.calls("POST", "/emails/search")) == 1  # the retry looked before creating
        with session_scope(settings) as session:
            wb = session.scalars(select(CrmWriteback)).one()
            assert (wb.status, wb.remote_id, wb.key) == ("done", email_id, f"hubspot:email:review_item:{item['id']}")
            wb_id = wb.id
        crm_writeback.run(settings, {"writeback_id": wb_id})  # a replayed job does nothing
        worker.run_until_idle()
        creates = [r for r in hs.requests if r[:2] == ("POST", "/crm/v3/objects/emails")]
        assert len(hs.objects["emails"]) == 1 and len(creates) == 1


def test_pipedrive_import_incremental_stage_and_activity_write_back_once(settings, http, worker):
    with FakePipedrive() as pd:
        org = pd.put("organizations", {"name": "Initech", "address_country": "US"})
        ann = pd.person("Ann Smith", "ann@initech.example", org, phone="+1 212 555 0101")
        pd.person("Ben Jones", "ben@initech.example", org)
        pd.person("Cy Nomail", None)
        deal = pd.put(
            "deals",
            {
                "title": "Initech licences",
                "value": 4800,
                "currency": "EUR",
                "status": "open",
                "stage_id": 2,
                "org_id": {"value": org, "name": "Initech"},
                "person_id": {"value": ann, "name": "Ann Smith"},
            },
        )
        _pipedrive(settings, pd, crm_backend="pipedrive")
        pd.fail("GET", "/persons", 429, headers={"Retry-After": "2"})
        pd.fail("GET", "/deals", 500)
        sleeps: list[float] = []
        report = sync_crm(settings, "pipedrive", sleep=sleeps.append)
        assert report.created == {"account": 1, "contact": 2, "deal": 1}
        assert [r["reason"] for r in report.rejected] == ["no email address"]
        assert 2.0 in sleeps and len(sleeps) == 2
        assert any(q.get("start") == ["2"] for _, _, q, _ in pd.calls("GET", "/persons"))  # the second page
        local_deal = _local(settings, Deal, "pipedrive", "deal", deal)
        assert (local_deal.stage, local_deal.amount, local_deal.currency) == ("engaging", 4800, "EUR")

        # Incremental: only what changed since the cursor, through /recents.
        pd.put("persons", {"phone": [{"label": "work", "value": "+1 212 555 0199", "primary": True}]}, ann)
        again = sync_crm(settings, "pipedrive")
        assert again.mode == "incremental" and again.updated == {"contact": 1}
        assert pd.calls("GET", "/recents")
        assert _local(settings, Contact, "pipedrive", "contact", ann).phone == "+1 212 555 0199"
        with pytest.raises(CrmAuthError, match="REVLOOP_PIPEDRIVE_API_TOKEN"):
            backend(settings.model_copy(update={"pipedrive_api_token": "wrong"})).ping()

        # A person moves the deal; the first PUT fails with 500 and the retry writes the stage once.
        pd.fail("PUT", f"/deals/{deal}", 500)
        r = http.post(
            f"/v1/deals/{local_deal.id}/stage", json={"stage": "qualified"}, headers=auth(settings, "manager")
        )
        assert r.status_code == 200, r.text
        worker.run_until_idle()
        _writeback_jobs_due_now(settings)
        worker.run_until_idle()
        assert pd.rows["deals"][deal]["stage_id"] == 3 and len(pd.calls("PUT", f"/deals/{deal}")) == 2

        # A sent email is logged as a done email activity on the person; a lost answer is not repeated.
        contact = _local(settings, Contact, "pipedrive", "contact", ann)
        item_id = queued_item(settings, contact_id=contact.id, status="sent")
        sent_at = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC)
        pd.fail("POST", "/activities", 503, after=True)
        with session_scope(settings) as session:
            item = session.get(ReviewItem, item_id)
            crm_writeback.queue_sent_email(session, settings, item, subject="Licences", body="Hi Ann", sent_at=sent_at)
            crm_writeback.queue_sent_email(session, settings, item, subject="Licences", body="Hi Ann", sent_at=sent_at)
        worker.run_until_idle()
        _writeback_jobs_due_now(settings)
        worker.run_until_idle()
        [activity] = pd.rows["activities"].values()
        assert (activity["type"], activity["person_id"], activity["done"]) == ("email", ann, 1)
        with session_scope(settings) as session:
            rows = session.scalars(select(CrmWriteback).order_by(CrmWriteback.id)).all()
            assert [(w.action, w.status) for w in rows] == [("deal_stage", "done"), ("log_email", "done")]
            assert rows[1].remote_id == str(activity["id"]) and rows[0].remote_id == str(deal)
            state = session.get(CrmSyncState, "pipedrive")
            assert state.last_success_at is not None and state.cursors["contact"]

        # An item without a contact record: the person is found by the address it was sent to; an address the CRM
        # does not know is skipped with the reason, not retried.
        for to in ("ben@initech.example", "nobody@elsewhere.example"):
            other = queued_item(settings, status="sent")
            with session_scope(settings) as session:
                item = session.get(ReviewItem, other)
                crm_writeback.queue_sent_email(
                    session, settings, item, subject="Hello", body="Hi", sent_at=sent_at, to=to
                )
        worker.run_until_idle()
        ben = next(p["id"] for p in pd.rows["persons"].values() if p["name"] == "Ben Jones")
        assert [a["person_id"] for a in pd.rows["activities"].values()] == [ann, ben]
        with session_scope(settings) as session:
            last = session.scalars(select(CrmWriteback).order_by(CrmWriteback.id.desc())).first()
            assert last.status == "skipped" and "nobody@elsewhere.example" in last.last_error


def test_the_worker_syncs_periodically_and_one_sync_of_a_source_runs_at_a_time(settings, worker):
    from core.locks import named_lock
    from crm import sync as crm_sync
    from crm.connectors.base import CrmError

    with FakePipedrive() as pd:
        pd.put("organizations", {"name": "Initech", "address_country": "US"})
        _pipedrive(settings, pd, crm_backend="pipedrive", crm_sync_minutes=5)
        with named_lock(settings, "crm-sync:pipedrive", wait_seconds=1):
            with pytest.raises(CrmError, match="another pipedrive sync is running"):
                sync_crm(settings, "pipedrive")
        earlier = utcnow() - dt.timedelta(minutes=12)
        crm_sync.schedule(settings, at=earlier)
        crm_sync.schedule(settings, at=earlier)  # a restart schedules the same slot: one job
        with session_scope(settings) as session:
            job = session.scalars(select(Job).where(Job.kind == "crm.sync")).one()
            assert earlier < job.run_after <= earlier + dt.timedelta(minutes=5)  # due: the worker runs it
        worker.run_until_idle()
        with session_scope(settings) as session:
            state = session.get(CrmSyncState, "pipedrive")
            assert state.last_success_at is not None and state.last_report["created"] == {"account": 1}
            queued = session.scalars(select(Job).where(Job.kind == "crm.sync", Job.status == "queued")).all()
            assert len(queued) == 1 and queued[0].run_after > utcnow()  # the next slot
