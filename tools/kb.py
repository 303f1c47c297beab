"""Knowledge base: won deals, case studies and product facts in chromadb, embedded offline.

The embedding function is registered with chromadb under the name `revloop-hashed-ngrams`: hashed word
and character n-grams folded into 1,024 dense dimensions, L2-normalised. It is deterministic and needs
no download (chromadb's default function fetches an ONNX model, which cannot work here).
Embedded default: a PersistentClient under var/kb; at scale: a chromadb server (REVLOOP_KB_URL).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.db import session_scope
from core.errors import InvalidInput
from core.models import Deal
from core.settings import Settings
from tools.agent_tools import _Args
from tools.registry import ToolContext, agent_tool

COLLECTION = "revloop-kb"
KINDS = ("won_deal", "case_study", "product_fact")


_client_lock = threading.Lock()


def _client(location: str) -> Any:
    # chromadb's client set-up is not thread-safe: two worker threads making the first client of a path at once
    # fail ("Could not connect to tenant default_tenant", KeyError on the path). One at a time, then cached.
    with _client_lock:
        return _make_client(location)


@lru_cache(maxsize=4)
def _make_client(location: str) -> Any:
    import chromadb

    telemetry_off = chromadb.Settings(anonymized_telemetry=False)
    if location.startswith(("http://", "https://")):
        url = urlsplit(location)
        return chromadb.HttpClient(
            host=url.hostname, port=url.port or 8000, ssl=url.scheme == "https", settings=telemetry_off
        )
    return chromadb.PersistentClient(path=location, settings=telemetry_off)


def collection(settings: Settings) -> Any:
    # chromadb (1 s to import) and the embedding come in with the first knowledge-base call, not with this module
    # (the lead graph's tools import it), so a worker starts without them.
    from tools.kb_embedding import HashedNgramEmbedding

    location = settings.kb_url or str(settings.var_dir / "kb")
    return _client(location).get_or_create_collection(
        COLLECTION, embedding_function=HashedNgramEmbedding(), metadata={"hnsw:space": "cosine"}
    )


def add(settings: Settings, *, doc_id: str, kind: str, title: str, text: str, record: str | None = None) -> None:
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not text.strip():
        raise InvalidInput("the document text is empty")
    collection(settings).upsert(
        ids=[doc_id], documents=[text], metadatas=[{"kind": kind, "title": title, "record": record or doc_id}]
    )


def index_won_deals(settings: Settings) -> int:
    """Put every won deal in the knowledge base (idempotent: one document per deal)."""
    with session_scope(settings) as session:
        deals = session.scalars(
            select(Deal).where(Deal.outcome == "won").options(selectinload(Deal.account), selectinload(Deal.lead))
        ).all()
        docs = []
        for d in deals:
            account = d.account
            parts = [d.name]
            if account is not None:
                parts += [
                    f"{account.name} is a {account.industry or 'company'}",
                    f"with {account.employees} employees" if account.employees else "",
                    f"in {account.country}" if account.country else "",
                ]
            if d.lead is not None and d.lead.title:
                parts.append(f"buyer: {d.lead.title}")
            docs.append((f"deal-{d.id}", d.name, ". ".join(p for p in parts if p), f"deal:{d.id}"))
    if docs:
        col = collection(settings)
        for start in range(0, len(docs), 500):
            chunk = docs[start : start + 500]
            col.upsert(
                ids=[c[0] for c in chunk],
                documents=[c[2] for c in chunk],
                metadatas=[{"kind": "won_deal", "title": c[1], "record": c[3]} for c in chunk],
            )
    return len(docs)


def search(settings: Settings, text: str, limit: int = 3, kind: str | None = None) -> list[dict[str, Any]]:
    col = collection(settings)
    if col.count() == 0:
        return []
    result = col.query(query_texts=[text], n_results=min(limit, col.count()), where={"kind": kind} if kind else None)
    return [
        {
            "record": meta["record"],
            "title": meta["title"],
            "kind": meta["kind"],
            "text": doc,
            "similarity": round(1 - dist, 3),
        }
        for doc, meta, dist in zip(result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True)
    ]


class SimilarCases(_Args):
    text: str = Field(min_length=1, max_length=2000, description="What the lead's company does and needs")
    limit: int = Field(3, ge=1, le=10)


@agent_tool(scope="read_kb")
def similar_won_cases(ctx: ToolContext, args: SimilarCases) -> dict[str, Any]:
    """The won deals and case studies most similar to a description of the lead's company and needs."""
    matches = search(ctx.settings, args.text, args.limit)
    return {"found": bool(matches), "matches": matches, "record": matches[0]["record"] if matches else None}
