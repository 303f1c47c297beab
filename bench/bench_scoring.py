"""Scoring benchmark: batch scoring throughput (leads/s) and outcome-model training time.

    .venv/bin/python bench/bench_scoring.py [--dataset PATH] [--leads 20000] [--train-rows 9000]

Uses the X Education file from ../shared/datasets (not copied into the repository). Scoring = the
example X Education rubric over every lead + the calibrated model's probability + the blend, in
batches, as `score_batch` and `predict_proba` run them. Goals: >= 20,000 leads/s, training < 30 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crm.imports import _x_education_columns, x_education_record, x_education_snapshot  # noqa: E402
from scoring import model as outcome_model  # noqa: E402
from scoring.features import load_feature_spec  # noqa: E402
from scoring.rubric import load_rubric, score_batch  # noqa: E402

DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "x-education-leads" / "Leads.csv"


def load(path: Path) -> tuple[list[dict], list[dict], np.ndarray]:
    _, rows, passthrough = _x_education_columns(path)
    records = [x_education_record(row, passthrough) for row in rows]
    facts = [
        {
            "lead": {
                "source": r["source"],
                "consent_email": r["consent_email"],
                "consent_call": r["consent_call"],
                "custom": r["custom"],
            },
            "account": None,
            "contact": None,
        }
        for r in records
    ]
    snapshots = [x_education_snapshot(r) for r in records]
    return facts, snapshots, np.array([int(r["won"]) for r in records])


def tile(items: list, n: int) -> list:
    return (items * (n // len(items) + 1))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--leads", type=int, default=20_000, help="leads to score in the throughput run")
    parser.add_argument("--train-rows", type=int, default=9_000, help="rows to train on (resampled from the file)")
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()

    facts, snapshots, y = load(args.dataset)
    spec = load_feature_spec()
    rubric = load_rubric(ROOT / "scoring" / "rubrics" / "examples" / "x-education-fit.yaml")

    rng = np.random.default_rng(0)
    pick = rng.choice(len(y), size=args.train_rows, replace=args.train_rows > len(y))
    X_train = outcome_model.frame([snapshots[i] for i in pick], spec)
    split = outcome_model.holdout_split([None] * len(pick), y[pick])
    started = time.perf_counter()
    trained = outcome_model.train(X_train, y[pick], spec, split)
    train_seconds = time.perf_counter() - started

    batch_facts, batch_snapshots = tile(facts, args.leads), tile(snapshots, args.leads)
    score_batch(rubric, batch_facts[:100])  # warm caches (compiled rubric, imports)
    started = time.perf_counter()
    finals = []
    for i in range(0, args.leads, args.batch):
        fits = score_batch(rubric, batch_facts[i : i + args.batch])
        p = trained.model.predict_proba(outcome_model.frame(batch_snapshots[i : i + args.batch], spec))[:, 1]
        finals.extend(round(0.5 * fit + 50 * q) for (fit, _), q in zip(fits, p, strict=True))
    score_seconds = time.perf_counter() - started
    assert len(finals) == args.leads

    figures = {
        "machine": f"{platform.machine()} {platform.python_version()}",
        "train_rows": args.train_rows,
        "train_seconds": round(train_seconds, 2),
        "train_goal_seconds": 30,
        "algorithm": trained.algorithm,
        "holdout_auc": trained.metrics["auc"],
        "leads_scored": args.leads,
        "score_seconds": round(score_seconds, 3),
        "leads_per_second": round(args.leads / score_seconds),
        "leads_per_second_goal": 20_000,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
