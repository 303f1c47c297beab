"""Knowledge base: won deals, case studies and product facts in chromadb, embedded offline.

The embedding function is registered with chromadb under the name `revloop-wordllama`: the WordLlama sentence
model shipped inside the `wordllama` wheel (256 dimensions, numpy only, no download; chromadb's default function
fetches an ONNX model, which cannot work here). The collection's name carries the embedding's name, so vectors of
another embedding are never mixed in: a knowledge base built with an earlier one (`revloop-kb`, hashed n-grams)
is re-embedded into the current collection on first use, then dropped (`revloop kb rebuild` does it with a
progress bar). Embedded default: a PersistentClient under var/kb; at scale: a chromadb server (REVLOOP_KB_URL).

Similar won cases weigh the account's industry and size in next to the text, and "no similar case" is an answer:
below MIN_SCORE nothing is cited (a pizzeria is not told about a software rollout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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
from scoring import embedding
from tools.agent_tools import _Args
from tools.registry import ToolContext, agent_tool

BASE_NAME = "revloop-kb"
# The embedding's name and size are part of the collection's name: changing the embedding makes a new collection,
# and the documents of the old one are re-embedded into it (rebuild_stale).
COLLECTION = f"{BASE_NAME}-{embedding.NAME}"
KINDS = ("won_deal", "case_study", "product_fact")


_client_lock = threading.Lock()
_ready: set[str] = set()  # locations whose collection is current in this process
log = logging.getLogger(__name__)
Progress = Callable[[int], None]


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


_collections: dict[str, Any] = {}


def collection(settings: Settings, *, cached: bool = True) -> Any:
    """The knowledge base's collection, created on first use; the handle is kept per location (asking chromadb
    for it on every lead's search was a third of the search's cost). cached=False asks chromadb again."""
    # chromadb (1 s to import) and the embedding come in with the first knowledge-base call, not with this module
    # (the lead graph's tools import it), so a worker starts without them.
    location = _location(settings)
    if location not in _ready:
        rebuild_stale(settings)
    return _current(location, cached=cached)


def _location(settings: Settings) -> str:
    return settings.kb_url or str(settings.var_dir / "kb")


def _current(location: str, *, cached: bool = True) -> Any:
    from tools.kb_embedding import WordLlamaEmbedding

    if cached and (handle := _collections.get(location)) is not None:
        return handle
    handle = _client(location).get_or_create_collection(
        COLLECTION, embedding_function=WordLlamaEmbedding(), metadata={"hnsw:space": "cosine"}
    )
    _collections[location] = handle
    return handle


def stale_collections(settings: Settings) -> dict[str, int]:
    """Knowledge-base collections embedded with another embedding (an earlier revloop's): name -> documents."""
    import tools.kb_embedding  # noqa: F401 - registers the embedding functions a persisted collection names

    client = _client(_location(settings))
    names = [getattr(c, "name", c) for c in client.list_collections()]
    return {n: client.get_collection(n).count() for n in names if n.startswith(BASE_NAME) and n != COLLECTION}


def rebuild_stale(
    settings: Settings, progress: Callable[[int], Progress | None] | None = None, batch: int = 500
) -> int:
    """Re-embed every document of a stale collection into the current one, then drop the stale collection.
    progress(total) may return a callback advanced per document (the CLI's progress bar). Safe to run twice at
    once: documents are upserted by id. Returns how many documents were re-embedded."""
    location = _location(settings)
    client = _client(location)
    moved = 0
    stale = stale_collections(settings)
    total = sum(stale.values())
    advance = progress(total) if progress and total else None
    target = _current(location)
    for name, count in stale.items():
        source = client.get_collection(name)
        log.info("knowledge base: re-embedding %d document(s) of %r into %r", count, name, COLLECTION)
        for offset in range(0, count, batch):
            chunk = source.get(include=["documents", "metadatas"], limit=batch, offset=offset)
            if chunk["ids"]:
                target.upsert(ids=chunk["ids"], documents=chunk["documents"], metadatas=chunk["metadatas"])
                moved += len(chunk["ids"])
                if advance:
                    advance(len(chunk["ids"]))
        try:
            client.delete_collection(name)
        except Exception as exc:  # another process dropped it first  # noqa: BLE001
            log.info("knowledge base: %r already dropped (%s)", name, exc)
    _ready.add(location)
    if moved:
        _added_documents(settings)
    return moved


def add(
    settings: Settings,
    *,
    doc_id: str,
    kind: str,
    title: str,
    text: str,
    record: str | None = None,
    industry: str | None = None,
    employees: int | None = None,
) -> None:
    """Add or replace a document; a case's industry and employee count weigh in when similar cases are ranked."""
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not text.strip():
        raise InvalidInput("the document text is empty")
    if employees is not None and employees < 0:
        raise InvalidInput(f"employees must be 0 or more, got {employees}")
    meta: dict[str, Any] = {"kind": kind, "title": title, "record": record or doc_id}
    if industry and industry.strip():
        meta["industry"] = industry.strip().lower()
    if employees is not None:
        meta["employees"] = employees
    collection(settings).upsert(ids=[doc_id], documents=[text], metadatas=[meta])
    _added_documents(settings)


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
            # industry and size from our records weigh in when similar cases are ranked (chromadb takes no None)
            firmographics = {
                k: v
                for k, v in (("industry", _industry(account)), ("employees", account and account.employees))
                if v not in (None, "")
            }
            docs.append((f"deal-{d.id}", d.name, ". ".join(p for p in parts if p), f"deal:{d.id}", firmographics))
    if docs:
        col = collection(settings)
        for start in range(0, len(docs), 500):
            chunk = docs[start : start + 500]
            col.upsert(
                ids=[c[0] for c in chunk],
                documents=[c[2] for c in chunk],
                metadatas=[{"kind": "won_deal", "title": c[1], "record": c[3], **c[4]} for c in chunk],
            )
        _added_documents(settings)
    return len(docs)


def _industry(account: Any) -> str | None:
    return str(account.industry).strip().lower() if account is not None and account.industry else None


# Locations whose collection was last found empty, and when (time.monotonic()). A search of an empty collection
# answers [] without embedding the text; counting the documents on every search cost a lead run about 3 ms (py-spy
# on `revloop worker`), so an empty collection is counted again at most every EMPTY_RECHECK_SECONDS (documents another
# process adds are found after that; this process's own additions at once), and one with documents is not counted
# at all: chromadb answers an n_results above the collection's size with what it has.
EMPTY_RECHECK_SECONDS = 5.0
_found_empty: dict[str, float] = {}
_seen_documents: set[str] = set()  # locations found with documents


def _added_documents(settings: Settings) -> None:
    _found_empty.pop(_location(settings), None)


def _known_empty(settings: Settings, col: Any) -> bool:
    location = _location(settings)
    counted_at = _found_empty.get(location)
    if counted_at is not None and time.monotonic() - counted_at < EMPTY_RECHECK_SECONDS:
        return True
    if counted_at is None and location in _seen_documents:
        return False
    if col.count() == 0:
        _found_empty[location] = time.monotonic()
        return True
    _found_empty.pop(location, None)
    _seen_documents.add(location)
    return False


def search(settings: Settings, text: str, limit: int = 3, kind: str | None = None) -> list[dict[str, Any]]:
    where = {"kind": kind} if kind else None

    def query(col: Any) -> dict[str, Any] | None:
        return None if _known_empty(settings, col) else col.query(query_texts=[text], n_results=limit, where=where)

    col = collection(settings)  # an unreachable server fails here, once: asking again would only wait again
    try:
        result = query(col)
    except Exception:  # the cached handle went stale (the collection was dropped, the server replaced): ask again
        _found_empty.pop(_location(settings), None)
        _seen_documents.discard(_location(settings))
        result = query(collection(settings, cached=False))
    if result is None:
        return []
    return [
        {
            "record": meta["record"],
            "title": meta["title"],
            "kind": meta["kind"],
            "text": doc,
            "similarity": round(1 - dist, 3),
            **{k: meta[k] for k in ("industry", "employees") if k in meta},
        }
        for doc, meta, dist in zip(result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True)
    ]


# Similar won cases: the text's cosine similarity, plus or minus the firmographics our records hold.
SAME_INDUSTRY = 0.15
OTHER_INDUSTRY = -0.15
SAME_SIZE = 0.05
MIN_SCORE = 0.45  # measured on the demo knowledge base: below it the "similar" case is another business's
SIZE_BANDS = (0, 10, 50, 200, 1000, 5000)


def _size_band(employees: Any) -> int | None:
    try:
        n = int(employees)
    except (TypeError, ValueError):
        return None
    return sum(n >= b for b in SIZE_BANDS)


def similar_cases(
    settings: Settings, text: str, *, industry: str | None = None, employees: int | None = None, limit: int = 3
) -> list[dict[str, Any]]:
    """Won deals and case studies like this lead, best first, each with its `score` and the reasons; only those
    scoring MIN_SCORE or more, so an empty list ("no similar case") is a valid answer."""
    wanted_industry = industry.strip().lower() if industry and industry.strip() else None
    wanted_band = _size_band(employees)
    scored = []
    for match in search(settings, text, limit=max(20, limit * 5)):
        if match["kind"] == "product_fact":
            continue
        score, why = match["similarity"], [f"text similarity {match['similarity']:.2f}"]
        theirs = str(match.get("industry") or "").lower() or None
        if wanted_industry and theirs:
            same = theirs == wanted_industry
            score += SAME_INDUSTRY if same else OTHER_INDUSTRY
            why.append(f"{'same' if same else 'other'} industry ({theirs})")
        band = _size_band(match.get("employees"))
        if wanted_band is not None and band is not None and band == wanted_band:
            score += SAME_SIZE
            why.append(f"similar size ({match['employees']} employees)")
        if score >= MIN_SCORE:
            scored.append({**match, "score": round(score, 3), "why": "; ".join(why)})
    scored.sort(key=lambda m: -m["score"])
    return scored[:limit]


class SimilarCases(_Args):
    text: str = Field(min_length=1, max_length=2000, description="What the lead's company does and needs")
    industry: str | None = Field(None, max_length=100, description="The account's industry, from the CRM record")
    employees: int | None = Field(None, ge=0, description="The account's employee count, from the CRM record")
    limit: int = Field(3, ge=1, le=10)


@agent_tool(scope="read_kb")
def similar_won_cases(ctx: ToolContext, args: SimilarCases) -> dict[str, Any]:
    """The won deals and case studies most like the lead (its company, needs, industry and size); found is false
    when none is close enough to cite."""
    matches = similar_cases(ctx.settings, args.text, industry=args.industry, employees=args.employees, limit=args.limit)
    return {"found": bool(matches), "matches": matches, "record": matches[0]["record"] if matches else None}
