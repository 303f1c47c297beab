from sqlalchemy import select

from core.db import session_scope
from core.models import AuditEvent
from tests.factories import auth, trained_models


def test_models_are_listed_and_only_managers_promote(settings, http):
    first, second = trained_models(settings)
    models = http.get("/v1/scoring/models", headers=auth(settings, "evaluator")).json()
    assert {m["version"]: m["status"] for m in models} == {first: "champion", second: "challenger"}
    assert all(0.5 < m["auc"] <= 1 and m["n_won"] + m["n_lost"] == 160 for m in models)
    assert http.get("/v1/scoring/models", headers=auth(settings, "closer")).status_code == 403
    assert http.post(f"/v1/scoring/models/{second}/promote", headers=auth(settings, "evaluator")).status_code == 403
    manager = auth(settings, "manager")
    r = http.post(f"/v1/scoring/models/{second}/promote", headers=manager)
    assert r.status_code == 200 and r.json()["status"] == "champion"
    assert r.json()["promoted_by"] == "manager:test-manager"
    assert http.post(f"/v1/scoring/models/{second}/promote", headers=manager).status_code == 409
    assert http.post("/v1/scoring/models/nope/promote", headers=manager).status_code == 404
    with session_scope(settings) as session:
        events = session.scalars(select(AuditEvent.after).where(AuditEvent.action == "scoring_model.promoted")).all()
        assert events == [{"champion": second}]
