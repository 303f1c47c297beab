"""Inbound webhooks, authenticated by HMAC signature (not bearer tokens): see core/webhooks.py."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from api.deps import SessionDep, SettingsDep
from billing import ledger as billing
from core import webhooks
from core.schemas import (
    LeadAccepted,
    LeadCreate,
    PaymentNotice,
    PaymentRecorded,
    SignatureNotice,
    SignatureRecorded,
)
from crm.capture import capture_lead
from deals import flow as deals

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


async def raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]
Timestamp = Annotated[str | None, Header(alias=webhooks.TIMESTAMP_HEADER)]
Signature = Annotated[str | None, Header(alias=webhooks.SIGNATURE_HEADER)]
Body = TypeVar("Body", bound=BaseModel)


def verified(
    session, settings, source: str, body: bytes, timestamp: str | None, signature: str | None, model: type[Body]
) -> Body:
    """Check the signature (and replay window) first, then parse the body; errors name the field."""
    webhooks.verify(
        session,
        source=source,
        secret=getattr(settings, f"webhook_secret_{source}"),
        timestamp=timestamp,
        signature=signature,
        body=body,
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A request body's schema for the OpenAPI document: nested models refer to components/schemas (pydantic's
    own "#/$defs/..." would point nowhere in the document; ReDoc refused to render it)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


@router.post(
    "/leads",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    summary="Capture a lead from a form provider (HMAC-signed, same body as POST /v1/leads)",
    description="Sign with REVLOOP_WEBHOOK_SECRET_LEADS: `X-Revloop-Timestamp: <unix seconds>` and "
    "`X-Revloop-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>`. Deliveries outside "
    "REVLOOP_WEBHOOK_TOLERANCE_SECONDS are refused (401); a replayed delivery is refused (409).",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": _body_schema(LeadCreate)}}}},
)
def lead_webhook(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    timestamp: Timestamp = None,
    signature: Signature = None,
) -> LeadAccepted:
    data = verified(session, settings, "leads", body, timestamp, signature, LeadCreate)
    lead, duplicate = capture_lead(session, data, actor="webhook:leads")
    response.headers["Location"] = f"/v1/leads/{lead.id}"
    return LeadAccepted(id=lead.id, status=lead.status, duplicate=duplicate)


@router.post(
    "/payments",
    response_model=PaymentRecorded,
    summary="Record a payment from the provider (HMAC-signed); reconciles it and stops the reminders",
    description="Sign with REVLOOP_WEBHOOK_SECRET_PAYMENTS (same scheme as /v1/webhooks/leads). The payment is "
    "allocated to the quoted invoice, then to the customer's oldest open invoices; a paid invoice's pending "
    "reminders are cancelled. The same payment_id again answers 200 with duplicate=true and changes nothing.",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": _body_schema(PaymentNotice)}}}},
)
def payment_webhook(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    timestamp: Timestamp = None,
    signature: Signature = None,
) -> PaymentRecorded:
    notice = verified(session, settings, "payments", body, timestamp, signature, PaymentNotice)
    payment, duplicate = billing.record_payment(
        session,
        external_id=notice.payment_id,
        amount=notice.amount,
        received_on=notice.received_on,
        currency=notice.currency.upper(),
        account_id=notice.account_id,
        reference=notice.invoice_number,
        actor="webhook:payments",
    )
    return PaymentRecorded(payment_id=notice.payment_id, duplicate=duplicate, unallocated=str(payment.unallocated))


@router.post(
    "/esign",
    response_model=SignatureRecorded,
    response_model_exclude_unset=True,
    summary="E-signature notice (HMAC-signed): a completed envelope wins the deal and starts delivery and billing",
    description="Sign with REVLOOP_WEBHOOK_SECRET_ESIGN. A completed envelope marks the deal won, creates the "
    "delivery hand-off and the billing milestones, and drafts the onboarding welcome for review. A repeated "
    "notice changes nothing.",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": _body_schema(SignatureNotice)}}}},
)
def esign_webhook(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    timestamp: Timestamp = None,
    signature: Signature = None,
) -> dict[str, Any]:
    notice = verified(session, settings, "esign", body, timestamp, signature, SignatureNotice)
    if notice.status != "completed":  # only the delivery is recorded (no replay); nothing else changes
        return {"deal_id": notice.deal_id, "status": notice.status, "acted": False}
    signed_at = notice.signed_at if notice.signed_at.tzinfo else notice.signed_at.replace(tzinfo=dt.UTC)
    result = deals.signed(session, settings, notice.deal_id, signed_at=signed_at, actor="webhook:esign")
    return {**result, "status": notice.status, "acted": not result["duplicate"]}
