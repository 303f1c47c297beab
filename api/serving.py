"""How the API is served: uvicorn's options and the two guards around the app (`revloop serve`, `revloop up`).

Measured with bench/bench_ingest.py (5,000 POST /v1/leads from 50 clients), two things lost leads:

- **More requests than threads deadlocked on the SQLite write lock.** Sync routes and dependencies run on
  anyio's thread pool (40 threads by default), one thread at a time per request. A request that holds the write
  lock still needs a thread after its route returns: FastAPI validates the response in the pool, and only then
  does the unit of work commit. With 41 requests in the app, 40 threads can all be waiting for that lock
  (busy_timeout) while its holder waits for a thread: nothing moves until the wait times out, then 500
  "database is locked". 40 clients posted 2,000 leads cleanly; 41 clients stalled to 1.5 leads/s with 160 500s.
  `RequestSlots` lets at most as many requests into the app as there are threads; the others wait in line here,
  holding no thread, so a request holding the lock always gets the thread it needs to finish. On SQLite the
  default is 8 threads (REVLOOP_API_THREADS): it takes one writer at a time, so more threads only add waiters
  polling the lock, unfairly (p99 4.4 s with 40, 1.7 s with 4-8, and now and then one starved past the busy
  timeout: 503); the line here is first come, first served.
- **A 500 cost the next request its connection.** Starlette answers an unhandled exception with a 500 (without
  `Connection: close`) and re-raises it for the server to log; uvicorn then closes the connection. A client that
  has already sent its next request on that kept-alive connection (httpx, requests and browsers reuse it at once)
  gets a reset instead of an answer: httpx ReadError, a lead nobody answered. `KeepConnectionAfterError` logs
  the error as uvicorn does and leaves a connection whose answer was complete open.

The keep-alive timeout is longer than clients' and proxies' idle timeouts (httpx 5 s, load balancers 60 s): the
server closing an idle connection just as a client reuses it is the same reset.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings, get_settings

logger = logging.getLogger("uvicorn.error")


class RequestSlots:
    """At most `slots` HTTP requests inside the app at once, and as many threads for them; the rest wait in line
    (first come, first served) without a thread."""

    def __init__(self, app: ASGIApp, slots: int):
        self.app, self.slots = app, slots
        self._semaphore: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:
            # The pool is per event loop; size it on the loop that serves the requests.
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.slots
            self._semaphore = anyio.Semaphore(self.slots)
        async with self._semaphore:
            await self.app(scope, receive, send)


class KeepConnectionAfterError:
    """An exception raised after the response was completely sent is logged, not passed to the server, so the
    connection stays usable for the request the client may already have sent on it. An exception before or
    during the response still reaches uvicorn (it answers 500 with `Connection: close`, or closes)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if not complete:
                raise
            logger.exception("Exception in ASGI application (its response was sent; the connection stays open)")


def create_served_app(settings: Settings | None = None) -> ASGIApp:
    """The API as `revloop serve` runs it: the FastAPI app inside the two guards."""
    from api.app import create_app

    settings = settings or get_settings()
    return KeepConnectionAfterError(RequestSlots(create_app(settings), settings.resolved_api_threads))


def uvicorn_options(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    access_log: bool = True,
) -> dict[str, Any]:
    """Keyword arguments of `uvicorn.run` for the API; the one place they are chosen. httptools parses HTTP and
    uvloop runs the event loop (uvicorn[standard]): less CPU per request than h11 and asyncio's loop. With
    workers > 1 uvicorn starts that many API processes on the one port (each builds the app from the factory)."""
    return {
        "app": "api.serving:create_served_app",
        "factory": True,
        "host": host or settings.api_host,
        "port": port or settings.api_port,
        "workers": workers or settings.api_workers,
        "http": "httptools",
        "loop": "uvloop",
        "timeout_keep_alive": settings.api_keep_alive_seconds,
        "log_level": "info",
        "access_log": access_log,
    }
