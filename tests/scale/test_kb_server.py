"""REVLOOP_KB_URL: the knowledge base on a chroma server (`chroma run`, shipped by the chromadb package) through
chromadb's HttpClient, with the offline embedding function; the health check names the server and its count."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from review.health import run_check
from tests.conftest import free_port, only_on, wait_until_healthy
from tools import kb

pytestmark = only_on("sqlite")  # the knowledge base does not depend on the database: one run is enough
CHROMA = str(Path(sys.executable).parent / "chroma")  # the chromadb package's server, in this environment


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma")
    proc = subprocess.Popen(
        [CHROMA, "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/api/v2/heartbeat", proc, "chroma run")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_knowledge_base_lives_on_the_chroma_server_when_kb_url_is_set(settings, chroma_url):
    settings.kb_url = chroma_url
    kb.add(
        settings,
        doc_id="case-1",
        kind="case_study",
        title="Logistics rollout",
        text="A logistics company with 400 employees automated dispatch with us.",
    )
    matches = kb.search(settings, "dispatch automation for a logistics firm", limit=1)
    assert [(m["record"], m["kind"]) for m in matches] == [("case-1", "case_study")]
    assert type(kb._client(chroma_url)).__name__ == "Client"  # chromadb's HttpClient, not a PersistentClient
    assert not (settings.var_dir / "kb").exists()  # nothing embedded on this machine
    with httpx.Client(base_url=chroma_url) as server:  # the server itself holds the collection
        collections = server.get("/api/v2/tenants/default_tenant/databases/default_database/collections").json()
    assert kb.COLLECTION in [c["name"] for c in collections]
    result = run_check(settings, "knowledge_base")
    assert (result.healthy, result.detail) == (True, f"{chroma_url}: 1 document(s)")


def test_the_health_check_says_when_the_chroma_server_does_not_answer(settings):
    settings.kb_url = f"http://127.0.0.1:{free_port()}"
    result = run_check(settings, "knowledge_base")
    assert not result.healthy and result.status == "down"
    assert "Could not connect to a Chroma server" in result.detail, result.detail


def test_worker_threads_opening_the_knowledge_base_at_once_all_get_it(settings):
    """chromadb's client set-up is not thread-safe; the first knowledge-base call of four threads at once failed."""
    import threading

    errors: list[str] = []

    def count() -> None:
        try:
            kb.collection(settings).count()
        except Exception as exc:  # the failure under test
            errors.append(repr(exc))

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_collection_of_the_old_vectors_on_the_server_is_re_embedded(settings, chroma_url):
    """Issue 17: a chroma server keeps what an earlier revloop embedded with the hashed n-grams; the rebuild moves
    it into the WordLlama collection through the HttpClient and drops the old one."""
    import chromadb

    from tools.kb_embedding import HashedNgramEmbedding

    settings.kb_url = chroma_url
    url = urlsplit(chroma_url)
    old = chromadb.HttpClient(host=url.hostname, port=url.port).get_or_create_collection(
        "revloop-kb", embedding_function=HashedNgramEmbedding()
    )
    titles = {"old-1": "Bakery", "old-2": "Schools"}
    old.upsert(
        ids=list(titles),
        documents=["A bakery chain automated its supplier invoices.", "A school district scheduled parent meetings."],
        metadatas=[{"kind": "case_study", "title": title, "record": record} for record, title in titles.items()],
    )
    assert kb.stale_collections(settings) == {"revloop-kb": 2}
    assert kb.rebuild_stale(settings) == 2
    assert kb.stale_collections(settings) == {}
    [best] = kb.search(settings, "a chain of bakeries with invoices from suppliers", limit=1)
    assert best["record"] == "old-1"
