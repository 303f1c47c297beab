from sqlalchemy import func, select

from core.db import session_scope
from core.models import ApiToken, AuditEvent, Contact, Job, Lead
from tests.factories import auth, lead_payload, token


def _count(settings, model) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_post_lead_answers_202_and_queues_the_graph(settings, http):
    r = http.post("/v1/leads", json=lead_payload(), headers=auth(settings, "integration"))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["duplicate"] is False and body["status"] == "new"
    assert r.headers["location"] == f"/v1/leads/{body['id']}"
    with session_scope(settings) as session:
        lead = session.get(Lead, body["id"])
        assert lead.email == "jane.doe@acme-software.com"
        assert lead.contact is not None and lead.contact.email == lead.email
        assert lead.account is not None and lead.account.domain == "acme-software.com"
        job = session.scalars(select(Job)).one()
        payload = {"lead_id": lead.id, "thread_id": lead.thread_id}  # the thread: the worker locks it without a look-up
        assert (job.kind, job.payload, job.status) == ("lead.run", payload, "queued")
        actions = session.scalars(select(AuditEvent.action)).all()
        assert "lead.created" in actions


def test_same_idempotency_key_or_email_returns_the_existing_lead(settings, http):
    headers = auth(settings, "integration") | {"Idempotency-Key": "form-123"}
    first = http.post("/v1/leads", json=lead_payload(), headers=headers).json()
    again_key = http.post("/v1/leads", json=lead_payload(email="other@acme-software.com"), headers=headers)
    again_email = http.post(
        "/v1/leads", json=lead_payload(email="  JANE.DOE@Acme-Software.com "), headers=auth(settings, "integration")
    )
    assert again_key.status_code == again_email.status_code == 202
    assert again_key.json() == {"id": first["id"], "status": "new", "duplicate": True}
    assert again_email.json()["id"] == first["id"] and again_email.json()["duplicate"] is True
    assert _count(settings, Lead) == 1
    assert _count(settings, Job) == 1
    with session_scope(settings) as session:
        assert session.get(Lead, first["id"]).duplicate_count == 2


def test_invalid_input_names_each_field_and_writes_nothing(settings, http):
    headers = auth(settings, "integration")
    cases = {
        "missing email": ({k: v for k, v in lead_payload().items() if k != "email"}, {"email"}),
        "malformed email": (lead_payload(email="not-an-email"), {"email"}),
        "wrong types": (
            lead_payload(first_name=123, consent={"email": "yes", "call": True}),
            {"first_name", "consent.email"},
        ),
        "unknown field": (lead_payload(emial="x@y.com"), {"emial"}),
        "missing consent": ({k: v for k, v in lead_payload().items() if k != "consent"}, {"consent"}),
        "bad phone": (lead_payload(phone="call me maybe"), {"phone"}),
    }
    for name, (payload, fields) in cases.items():
        r = http.post("/v1/leads", json=payload, headers=headers)
        assert r.status_code == 422, name
        body = r.json()
        assert body["error"] == "validation_error"
        assert fields <= set(body["fields"]), (name, body["fields"])
        for field in fields:
            assert field in body["message"]
    r = http.post("/v1/leads", content=b"{not json", headers=headers | {"Content-Type": "application/json"})
    assert r.status_code == 422
    assert _count(settings, Lead) == 0
    assert _count(settings, Contact) == 0
    assert _count(settings, Job) == 0


def test_oversized_body_is_refused_with_413(settings, http):
    headers = auth(settings, "integration")
    big = lead_payload(message="x" * (settings.max_request_bytes + 10))
    r = http.post("/v1/leads", json=big, headers=headers)
    assert r.status_code == 413
    assert "exceeds" in r.json()["message"]
    # Chunked upload without Content-Length is cut off as well.
    chunks = iter([b'{"email": "a@b.co", "message": "', b"y" * (settings.max_request_bytes + 10), b'"}'])
    r = http.post("/v1/leads", content=chunks, headers=headers | {"Content-Type": "application/json"})
    assert r.status_code == 413
    assert _count(settings, Lead) == 0


def test_a_long_message_within_the_field_limit_is_refused_by_name(settings, http):
    r = http.post("/v1/leads", json=lead_payload(message="z" * 10_001), headers=auth(settings, "integration"))
    assert r.status_code == 422 and "message" in r.json()["fields"]


def test_auth_no_token_401_bad_token_401_wrong_role_403(settings, http):
    r = http.post("/v1/leads", json=lead_payload())
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = http.post("/v1/leads", json=lead_payload(), headers={"Authorization": "Bearer rl_nope"})
    assert r.status_code == 401
    r = http.post("/v1/leads", json=lead_payload(), headers=auth(settings, "evaluator"))
    assert r.status_code == 403 and "evaluator" in r.json()["message"]
    r = http.get("/v1/review-items", headers=auth(settings, "integration"))
    assert r.status_code == 403
    r = http.get("/v1/review-items")
    assert r.status_code == 401
    assert _count(settings, Lead) == 0


def test_tokens_are_stored_hashed(settings, http):
    plaintext = token(settings, "manager", "hash-check")
    with session_scope(settings) as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "hash-check")).one()
        assert row.token_hash != plaintext and plaintext not in row.token_hash and len(row.token_hash) == 64
        assert plaintext.startswith(row.prefix)
    me = http.get("/v1/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert me.json() == {"name": "hash-check", "role": "manager", "email": None, "kind": "token"}


def test_get_lead_and_unknown_lead(settings, http):
    headers = auth(settings, "integration")
    lead_id = http.post("/v1/leads", json=lead_payload(), headers=headers).json()["id"]
    closer = auth(settings, "closer")
    assert http.get(f"/v1/leads/{lead_id}", headers=closer).json()["email"] == "jane.doe@acme-software.com"
    r = http.get("/v1/leads/999999", headers=closer)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
