"""The OpenAPI schema describes every answer: each operation declares a success response with a schema
(a named model, a list of them, text or a file), or is a 204 without a body."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from core.settings import Settings


def _described(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """A named model with fields, a list of described items, or a scalar; never a bare free-form object."""
    if "$ref" in schema:
        target = components[schema["$ref"].rsplit("/", 1)[-1]]
        return "properties" in target or "enum" in target
    if schema.get("type") == "array":
        return _described(schema.get("items", {}), components)
    if schema.get("type") in ("string", "integer", "number", "boolean"):
        return True
    return bool(schema.get("properties"))


def test_every_operation_declares_its_answer():
    schema = create_app(Settings(database_url="sqlite://")).openapi()
    components = schema["components"]["schemas"]
    problems = []
    operations = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            operations += 1
            name = f"{method.upper()} {path}"
            ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            if len(ok) != 1:
                problems.append(f"{name}: {len(ok)} success responses, expected one")
                continue
            [(code, response)] = ok.items()
            content = response.get("content", {})
            if code == "204":
                if content:
                    problems.append(f"{name}: a 204 has no body, yet content is declared")
                continue
            if not content:
                problems.append(f"{name}: {code} declares no content")
            for media_type, body in content.items():
                if not _described(body.get("schema", {}), components):
                    problems.append(f"{name}: {code} {media_type} has no schema (a bare dict?): {body.get('schema')}")
    assert operations >= 51
    assert not problems, "\n".join(problems)


def test_the_check_refuses_a_bare_dict():
    components = {"Thing": {"properties": {"id": {"type": "integer"}}}}
    assert _described({"$ref": "#/components/schemas/Thing"}, components)
    assert _described({"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}, components)
    assert not _described({"type": "object", "additionalProperties": True}, components)
    assert not _described({"type": "array", "items": {"type": "object", "additionalProperties": True}}, components)


def test_every_v1_operation_documents_the_shared_error_answers():
    """401/403/404/409/413/422/503 (and 400) are declared once and included with every router: each points at
    the one error body ({"error", "message", ...}) the handlers render."""
    from api.app import ERROR_RESPONSES

    schema = create_app(Settings(database_url="sqlite://")).openapi()
    body = schema["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"error", "message"}
    assert {"details", "fields", "detail"} <= set(body["properties"])
    missing = []
    for path, ops in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            for status in ERROR_RESPONSES:
                answer = op["responses"].get(str(status), {})
                ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                if not ref.endswith("/ErrorBody"):
                    missing.append(f"{method.upper()} {path}: {status}")
    assert {401, 403, 404, 409, 413, 422, 503} <= set(ERROR_RESPONSES)
    assert not missing, "\n".join(missing)
