"""Signed webhooks: HMAC-SHA256 over "<timestamp>.<raw body>", a timestamp window, and replay refusal.

A sender computes
    X-Revloop-Timestamp: <unix seconds>
    X-Revloop-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
A delivery outside the window is refused (401); the same signature inside the window is a replay (409).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db import insert_once
from core.errors import AppError, Conflict, Unauthorized
from core.models import WebhookDelivery, utcnow

TIMESTAMP_HEADER = "X-Revloop-Timestamp"
SIGNATURE_HEADER = "X-Revloop-Signature"


class WebhookNotConfigured(AppError):
    status_code = 503
    code = "webhook_not_configured"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers a sender attaches (used by tests, the CLI helper and integrations written in Python)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    session: Session,
    *,
    source: str,
    secret: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    tolerance_seconds: int,
    now: float | None = None,
) -> None:
    """Accept a delivery once, or raise. Records the signature so a replay inside the window is refused."""
    if not secret:
        raise WebhookNotConfigured(f"the {source} webhook has no secret: set REVLOOP_WEBHOOK_SECRET_{source.upper()}")
    if not timestamp or not signature:
        raise Unauthorized(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    # ASCII digits only ("²" and "١" are digits to str.isdigit()), and few enough to be a time at all.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized(f"{TIMESTAMP_HEADER} must be unix seconds (ASCII digits)")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise Unauthorized(
            f"{TIMESTAMP_HEADER} is outside the {tolerance_seconds}s window: the delivery is stale or the clocks differ"
        )
    expected = sign(secret, int(timestamp), body)
    if not signature.isascii() or not hmac.compare_digest(expected, signature.strip()):
        raise Unauthorized("signature does not match the body and timestamp")
    # Deliveries older than the window would be refused by their timestamp anyway: forget them.
    horizon = utcnow() - dt.timedelta(seconds=2 * tolerance_seconds)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.received_at < horizon))
    digest = expected.removeprefix("sha256=")
    _, received = insert_once(
        session,
        WebhookDelivery(source=source, signature=digest),
        select(WebhookDelivery).where(WebhookDelivery.signature == digest),
    )
    if not received:  # the same signed delivery before, or at the same moment
        raise Conflict("this delivery was already received (replay refused)")


# --- providers' own schemes ----------------------------------------------------------------------------------
WHATSAPP_SIGNATURE_HEADER = "X-Hub-Signature-256"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"


def verify_whatsapp(secret: str | None, body: bytes, signature: str | None) -> None:
    """Meta signs each webhook POST: X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>."""
    if not secret:
        raise WebhookNotConfigured("the whatsapp webhook has no secret: set REVLOOP_WHATSAPP_APP_SECRET")
    if not signature:
        raise Unauthorized(f"missing {WHATSAPP_SIGNATURE_HEADER} header")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not signature.isascii() or not hmac.compare_digest(expected, signature.strip()):
        raise Unauthorized(f"{WHATSAPP_SIGNATURE_HEADER} does not match the body")


def verify_twilio(token: str | None, url: str, params: dict[str, str], signature: str | None) -> None:
    """Twilio signs the full URL it posted to plus the sorted form parameters (HMAC-SHA1 with the auth token,
    base64) in X-Twilio-Signature; checked with the twilio library's RequestValidator."""
    if not token:
        raise WebhookNotConfigured("the sms webhook has no secret: set REVLOOP_TWILIO_AUTH_TOKEN")
    if not signature:
        raise Unauthorized(f"missing {TWILIO_SIGNATURE_HEADER} header")
    from twilio.request_validator import RequestValidator  # imported when used: keeps the API's start fast

    if not RequestValidator(token).validate(url, params, signature):
        raise Unauthorized(f"{TWILIO_SIGNATURE_HEADER} does not match the URL and parameters")
