"""A real HTTP endpoint for outbound webhooks in tests: records each POST (headers, raw body) and answers
with the statuses it is told to (e.g. 503 twice, then 200)."""

from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port


class WebhookReceiver:
    """`with WebhookReceiver() as hook:` listens on hook.url; hook.posts holds (headers, body) per request."""

    def __init__(self, statuses: list[int] | None = None, default_status: int = 200) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses = deque(statuses or [])
        self.default_status = default_status
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/team"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.popleft() if receiver.statuses else receiver.default_status
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 400 else b"no")

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
