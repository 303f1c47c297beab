"""A local HTTP server that answers like a vendor's API (Stripe, Daraja, an eTIMS-style control unit) in tests.

`with VendorServer({("POST", "/v1/customers"): handler, ...}) as api:` listens on api.url; a handler gets the
recorded request and returns (status, JSON body) or (status, JSON body, seconds to wait first). Requests are kept
in api.requests (method, path, query, headers, raw body, parsed JSON or form fields)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.conftest import free_port


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    fields: dict[str, Any] = field(default_factory=dict)  # JSON object, or form fields (Stripe's encoding)


Handler = Callable[[Request], tuple]


class VendorServer:
    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = dict(routes)
        self.requests: list[Request] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if headers.get("content-type", "").startswith("application/json") and raw:
                    fields = json.loads(raw)
                else:
                    fields = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                request = Request(self.command, parts.path, dict(parse_qsl(parts.query)), headers, raw, fields)
                server.requests.append(request)
                handler = server.routes.get((self.command, parts.path))
                answer = handler(request) if handler else (404, {"error": {"message": f"no route {parts.path}"}})
                status, body, *wait = answer
                if wait:
                    time.sleep(wait[0])
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def __enter__(self) -> VendorServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
