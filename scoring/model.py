"""The outcome model: learns P(won) from closed deals, using capture-time features only.

Two members are fitted: a logistic regression over splines, one-hot and target-encoded categories, and a small
LightGBM. Their out-of-fold predictions on the training split (3 folds) give each one's CV AUC and the AUC of
their average; the best of the three is refitted on all training rows and calibrated by an isotonic map learned
from those same out-of-fold predictions (no extra fits). It is judged on a held-out split: time-based when
capture dates vary, by arrival order (a sequence field named in the feature spec) when they do not, stratified
otherwise. Two baselines run on the same split: plain logistic regression and an Odoo-style naive-Bayes model.

Every fit runs on one thread (BLAS, OpenMP, LightGBM): on a shared 2-core box more threads oversubscribe the
cores and run slower, and the other core stays free for the API and the worker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler, TargetEncoder

from core.errors import InvalidInput
from scoring.features import FeatureSpec

RANDOM_STATE = 7
N_JOBS = 1  # threads per fit (BLAS, OpenMP, LightGBM); see the module docstring
CV_FOLDS = 3
MISSING = "(missing)"
BLEND = "blend"
BLEND_PREFERENCE = 0.002  # CV AUC a single member must gain over the blend to be chosen alone

Progress = Callable[[str], None]


def frame(rows: list[dict[str, Any]], spec: FeatureSpec) -> pd.DataFrame:
    """Rows of capture snapshots -> a typed frame with exactly the spec's columns."""
    data = {}
    for column in spec.numeric:
        data[column] = pd.to_numeric(pd.Series([r.get(column) for r in rows], dtype="object"), errors="coerce")
    for column in spec.categorical:
        data[column] = pd.Series(
            [MISSING if r.get(column) in (None, "") else str(r.get(column)) for r in rows], dtype="object"
        )
    return pd.DataFrame(data, columns=spec.columns)


def _preprocess(
    spec: FeatureSpec, *, dense: bool = False, splines: bool = False, target_encoding: bool = False
) -> ColumnTransformer:
    numeric = [("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))]
    if splines:  # lets a linear model bend: time on site matters up to a point, then flattens
        numeric.append(("splines", SplineTransformer(n_knots=6, degree=3, knots="quantile")))
    numeric.append(("scale", StandardScaler()))
    parts = [
        ("num", Pipeline(numeric), spec.numeric),
        (
            "cat",
            OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, sparse_output=not dense),
            spec.categorical,
        ),
    ]
    if target_encoding:  # each category's smoothed win rate, cross-fitted (no leakage of a row's own label)
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=RANDOM_STATE)
        encode = Pipeline([("encode", TargetEncoder(cv=folds)), ("scale", StandardScaler())])
        parts.append(("target", encode, spec.categorical))
    return ColumnTransformer(parts)


def _lightgbm(spec: FeatureSpec) -> Pipeline:
    from lightgbm import LGBMClassifier

    # Categories arrive as integer codes (CalibratedEnsemble.encode); shallow trees split on them as numbers,
    # which measured as well as LightGBM's categorical splits here and needs no per-fit parameters.
    return Pipeline(
        [
            (
                "clf",
                LGBMClassifier(
                    n_estimators=300,
                    learning_rate=0.05,
                    num_leaves=7,
                    min_child_samples=20,
                    subsample=0.8,
                    subsample_freq=1,
                    colsample_bytree=0.7,
                    reg_lambda=1.0,
                    n_jobs=N_JOBS,
                    random_state=RANDOM_STATE,
                    verbose=-1,
                ),
            ),
        ]
    )


def candidates(spec: FeatureSpec) -> dict[str, Pipeline]:
    """The members compared by cross-validation (their average is a third candidate). They read frames whose
    categorical columns are integer codes (CalibratedEnsemble.encode): encoders on codes fit ~10x faster than on
    strings."""
    return {
        "logistic_splines": Pipeline(
            [
                ("pre", _preprocess(spec, splines=True, target_encoding=True)),
                ("clf", LogisticRegression(C=0.3, max_iter=3000)),
            ]
        ),
        "lightgbm": _lightgbm(spec),
    }


def plain_logistic(spec: FeatureSpec) -> Pipeline:
    """Baseline: logistic regression with default settings, no splines, no calibration."""
    return Pipeline([("pre", _preprocess(spec)), ("clf", LogisticRegression(max_iter=3000))])


def previous_recipe(spec: FeatureSpec):
    """The recipe this project trained before (splines, one-hot, isotonic over 5 folds): for the benchmark's
    comparison only."""
    from sklearn.calibration import CalibratedClassifierCV

    logistic = Pipeline([("pre", _preprocess(spec, splines=True)), ("clf", LogisticRegression(C=0.3, max_iter=3000))])
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=RANDOM_STATE)
    return CalibratedClassifierCV(logistic, method="isotonic", cv=folds, ensemble=False)


def vocabulary(X: pd.DataFrame, spec: FeatureSpec) -> dict[str, dict[str, int]]:
    """Each categorical column's values (as seen in training) -> integer codes."""
    return {column: {v: i for i, v in enumerate(sorted(X[column].unique()))} for column in spec.categorical}


class CalibratedEnsemble:
    """The average of the members' probabilities, mapped through an isotonic calibration learned from
    out-of-fold predictions. Categorical values are coded with the training vocabulary first (an unseen value
    is -1). One class of ours, listed by name in the loading allowlist."""

    def __init__(self, members: list[Any], calibrator: IsotonicRegression, names: list[str], codes: dict):
        self.members, self.calibrator, self.names, self.codes = members, calibrator, names, codes

    def encode(self, X: pd.DataFrame) -> pd.DataFrame:
        return encode(X, self.codes)

    def raw(self, X: pd.DataFrame) -> np.ndarray:
        coded = self.encode(X)
        return np.mean([m.predict_proba(coded)[:, 1] for m in self.members], axis=0)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.clip(self.calibrator.predict(self.raw(X)), 0.001, 0.999)
        return np.column_stack([1 - p, p])


def encode(X: pd.DataFrame, codes: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Categorical columns as their training codes (the vocabulary lists values in code order), -1 if unseen."""
    out = {column: X[column] for column in X.columns if column not in codes}
    for column, mapping in codes.items():
        out[column] = pd.Index(list(mapping)).get_indexer(X[column]).astype(np.int64)
    return pd.DataFrame(out, index=X.index)[list(X.columns)]


class NaiveBayesFrequency:
    """Odoo-style predictive lead scoring: P(won | field values) from won/lost frequencies per value,
    fields assumed independent, Laplace smoothing; numbers are binned into quintiles first."""

    def __init__(self, spec: FeatureSpec, alpha: float = 1.0):
        self.spec, self.alpha = spec, alpha

    def _tokens(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X[self.spec.categorical].astype(str).copy()
        for column in self.spec.numeric:
            out[column] = np.digitize(X[column].fillna(-1e18), self.edges_[column]).astype(str)
            out.loc[X[column].isna(), column] = MISSING
        return out

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> NaiveBayesFrequency:
        self.edges_ = {
            c: np.unique(np.nanquantile(X[c], [0.2, 0.4, 0.6, 0.8])) if X[c].notna().any() else np.array([])
            for c in self.spec.numeric
        }
        tokens = self._tokens(X)
        y = np.asarray(y)
        self.prior_ = math.log((y.sum() + self.alpha) / (len(y) - y.sum() + self.alpha))
        self.tables_: dict[str, dict[str, float]] = {}
        n_won, n_lost = y.sum(), len(y) - y.sum()
        for column in tokens.columns:
            won = tokens[column][y == 1].value_counts()
            lost = tokens[column][y == 0].value_counts()
            k = len(set(won.index) | set(lost.index)) + 1
            self.tables_[column] = {
                value: math.log((won.get(value, 0) + self.alpha) / (n_won + self.alpha * k))
                - math.log((lost.get(value, 0) + self.alpha) / (n_lost + self.alpha * k))
                for value in set(won.index) | set(lost.index)
            }
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        tokens = self._tokens(X)
        logit = np.full(len(X), self.prior_)
        for column, table in self.tables_.items():
            logit += tokens[column].map(table).fillna(0.0).to_numpy()
        p = 1 / (1 + np.exp(-logit))
        return np.column_stack([1 - p, p])


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed win rate - mean predicted probability| over equal-width bins."""
    y, p = np.asarray(y), np.asarray(p)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(total)


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return {
        "auc": round(float(roc_auc_score(y, p)), 4) if len(set(y)) > 1 else float("nan"),
        "brier": round(float(brier_score_loss(y, p)), 4),
        "log_loss": round(float(log_loss(y, p, labels=[0, 1])), 4),
        "ece": round(expected_calibration_error(y, p), 4),
    }


def charts(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """What a manager's calibration and lift charts show, on the held-out split: reliability bins (mean
    predicted vs observed win rate per equal-width probability bin) and lift by decile (deals ranked by the
    model, 1 = the top tenth: its win rate over the overall win rate)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    reliability = [
        {
            "bin": b + 1,
            "low": round(float(edges[b]), 2),
            "high": round(float(edges[b + 1]), 2),
            "n": int((index == b).sum()),
            "predicted": round(float(p[index == b].mean()), 4),
            "observed": round(float(y[index == b].mean()), 4),
        }
        for b in range(bins)
        if (index == b).any()
    ]
    base = float(y.mean()) if len(y) else 0.0
    order = np.argsort(-p, kind="stable")
    lift = []
    for decile, members in enumerate(np.array_split(order, 10), start=1):
        if not len(members):
            continue
        rate = float(y[members].mean())
        lift.append(
            {
                "decile": decile,
                "n": len(members),
                "predicted": round(float(p[members].mean()), 4),
                "win_rate": round(rate, 4),
                "lift": round(rate / base, 3) if base else None,
            }
        )
    return {"n": len(y), "base_rate": round(base, 4), "reliability": reliability, "lift": lift}


@dataclass
class Split:
    kind: str  # "time" | "arrival" | "stratified"
    train: np.ndarray
    test: np.ndarray
    cutoff: str | None = None


def _newest(order: np.ndarray, y: np.ndarray, test_size: float) -> tuple[np.ndarray, np.ndarray] | None:
    cut = int(len(y) * (1 - test_size))
    train, test = order[:cut], order[cut:]
    if len(set(y[train])) == 2 and len(set(y[test])) == 2:
        return train, test
    return None


def holdout_split(
    captured_at: list[Any], y: np.ndarray, test_size: float = 0.25, *, arrival: list[Any] | None = None
) -> Split:
    """Newest quarter as the test set: by capture time when capture times vary, else by arrival order (a
    sequence number such as X Education's Lead Number) when every row has one; a seeded stratified split
    otherwise."""
    times = pd.to_datetime(pd.Series(captured_at), utc=True)
    index = np.arange(len(y))
    if times.nunique() >= max(10, len(y) // 20):
        order = np.argsort(times.to_numpy(), kind="stable")
        parts = _newest(order, y, test_size)
        if parts:
            return Split("time", *parts, cutoff=str(times.iloc[order[int(len(y) * (1 - test_size))]]))
    if arrival is not None:
        sequence = pd.to_numeric(pd.Series(arrival, dtype="object"), errors="coerce")
        if sequence.notna().all() and sequence.nunique() >= max(10, len(y) // 20):
            order = np.argsort(sequence.to_numpy(), kind="stable")
            parts = _newest(order, y, test_size)
            if parts:
                return Split("arrival", *parts, cutoff=f"{sequence.iloc[order[int(len(y) * (1 - test_size))]]:g}")
    train, test = train_test_split(index, test_size=test_size, random_state=RANDOM_STATE, stratify=y)
    return Split("stratified", np.sort(train), np.sort(test))


@dataclass
class TrainResult:
    algorithm: str
    model: CalibratedEnsemble
    metrics: dict[str, float]
    cv_auc: dict[str, float]
    baselines: dict[str, dict[str, float]]
    split: Split
    seconds: float
    charts: dict[str, Any]
    cpu_seconds: float  # what the fit cost, which a busy machine does not inflate (seconds is wall time)


def train(
    X: pd.DataFrame, y: np.ndarray, spec: FeatureSpec, split: Split, *, progress: Progress | None = None
) -> TrainResult:
    from threadpoolctl import threadpool_limits

    spec.check_trainable()
    step = progress or (lambda label: None)
    start, cpu = time.perf_counter(), time.process_time()
    y = np.asarray(y).astype(int)
    X_train, y_train, X_test, y_test = X.iloc[split.train], y[split.train], X.iloc[split.test], y[split.test]
    if min(np.bincount(y_train, minlength=2)) < 5:
        raise InvalidInput("the training split needs at least 5 won and 5 lost deals")
    with threadpool_limits(limits=N_JOBS):
        codes = vocabulary(X_train, spec)
        coded = encode(X_train, codes)
        members = candidates(spec)
        folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=RANDOM_STATE)
        oof = {name: np.zeros(len(y_train)) for name in members}
        for k, (fit_rows, held) in enumerate(folds.split(coded, y_train), start=1):
            for name in members:
                step(f"fold {k}/{CV_FOLDS}: {name}")
                fitted = candidates(spec)[name].fit(coded.iloc[fit_rows], y_train[fit_rows])
                oof[name][held] = fitted.predict_proba(coded.iloc[held])[:, 1]
        if len(members) > 1:
            oof[BLEND] = np.mean([oof[name] for name in members], axis=0)
        cv_auc = {name: round(float(roc_auc_score(y_train, p)), 4) for name, p in oof.items()}
        # The average of two model families is chosen unless one of them alone is clearly better (it varies
        # less from one sample of deals to the next).
        best = max(cv_auc, key=lambda name: cv_auc[name] + (BLEND_PREFERENCE if name == BLEND else 0))
        chosen = list(members) if best == BLEND else [best]
        fitted_members = []
        for name in chosen:
            step(f"final fit: {name}")
            fitted_members.append(members[name].fit(coded, y_train))
        calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(oof[best], y_train)
        model = CalibratedEnsemble(fitted_members, calibrator, chosen, codes)
        step("held-out evaluation and baselines")
        p_test = model.predict_proba(X_test)[:, 1]
        plain = plain_logistic(spec).fit(X_train, y_train)
        naive = NaiveBayesFrequency(spec).fit(X_train, y_train)
        baselines = {
            "logistic_regression": metrics(y_test, plain.predict_proba(X_test)[:, 1]),
            "naive_bayes_frequency": metrics(y_test, naive.predict_proba(X_test)[:, 1]),
        }
    algorithm = "+".join(chosen) + "+isotonic"
    return TrainResult(
        algorithm,
        model,
        metrics(y_test, p_test),
        cv_auc,
        baselines,
        split,
        round(time.perf_counter() - start, 2),
        charts(y_test, p_test),
        round(time.process_time() - cpu, 2),
    )


# --- the population a model learned from ----------------------------------------------------------

MIN_SEGMENT_ROWS = 10  # a segment value seen in fewer training rows is not part of the population
MIN_COVERAGE = 0.5  # fields filled in on at least half the training rows ...
MIN_MINORITY = 0.02  # ... whose values varied (2 % or more differ from the commonest) are what the model learned
MIN_LEAD_COVERAGE = 1 / 3  # a lead must carry at least a third of those


def _missing(X: pd.DataFrame, column: str, spec: FeatureSpec) -> pd.Series:
    return X[column].isna() if column in spec.numeric else X[column].eq(MISSING)


def learn_domain(X: pd.DataFrame, spec: FeatureSpec, sources: dict[str, int]) -> dict[str, Any]:
    """The population a model learned from: where its rows came from, which segment values it saw often enough,
    how often each field was filled in, and the fields it could learn from (filled in and varied)."""
    coverage, learned_from = {}, []
    for column in spec.columns:
        missing = _missing(X, column, spec)
        share = float(1 - missing.mean()) if len(X) else 0.0
        coverage[column] = round(share, 4)
        values = X.loc[~missing, column].astype(str).value_counts(normalize=True)
        if share >= MIN_COVERAGE and len(values) > 1 and 1 - float(values.iloc[0]) >= MIN_MINORITY:
            learned_from.append(column)
    segments: dict[str, dict[str, int]] = {}
    for column in spec.segments:
        if column not in X or coverage.get(column, 0) < MIN_COVERAGE:
            continue  # the training rows rarely said: no evidence either way
        counts = X.loc[~_missing(X, column, spec), column].astype(str).str.casefold().value_counts()
        segments[column] = {str(v): int(n) for v, n in counts.items() if n >= MIN_SEGMENT_ROWS}
    return {
        "rows": len(X),
        "sources": sources,
        "segments": segments,
        "coverage": coverage,
        "learned_from": learned_from,
        "rules": {
            "min_segment_rows": MIN_SEGMENT_ROWS,
            "min_field_coverage": MIN_COVERAGE,
            "min_lead_coverage": MIN_LEAD_COVERAGE,
        },
    }


def _label(column: str) -> str:
    return column.removeprefix("custom.").replace("_", " ")


def out_of_domain(domain: dict[str, Any] | None, snapshot: dict[str, Any]) -> list[str]:
    """Why a lead lies outside the population a model learned from, in words (empty: inside it, or the model
    recorded no population)."""
    if not domain:
        return []
    reasons = []
    learned = domain.get("learned_from") or []
    if learned:
        present = [c for c in learned if snapshot.get(c) not in (None, "")]
        if len(present) < MIN_LEAD_COVERAGE * len(learned):
            missing = [_label(c) for c in learned if c not in present]
            reasons.append(
                f"it has {len(present)} of the {len(learned)} fields the model learned from, missing "
                f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"
            )
    for column, seen in (domain.get("segments") or {}).items():
        value = snapshot.get(column)
        if value in (None, ""):
            continue
        if str(value).casefold() not in seen:
            reasons.append(
                f"{_label(column)} {str(value)[:60]!r} is not among the segments of its {domain.get('rows', 0)} "
                "training leads"
            )
    return reasons


# --- persistence (skops: no pickle of untrusted bytes) -----------------------------------------------

# Types a model artifact may contain beyond skops' own defaults: scikit-learn's estimators, and these exactly.
# Nothing else from builtins (eval, exec, getattr ...) or any other module.
TRUSTED_PREFIXES = ("sklearn.",)
TRUSTED_TYPES = frozenset(
    {
        "collections.OrderedDict",
        "collections.defaultdict",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.basic.Booster",  # restored from LightGBM's own text model format
        "numpy.dtype",
        "scipy.interpolate._bsplines.BSpline",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        "scoring.model.CalibratedEnsemble",
        "sklearn.model_selection._split.StratifiedKFold",
    }
)


def dump(model: Any) -> bytes:
    import skops.io as sio

    return sio.dumps(model)


def digest(artifact: bytes) -> str:
    import hashlib

    return hashlib.sha256(artifact).hexdigest()


def load(data: bytes, *, sha256: str | None = None) -> Any:
    """Load a skops artifact, refusing one whose bytes differ from the digest recorded at training, and any type
    outside the allowlist."""
    import skops.io as sio

    if sha256 is not None and digest(data) != sha256:
        raise InvalidInput("model artifact does not match the digest recorded when it was trained (tampered?)")
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # not a skops file at all
        raise InvalidInput(f"model artifact is not a readable skops file: {exc}") from exc
    foreign = [t for t in untrusted if t not in TRUSTED_TYPES and not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise InvalidInput(f"model artifact contains types outside the allowlist: {', '.join(foreign[:5])}")
    return sio.loads(data, trusted=untrusted)


# --- explanations ---------------------------------------------------------------------------------


def top_factors(model: Any, spec: FeatureSpec, snapshot: dict[str, Any], k: int = 3) -> dict[str, Any]:
    """Probability and the fields that push it up or down the most (occlusion: each field set to missing)."""
    rows = [snapshot] + [{**snapshot, column: None} for column in spec.columns]
    probabilities = model.predict_proba(frame(rows, spec))[:, 1]
    p = float(probabilities[0])
    effects = []
    for column, without in zip(spec.columns, probabilities[1:], strict=True):
        value = snapshot.get(column)
        if value in (None, ""):
            continue
        effects.append({"field": column, "value": value, "effect": round(p - float(without), 4)})
    effects.sort(key=lambda e: e["effect"])
    against = [e for e in effects if e["effect"] < -0.005][:k]
    in_favour = [e for e in reversed(effects) if e["effect"] > 0.005][:k]
    return {"probability": round(p, 4), "for": in_favour, "against": against}
