"""Every route x every role (and no token) -> the expected status, over a real socket.

Roles sign in as people (session tokens); integration is a machine (API token). Requests for an
allowed role use ids that do not exist or bodies that are empty, so each answers with a known status
(404 or 422) that proves the request got past authorization without changing anything.
"""

from __future__ import annotations

import pytest

from core.settings import Settings
from tests.factories import session_token, token

HUMAN_ROLES = ("closer", "manager", "evaluator", "admin")
ALL = (*HUMAN_ROLES, "integration")
READERS = ("closer", "manager", "evaluator", "admin")
DECIDERS = ("closer", "manager", "admin")
ICP = ("manager", "evaluator", "admin")
MISSING = 999_999

# (method, path template in the OpenAPI schema) -> (concrete path, json body, roles allowed, status when allowed)
MATRIX: dict[tuple[str, str], tuple[str, object, tuple[str, ...], int]] = {
    ("POST", "/v1/auth/logout"): ("/v1/auth/logout", None, ALL, 204),
    ("GET", "/v1/me"): ("/v1/me", None, ALL, 200),
    ("GET", "/v1/users"): ("/v1/users", None, ("admin",), 200),
    ("POST", "/v1/users"): ("/v1/users", {}, ("admin",), 422),
    ("PATCH", "/v1/users/{user_id}"): (f"/v1/users/{MISSING}", {}, ("admin",), 404),
    ("POST", "/v1/leads"): ("/v1/leads", {}, ("integration", "closer", "manager", "admin"), 422),
    ("GET", "/v1/leads"): ("/v1/leads", None, READERS, 200),
    ("GET", "/v1/leads/{lead_id}/llm-runs"): (f"/v1/leads/{MISSING}/llm-runs", None, READERS, 404),
    ("POST", "/v1/leads/{lead_id}/events"): (
        f"/v1/leads/{MISSING}/events",
        {"type": "reply"},
        ("integration", "closer", "manager", "admin"),
        404,
    ),
    ("GET", "/v1/leads/{lead_id}"): (f"/v1/leads/{MISSING}", None, READERS, 404),
    ("GET", "/v1/contacts/{contact_id}/conversation"): (f"/v1/contacts/{MISSING}/conversation", None, READERS, 404),
    ("GET", "/v1/review-items"): ("/v1/review-items", None, READERS, 200),
    ("GET", "/v1/review-items/assignees"): ("/v1/review-items/assignees", None, READERS, 200),
    ("POST", "/v1/review-items/bulk-approve"): ("/v1/review-items/bulk-approve", {}, DECIDERS, 422),
    ("GET", "/v1/review-items/{item_id}"): (f"/v1/review-items/{MISSING}", None, READERS, 404),
    ("GET", "/v1/review-items/{item_id}/timeline"): (f"/v1/review-items/{MISSING}/timeline", None, READERS, 404),
    ("POST", "/v1/review-items/{item_id}/open"): (f"/v1/review-items/{MISSING}/open", None, DECIDERS, 404),
    ("POST", "/v1/review-items/{item_id}/approve"): (f"/v1/review-items/{MISSING}/approve", None, DECIDERS, 404),
    ("POST", "/v1/review-items/{item_id}/undo"): (f"/v1/review-items/{MISSING}/undo", None, DECIDERS, 404),
    ("POST", "/v1/review-items/{item_id}/reject"): (f"/v1/review-items/{MISSING}/reject", {}, DECIDERS, 422),
    ("POST", "/v1/review-items/{item_id}/assign"): (f"/v1/review-items/{MISSING}/assign", {}, DECIDERS, 422),
    ("POST", "/v1/review-items/{item_id}/snooze"): (f"/v1/review-items/{MISSING}/snooze", {}, DECIDERS, 422),
    ("POST", "/v1/review-items/{item_id}/retry"): (f"/v1/review-items/{MISSING}/retry", None, DECIDERS, 404),
    ("POST", "/v1/review-items/{item_id}/take-over"): (f"/v1/review-items/{MISSING}/take-over", None, DECIDERS, 404),
    ("POST", "/v1/review-items/{item_id}/mark-sent"): (f"/v1/review-items/{MISSING}/mark-sent", None, DECIDERS, 404),
    ("GET", "/v1/review-items/{item_id}/context"): (f"/v1/review-items/{MISSING}/context", None, READERS, 404),
    ("POST", "/v1/review-items/{item_id}/respond"): (
        f"/v1/review-items/{MISSING}/respond",
        {"instruction": "shorter"},
        DECIDERS,
        404,
    ),
    ("GET", "/v1/notifications"): ("/v1/notifications", None, ALL, 200),
    ("POST", "/v1/notifications/read-all"): ("/v1/notifications/read-all", None, ALL, 200),
    ("POST", "/v1/notifications/{notification_id}/read"): (f"/v1/notifications/{MISSING}/read", None, ALL, 404),
    # Preferences are a person's own (an API token has none: 403); the team webhook's kinds are managers'.
    ("GET", "/v1/notifications/preferences"): ("/v1/notifications/preferences", None, HUMAN_ROLES, 200),
    ("PUT", "/v1/notifications/preferences"): ("/v1/notifications/preferences", {}, HUMAN_ROLES, 200),
    ("GET", "/v1/notifications/team"): ("/v1/notifications/team", None, ("manager", "admin"), 200),
    ("PUT", "/v1/notifications/team"): ("/v1/notifications/team", {"webhook": {}}, ("manager", "admin"), 200),
    ("GET", "/v1/tokens"): ("/v1/tokens", None, ("admin",), 200),
    ("POST", "/v1/tokens"): ("/v1/tokens", {}, ("admin",), 422),
    ("POST", "/v1/tokens/{token_id}/revoke"): (f"/v1/tokens/{MISSING}/revoke", None, ("admin",), 404),
    ("GET", "/v1/health/integrations"): ("/v1/health/integrations", None, ("manager", "admin"), 200),
    ("GET", "/v1/icp/rubrics"): ("/v1/icp/rubrics", None, ICP, 200),
    ("POST", "/v1/icp/rubrics"): ("/v1/icp/rubrics", {}, ("manager", "admin"), 422),
    ("GET", "/v1/icp/rubrics/active"): ("/v1/icp/rubrics/active", None, ICP, 200),
    ("POST", "/v1/icp/rubrics/validate"): ("/v1/icp/rubrics/validate", {}, ICP, 422),
    ("POST", "/v1/icp/rubrics/backtest"): ("/v1/icp/rubrics/backtest", {}, ICP, 422),
    ("POST", "/v1/icp/rubrics/{rubric_id}/publish"): (
        f"/v1/icp/rubrics/{MISSING}/publish",
        None,
        ("manager", "admin"),
        404,
    ),
    ("GET", "/v1/scoring/models"): ("/v1/scoring/models", None, ICP, 200),
    ("GET", "/v1/scoring/models/{version}/charts"): ("/v1/scoring/models/no-such-model/charts", None, ICP, 404),
    ("POST", "/v1/scoring/models/{version}/promote"): (
        "/v1/scoring/models/no-such-model/promote",
        None,
        ("manager", "admin"),
        404,
    ),
    ("GET", "/v1/kpis"): ("/v1/kpis", None, ("manager", "admin"), 200),
    ("GET", "/v1/audit-events"): ("/v1/audit-events", None, ("admin",), 200),
    ("GET", "/v1/deals"): ("/v1/deals", None, DECIDERS, 200),
    ("POST", "/v1/deals"): ("/v1/deals", {"contact_id": MISSING}, DECIDERS, 422),
    ("GET", "/v1/products"): ("/v1/products", None, DECIDERS, 200),
    ("GET", "/v1/deals/{deal_id}"): (f"/v1/deals/{MISSING}", None, DECIDERS, 404),
    ("PATCH", "/v1/deals/{deal_id}"): (f"/v1/deals/{MISSING}", {}, DECIDERS, 404),
    ("POST", "/v1/deals/{deal_id}/close"): (f"/v1/deals/{MISSING}/close", {"outcome": "lost"}, DECIDERS, 404),
    ("POST", "/v1/leads/{lead_id}/convert"): (f"/v1/leads/{MISSING}/convert", {}, DECIDERS, 404),
    ("GET", "/v1/sales-agents"): ("/v1/sales-agents", None, ("manager", "admin"), 200),
    ("PUT", "/v1/sales-agents/{agent_id}/services"): (
        f"/v1/sales-agents/{MISSING}/services",
        {"services": []},
        ("manager", "admin"),
        404,
    ),
    ("POST", "/v1/sales-agents/{agent_id}/link"): (
        f"/v1/sales-agents/{MISSING}/link",
        {"user_id": None},
        ("manager", "admin"),
        404,
    ),
    ("GET", "/v1/reviews/weekly"): ("/v1/reviews/weekly", None, DECIDERS, 200),
    ("POST", "/v1/deals/{deal_id}/stage"): (f"/v1/deals/{MISSING}/stage", {}, DECIDERS, 422),
    ("POST", "/v1/deals/{deal_id}/proposals"): (f"/v1/deals/{MISSING}/proposals", {}, DECIDERS, 404),
    ("GET", "/v1/deals/{deal_id}/proposals/{number}/pdf"): (
        f"/v1/deals/{MISSING}/proposals/P-1/pdf",
        None,
        DECIDERS,
        404,
    ),
    ("GET", "/v1/deals/{deal_id}/proposals/{number}/html"): (
        f"/v1/deals/{MISSING}/proposals/P-1/html",
        None,
        DECIDERS,
        404,
    ),
    ("POST", "/v1/deals/{deal_id}/milestones/{milestone}/complete"): (
        f"/v1/deals/{MISSING}/milestones/1/complete",
        None,
        DECIDERS,
        404,
    ),
    ("GET", "/v1/templates"): ("/v1/templates", None, ("manager", "admin"), 200),
    ("POST", "/v1/templates"): ("/v1/templates", {}, ("manager", "admin"), 422),
    ("POST", "/v1/templates/preview"): ("/v1/templates/preview", {}, ("manager", "admin"), 422),
    ("POST", "/v1/templates/{template_id}/approve"): (
        f"/v1/templates/{MISSING}/approve",
        None,
        ("manager", "admin"),
        404,
    ),
    ("GET", "/v1/invoices"): ("/v1/invoices", None, ("manager", "admin"), 200),
    ("GET", "/v1/cash"): ("/v1/cash", None, ("manager", "admin"), 200),
    ("POST", "/v1/invoices/{invoice_id}/mpesa-request"): (
        f"/v1/invoices/{MISSING}/mpesa-request",
        None,
        ("manager", "admin"),
        404,
    ),
    ("POST", "/v1/invoices/{invoice_id}/fiscal-submit"): (
        f"/v1/invoices/{MISSING}/fiscal-submit",
        None,
        ("manager", "admin"),
        404,
    ),
    ("GET", "/v1/payments/held"): ("/v1/payments/held", None, ("manager", "admin"), 200),
    ("POST", "/v1/payments/held/{event_id}/assign"): (
        f"/v1/payments/held/{MISSING}/assign",
        {"invoice_number": "INV-1"},
        ("manager", "admin"),
        404,
    ),
    ("GET", "/v1/evals/runs"): ("/v1/evals/runs", None, ("evaluator", "manager", "admin"), 200),
    ("GET", "/v1/evals/compare"): ("/v1/evals/compare?a=x&b=y", None, ("evaluator", "manager", "admin"), 404),
    ("GET", "/v1/evals/runs/{run_id}"): ("/v1/evals/runs/missing", None, ("evaluator", "manager", "admin"), 404),
    ("GET", "/v1/evals/runs/{run_id}/report"): (
        "/v1/evals/runs/missing/report",
        None,
        ("evaluator", "manager", "admin"),
        404,
    ),
}
# Routes that authenticate otherwise: the same answer whatever bearer token is sent (or none).
UNAUTHENTICATED: dict[tuple[str, str], tuple[str, object, int]] = {
    ("POST", "/v1/auth/login"): ("/v1/auth/login", {}, 422),  # the password is the credential
    ("POST", "/v1/webhooks/leads"): ("/v1/webhooks/leads", {}, 401),  # HMAC signature missing
    ("POST", "/v1/webhooks/payments"): ("/v1/webhooks/payments", {}, 401),
    ("POST", "/v1/webhooks/esign"): ("/v1/webhooks/esign", {}, 401),
    ("POST", "/v1/webhooks/stripe"): ("/v1/webhooks/stripe", {}, 401),  # Stripe-Signature missing
    ("POST", "/v1/webhooks/mpesa"): ("/v1/webhooks/mpesa", {}, 401),  # the callback token missing
    ("POST", "/v1/webhooks/sms"): ("/v1/webhooks/sms", {}, 401),  # X-Twilio-Signature missing
    ("POST", "/v1/webhooks/whatsapp"): ("/v1/webhooks/whatsapp", {}, 401),  # X-Hub-Signature-256 missing
    ("GET", "/v1/webhooks/whatsapp"): ("/v1/webhooks/whatsapp", None, 403),  # hub.verify_token missing
    ("GET", "/healthz"): ("/healthz", None, 200),
    ("GET", "/v1/health"): ("/v1/health", None, 200),
}


def _credentials(settings: Settings) -> dict[str, str | None]:
    creds: dict[str, str | None] = {role: session_token(settings, role, f"Matrix {role}") for role in HUMAN_ROLES}
    creds["integration"] = token(settings, "integration", "matrix-machine")
    creds["none"] = None
    return creds


def _call(http, method: str, path: str, body: object, bearer: str | None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return (
        http.request(method, path, json=body, headers=headers)
        if body is not None
        else http.request(method, path, headers=headers)
    )


def test_the_matrix_covers_every_route():
    from api.app import create_app

    schema = create_app(Settings(database_url="sqlite://")).openapi()
    routes = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert routes == set(MATRIX) | set(UNAUTHENTICATED), "add new routes to the authorization matrix"


def test_every_route_for_every_role(settings, live_server, http):
    settings.webhook_secret_leads = settings.webhook_secret_payments = settings.webhook_secret_esign = "matrix-secret"
    settings.stripe_webhook_secret = settings.mpesa_callback_token = "matrix-secret"
    settings.twilio_auth_token = settings.whatsapp_app_secret = settings.whatsapp_verify_token = "matrix-secret"
    creds = _credentials(settings)
    failures = []
    for (method, template), (path, body, allowed, ok_status) in MATRIX.items():
        for role, bearer in creds.items():
            if template == "/v1/auth/logout" and bearer is not None:
                # Logging out ends the session: use a fresh one so later rows keep theirs.
                bearer = (
                    session_token(settings, role, f"Logout {role}")
                    if role in HUMAN_ROLES
                    else token(settings, role, "logout-machine")
                )
            expected = 401 if role == "none" else ok_status if role in allowed else 403
            if template == "/v1/auth/logout" and role == "integration":
                expected = 409  # an API token is not a session: it says so (an admin revokes tokens)
            got = _call(http, method, path, body, bearer).status_code
            if got != expected:
                failures.append(f"{method} {template} as {role}: expected {expected}, got {got}")
    for (method, template), (path, body, expected) in UNAUTHENTICATED.items():
        for role, bearer in creds.items():
            got = _call(http, method, path, body, bearer).status_code
            if got != expected:
                failures.append(f"{method} {template} as {role}: expected {expected}, got {got}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ["closer", "evaluator"])
def test_an_api_token_and_a_session_of_the_same_role_get_the_same_answers(settings, http, role):
    by_token, by_session = token(settings, role), session_token(settings, role)
    for path in ("/v1/review-items", "/v1/users", "/v1/kpis", "/v1/icp/rubrics"):
        assert (
            http.get(path, headers={"Authorization": f"Bearer {by_token}"}).status_code
            == http.get(path, headers={"Authorization": f"Bearer {by_session}"}).status_code
        ), path
