"""The outcome model: learns P(won) from closed deals, using capture-time features only.

Candidates (a regularised logistic regression and a gradient-boosted model) are compared by
cross-validated AUC on the training split; the winner is calibrated (isotonic, cross-fitted) and
evaluated on a held-out split, time-based when capture dates vary. Two baselines run on the same
split: plain logistic regression and an Odoo-style naive-Bayes frequency model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

from core.errors import InvalidInput
from scoring.features import FeatureSpec

RANDOM_STATE = 7
N_JOBS = 2  # this service's machines have two cores
MISSING = "(missing)"


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


def _preprocess(spec: FeatureSpec, *, dense: bool = False, splines: bool = False) -> ColumnTransformer:
    numeric = [("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))]
    if splines:  # lets a linear model bend: time on site matters up to a point, then flattens
        numeric.append(("splines", SplineTransformer(n_knots=6, degree=3, knots="quantile")))
    numeric.append(("scale", StandardScaler()))
    return ColumnTransformer(
        [
            ("num", Pipeline(numeric), spec.numeric),
            (
                "cat",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, sparse_output=not dense),
                spec.categorical,
            ),
        ]
    )


def candidates(spec: FeatureSpec) -> dict[str, Pipeline]:
    """The challengers compared by cross-validation."""
    return {
        "logistic_splines": Pipeline(
            [("pre", _preprocess(spec, splines=True)), ("clf", LogisticRegression(C=0.3, max_iter=3000))]
        ),
        "gradient_boosting": Pipeline(
            [
                ("pre", _preprocess(spec, dense=True)),
                (
                    "clf",
                    HistGradientBoostingClassifier(
                        max_iter=300, learning_rate=0.05, l2_regularization=1.0, random_state=RANDOM_STATE
                    ),
                ),
            ]
        ),
    }


def plain_logistic(spec: FeatureSpec) -> Pipeline:
    """Baseline: logistic regression with default settings, no splines, no calibration."""
    return Pipeline([("pre", _preprocess(spec)), ("clf", LogisticRegression(max_iter=3000))])


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


@dataclass
class Split:
    kind: str  # "time" | "stratified"
    train: np.ndarray
    test: np.ndarray
    cutoff: str | None = None


def holdout_split(captured_at: list[Any], y: np.ndarray, test_size: float = 0.25) -> Split:
    """Newest quarter as the test set when capture times vary; a seeded stratified split otherwise."""
    times = pd.to_datetime(pd.Series(captured_at), utc=True)
    index = np.arange(len(y))
    if times.nunique() >= max(10, len(y) // 20):
        order = np.argsort(times.to_numpy(), kind="stable")
        cut = int(len(y) * (1 - test_size))
        train, test = order[:cut], order[cut:]
        if len(set(y[train])) == 2 and len(set(y[test])) == 2:
            return Split("time", train, test, cutoff=str(times.iloc[order[cut]]))
    train, test = train_test_split(index, test_size=test_size, random_state=RANDOM_STATE, stratify=y)
    return Split("stratified", np.sort(train), np.sort(test))


@dataclass
class TrainResult:
    algorithm: str
    model: CalibratedClassifierCV
    metrics: dict[str, float]
    cv_auc: dict[str, float]
    baselines: dict[str, dict[str, float]]
    split: Split
    seconds: float


def train(X: pd.DataFrame, y: np.ndarray, spec: FeatureSpec, split: Split) -> TrainResult:
    spec.check_trainable()
    start = time.perf_counter()
    y = np.asarray(y).astype(int)
    X_train, y_train, X_test, y_test = X.iloc[split.train], y[split.train], X.iloc[split.test], y[split.test]
    if min(np.bincount(y_train, minlength=2)) < 5:
        raise InvalidInput("the training split needs at least 5 won and 5 lost deals")
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=RANDOM_STATE)
    cv_auc = {
        name: round(
            float(cross_val_score(pipe, X_train, y_train, cv=folds, scoring="roc_auc", n_jobs=N_JOBS).mean()), 4
        )
        for name, pipe in candidates(spec).items()
    }
    best = max(cv_auc, key=cv_auc.get)
    # ensemble=False: one model refitted on all training rows plus an isotonic map learned from
    # out-of-fold predictions, so scoring runs one pipeline instead of five.
    model = CalibratedClassifierCV(candidates(spec)[best], method="isotonic", cv=folds, n_jobs=N_JOBS, ensemble=False)
    model.fit(X_train, y_train)
    result_metrics = metrics(y_test, model.predict_proba(X_test)[:, 1])
    plain = plain_logistic(spec).fit(X_train, y_train)
    naive = NaiveBayesFrequency(spec).fit(X_train, y_train)
    baselines = {
        "logistic_regression": metrics(y_test, plain.predict_proba(X_test)[:, 1]),
        "naive_bayes_frequency": metrics(y_test, naive.predict_proba(X_test)[:, 1]),
    }
    return TrainResult(best, model, result_metrics, cv_auc, baselines, split, round(time.perf_counter() - start, 2))


# --- persistence (skops: no pickle of untrusted bytes) -----------------------------------------------

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "collections.", "scipy.")


def dump(model: Any) -> bytes:
    import skops.io as sio

    return sio.dumps(model)


def load(data: bytes) -> Any:
    """Load a skops artifact, refusing any type outside scikit-learn / numpy / scipy / builtins."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
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
