"""The API's docs pages work offline: Swagger UI (/docs) and ReDoc (/redoc) load every script, stylesheet and
icon from this server, never from a CDN."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings

ASSET = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(database_url="sqlite://"))) as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_this_server(client, page):
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assets = ASSET.findall(response.text)
    assert assets, f"{page} names no script or stylesheet"
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        asset = client.get(url)
        assert asset.status_code == 200, f"{page}: {url} answered {asset.status_code}"
        assert len(asset.content) > 1000 or url.endswith(".png"), f"{page}: {url} is nearly empty"
    # No absolute URL anywhere in the page: fonts, validators and CDNs would all fail offline.
    assert not re.search(r"https?://", response.text), re.findall(r"https?://\S+", response.text)


def test_docs_pages_read_this_servers_schema(client):
    assert "'/openapi.json'" in client.get("/docs").text
    assert 'spec-url="/openapi.json"' in client.get("/redoc").text
    assert client.get("/openapi.json").json()["info"]["title"] == "revloop API"


def test_every_reference_in_the_schema_resolves(client):
    """ReDoc refuses a document with a dangling $ref (it showed only an error for "#/$defs/Consent")."""
    schema = client.get("/openapi.json").json()
    refs: list[str] = []

    def collect(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    assert refs
    dangling = []
    for ref in set(refs):
        target = schema
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if target is None:
            dangling.append(ref)
    assert dangling == []
