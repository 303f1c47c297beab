"""The FastAPI application: routes, auth, errors rendered as clear JSON."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.routes import (
    audit,
    auth,
    billing,
    contacts,
    deals,
    evals,
    health,
    icp,
    kpis,
    leads,
    notifications,
    products,
    review_items,
    reviews,
    sales_agents,
    scoring,
    templates,
    tokens,
    users,
    webhooks,
)
from core.db import get_engine, is_busy_error
from core.errors import AppError, TooManyAttempts
from core.schemas import ErrorBody, Health
from core.settings import Settings, get_settings


class BodySizeLimit:
    """Refuse request bodies over the limit with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body reading (anything else becomes a 400).
                    raise StarletteHTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)

    @property
    def message(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes"

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse({"error": "payload_too_large", "message": self.message}, status_code=413)
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


BUSY_RETRY_AFTER_SECONDS = 2


# The error answers of every /v1 route, documented once and included with each router: each has the same JSON
# body ({"error", "message", ...}); 422 adds `fields` (field -> what is wrong) and `detail`.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "The request body could not be read (not UTF-8 JSON)"),
        (401, "No valid bearer token (webhooks: a missing or wrong signature, or a stale timestamp)"),
        (403, "The token's role may not do this"),
        (404, "The record named in the path or body does not exist"),
        (409, "The record's state forbids this (already decided, a replayed delivery, a duplicate)"),
        (413, "The request body is larger than REVLOOP_MAX_REQUEST_BYTES"),
        (422, "Invalid input: `fields` names each invalid field and says what is wrong"),
        (429, "Too many failed sign-ins from this source: retry after Retry-After"),
        (503, "Not available now (the database is busy, a webhook has no secret): retry after Retry-After"),
    )
}


ERROR_BODY_REF = "#/components/schemas/ErrorBody"


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # /docs (Swagger UI) and /redoc load their scripts and styles from this server (fastapi-offline ships them
    # under /static-offline-docs), not from a CDN: they work on a machine without internet access.
    app: FastAPI = FastAPIOffline(
        title="revloop API",
        version="0.1.0",
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would send the schema to validator.swagger.io
        description="Lead-to-cash with AI agents and a human approving every outbound action. "
        "Every /v1 call needs `Authorization: Bearer <token>`: an API token (`revloop tokens create`) or a "
        "session token from `POST /v1/auth/login`. Webhooks (`/v1/webhooks/*`) are HMAC-signed instead.",
    )
    app.state.settings = settings

    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        body = {"error": exc.code, "message": exc.message}
        if exc.details:
            body["details"] = exc.details
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if isinstance(exc, TooManyAttempts):
            headers = {"Retry-After": str(exc.retry_after_seconds)}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(DBAPIError)
    async def database_busy(_: Request, exc: DBAPIError) -> JSONResponse:
        # The database stayed busy past its wait (SQLite's write lock, a PostgreSQL serialization failure or
        # deadlock): nothing was committed and the same request may simply be sent again.
        if not is_busy_error(exc):
            raise exc  # any other database failure is a server error, as before
        return JSONResponse(
            {
                "error": "busy",
                "message": "the database is busy; nothing was saved, send the same request again shortly",
                "retry_after_seconds": BUSY_RETRY_AFTER_SECONDS,
            },
            status_code=503,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields: dict[str, str] = {}
        for err in exc.errors():
            fields.setdefault(_field_name(tuple(err["loc"])), err["msg"])
        message = "invalid input: " + "; ".join(f"{k}: {v}" for k, v in fields.items())
        return JSONResponse(
            {
                "error": "validation_error",
                "message": message,
                "fields": fields,
                "detail": [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()],
            },
            status_code=422,
        )

    for module in (
        auth,
        users,
        leads,
        review_items,
        deals,
        sales_agents,
        products,
        icp,
        scoring,
        templates,
        kpis,
        reviews,
        billing,
        audit,
        evals,
        contacts,
        webhooks,
        notifications,
        health,
        tokens,
    ):
        app.include_router(module.router, responses=ERROR_RESPONSES)

    @app.get("/healthz", response_model=Health, tags=["ops"], summary="Liveness and database check (no auth)")
    def healthz() -> Health:
        with get_engine(settings, readonly=True).connect() as conn:  # never waits for the write lock
            conn.execute(text("SELECT 1"))
        return Health(status="ok")

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    _document_errors_as_json(app)
    return app


def _document_errors_as_json(app: FastAPI) -> None:
    """FastAPI documents an included response in the route's own media type (text/html for a report page);
    the error answers are JSON whatever the route serves, so the schema says so."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for status in ERROR_RESPONSES:
                        answer = operation.get("responses", {}).get(str(status))
                        if answer and "application/json" not in answer.get("content", {}):
                            answer["content"] = {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
