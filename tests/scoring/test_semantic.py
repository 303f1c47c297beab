"""Real semantic matching offline (issue 17): the WordLlama embedding loads from its wheel with the network
blocked, stays out of cold start, scores a paraphrase above an unrelated text in a `semantic` criterion, and the
`semantic` eval suite shows its gain over the hashed n-gram vectors it replaced."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.db import session_scope
from evals.runner import run_suite
from scoring import hashed_ngrams
from scoring.rubric import parse, score_facts

ROOT = Path(__file__).resolve().parents[2]


def facts(**lead):
    base = {"title": None, "message": None, "free_mail": False, "phone": None, "custom": {}}
    return {"lead": {**base, **lead}, "account": None, "contact": None}


OFFLINE = textwrap.dedent(
    """
    import json, socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import scoring.embedding as embedding

    assert "wordllama" not in sys.modules  # importing the module does not load the model
    vectors = embedding.embed(["We want to automate our invoicing", "Billing should run by itself", ""])
    print(json.dumps({
        "shape": list(vectors.shape),
        "norms": [round(float((v * v).sum()), 4) for v in vectors],
        "name": embedding.NAME,
    }))
    """
)


def test_the_embedding_loads_from_the_wheel_with_the_network_blocked(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),  # an empty home: no ~/.cache/wordllama to fall back on
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "*",
    }
    done = subprocess.run([sys.executable, "-c", OFFLINE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"shape": [3, 256], "norms": [1.0, 1.0, 0.0], "name": "wordllama-l2_supercat-256"}
    assert not (tmp_path / ".cache").exists()  # nothing was downloaded or cached


def test_the_cli_starts_without_the_model_or_chromadb():
    probe = "import sys, api.cli; print(sorted(m for m in ('wordllama', 'chromadb', 'tokenizers') if m in sys.modules))"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


RUBRIC = """
version: t
criteria:
  - id: pain
    label: Chasing late payments
    kind: semantic
    field: lead.message
    statements: [Our invoices are paid late and chasing payments takes hours, We cannot follow up leads fast enough]
    weight: 1
  - {id: phone, label: Phone, kind: present, field: lead.phone, weight: 1}
grades: {A: 75, B: 50, C: 30}
"""
PARAPHRASE = "Customers settle their bills weeks after the due date and my team spends days reminding them"


def test_a_semantic_criterion_meets_a_paraphrase_and_not_an_unrelated_text():
    rubric = parse(RUBRIC)  # the default threshold
    paraphrase = {c.id: c for c in score_facts(rubric, facts(message=PARAPHRASE)).criteria}["pain"]
    assert paraphrase.met, paraphrase.evidence
    assert "invoices are paid late" in paraphrase.evidence
    for unrelated in ("What time does the museum open on Sundays?", "I would like to learn to play the guitar"):
        miss = {c.id: c for c in score_facts(rubric, facts(message=unrelated)).criteria}["pain"]
        assert not miss.met, miss.evidence
    # the hashed n-grams it replaced see no shared wording in the paraphrase
    _, old = hashed_ngrams.best_match([PARAPHRASE], tuple(rubric.criteria[0].statements))
    assert old[0] < rubric.criteria[0].threshold


def test_the_semantic_suite_shows_the_gain_over_the_hashed_vectors(settings, tmp_path):
    with session_scope(settings) as session:
        row = run_suite(session, settings, "semantic", out_dir=tmp_path / "out")
        metrics, passed = dict(row.metrics), row.passed
    assert passed
    assert metrics["cases"] == 40
    assert metrics["auc"] - metrics["auc_hashed"] == pytest.approx(metrics["auc_gain"])
    assert metrics["auc_gain"] >= 0.1
    assert metrics["paraphrase_recall"] > metrics["paraphrase_recall_hashed"] + 0.5
    assert metrics["auc_vs_unrelated"] >= 0.85
