"""Working imported leads: queue the open, contactable ones through the lead graph, hottest first, at a set rate.

An import only stores leads (status `imported`). Working them queues the same job a captured lead gets
(JobKind.LEAD_RUN, one per lead, keyed `lead.run:<id>`), so each lead gets a brief and a draft in the review
queue. Before queueing, leads that may not be contacted are left out and counted by reason:

- a closed deal (won or lost): a historical outcome, not an open lead;
- no email address (historical imports such as X Education carry none);
- no consent: neither email (the lead's consent and no do-not-email on its contact) nor a call (consent, no
  do-not-call, and a phone number). A lead that may be called but not emailed is queued: the graph drafts a call
  task for the closer instead of an email.

Hottest first by a cheap pre-score: the active ICP rubric's fit score on the records as they are now (no
enrichment, no outcome model; the graph computes the full score). Jobs get `run_after` spread 60/rate seconds
apart, after any lead runs already waiting, so at most `rate` start per minute. A queued lead's status becomes
`new` (what a captured lead waiting for the graph has), so a second run finds nothing to queue; the job's
dedupe key makes sure of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from core import audit
from core.enums import DealOutcome, JobKind, JobStatus, LeadStatus
from core.errors import InvalidInput
from core.models import Deal, Job, Lead, utcnow
from core.settings import Settings
from crm.capture import lead_run_key, queue_lead_run
from crm.records import set_lead_status
from scoring.facts import build_facts
from scoring.icp import active_rubric
from scoring.rubric import score_batch

Progress = Callable[[int], None]

DEFAULT_RATE_PER_MINUTE = 20
WORKABLE_STATUSES = (LeadStatus.IMPORTED,)  # captured leads are queued when they arrive
PRESCORE = "rubric fit (records only, no enrichment, no outcome model)"

# reason -> what the summary says, in the order a lead is checked
SKIP_REASONS = {
    "closed_deal": "with a closed deal (a historical outcome)",
    "no_email": "without an email address",
    "no_consent": "without consent to email or call",
}


@dataclass
class Planned:
    lead_id: int
    email: str
    pre_score: int
    grade: str


@dataclass
class WorkPlan:
    status: str
    source: str | None
    rubric_version: str
    considered: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    already_queued: int = 0
    queue: list[Planned] = field(default_factory=list)  # hottest first
    left_over: int = 0  # contactable, beyond --limit: left for a later run


@dataclass
class WorkReport:
    plan: WorkPlan
    rate_per_minute: int
    queued: list[dict[str, Any]] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.plan.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "status": plan.status,
            "source": plan.source,
            "considered": plan.considered,
            "queued": len(self.queued),
            "skipped": self.skipped_total,
            "skipped_by_reason": dict(plan.skipped),
            "already_queued": plan.already_queued,
            "left_for_later": plan.left_over,
            "rate_per_minute": self.rate_per_minute,
            "prescore": f"{PRESCORE}, rubric {plan.rubric_version}",
            "first_run_after": self.queued[0]["run_after"] if self.queued else None,
            "last_run_after": self.queued[-1]["run_after"] if self.queued else None,
            "leads": self.queued,
        }


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _with_closed_deal(session: Session, lead_ids: list[int]) -> set[int]:
    closed: set[int] = set()
    for chunk in _chunks(lead_ids):
        closed.update(
            session.scalars(
                select(Deal.lead_id).where(Deal.lead_id.in_(chunk), Deal.outcome.in_(tuple(DealOutcome)))
            ).all()
        )
    return closed


def _already_queued(session: Session, lead_ids: list[int]) -> set[int]:
    keys = [lead_run_key(i) for i in lead_ids]
    found: set[int] = set()
    for chunk in _chunks(keys):
        for key in session.scalars(select(Job.dedupe_key).where(Job.dedupe_key.in_(chunk))).all():
            found.add(int(key.rsplit(":", 1)[1]))
    return found


def skip_reason(lead: Lead, closed: bool) -> str | None:
    """Why a lead may not be worked (a key of SKIP_REASONS), or None when it may."""
    if closed:
        return "closed_deal"
    if not lead.email:
        return "no_email"
    contact = lead.contact
    may_email = lead.consent_email and not (contact is not None and contact.do_not_email)
    may_call = (
        lead.consent_call
        and not (contact is not None and contact.do_not_call)
        and bool(lead.phone or (contact is not None and contact.phone))
    )
    return None if may_email or may_call else "no_consent"


def plan_work(
    session: Session,
    settings: Settings,
    *,
    status: str = LeadStatus.IMPORTED,
    source: str | None = None,
    limit: int | None = None,
) -> WorkPlan:
    """Which leads of `status` (and `source`, the import's external source) to queue, hottest first."""
    if status not in WORKABLE_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(WORKABLE_STATUSES)}, got {status!r} "
            "(captured leads are queued when they arrive)"
        )
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}")
    rubric = active_rubric(session, settings)
    plan = WorkPlan(status=status, source=source, rubric_version=rubric.version)
    stmt = (
        select(Lead)
        .where(Lead.status == status)
        .options(selectinload(Lead.contact), selectinload(Lead.account))
        .order_by(Lead.id)
    )
    if source is not None:
        stmt = stmt.where(Lead.external_source == source)
    leads = list(session.scalars(stmt))
    plan.considered = len(leads)
    ids = [lead.id for lead in leads]
    closed, queued = _with_closed_deal(session, ids), _already_queued(session, ids)
    workable: list[Lead] = []
    for lead in leads:
        reason = skip_reason(lead, lead.id in closed)
        if reason is not None:
            plan.skipped[reason] += 1
        elif lead.id in queued:
            plan.already_queued += 1
        else:
            workable.append(lead)
    facts = [
        build_facts(lead, lead.contact, lead.account, free_mail=(lead.capture_features or {}).get("free_mail"))
        for lead in workable
    ]
    scored = score_batch(rubric, facts) if facts else []
    ranked = sorted(zip(workable, scored, strict=True), key=lambda pair: (-pair[1][0], pair[0].captured_at, pair[0].id))
    if limit is not None:
        plan.left_over = max(0, len(ranked) - limit)
        ranked = ranked[:limit]
    plan.queue = [Planned(lead.id, lead.email, score, grade) for lead, (score, grade) in ranked]
    return plan


def _start_after_waiting(session: Session, now: dt.datetime, interval: dt.timedelta) -> dt.datetime:
    """Now, or one interval after the last lead run already waiting, so two batches together keep the rate."""
    last = session.scalar(
        select(func.max(Job.run_after)).where(
            Job.kind == JobKind.LEAD_RUN, Job.status == JobStatus.QUEUED, Job.run_after > now
        )
    )
    if last is None:
        return now
    if last.tzinfo is None:  # SQLite drops the offset of an aggregate
        last = last.replace(tzinfo=dt.UTC)
    return max(now, last + interval)


def queue_plan(
    session: Session,
    plan: WorkPlan,
    *,
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
    actor: str = "cli",
    now: dt.datetime | None = None,
    progress: Progress | None = None,
) -> WorkReport:
    """Queue the planned leads' graph runs, `rate_per_minute` apart at most; the caller commits."""
    interval = _interval(rate_per_minute)
    now = now or utcnow()
    start = _start_after_waiting(session, now, interval)
    report = WorkReport(plan=plan, rate_per_minute=rate_per_minute)
    queued, already = _queue_some(session, plan.queue, 0, start, interval, actor, progress)
    report.queued += queued
    plan.already_queued += already
    _audit_queued(session, report, actor)
    return report


def queue_plan_in_batches(
    settings: Settings,
    plan: WorkPlan,
    *,
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
    actor: str = "cli",
    now: dt.datetime | None = None,
    progress: Progress | None = None,
    batch_size: int | None = None,
) -> WorkReport:
    """queue_plan for long lists (the CLI): each batch of leads is its own short unit of work (retried when
    the database is busy), so queueing thousands of leads never holds the write lock for long. A re-run
    queues what an interrupted run did not (each lead's job has its dedupe key)."""
    from core.db import run_in_transaction, session_scope

    interval = _interval(rate_per_minute)
    now = now or utcnow()
    with session_scope(settings, readonly=True) as session:
        start = _start_after_waiting(session, now, interval)
    report = WorkReport(plan=plan, rate_per_minute=rate_per_minute)
    size = batch_size or settings.import_batch_rows
    for offset in range(0, len(plan.queue), size):
        chunk = plan.queue[offset : offset + size]
        queued, already = run_in_transaction(
            settings,
            lambda session, chunk=chunk, offset=offset: _queue_some(
                session, chunk, offset, start, interval, actor, None
            ),
        )
        report.queued += queued
        plan.already_queued += already
        if progress:
            progress(len(chunk))
    run_in_transaction(settings, lambda session: _audit_queued(session, report, actor))
    return report


def _interval(rate_per_minute: int) -> dt.timedelta:
    if rate_per_minute < 1:
        raise InvalidInput(f"rate must be at least 1 lead a minute, got {rate_per_minute}")
    return dt.timedelta(seconds=60 / rate_per_minute)


def _queue_some(
    session: Session,
    planned_leads: list[Planned],
    first_position: int,
    start: dt.datetime,
    interval: dt.timedelta,
    actor: str,
    progress: Progress | None,
) -> tuple[list[dict[str, Any]], int]:
    """Queue these planned leads (positions from first_position on); (what was queued, how many were already)."""
    queued: list[dict[str, Any]] = []
    already = 0
    for position, planned in enumerate(planned_leads, start=first_position):
        run_after = start + position * interval
        if _enqueue(session, planned.lead_id, run_after):
            set_lead_status(session, planned.lead_id, LeadStatus.NEW, actor=actor)
            queued.append(
                {
                    "lead_id": planned.lead_id,
                    "email": planned.email,
                    "pre_score": planned.pre_score,
                    "grade": planned.grade,
                    "run_after": run_after.isoformat(),
                }
            )
        else:  # queued by someone else since the plan was made
            already += 1
        if progress:
            progress(1)
    return queued, already


def _audit_queued(session: Session, report: WorkReport, actor: str) -> None:
    plan = report.plan
    summary = {k: v for k, v in report.as_dict().items() if k != "leads"}
    audit.record(
        session,
        actor=actor,
        action="leads.work_queued",
        entity_type="leads",
        entity_id=plan.source or plan.status,
        after=summary,
    )


def _enqueue(session: Session, lead_id: int, run_after: dt.datetime) -> bool:
    """Queue the lead's graph run; False when a run was queued (or has run) already."""
    if session.scalar(select(Job.id).where(Job.dedupe_key == lead_run_key(lead_id))) is not None:
        return False
    queue_lead_run(session, lead_id, run_after)
    return True


def work_leads(
    session: Session,
    settings: Settings,
    *,
    status: str = LeadStatus.IMPORTED,
    source: str | None = None,
    limit: int | None = None,
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
    actor: str = "cli",
    now: dt.datetime | None = None,
) -> WorkReport:
    """Plan and queue in one go (the CLI does the two steps to show a progress bar)."""
    plan = plan_work(session, settings, status=status, source=source, limit=limit)
    return queue_plan(session, plan, rate_per_minute=rate_per_minute, actor=actor, now=now)


def describe(report: WorkReport) -> list[str]:
    """The summary a person reads: what was queued, when the runs start, what was skipped and why."""
    data, plan = report.as_dict(), report.plan
    lines = []
    if report.queued:
        scores = [q["pre_score"] for q in report.queued]
        first = dt.datetime.fromisoformat(data["first_run_after"])
        last = dt.datetime.fromisoformat(data["last_run_after"])
        span = (last - first).total_seconds()
        lines.append(
            f"queued {len(report.queued)} lead(s) for the lead graph, hottest first (rubric pre-score "
            f"{max(scores)} down to {min(scores)}), at most {report.rate_per_minute} a minute: "
            f"first at {first:%H:%M:%S} UTC, last at {last:%H:%M:%S} UTC ({_duration(span)} later)"
        )
    else:
        lines.append("queued 0 leads")
    if report.skipped_total:
        reasons = ", ".join(f"{n} {SKIP_REASONS[k]}" for k, n in plan.skipped.items() if n)
        lines.append(f"skipped {report.skipped_total}: {reasons}")
    if plan.already_queued:
        lines.append(f"{plan.already_queued} already queued before (nothing queued twice)")
    if plan.left_over:
        lines.append(f"{plan.left_over} contactable lead(s) left for a later run (--limit)")
    return lines


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
