"""Inbound webhooks, authenticated by HMAC signature (not bearer tokens): see core/webhooks.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from agents.lead.capture import capture_lead
from api.deps import SessionDep, SettingsDep
from core import webhooks
from core.schemas import LeadAccepted, LeadCreate

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


async def raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]
Timestamp = Annotated[str | None, Header(alias=webhooks.TIMESTAMP_HEADER)]
Signature = Annotated[str | None, Header(alias=webhooks.SIGNATURE_HEADER)]


@router.post(
    "/leads",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    summary="Capture a lead from a form provider (HMAC-signed, same body as POST /v1/leads)",
    description="Sign with REVLOOP_WEBHOOK_SECRET_LEADS: `X-Revloop-Timestamp: <unix seconds>` and "
    "`X-Revloop-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>`. Deliveries outside "
    "REVLOOP_WEBHOOK_TOLERANCE_SECONDS are refused (401); a replayed delivery is refused (409).",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": LeadCreate.model_json_schema()}}}},
)
def lead_webhook(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    timestamp: Timestamp = None,
    signature: Signature = None,
) -> LeadAccepted:
    webhooks.verify(
        session,
        source="leads",
        secret=settings.webhook_secret_leads,
        timestamp=timestamp,
        signature=signature,
        body=body,
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    try:
        data = LeadCreate.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    lead, duplicate = capture_lead(session, data, actor="webhook:leads")
    session.commit()
    response.headers["Location"] = f"/v1/leads/{lead.id}"
    return LeadAccepted(id=lead.id, status=lead.status, duplicate=duplicate)
