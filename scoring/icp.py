"""ICP rubric versions (draft -> published -> archived) and the backtest a manager runs before publishing."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, selectinload

from core import audit
from core.db import insert_once
from core.enums import DealOutcome, RubricStatus
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Deal, IcpRubric, Lead, utcnow
from core.settings import Settings
from scoring.facts import build_facts
from scoring.rubric import Rubric, load_rubric, parse, score_batch

GRADES = ("A", "B", "C", "D")


@lru_cache(maxsize=16)
def _parsed(content: str) -> Rubric:
    return parse(content)


@lru_cache(maxsize=4)
def _file_rubric(path: str, mtime: float) -> Rubric:
    return load_rubric(path)


def published(session: Session) -> IcpRubric | None:
    return session.scalar(select(IcpRubric).where(IcpRubric.status == RubricStatus.PUBLISHED))


# Published versions parsed in this process, by (row id, version, created_at): a row's content is written once, with
# the row (save_draft); created_at tells a new row from a deleted one that had the same id and version.
_published_rubrics: dict[tuple[Any, ...], Rubric] = {}
# Built once: every lead capture and run asks (building the statement cost more than running it).
_PUBLISHED_VERSION = select(IcpRubric.id, IcpRubric.version, IcpRubric.created_at).where(
    IcpRubric.status == RubricStatus.PUBLISHED
)


def active_rubric(session: Session, settings: Settings) -> Rubric:
    """The published rubric; until one is published, the rubric file from the settings. Scoring a lead reads only
    the published row's id and version; its content (and backtest) is read and parsed once per process."""
    row = session.execute(_PUBLISHED_VERSION).first()
    if row is not None:
        key = tuple(row)
        rubric = _published_rubrics.get(key)
        if rubric is None:
            rubric = _parsed(session.scalar(select(IcpRubric.content).where(IcpRubric.id == row.id)))
            if len(_published_rubrics) >= 16:
                _published_rubrics.clear()
            _published_rubrics[key] = rubric
        return rubric
    path = Path(settings.rubric_path)
    return _file_rubric(str(path), path.stat().st_mtime)


def list_rubrics(session: Session) -> list[IcpRubric]:
    return list(session.scalars(select(IcpRubric).order_by(IcpRubric.created_at.desc(), IcpRubric.id.desc())))


def get_rubric(session: Session, rubric_id: int) -> IcpRubric:
    row = session.get(IcpRubric, rubric_id)
    if row is None:
        raise NotFound(f"rubric {rubric_id} not found")
    return row


def save_draft(session: Session, content: str, *, actor: str) -> IcpRubric:
    """Validate and store a draft; a bad rubric raises before anything is written."""
    rubric = parse(content)
    row, created = insert_once(
        session,
        IcpRubric(version=rubric.version, status=RubricStatus.DRAFT, content=content, created_by=actor),
        select(IcpRubric).where(IcpRubric.version == rubric.version),
    )
    if not created:  # saved before, or by a concurrent request: the same content is the same draft
        if row.content == content:
            return row
        raise Conflict(f"rubric version {rubric.version!r} exists already ({row.status}); change 'version'")
    audit.record(
        session,
        actor=actor,
        action="icp_rubric.drafted",
        entity_type="icp_rubric",
        entity_id=row.id,
        after={"version": row.version},
    )
    return row


def publish(session: Session, rubric_id: int, *, actor: str) -> IcpRubric:
    row = get_rubric(session, rubric_id)
    if row.status == RubricStatus.PUBLISHED:
        raise Conflict(f"rubric {row.version!r} is already published")
    if row.status == RubricStatus.ARCHIVED:
        raise Conflict(f"rubric {row.version!r} was archived; save it as a new version to publish it again")
    parse(row.content)  # never publish something that no longer validates
    previous = published(session)
    if previous is not None:
        previous.status = RubricStatus.ARCHIVED
    row.status, row.published_at, row.published_by = RubricStatus.PUBLISHED, utcnow(), actor
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="icp_rubric.published",
        entity_type="icp_rubric",
        entity_id=row.id,
        before={"published": previous.version if previous else None},
        after={"published": row.version},
    )
    return row


# --- backtest ---------------------------------------------------------------------------------------


def closed_deal_facts(session: Session, source: str | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """Facts and outcomes of closed deals, optionally only those imported from one source (e.g. 'maven')."""
    stmt = select(Deal).where(Deal.outcome.in_(tuple(DealOutcome)))
    if source:
        stmt = stmt.where(Deal.external_source == source)
    deals = session.scalars(
        stmt.options(
            selectinload(Deal.account),
            selectinload(Deal.lead).selectinload(Lead.account),
            selectinload(Deal.lead).selectinload(Lead.contact),
        ).order_by(Deal.id)
    ).all()
    facts, won = [], []
    for deal in deals:
        lead = deal.lead
        account = deal.account or (lead.account if lead else None)
        facts.append(
            build_facts(
                lead,
                lead.contact if lead else None,
                account,
                free_mail=(lead.capture_features or {}).get("free_mail") if lead else None,
            )
        )
        won.append(1 if deal.outcome == DealOutcome.WON else 0)
    return facts, won


def open_lead_facts(session: Session) -> list[dict[str, Any]]:
    closed = exists().where(Deal.lead_id == Lead.id, Deal.outcome.in_(tuple(DealOutcome)))
    leads = session.scalars(
        select(Lead).where(~closed).options(selectinload(Lead.account), selectinload(Lead.contact)).order_by(Lead.id)
    ).all()
    return [
        build_facts(lead, lead.contact, lead.account, free_mail=(lead.capture_features or {}).get("free_mail"))
        for lead in leads
    ]


def _summary(rubric: Rubric, scores: list[int], grades: list[str], won: list[int]) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    base = sum(won) / len(won) if won else 0.0
    per_grade = {}
    for grade in GRADES:
        outcomes = [w for w, g in zip(won, grades, strict=True) if g == grade]
        rate = sum(outcomes) / len(outcomes) if outcomes else None
        per_grade[grade] = {
            "n": len(outcomes),
            "won": sum(outcomes),
            "win_rate": None if rate is None else round(rate, 4),
            "lift": None if rate is None or not base else round(rate / base, 3),
        }
    auc = round(float(roc_auc_score(won, scores)), 4) if len(set(won)) == 2 and len(set(scores)) > 1 else None
    return {"version": rubric.version, "auc": auc, "grades": per_grade}


def backtest(session: Session, draft: Rubric, current: Rubric, *, source: str | None = None) -> dict[str, Any]:
    """Re-score closed deals with both rubrics; count open leads whose grade would change."""
    facts, won = closed_deal_facts(session, source)
    if not facts:
        where = f" from source {source!r}" if source else ""
        raise InvalidInput(f"there are no closed deals{where} to backtest against; import outcomes first")
    result: dict[str, Any] = {
        "source": source,
        "closed_deals": len(facts),
        "won": sum(won),
        "base_win_rate": round(sum(won) / len(won), 4),
    }
    for name, rubric in (("draft", draft), ("published", current)):
        scored = score_batch(rubric, facts)
        result[name] = _summary(rubric, [score for score, _ in scored], [grade for _, grade in scored], won)
    open_facts = open_lead_facts(session)
    before = [grade for _, grade in score_batch(current, open_facts)] if open_facts else []
    after = [grade for _, grade in score_batch(draft, open_facts)] if open_facts else []
    changes = Counter(f"{b}->{a}" for b, a in zip(before, after, strict=True) if a != b)
    result["open_leads"] = len(open_facts)
    result["open_leads_changing_grade"] = sum(changes.values())
    result["grade_changes"] = dict(sorted(changes.items()))
    return result
