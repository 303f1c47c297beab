"""Model registry: train challengers on closed outcomes, keep one champion, promote by hand."""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.enums import DealOutcome, ModelStatus
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Deal, Lead, ScoringModel, utcnow
from scoring.features import FeatureSpec


def _closed_outcomes():
    """One row per lead with a closed deal: its outcome, 'won' when any of its deals was won."""
    # max() over 'won'/'lost' is 'won' when any of the lead's deals was won.
    return (
        select(Deal.lead_id, func.max(Deal.outcome).label("outcome"))
        .where(Deal.outcome.in_(tuple(DealOutcome)), Deal.lead_id.is_not(None))
        .group_by(Deal.lead_id)
        .subquery()
    )


def closed_training_rows(session: Session) -> tuple[list[dict[str, Any]], list[Any], np.ndarray]:
    """(capture snapshots, capture times, won labels) of leads with a closed deal; won if any deal was won."""
    outcome = _closed_outcomes()
    stmt = (
        select(Lead.id, Lead.capture_features, Lead.captured_at, outcome.c.outcome)
        .join(outcome, outcome.c.lead_id == Lead.id)
        .order_by(Lead.id)
    )
    rows = session.execute(stmt).all()
    return (
        [r[1] or {} for r in rows],
        [r[2] for r in rows],
        np.array([1 if r[3] == DealOutcome.WON else 0 for r in rows]),
    )


def training_rows_by_origin(session: Session) -> dict[str, int]:
    """How many training rows came from revloop's own outcomes (leads it captured and closed) and how many
    from imports (leads with an external source)."""
    outcome = _closed_outcomes()
    imported = Lead.external_source.is_not(None)
    rows = session.execute(
        select(imported.label("imported"), func.count(Lead.id))
        .join(outcome, outcome.c.lead_id == Lead.id)
        .group_by(imported)
    ).all()
    counts = {"revloop": 0, "imported": 0}
    for is_imported, n in rows:
        counts["imported" if is_imported else "revloop"] += n
    return counts


def count_closed(session: Session) -> int:
    return (
        session.scalar(
            select(func.count(Deal.id)).where(Deal.outcome.in_(tuple(DealOutcome)), Deal.lead_id.is_not(None))
        )
        or 0
    )


def champion(session: Session) -> ScoringModel | None:
    return session.scalar(select(ScoringModel).where(ScoringModel.status == ModelStatus.CHAMPION))


@lru_cache(maxsize=4)
def loaded(version: str, artifact: bytes) -> Any:
    from scoring import model as outcome_model

    return outcome_model.load(artifact)


def load_model(row: ScoringModel) -> Any:
    return loaded(row.version, row.artifact)


def train_challenger(session: Session, spec: FeatureSpec, *, min_closed: int, actor: str) -> dict[str, Any]:
    """Train, evaluate against the champion on the same held-out split, register; the first becomes champion."""
    from scoring import model as outcome_model

    spec.check_trainable()
    snapshots, times, y = closed_training_rows(session)
    if len(y) < min_closed:
        raise InvalidInput(
            f"only {len(y)} closed deal(s) linked to leads; at least {min_closed} are needed to train "
            "(REVLOOP_SCORING_MIN_CLOSED_DEALS); until then leads are scored by the rubric alone"
        )
    if len(set(y)) < 2:
        raise InvalidInput("closed deals must include both won and lost outcomes to train")
    X = outcome_model.frame(snapshots, spec)
    split = outcome_model.holdout_split(times, y)
    result = outcome_model.train(X, y, spec, split)
    current = champion(session)
    champion_metrics = None
    if current is not None:
        current_spec = FeatureSpec.model_validate(current.feature_spec)
        X_champion = outcome_model.frame([snapshots[i] for i in split.test], current_spec)
        champion_metrics = outcome_model.metrics(y[split.test], load_model(current).predict_proba(X_champion)[:, 1])
    window = [t for t in times if t is not None]
    row = ScoringModel(
        version=f"{utcnow():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
        status=ModelStatus.CHALLENGER if current is not None else ModelStatus.CHAMPION,
        algorithm=result.algorithm,
        data_window_start=min(window) if window else None,
        data_window_end=max(window) if window else None,
        n_won=int(y.sum()),
        n_lost=int(len(y) - y.sum()),
        feature_spec=spec.model_dump(),
        auc=result.metrics["auc"],
        brier=result.metrics["brier"],
        log_loss=result.metrics["log_loss"],
        calibration_error=result.metrics["ece"],
        report={
            "cv_auc": result.cv_auc,
            "baselines": result.baselines,
            "split": {
                "kind": result.split.kind,
                "train": len(result.split.train),
                "test": len(result.split.test),
                "cutoff": result.split.cutoff,
            },
            "seconds": result.seconds,
            "rows_by_origin": training_rows_by_origin(session),
        },
        artifact=outcome_model.dump(result.model),
    )
    if current is None:
        row.promoted_at, row.promoted_by = utcnow(), f"{actor} (first model)"
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="scoring_model.trained",
        entity_type="scoring_model",
        entity_id=row.version,
        after={"status": row.status, "algorithm": row.algorithm, **result.metrics},
    )
    return {
        "challenger": {
            "version": row.version,
            "status": row.status,
            "algorithm": row.algorithm,
            **result.metrics,
            "n_won": row.n_won,
            "n_lost": row.n_lost,
        },
        "champion": None if current is None else {"version": current.version, **champion_metrics},
        "baselines": result.baselines,
        "cv_auc": result.cv_auc,
        "split": row.report["split"],
        "rows_by_origin": row.report["rows_by_origin"],
        "seconds": result.seconds,
        "feature_spec": spec.version,
    }


def promote(session: Session, version: str, *, actor: str) -> ScoringModel:
    row = session.scalar(select(ScoringModel).where(ScoringModel.version == version))
    if row is None:
        raise NotFound(f"no scoring model with version {version!r}")
    if row.status == ModelStatus.CHAMPION:
        raise Conflict(f"model {version} is already the champion")
    previous = champion(session)
    if previous is not None:
        previous.status = ModelStatus.RETIRED
    row.status, row.promoted_at, row.promoted_by = ModelStatus.CHAMPION, utcnow(), actor
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="scoring_model.promoted",
        entity_type="scoring_model",
        entity_id=version,
        before={"champion": previous.version if previous else None},
        after={"champion": version},
    )
    return row


def list_models(session: Session) -> list[ScoringModel]:
    return list(session.scalars(select(ScoringModel).order_by(ScoringModel.trained_at.desc())))


def evaluate_snapshots(session: Session, snapshots: list[dict[str, Any]], y: np.ndarray) -> dict[str, Any]:
    """Score labelled snapshots with the champion (nothing is stored)."""
    from scoring import model as outcome_model

    current = champion(session)
    if current is None:
        raise InvalidInput("there is no champion model yet; train one with `revloop scoring train`")
    spec = FeatureSpec.model_validate(current.feature_spec)
    p = load_model(current).predict_proba(outcome_model.frame(snapshots, spec))[:, 1]
    result = outcome_model.metrics(y, p)
    return {
        "n": len(y),
        "auc": result["auc"],
        "brier": result["brier"],
        "ece": result["ece"],
        "model_version": current.version,
    }
