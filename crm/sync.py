"""`revloop sync crm --from hubspot|pipedrive`: bring an external CRM's companies, contacts and deals into revloop.

The first run imports everything; later runs read only what changed since the cursor (the last `updatedAt` seen,
per object type, saved with each page so an interrupted run resumes where it stopped). Re-running is safe: records
are matched by their link (source, type, remote id), a first run adopts existing revloop records by email (contacts)
or domain (accounts), and a record whose remote updatedAt did not move is left alone.

Conflict rule (a field changed in revloop AND in the CRM since the last sync): **the later edit wins**, comparing
the revloop record's last change with the CRM's updatedAt; a tie goes to the CRM. Each conflict is listed in the
report (field, both values, which was kept) and written to the audit log. Consent flags are revloop's own (the CRMs'
contact fields carry none) and are never changed by a sync. Records that cannot be imported are rejected with a
reason (no email, an address another contact has, an unmapped deal stage) and the rest goes on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, jobs
from core.db import insert_once, session_scope
from core.enums import DealOutcome, DealStage, JobKind
from core.locks import LockBusy, named_lock
from core.models import Account, Contact, CrmLink, CrmSyncState, Deal, utcnow
from core.settings import Settings
from crm.connectors import REMOTE_BACKENDS, backend
from crm.connectors.base import OBJECT_TYPES, CrmError, RemoteRecord

MODELS = {"contact": Contact, "account": Account, "deal": Deal}
_EMAIL = TypeAdapter(EmailStr)
CONFLICT_RULE = "the later edit wins (revloop's last change vs the CRM's updatedAt; a tie goes to the CRM)"


@dataclass
class SyncReport:
    source: str
    mode: str  # initial | incremental
    read: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def count(self, bucket: str, object_type: str) -> None:
        counts = getattr(self, bucket)
        counts[object_type] = counts.get(object_type, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mode": self.mode,
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
            "rejections": self.rejected,
            "conflicts": self.conflicts,
            "conflict_rule": CONFLICT_RULE,
            "cursors": self.cursors,
            "error": self.error,
        }


class Rejected(ValueError):
    """A remote record that cannot be imported; the message is the reason in the report."""


def _norm(value: Any) -> Any:
    """Values as compared and remembered (JSON-able): amounts as 2-decimal strings, dates as ISO, '' as None."""
    if value in (None, ""):
        return None
    if isinstance(value, Decimal | float):
        return f"{Decimal(str(value)):.2f}"
    if isinstance(value, dt.date):
        return value.isoformat()[:10]
    return value


def _deal_values(deal: Deal) -> dict[str, Any]:
    closed = deal.outcome in (DealOutcome.WON, DealOutcome.LOST)
    return {
        "name": deal.name,
        "amount": _norm(deal.amount),
        "currency": deal.currency,
        "stage": deal.outcome if closed else deal.stage,
        "lost_reason": deal.lost_reason,
        "close_date": _norm(deal.closed_at.date() if closed and deal.closed_at else deal.expected_close),
    }


def _local_values(object_type: str, row: Any, fields: list[str]) -> dict[str, Any]:
    if object_type == "deal":
        return {k: v for k, v in _deal_values(row).items() if k in fields}
    return {f: _norm(getattr(row, f)) for f in fields}


def _set(object_type: str, row: Any, name: str, value: Any) -> None:
    if object_type != "deal":
        setattr(row, name, value)
        return
    if name == "amount":
        try:
            row.amount = Decimal(str(value)) if value is not None else None
        except InvalidOperation:
            raise Rejected(f"amount {value!r} is not a number") from None
    elif name == "stage":
        now = utcnow()
        if value in (DealOutcome.WON, DealOutcome.LOST):
            row.outcome, row.stage = value, DealStage(value)
            row.closed_at = row.closed_at or now
        else:
            row.outcome, row.stage, row.closed_at = None, DealStage(value), None
        row.stage_changed_at = now
    elif name == "close_date":
        day = dt.date.fromisoformat(value) if value else None
        if row.outcome and day:
            row.closed_at = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        elif not row.outcome:
            row.expected_close = day
    elif name == "currency":
        row.currency = (value or "USD")[:3].upper()
    else:
        setattr(row, name, value)


def _changed_at(object_type: str, row: Any) -> dt.datetime:
    return (row.stage_changed_at if object_type == "deal" and row.stage_changed_at else None) or row.updated_at


def _link(session: Session, source: str, object_type: str, remote_id: str | None) -> CrmLink | None:
    if not remote_id:
        return None
    return session.scalar(
        select(CrmLink).where(
            CrmLink.source == source, CrmLink.object_type == object_type, CrmLink.remote_id == str(remote_id)
        )
    )


def _adopt(session: Session, source: str, rec: RemoteRecord) -> Any | None:
    """An existing revloop record this remote one is (a first sync): contact by email, account by domain."""
    model = MODELS[rec.object_type]
    row = None
    if rec.object_type == "contact":
        row = session.scalar(select(Contact).where(Contact.email == rec.values["email"]))
    elif rec.object_type == "account" and rec.values.get("domain"):
        row = session.scalar(select(Account).where(Account.domain == rec.values["domain"]))
    else:
        row = session.scalar(select(model).where(model.external_source == source, model.external_id == rec.remote_id))
    if row is not None and session.scalar(
        select(CrmLink.id).where(
            CrmLink.source == source, CrmLink.object_type == rec.object_type, CrmLink.local_id == row.id
        )
    ):
        other = "email" if rec.object_type == "contact" else "domain"
        raise Rejected(f"its {other} belongs to revloop {rec.object_type} {row.id}, linked to another {source} record")
    return row


def _validate(session: Session, rec: RemoteRecord, row: Any) -> None:
    if rec.problem:
        raise Rejected(rec.problem)
    v = rec.values
    if rec.object_type == "contact":
        if not v.get("email"):
            raise Rejected("no email address")
        try:
            _EMAIL.validate_python(v["email"])
        except ValidationError:
            raise Rejected(f"email {v['email']!r} is not a valid address") from None
        clash = session.scalar(select(Contact.id).where(Contact.email == v["email"]))
        if clash is not None and (row is None or clash != row.id):
            raise Rejected(f"email {v['email']} belongs to another revloop contact ({clash})")
    elif rec.object_type == "account":
        if not v.get("name"):
            raise Rejected("no company name")
        if v.get("domain"):
            clash = session.scalar(select(Account.id).where(Account.domain == v["domain"]))
            if clash is not None and (row is None or clash != row.id):
                raise Rejected(f"domain {v['domain']} belongs to another revloop account ({clash})")
    elif not v.get("name"):
        raise Rejected("no deal name")


def _apply(session: Session, source: str, rec: RemoteRecord, report: SyncReport, actor: str) -> None:
    # One flush per record, at its end: autoflush before each look-up made a 1,500-record import 2.5 times slower.
    with session.no_autoflush:
        _apply_record(session, source, rec, report, actor)


def _apply_record(session: Session, source: str, rec: RemoteRecord, report: SyncReport, actor: str) -> None:
    link = _link(session, source, rec.object_type, rec.remote_id)
    if link is not None and link.remote_updated_at == rec.updated_at:
        report.count("unchanged", rec.object_type)
        return
    model = MODELS[rec.object_type]
    row = session.get(model, link.local_id) if link else None
    adopted = False
    if row is None:
        row = _adopt(session, source, rec)
        adopted = row is not None
    _validate(session, rec, row)
    created = row is None
    if created:
        row = model(
            **({"email": rec.values["email"]} if rec.object_type == "contact" else {"name": rec.values["name"]})
        )
        session.add(row)
    values = {k: _norm(v) for k, v in rec.values.items()}
    ours = _local_values(rec.object_type, row, list(values))
    base = link.synced_values if link else None
    changed = False
    for name, theirs in values.items():
        mine = ours.get(name)
        if created or mine == theirs:
            take = not created or theirs is not None
        elif base is None:  # first sync of a record revloop already had: the CRM's non-empty values fill it
            take = theirs is not None
        elif theirs == base.get(name):
            take = False  # only revloop changed it: revloop's value stands
        elif mine == base.get(name):
            take = True  # only the CRM changed it
        else:  # both changed since the last sync
            take = rec.updated_at >= _changed_at(rec.object_type, row)
            conflict = {
                "object": rec.object_type,
                "id": row.id,
                "remote_id": rec.remote_id,
                "field": name,
                "revloop": mine,
                source: theirs,
                "kept": source if take else "revloop",
            }
            report.conflicts.append(conflict)
            audit.record(
                session,
                actor=actor,
                action="crm.sync_conflict",
                entity_type=rec.object_type,
                entity_id=row.id,
                before={"revloop": mine},
                after={source: theirs, "kept": conflict["kept"], "rule": CONFLICT_RULE},
            )
        if take and mine != theirs:
            _set(rec.object_type, row, name, theirs)
            changed = True
    if rec.object_type in ("contact", "deal"):
        changed |= _link_parents(session, source, rec, row)
    if rec.object_type != "contact" and row.external_source is None:
        row.external_source, row.external_id = source, rec.remote_id
    session.flush()
    if link is None:
        # No other sync of this source runs (the named lock in sync_crm): a plain insert.
        link = CrmLink(source=source, object_type=rec.object_type, remote_id=rec.remote_id, local_id=row.id)
        session.add(link)
    link.remote_updated_at, link.synced_values, link.synced_at = rec.updated_at, values, utcnow()
    session.flush()
    report.count("created" if created else "updated" if changed or adopted else "unchanged", rec.object_type)


def _link_parents(session: Session, source: str, rec: RemoteRecord, row: Any) -> bool:
    """Point a contact at its account, a deal at its account and contact (when those were imported)."""
    changed = False
    for parent, attr in (("account", "account_id"), ("contact", "contact_id")):
        if parent not in rec.links:
            continue
        link = _link(session, source, parent, rec.links[parent])
        if link is not None and getattr(row, attr) != link.local_id:
            setattr(row, attr, link.local_id)
            changed = True
    return changed


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def sync_crm(
    settings: Settings,
    source: str,
    *,
    full: bool = False,
    progress: Callable[[str, int], None] | None = None,
    actor: str = "cli",
    **backend_options: Any,
) -> SyncReport:
    """Import (first run, or `full`) or update (later runs) revloop's records from `source`; see the module doc."""
    if source not in REMOTE_BACKENDS:
        raise ValueError(f"--from must be one of {', '.join(REMOTE_BACKENDS)}")
    remote = backend(settings, source, **backend_options)
    try:
        with named_lock(settings, f"crm-sync:{source}", wait_seconds=1):  # one sync of a source at a time
            return _sync(settings, source, remote, full=full, progress=progress, actor=actor)
    except LockBusy:
        raise CrmError(f"another {source} sync is running; try again when it ends") from None


def _sync(
    settings: Settings, source: str, remote: Any, *, full: bool, progress: Callable[[str, int], None] | None, actor: str
) -> SyncReport:
    with session_scope(settings) as session:
        state, _ = insert_once(
            session,
            CrmSyncState(source=source, cursors={}, last_report={}),
            select(CrmSyncState).where(CrmSyncState.source == source),
        )
        state.last_started_at = utcnow()
        cursors = {} if full else dict(state.cursors or {})
    report = SyncReport(source, "initial" if not cursors else "incremental", cursors=dict(cursors))
    try:
        for object_type in OBJECT_TYPES:
            for page in remote.changed_since(object_type, _parse(cursors.get(object_type))):
                with session_scope(settings) as session:  # one page, one transaction; the cursor moves with it
                    for rec in page:
                        report.read[object_type] = report.read.get(object_type, 0) + 1
                        try:
                            with session.begin_nested():
                                _apply(session, source, rec, report, actor)
                        except Rejected as exc:
                            report.rejected.append(
                                {"object": object_type, "remote_id": rec.remote_id, "reason": str(exc)}
                            )
                    newest = max(r.updated_at for r in page).isoformat()
                    report.cursors[object_type] = max(report.cursors.get(object_type) or newest, newest)
                    state = session.get(CrmSyncState, source)
                    state.cursors = dict(report.cursors)
                if progress:
                    progress(object_type, len(page))
    except CrmError as exc:
        report.error = exc.message
        _finish(settings, report, actor)
        raise
    _finish(settings, report, actor)
    return report


def _finish(settings: Settings, report: SyncReport, actor: str) -> None:
    now = utcnow()
    with session_scope(settings) as session:
        state = session.get(CrmSyncState, report.source)
        summary = {k: v for k, v in report.as_dict().items() if k != "rejections"}
        summary["rejections"] = report.rejected[:200]
        state.last_report = summary
        if report.error:
            state.last_error_at, state.last_error = now, report.error
        else:
            state.last_success_at = now
        audit.record(
            session,
            actor=actor,
            action="crm.synced" if not report.error else "crm.sync_failed",
            entity_type="crm",
            entity_id=report.source,
            after={k: summary[k] for k in ("mode", "read", "created", "updated", "rejected", "error")}
            | {"conflicts": len(report.conflicts)},
        )


def schedule(settings: Settings, at: dt.datetime | None = None) -> None:
    """Queue the next periodic incremental sync of REVLOOP_CRM_BACKEND (once per interval, whatever restarts)."""
    if settings.crm_sync_minutes <= 0 or settings.crm_backend not in REMOTE_BACKENDS:
        return
    with session_scope(settings) as session:
        jobs.enqueue_next_slot(session, JobKind.CRM_SYNC, dt.timedelta(minutes=settings.crm_sync_minutes), now=at)


def run_scheduled(settings: Settings, payload: dict[str, Any]) -> None:
    """The worker's periodic sync: a CRM failure is recorded on the sync state (health shows it) and the next run
    resumes from the cursor."""
    try:
        sync_crm(settings, settings.crm_backend, actor="worker")
    except CrmError:
        pass
    finally:
        schedule(settings)
