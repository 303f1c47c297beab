"""Scoring benchmark: outcome-model training time and quality, and batch scoring throughput (leads/s).

    .venv/bin/python bench/bench_scoring.py [--dataset PATH] [--leads 20000] [--compare-previous]

Uses the X Education file from ../shared/datasets (not copied into the repository). Training = what
`revloop scoring train` fits, on the file's 7,451 rows, the newest quarter by Lead Number held out;
wall and CPU seconds are both printed (a busy shared box stretches the first, not the second).
--compare-previous also fits the recipe used before (logistic splines + isotonic over 5 folds) on the
same split. Scoring = the example X Education rubric over every lead + the calibrated model's
probability + the blend, in batches, as `score_batch` and `predict_proba` run them.
Goals: training < 10 s on 2 cores with AUC >= 0.875 and Brier <= 0.135; >= 20,000 leads/s.
"""

from __future__ import annotations

import argparse
import json
import os
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
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--compare-previous", action="store_true", help="also fit the previous recipe")
    args = parser.parse_args()

    facts, snapshots, y = load(args.dataset)
    spec = load_feature_spec()
    rubric = load_rubric(ROOT / "scoring" / "rubrics" / "examples" / "x-education-fit.yaml")

    X = outcome_model.frame(snapshots, spec)
    split = outcome_model.holdout_split([None] * len(y), y, arrival=[s.get(spec.arrival) for s in snapshots])
    started, cpu = time.perf_counter(), time.process_time()
    trained = outcome_model.train(X, y, spec, split)
    train_seconds, train_cpu = time.perf_counter() - started, time.process_time() - cpu
    previous = None
    if args.compare_previous:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            started = time.perf_counter()
            old = outcome_model.previous_recipe(spec).fit(X.iloc[split.train], y[split.train])
            previous = outcome_model.metrics(y[split.test], old.predict_proba(X.iloc[split.test])[:, 1])
            previous["train_seconds"] = round(time.perf_counter() - started, 2)

    batch_facts, batch_snapshots = tile(facts, args.leads), tile(snapshots, args.leads)
    score_batch(rubric, batch_facts[:100])  # warm caches (compiled rubric, imports)
    started, cpu = time.perf_counter(), time.process_time()
    finals = []
    for i in range(0, args.leads, args.batch):
        fits = score_batch(rubric, batch_facts[i : i + args.batch])
        p = trained.model.predict_proba(outcome_model.frame(batch_snapshots[i : i + args.batch], spec))[:, 1]
        finals.extend(round(0.5 * fit + 50 * q) for (fit, _), q in zip(fits, p, strict=True))
    score_seconds, score_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(finals) == args.leads

    figures = {
        "machine": f"{platform.machine()} {platform.python_version()}, {os.cpu_count()} cores",
        "load_average": round(os.getloadavg()[0], 1),
        "split": f"{split.kind}: train {len(split.train)}, test {len(split.test)}",
        "train_seconds": round(train_seconds, 2),
        "train_cpu_seconds": round(train_cpu, 2),
        "train_goal_seconds": 10,
        "algorithm": trained.algorithm,
        "cv_auc": trained.cv_auc,
        "holdout_auc": trained.metrics["auc"],
        "holdout_brier": trained.metrics["brier"],
        "holdout_ece": trained.metrics["ece"],
        "goal": "AUC >= 0.875, Brier <= 0.135",
        "baselines": trained.baselines,
        "previous_recipe": previous,
        "leads_scored": args.leads,
        "score_seconds": round(score_seconds, 3),
        "leads_per_second": round(args.leads / score_seconds),
        "score_cpu_seconds": round(score_cpu, 3),
        "leads_per_cpu_second": round(args.leads / score_cpu),
        "leads_per_second_goal": 20_000,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
