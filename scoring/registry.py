"""Model registry: train challengers on closed outcomes, keep one champion, promote by hand."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from core import audit
from core.db import flush_pending
from core.enums import DealOutcome, ModelStatus
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Deal, Lead, ScoringModel, utcnow
from core.settings import Settings
from scoring.features import FeatureSpec

if TYPE_CHECKING:  # numpy is imported where a model is trained or evaluated, not when the API starts
    import numpy as np

    from scoring.model import Progress


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
    snapshots, times, y, _ = _closed_rows(session)
    return snapshots, times, y


def _closed_rows(session: Session) -> tuple[list[dict[str, Any]], list[Any], np.ndarray, list[str]]:
    """closed_training_rows and each row's source (an import's name, or 'revloop')."""
    outcome = _closed_outcomes()
    stmt = (
        select(Lead.id, Lead.capture_features, Lead.captured_at, outcome.c.outcome, Lead.external_source)
        .join(outcome, outcome.c.lead_id == Lead.id)
        .order_by(Lead.id)
    )
    rows = session.execute(stmt).all()
    import numpy as np

    return (
        [r[1] or {} for r in rows],
        [r[2] for r in rows],
        np.array([1 if r[3] == DealOutcome.WON else 0 for r in rows]),
        [r[4] or "revloop" for r in rows],
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


# Built once: every lead's scoring runs them.
_DEALS = Deal.__table__
_COUNT_CLOSED = select(func.count(_DEALS.c.id)).where(  # Core: a count needs no ORM set-up
    _DEALS.c.outcome.in_(tuple(DealOutcome)), _DEALS.c.lead_id.is_not(None)
)
_CHAMPION = select(ScoringModel).where(ScoringModel.status == ModelStatus.CHAMPION)
_CHAMPION_NO_ARTIFACT = _CHAMPION.options(defer(ScoringModel.artifact))


def count_closed(session: Session) -> int:
    flush_pending(session)  # a Core statement does not autoflush
    return session.connection().execute(_COUNT_CLOSED).scalar() or 0


def champion(session: Session, *, with_artifact: bool = True) -> ScoringModel | None:
    """The champion model's row; with_artifact=False leaves its artifact (the pickled model, often megabytes) to
    load_model, which reads it only the first time a process sees that model (scoring a lead needs it once)."""
    return session.scalar(_CHAMPION if with_artifact else _CHAMPION_NO_ARTIFACT)


_loaded: dict[tuple[int, str, str | None], Any] = {}
_loaded_lock = threading.Lock()


def load_model(row: ScoringModel) -> Any:
    """The row's model, its bytes checked against the digest stored at training and its types against the
    allowlist (scoring.model.load); loaded once per process and row (a row's artifact never changes: retraining
    adds a row), so scoring a lead reads the artifact only the first time (see champion(with_artifact=False))."""
    key = (row.id, row.version, row.artifact_sha256)
    with _loaded_lock:
        model = _loaded.get(key)
    if model is None:
        from scoring import model as outcome_model

        model = outcome_model.load(row.artifact, sha256=row.artifact_sha256)
        with _loaded_lock:
            if len(_loaded) >= 4:
                _loaded.clear()
            _loaded[key] = model
    return model


@dataclass
class TrainingData:
    """What a training run reads from the database: closed outcomes and the champion to compare with."""

    snapshots: list[dict[str, Any]]
    times: list[Any]
    y: np.ndarray
    rows_by_origin: dict[str, int]
    champion: ScoringModel | None
    sources: list[str] | None = None  # each row's source (an import's name, or 'revloop')


def read_training_data(session: Session) -> TrainingData:
    """Everything training needs, read at once (a read-only session will do)."""
    snapshots, times, y, sources = _closed_rows(session)
    return TrainingData(snapshots, times, y, training_rows_by_origin(session), champion(session), sources)


@dataclass
class Fitted:
    """A fitted challenger, not stored yet: the model row's values and the comparison shown to the user."""

    values: dict[str, Any]
    comparison: dict[str, Any]


def fit_challenger(
    data: TrainingData, spec: FeatureSpec, *, min_closed: int, actor: str, progress: Progress | None = None
) -> Fitted:
    """Fit and evaluate a challenger against the champion on the same held-out split: computation only, no
    database (register() stores the result). `progress` is told each step's name as it starts."""
    from scoring import model as outcome_model

    spec.check_trainable()
    snapshots, times, y = data.snapshots, data.times, data.y
    if len(y) < min_closed:
        raise InvalidInput(
            f"only {len(y)} closed deal(s) linked to leads; at least {min_closed} are needed to train "
            "(REVLOOP_SCORING_MIN_CLOSED_DEALS); until then leads are scored by the rubric alone"
        )
    if len(set(y)) < 2:
        raise InvalidInput("closed deals must include both won and lost outcomes to train")
    step = progress or (lambda label: None)
    step("reading features")
    X = outcome_model.frame(snapshots, spec)
    arrival = [s.get(spec.arrival) for s in snapshots] if spec.arrival else None
    split = outcome_model.holdout_split(times, y, arrival=arrival)
    result = outcome_model.train(X, y, spec, split, progress=step)
    step("recording the population it learned from")
    sources: dict[str, int] = {}
    for i in split.train:
        name = data.sources[i] if data.sources else "revloop"
        sources[name] = sources.get(name, 0) + 1
    domain = outcome_model.learn_domain(X.iloc[split.train], spec, sources)
    current = data.champion
    champion_metrics = None
    if current is not None:
        step("scoring the held-out split with the champion")
        current_spec = FeatureSpec.model_validate(current.feature_spec)
        X_champion = outcome_model.frame([snapshots[i] for i in split.test], current_spec)
        champion_metrics = outcome_model.metrics(y[split.test], load_model(current).predict_proba(X_champion)[:, 1])
    step("saving the model")
    artifact = outcome_model.dump(result.model)
    window = [t for t in times if t is not None]
    values: dict[str, Any] = dict(
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
            "cpu_seconds": result.cpu_seconds,
            "rows_by_origin": data.rows_by_origin,
            "charts": result.charts,
        },
        domain=domain,
        artifact=artifact,
        artifact_sha256=outcome_model.digest(artifact),
    )
    if current is None:
        values.update(promoted_at=utcnow(), promoted_by=f"{actor} (first model)")
    comparison = {
        "challenger": {
            "version": values["version"],
            "status": values["status"],
            "algorithm": values["algorithm"],
            **result.metrics,
            "n_won": values["n_won"],
            "n_lost": values["n_lost"],
        },
        "champion": None if current is None else {"version": current.version, **champion_metrics},
        "baselines": result.baselines,
        "cv_auc": result.cv_auc,
        "split": values["report"]["split"],
        "rows_by_origin": values["report"]["rows_by_origin"],
        "seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "feature_spec": spec.version,
        "domain": {
            "rows": domain["rows"],
            "sources": domain["sources"],
            "segments": {k: len(v) for k, v in domain["segments"].items()},
            "learned_from": domain["learned_from"],
        },
    }
    return Fitted(values, comparison)


def register(session: Session, fitted: Fitted, *, actor: str) -> dict[str, Any]:
    """Store a fitted model (a short write) and return the comparison. The first model becomes the champion;
    when another model became the champion since the data was read, this one is a challenger to promote."""
    row = ScoringModel(**fitted.values)
    comparison = fitted.comparison
    if row.status == ModelStatus.CHAMPION and champion(session) is not None:
        row.status, row.promoted_at, row.promoted_by = ModelStatus.CHALLENGER, None, None
        comparison = {**comparison, "challenger": {**comparison["challenger"], "status": row.status}}
    session.add(row)
    session.flush()
    metrics = {k: comparison["challenger"][k] for k in ("auc", "brier", "log_loss", "ece")}
    audit.record(
        session,
        actor=actor,
        action="scoring_model.trained",
        entity_type="scoring_model",
        entity_id=row.version,
        after={"status": row.status, "algorithm": row.algorithm, **metrics},
    )
    return comparison


def train_challenger(session: Session, spec: FeatureSpec, *, min_closed: int, actor: str) -> dict[str, Any]:
    """Train, evaluate against the champion on the same held-out split, register; the first becomes champion.
    All in the caller's unit of work: long jobs use train_and_register, which holds no transaction while fitting."""
    fitted = fit_challenger(read_training_data(session), spec, min_closed=min_closed, actor=actor)
    return register(session, fitted, actor=actor)


def train_and_register(
    settings: Settings, spec: FeatureSpec, *, min_closed: int, actor: str, progress: Progress | None = None
) -> dict[str, Any]:
    """`revloop scoring train`: read the closed outcomes in a read-only session, fit outside any transaction
    (the database stays free for capture and the review app while it runs), then register in a short write."""
    from core.db import run_in_transaction, session_scope

    if progress:
        progress("reading closed deals")
    with session_scope(settings, readonly=True) as session:
        data = read_training_data(session)
    fitted = fit_challenger(data, spec, min_closed=min_closed, actor=actor, progress=progress)
    if progress:
        progress("storing the model")
    return run_in_transaction(settings, lambda session: register(session, fitted, actor=actor))


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


def model_charts(session: Session, version: str) -> dict[str, Any]:
    """A model's calibration (reliability bins) and lift by decile on its held-out split, as stored at training."""
    row = session.scalar(select(ScoringModel).where(ScoringModel.version == version))
    if row is None:
        raise NotFound(f"no scoring model with version {version!r}")
    stored = (row.report or {}).get("charts")
    if not stored:
        raise NotFound(f"model {version} was trained before charts were recorded; train a new one to see them")
    return {
        "version": row.version,
        "status": row.status,
        "algorithm": row.algorithm,
        "split": (row.report or {}).get("split"),
        "auc": row.auc,
        "brier": row.brier,
        "ece": row.calibration_error,
        **stored,
    }
