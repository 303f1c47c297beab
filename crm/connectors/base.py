"""What every CRM backend offers the agent tools, the sync and the write-back: the `CrmBackend` interface, the
record shape the sync reads, the errors, and the retry rule shared by the HTTP backends.

Backends: `native` (revloop's own tables, the default), `hubspot` (CRM v3 through the official SDK), `pipedrive`
(API v1 over httpx). Agent tools get the same answer shape from each (records name their origin:
`contact:12`, `hubspot:contact:51`, `pipedrive:person:7`).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from core.enums import DealStage
from core.settings import Settings

T = TypeVar("T")

OBJECT_TYPES = ("account", "contact", "deal")  # import order: a contact links to its account, a deal to both


class CrmError(Exception):
    """A CRM call failed. `retryable`: a later attempt may succeed (429, 5xx, network); otherwise a person must act
    (a wrong token, a missing permission)."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class CrmAuthError(CrmError):
    """401/403: the token is missing, wrong, expired or lacks a scope. Not retried."""

    retryable = False


class CrmRejected(CrmError):
    """4xx other than 401/403/429: the CRM refused the request as made. Not retried."""

    retryable = False


@dataclass
class RemoteRecord:
    """One record read from an external CRM, in revloop's field names."""

    object_type: str  # account | contact | deal
    remote_id: str
    updated_at: dt.datetime
    values: dict[str, Any]
    links: dict[str, str | None] = field(default_factory=dict)  # contact: {account}; deal: {account, contact}
    problem: str | None = None  # set when the record cannot be imported (the rejection's reason)


class CrmBackend(Protocol):
    name: str

    def find_contact(self, email: str) -> dict[str, Any]:
        """The agent tool crm_find_contact's answer: {"found": False} or the contact with account and consent."""

    def account_history(self, account_id: int) -> dict[str, Any]:
        """The agent tool crm_account_history's answer for revloop's account `account_id`."""

    def changed_since(self, object_type: str, since: dt.datetime | None) -> Iterator[list[RemoteRecord]]:
        """Pages of records changed at or after `since` (all when None), oldest change first."""

    def find_logged_email(self, contact_remote_id: str, subject: str, sent_at: dt.datetime) -> str | None:
        """The remote id of an email already logged on the contact with this subject and time (a retry's check)."""

    def log_email(self, contact_remote_id: str, *, subject: str, body: str, sent_at: dt.datetime) -> str:
        """Log a sent email on the contact (an engagement/activity); returns its remote id."""

    def set_deal_stage(self, deal_remote_id: str, stage: str) -> str:
        """Move the remote deal to revloop's stage (won/lost close it); returns the deal's remote id."""

    def ping(self) -> str:
        """One cheap authenticated read; raises CrmError when the CRM cannot be used."""


def parse_stage_map(text: str, setting: str) -> dict[str, str]:
    """'prospecting=appointmentscheduled,...' -> {"prospecting": "appointmentscheduled", ...}; a clear error names
    the setting and the bad part."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        ours, sep, theirs = part.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not theirs or ours not in tuple(DealStage):
            raise ValueError(f"{setting}: {part!r} is not STAGE=REMOTE_STAGE with a revloop stage")
        out[ours] = theirs
    return out


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), or Pipedrive's x-ratelimit-reset."""
    value = None
    if headers is not None:
        value = headers.get("Retry-After") or headers.get("retry-after") or headers.get("x-ratelimit-reset")
    if value in (None, ""):
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - dt.datetime.now(dt.UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


@dataclass
class RetryPolicy:
    """429: wait what Retry-After says (up to a cap) and retry, for reads and writes alike (the CRM did nothing).
    5xx and network errors: retried with backoff for reads only; a write that got one may have happened, so it
    fails and its caller checks the CRM before trying again (no duplicates)."""

    max_retries: int
    max_wait: float
    sleep: Callable[[float], None] = time.sleep

    def run(
        self, call: Callable[[], T], classify: Callable[[Exception], tuple[CrmError, float | None]], *, write: bool
    ) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - classified below; unknown errors are CrmError too
                error, wait = classify(exc)
                attempt += 1
                if not error.retryable or attempt > self.max_retries:
                    raise error from exc
                if error.status == 429:
                    wait = 1.0 if wait is None else wait
                    if wait > self.max_wait:
                        raise CrmError(
                            f"{error.message} (the CRM asks to wait {wait:.0f} s, more than "
                            f"REVLOOP_CRM_RETRY_MAX_WAIT_SECONDS={self.max_wait:g}; retried later)",
                            status=429,
                        ) from exc
                elif write:
                    raise error from exc
                else:
                    wait = min(self.max_wait, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                self.sleep(wait)


def local_contact(settings: Settings, email: str) -> Any:
    """revloop's contact for this address (detached), for the consent flags only revloop records."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Contact

    with session_scope(settings, readonly=True) as session:
        contact = session.scalar(select(Contact).where(Contact.email == email.lower()))
        if contact is not None:
            session.expunge(contact)
        return contact


def remote_account(settings: Settings, source: str, account_id: int) -> tuple[str | None, str | None]:
    """The remote id linked to revloop's account (a sync made the link), else the account's domain to search by."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Account, CrmLink

    with session_scope(settings, readonly=True) as session:
        remote = session.scalar(
            select(CrmLink.remote_id).where(
                CrmLink.source == source, CrmLink.object_type == "account", CrmLink.local_id == account_id
            )
        )
        account = session.get(Account, account_id)
        return remote, account.domain if account else None


def linked_local_id(settings: Settings, source: str, object_type: str, remote_id: Any) -> int | None:
    """revloop's id of the record a sync linked to this remote one (None: never synced)."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import CrmLink

    with session_scope(settings, readonly=True) as session:
        return session.scalar(
            select(CrmLink.local_id).where(
                CrmLink.source == source, CrmLink.object_type == object_type, CrmLink.remote_id == str(remote_id)
            )
        )
