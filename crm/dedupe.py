"""Company dedupe: the existing account a lead's company names, when its domain found none.

Cheap first: capture looks an account up by the company domain (crm.records); only if that misses does it come
here. Then the normalised name (legal suffixes, case and punctuation aside: "Acme Corp." = "ACME Corporation Ltd")
through an indexed column, and only then a fuzzy fallback over the few (at most 50) accounts whose normalised name
has the same first word: a spelling match (rapidfuzz) or the WordLlama embedding ("Delta Air Lines" = "Delta
Airlines"); each name's vector is computed once per process.
A lead from a company domain never joins an account that has another domain: two real domains are two companies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, or_, select, true
from sqlalchemy.orm import Session

from core.models import Account
from tools.enrichment import company_key, same_company

if TYPE_CHECKING:  # numpy loads with the first fuzzy match, not with the API (crm.records imports this module)
    import numpy as np

FUZZY_SIMILARITY = 0.85  # measured on company-name pairs: same company 0.88-0.93, others 0.39-0.80
MAX_CANDIDATES = 50


@dataclass(frozen=True)
class AccountMatch:
    account: Account
    how: str  # "name" (same normalised name) | "fuzzy name"
    similarity: float


def _same_first_word(key: str) -> ColumnElement[bool]:
    """Keys that are the first word alone or start with it and a space: index range scans, in code-point order
    (" " < "!"), on SQLite and PostgreSQL (C collation) alike."""
    first = key.split()[0]
    return or_(Account.name_key == first, and_(Account.name_key >= first + " ", Account.name_key < first + "!"))


_vectors: dict[str, np.ndarray] = {}  # name key -> embedding: the same few candidates come up again and again


def _embed_keys(keys: list[str]) -> np.ndarray:
    import numpy as np

    from scoring.embedding import embed  # the model loads only when a candidate needs judging

    missing = [k for k in dict.fromkeys(keys) if k not in _vectors]
    if missing:
        if len(_vectors) > 20_000:
            _vectors.clear()
        _vectors.update(zip(missing, embed(missing), strict=True))
    return np.stack([_vectors[k] for k in keys])


def find_account_by_name(session: Session, company: str | None, domain: str | None) -> AccountMatch | None:
    key = company_key(company)[:200]
    if not key:
        return None
    eligible = Account.domain.is_(None) if domain else true()
    exact = session.scalar(select(Account).where(Account.name_key == key, eligible).order_by(Account.id).limit(1))
    if exact is not None:
        return AccountMatch(exact, "name", 1.0)
    candidates = session.execute(
        select(Account.id, Account.name_key)
        .where(_same_first_word(key), eligible)
        .order_by(Account.name_key)
        .limit(MAX_CANDIDATES)
    ).all()
    if not candidates:
        return None
    vectors = _embed_keys([key] + [c.name_key for c in candidates])
    best: tuple[float, int] | None = None
    for (account_id, name_key), vector in zip(candidates, vectors[1:], strict=True):
        similarity = float(vectors[0] @ vector)
        close = similarity >= FUZZY_SIMILARITY or same_company(key, name_key)
        if close and (best is None or similarity > best[0]):
            best = (similarity, account_id)
    if best is None:
        return None
    return AccountMatch(session.get(Account, best[1]), "fuzzy name", round(best[0], 3))
