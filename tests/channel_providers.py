"""The outside world of SMS and WhatsApp, over real HTTP: a local server speaking the documented shapes of the
Twilio REST API (POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded, basic auth, 201 with the
message resource) and of the WhatsApp Business Cloud API (POST /{version}/{phone_number_id}/messages, JSON, a
bearer token, 200 with messages[0].id). Each request is recorded; statuses can be scripted (e.g. 503 once)."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from tests.conftest import free_port


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    json: dict | None = None


class FakeProviders:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[Recorded] = []
        self.statuses = deque(statuses or [])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        providers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = providers.statuses.popleft() if providers.statuses else None
                if "/Accounts/" in self.path and self.path.endswith("/Messages.json"):
                    form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                    providers.requests.append(Recorded(self.path, headers, form=form))
                    sid = self.path.split("/Accounts/")[1].split("/")[0]
                    expected = "Basic " + base64.b64encode(f"{sid}:test-auth-token".encode()).decode()
                    if headers.get("authorization") != expected:
                        return self._json(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    if status:
                        return self._json(status, {"code": 20500, "message": "Internal Server Error", "status": status})
                    return self._json(
                        201,
                        {
                            "sid": "SM" + uuid.uuid4().hex,
                            "account_sid": sid,
                            "to": form.get("To"),
                            "from": form.get("From"),
                            "body": form.get("Body"),
                            "status": "queued",
                            "num_segments": "1",
                        },
                    )
                if self.path.endswith("/messages"):
                    payload = json.loads(raw)
                    providers.requests.append(Recorded(self.path, headers, json=payload))
                    if headers.get("authorization") != "Bearer test-wa-token":
                        return self._json(401, {"error": {"message": "Invalid OAuth access token.", "code": 190}})
                    if status:
                        return self._json(status, {"error": {"message": "Service temporarily unavailable", "code": 2}})
                    return self._json(
                        200,
                        {
                            "messaging_product": "whatsapp",
                            "contacts": [{"input": payload.get("to"), "wa_id": payload.get("to")}],
                            "messages": [{"id": "wamid." + uuid.uuid4().hex}],
                        },
                    )
                self._json(404, {"message": "not found"})

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeProviders:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
