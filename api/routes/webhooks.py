"""Inbound webhooks, authenticated by HMAC signature (not bearer tokens): see core/webhooks.py."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from api.deps import SessionDep, SettingsDep
from billing import ledger as billing
from billing import mpesa, stripe_events
from core import webhooks
from core.errors import Forbidden, InvalidInput
from core.schemas import (
    ChannelWebhookResult,
    LeadAccepted,
    LeadCreate,
    MpesaAck,
    PaymentNotice,
    PaymentRecorded,
    SignatureNotice,
    SignatureRecorded,
    StripeEventResult,
)
from crm.capture import capture
from deals import flow as deals
from deals import inbound

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
    lead = capture(session, data, actor="webhook:leads")
    response.headers["Location"] = f"/v1/leads/{lead.id}"
    return LeadAccepted(id=lead.id, status=lead.status, duplicate=lead.duplicate)


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


# --- SMS and WhatsApp: the providers' own signatures and shapes ---------------------------------------------

WHATSAPP_EXAMPLE = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "WABA_ID",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "contacts": [{"profile": {"name": "Amina"}, "wa_id": "254712345678"}],
                        "messages": [
                            {
                                "from": "254712345678",
                                "id": "wamid.HBgM...",
                                "timestamp": "1764750000",
                                "type": "text",
                                "text": {"body": "Hello, can I get a quote?"},
                            }
                        ],
                        "statuses": [{"id": "wamid.HBgN...", "status": "delivered", "timestamp": "1764750100"}],
                    },
                }
            ],
        }
    ],
}


@router.get(
    "/whatsapp",
    summary="WhatsApp webhook verification (Meta's subscribe handshake): echoes hub.challenge",
    description="Meta calls this once when the webhook is set up: `hub.mode=subscribe`, `hub.verify_token` (must "
    "equal REVLOOP_WHATSAPP_VERIFY_TOKEN) and `hub.challenge`, which is answered as plain text.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 403: {"description": "wrong token"}},
)
def whatsapp_verify(request: Request, settings: SettingsDep) -> Response:
    params = request.query_params
    token = settings.whatsapp_verify_token
    if not token:
        raise webhooks.WebhookNotConfigured("set REVLOOP_WHATSAPP_VERIFY_TOKEN to subscribe the WhatsApp webhook")
    if params.get("hub.mode") != "subscribe" or params.get("hub.verify_token") != token:
        raise Forbidden("hub.verify_token does not match REVLOOP_WHATSAPP_VERIFY_TOKEN (or hub.mode is not subscribe)")
    return Response(params.get("hub.challenge", ""), media_type="text/plain")


@router.post(
    "/whatsapp",
    response_model=ChannelWebhookResult,
    summary="WhatsApp Business Cloud API notifications (X-Hub-Signature-256): inbound messages and statuses",
    description="Verified with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(REVLOOP_WHATSAPP_APP_SECRET, raw "
    "body)>` (401 otherwise, and nothing is recorded). A message from an unknown number becomes a lead (E.164); "
    "from a known contact it is a reply (the cadence stops, the closer gets a hand-off); STOP or UNSUBSCRIBE opts "
    "the number out of WhatsApp for good. Statuses (sent, delivered, read, failed) update our messages. A message "
    "id delivered again is recorded once.",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": {"type": "object"}, "example": WHATSAPP_EXAMPLE}},
            "required": True,
        }
    },
)
def whatsapp_webhook(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    signature: Annotated[str | None, Header(alias=webhooks.WHATSAPP_SIGNATURE_HEADER)] = None,
) -> dict[str, Any]:
    webhooks.verify_whatsapp(settings.whatsapp_app_secret, body, signature)
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidInput("the body must be JSON (a WhatsApp notification)", details={"field": "body"}) from None
    if not isinstance(payload, dict):
        raise InvalidInput("the body must be a JSON object", details={"field": "body"})
    return inbound.receive_whatsapp(session, settings, payload)


@router.post(
    "/sms",
    summary="Twilio-compatible SMS webhook (X-Twilio-Signature): inbound SMS and StatusCallback",
    description="Verified with Twilio's request signature (`X-Twilio-Signature`, keyed by "
    "REVLOOP_TWILIO_AUTH_TOKEN, over REVLOOP_PUBLIC_URL + the path when set, else the URL as received); 401 "
    "otherwise, and nothing is recorded. Form fields as Twilio posts them: an inbound SMS (`From`, `Body`, "
    "`MessageSid`) becomes a lead, a reply or (STOP, UNSUBSCRIBE) an opt-out for good; a status callback "
    "(`MessageSid`, `MessageStatus`) updates our message. Answers empty TwiML: nothing is sent without review.",
    response_class=Response,
    responses={200: {"content": {"text/xml": {"schema": {"type": "string"}}}, "description": "Empty TwiML"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "MessageSid": {"type": "string"},
                            "From": {"type": "string"},
                            "To": {"type": "string"},
                            "Body": {"type": "string"},
                            "MessageStatus": {"type": "string"},
                        },
                        "required": ["MessageSid"],
                    }
                }
            },
            "required": True,
        }
    },
)
def sms_webhook(
    request: Request,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    signature: Annotated[str | None, Header(alias=webhooks.TWILIO_SIGNATURE_HEADER)] = None,
) -> Response:
    params = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    if settings.public_url:
        query = f"?{request.url.query}" if request.url.query else ""
        url = settings.public_url.rstrip("/") + request.url.path + query
    else:
        url = str(request.url)
    webhooks.verify_twilio(settings.twilio_auth_token, url, params, signature)
    inbound.receive_sms(session, settings, params)
    return Response(TWIML_EMPTY, media_type="text/xml")


TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@router.post(
    "/stripe",
    response_model=StripeEventResult,
    response_model_exclude_none=True,
    summary="Stripe events (Stripe-Signature): invoice.paid, payment_intent.succeeded, charge.refunded",
    description="Verified with the official Stripe-Signature scheme (the stripe SDK) against "
    "REVLOOP_STRIPE_WEBHOOK_SECRET, with REVLOOP_WEBHOOK_TOLERANCE_SECONDS as the timestamp tolerance: a wrong "
    "secret, a stale timestamp or a changed body is refused (401). Each event id is handled once (a replay answers "
    "200 with duplicate=true). Payments are reconciled by the same code as /v1/webhooks/payments and stop the "
    "reminders; a refund reopens what it paid; money nobody can place is held for a manager. Other event types are "
    "acknowledged and ignored.",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
def stripe_webhook(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> dict[str, Any]:
    event = stripe_events.verify(
        body, stripe_signature, settings.stripe_webhook_secret, settings.webhook_tolerance_seconds
    )
    return stripe_events.handle(session, event)


@router.post(
    "/mpesa",
    response_model=MpesaAck,
    response_model_exclude_none=True,
    summary="M-Pesa (Daraja) C2B confirmation or STK Push callback; reconciles the payment to the invoice",
    description="Register this URL with Daraja as `.../v1/webhooks/mpesa?token=<REVLOOP_MPESA_CALLBACK_TOKEN>` "
    "(Daraja does not sign callbacks; a wrong token is refused with 401). A C2B confirmation's BillRefNumber "
    "(account reference) is matched to the invoice number (case, spaces and dashes ignored) and BusinessShortCode "
    "must be REVLOOP_MPESA_SHORTCODE; an STK callback is matched by CheckoutRequestID to the approved request. "
    "Partial payments leave the rest open, an overpayment is kept as credit, a reference matching no invoice is "
    "held for a manager (never lost). The same TransID or CheckoutRequestID again changes nothing.",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
def mpesa_webhook(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Query(max_length=200, description="REVLOOP_MPESA_CALLBACK_TOKEN")] = None,
) -> dict[str, Any]:
    mpesa.check_token(settings, token)
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidInput("the body is not JSON", details={"field": "body"}) from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", details={"field": "body"})
    return mpesa.handle_callback(session, settings, data)
