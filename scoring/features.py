"""Capture-time features: the snapshot taken when a lead arrives, and the spec of what may be learned."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from core.errors import InvalidInput

DEFAULT_FEATURE_SPEC = Path(__file__).resolve().parent / "feature_spec.yaml"


def snake(name: str) -> str:
    """'Total Time Spent on Website' -> 'total_time_spent_on_website'."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def capture_snapshot(
    *,
    source: str | None,
    consent_email: bool,
    consent_call: bool,
    free_mail: bool | None,
    phone: str | None,
    company: str | None,
    title: str | None,
    custom: dict[str, Any],
) -> dict[str, Any]:
    """The flat feature dict stored on a lead at capture; training and scoring read only this."""
    snapshot: dict[str, Any] = {
        "source": source,
        "consent_email": consent_email,
        "consent_call": consent_call,
        "free_mail": free_mail,
        "has_phone": bool(phone),
        "has_company": bool(company),
        "title": title,
    }
    for key, value in custom.items():
        snapshot[f"custom.{snake(key)}"] = value
    return snapshot


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    numeric: list[str] = []
    categorical: list[str] = []
    post_contact: list[str] = []
    # A snapshot field giving arrival order (a sequence number): the held-out split takes the newest quarter by
    # it when capture times do not vary (an import stamps every row with the same time). Never a feature.
    arrival: str | None = None
    # Categorical fields whose values define the population a model learned from (scoring.model.learn_domain).
    segments: list[str] = []

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def leaking(self) -> list[str]:
        return [c for c in self.columns if any(fnmatch.fnmatch(c, pattern) for pattern in self.post_contact)]

    def check_trainable(self) -> None:
        leaks = self.leaking()
        if leaks:
            raise InvalidInput(
                "refused for training: "
                + ", ".join(leaks)
                + " are filled in after contact (post-outcome leakage); a capture-time score cannot use them",
                details={"fields": leaks},
            )
        if not self.columns:
            raise InvalidInput("the feature spec lists no numeric or categorical field")
        unknown = [c for c in self.segments if c not in self.categorical]
        if unknown:
            raise InvalidInput(f"segments must be categorical fields of the spec: {', '.join(unknown)}")
        duplicated = {c for c in self.columns if self.columns.count(c) > 1}
        if duplicated:
            raise InvalidInput(f"fields listed twice in the feature spec: {', '.join(sorted(duplicated))}")


def load_feature_spec(path: Path | str = DEFAULT_FEATURE_SPEC) -> FeatureSpec:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return FeatureSpec.model_validate(data)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise InvalidInput(f"cannot read feature spec {path}: {exc}") from exc
