"""A lead's final score: rubric fit, blended with the champion model's probability when there is one."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.settings import Settings
from scoring import registry
from scoring.features import FeatureSpec
from scoring.icp import active_rubric
from scoring.rubric import final_grade, score_batch, score_facts


def score_lead(session: Session, settings: Settings, facts: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    rubric = active_rubric(session, settings)
    fit = score_facts(rubric, facts)
    result: dict[str, Any] = {
        **fit.model_dump(),
        "rubric_score": fit.score,
        "model": None,
        "fallback": None,
        "model_weight": 0.0,  # the share of the final score that came from the outcome model
        "model_out_of_domain": False,
    }
    champion = registry.champion(session, with_artifact=False)  # the model itself is loaded once per process
    closed = (champion.n_won + champion.n_lost) if champion else registry.count_closed(session)
    if champion is None or closed < settings.scoring_min_closed_deals:
        result["fallback"] = (
            f"rubric only: the outcome model needs at least {settings.scoring_min_closed_deals} closed deals "
            f"({closed} so far{'' if champion is None else ' in the champion'})"
        )
        return result
    from scoring.model import out_of_domain, top_factors  # scikit-learn loads only once there is a model

    outside = out_of_domain(champion.domain, snapshot)
    if outside:  # a model says nothing about leads unlike those it learned from: the rubric alone scores them
        result["model_out_of_domain"] = True
        result["fallback"] = (
            f"rubric only: the lead is outside the population model {champion.version} learned from: "
            + "; ".join(outside)
        )
        return result
    spec = FeatureSpec.model_validate(champion.feature_spec)
    explained = top_factors(registry.load_model(champion), spec, snapshot)
    weight = settings.scoring_model_weight
    result["model_weight"] = weight
    final = max(1, min(100, round((1 - weight) * fit.score + weight * 100 * explained["probability"])))
    result.update(
        score=final,
        grade=final_grade(final, rubric, fit),  # the rubric's adjustments cap the blend too
        model={"version": champion.version, **explained},
    )
    return result


def pre_grade(session: Session, settings: Settings, facts: dict[str, Any]) -> str:
    """A fast guess of a lead's grade at capture, to order the work queue (hot leads first): the active rubric on
    what the lead and its CRM records already hold, with no outcome model and no embedding model loaded (semantic
    criteria count as not met). The lead graph scores it properly; this only decides who is drafted first."""
    return score_batch(active_rubric(session, settings), [facts], with_semantic=False)[0][1]
