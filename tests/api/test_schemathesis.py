"""schemathesis over /openapi.json against the real app (ASGI: the app `revloop up` serves) on a demo business,
with an admin token and with a closer token, on SQLite and PostgreSQL: no answer is a 5xx, every answer's status
code is documented and its body matches the declared schema (error answers included).

Bounded: a fixed number of examples per operation and a fixed seed, so a run takes the same short time and finds
the same things. A failure prints a curl command that reproduces it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from starlette.types import Receive, Scope, Send

from api import demo
from api.app import create_app
from core.db import session_scope
from core.settings import Settings
from tests.conftest import _truncate
from tests.factories import queued_item, token

MAX_EXAMPLES = 10  # per operation and phase
SEED = 13
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
CONFIG = {
    "seed": SEED,
    # Valid and schema-violating inputs alike must get a documented answer, never a 5xx.
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    # Explicit examples, boundary values (coverage) and fuzzing per operation; no stateful sequences.
    "phases": {"stateful": {"enabled": False}},
}


class AppUnderTest:
    """The ASGI app schemathesis calls: the real app of the current database and role (set by `bearer`).
    The schema is read once at import (schemathesis' pytest API parametrizes by operation at collection)."""

    def __init__(self) -> None:
        self.app = create_app(Settings(database_url="sqlite://"))  # serves /openapi.json; touches no database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


APP = AppUnderTest()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=SchemathesisConfig.from_dict(CONFIG))


@pytest.fixture(scope="module", params=["admin", "closer"])
def bearer(request, database, tmp_path_factory) -> Iterator[str]:
    """A demo business (small ids name real rows) served by the real app, and a token of the role."""
    folder = tmp_path_factory.mktemp("schemathesis")
    settings = Settings(
        var_dir=folder / "var",
        database_url=database["url"],
        checkpoint_url=database["checkpoint_url"],
        outbox_dir=folder / "outbox",
        undo_seconds=0,
        # With secrets, the webhooks answer as signed webhooks do (a fuzzer cannot sign: 401 or 422).
        webhook_secret_leads="schemathesis-leads",
        webhook_secret_payments="schemathesis-payments",
        webhook_secret_esign="schemathesis-esign",
        twilio_auth_token="schemathesis-sms",
        whatsapp_app_secret="schemathesis-whatsapp",
        whatsapp_verify_token="schemathesis-verify",
        stripe_webhook_secret="whsec_schemathesis",
        mpesa_callback_token="schemathesis-mpesa",
    )
    _truncate(settings)
    with session_scope(settings) as session:
        demo.seed(session, settings)
    for grade in "ABCD":
        queued_item(settings, grade=grade)
    previous, APP.app = APP.app, create_app(settings)
    try:
        yield token(settings, request.param, f"schemathesis-{request.param}")
    finally:
        APP.app = previous


@schema.parametrize()
def test_every_answer_matches_the_schema(case, bearer):
    case.call_and_validate(headers={"Authorization": f"Bearer {bearer}"}, checks=CHECKS)
