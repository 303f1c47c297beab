"""Local HTTP servers speaking HubSpot's CRM v3/v4 and Pipedrive's v1 shapes (as documented), for connector tests.

Each keeps its records in memory, checks the token, pages, and can be told to fail: `fail(method, path_part,
status, headers=..., times=1, after=False)` answers the next matching request(s) with that status (e.g. 429 with
Retry-After, 500); `after=True` performs the request first and then answers the error (a lost answer).
Every request is recorded in `.requests` as (method, path, query, json body).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import free_port


@dataclass
class Fault:
    method: str
    path_part: str
    status: int
    headers: dict[str, str]
    times: int
    after: bool


class _Server:
    token_header = "authorization"

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self.port = free_port()
        self.clock = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                with server.lock:
                    server.requests.append((method, url.path, query, body))
                    fault = next(
                        (f for f in server.faults if f.times > 0 and f.method == method and f.path_part in url.path),
                        None,
                    )
                    if fault:
                        fault.times -= 1
                    if fault and not fault.after:
                        return self._send(fault.status, server.error_body(fault.status), fault.headers)
                    if not server.authorized(self.headers, query):
                        return self._send(401, server.error_body(401), {})
                    status, answer = server.route(method, url.path, query, body)
                    if fault:
                        return self._send(fault.status, server.error_body(fault.status), fault.headers)
                self._send(status, answer, {})

            def _send(self, status: int, answer: Any, headers: dict[str, str]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def tick(self, seconds: int = 60) -> dt.datetime:
        self.clock += dt.timedelta(seconds=seconds)
        return self.clock

    def fail(
        self, method: str, path_part: str, status: int, *, headers: dict | None = None, times: int = 1, after=False
    ) -> None:
        self.faults.append(Fault(method, path_part, status, headers or {}, times, after))

    def calls(self, method: str, path_part: str) -> list[tuple]:
        return [r for r in self.requests if r[0] == method and path_part in r[1]]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeHubSpot(_Server):
    """contacts, companies, deals, emails; search (EQ/GTE/GT filters, sorts, after paging), list, get, batch read,
    v4 batch associations, create, patch."""

    MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate"}

    def __init__(self, token: str = "pat-test-token") -> None:
        super().__init__(token)
        self.url = f"http://127.0.0.1:{self.port}"
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "contacts": {},
            "companies": {},
            "deals": {},
            "emails": {},
        }
        self.assoc: dict[tuple[str, str, str], list[str]] = {}
        self.next_id = 100

    def authorized(self, headers, query) -> bool:
        return headers.get("Authorization") == f"Bearer {self.token}"

    def error_body(self, status: int) -> dict[str, Any]:
        if status == 401:
            return {
                "status": "error",
                "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
                "correlationId": "2f1b8a9c-0000-4000-8000-000000000001",
                "category": "INVALID_AUTHENTICATION",
            }
        if status == 429:
            return {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": "2f1b8a9c-0000-4000-8000-000000000002",
                "policyName": "SECONDLY",
            }
        if status == 404:
            return {"status": "error", "message": "Object not found.", "category": "OBJECT_NOT_FOUND"}
        return {"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"}

    # -- fixtures ------------------------------------------------------------------------------------------------

    def put(self, hs_type: str, properties: dict[str, Any], object_id: str | None = None) -> str:
        """Create or update (bumping updatedAt by a minute) a record."""
        with self.lock:
            now = self.tick()
            if object_id is None:
                self.next_id += 1
                object_id = str(self.next_id)
            row = self.objects[hs_type].setdefault(
                object_id, {"id": object_id, "properties": {}, "createdAt": _iso(now), "archived": False}
            )
            row["properties"].update({k: (None if v is None else str(v)) for k, v in properties.items()})
            row["properties"]["hs_object_id"] = object_id
            row["updatedAt"] = _iso(now)
            if hs_type in self.MODIFIED:
                row["properties"][self.MODIFIED[hs_type]] = _iso(now)
            return object_id

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self.assoc.setdefault((from_type, from_id, to_type), []).append(to_id)
        self.assoc.setdefault((to_type, to_id, from_type), []).append(from_id)

    # -- API -----------------------------------------------------------------------------------------------------

    def _public(self, row: dict[str, Any], properties: list[str] | None) -> dict[str, Any]:
        props = row["properties"]
        wanted = {k: props.get(k) for k in (properties or [])} if properties else dict(props)
        wanted.update({k: props[k] for k in ("hs_object_id", "createdate") if k in props})
        return {
            "id": row["id"],
            "properties": wanted,
            "createdAt": row["createdAt"],
            "updatedAt": row["updatedAt"],
            "archived": False,
        }

    def _matches(self, hs_type: str, row: dict[str, Any], f: dict[str, Any]) -> bool:
        name, op, value = f["propertyName"], f["operator"], f.get("value")
        if name.startswith("associations."):
            return value in self.assoc.get((hs_type, row["id"], name.split(".", 1)[1] + "s"), [])
        have = row["properties"].get(name)
        if name in ("lastmodifieddate", "hs_lastmodifieddate", "hs_timestamp") and have is not None:
            have_ms = int(dt.datetime.fromisoformat(have.replace("Z", "+00:00")).timestamp() * 1000)
            value_ms = int(value)
            return {"EQ": have_ms == value_ms, "GTE": have_ms >= value_ms, "GT": have_ms > value_ms}[op]
        if op == "EQ":
            return (have or "").lower() == str(value).lower()
        raise AssertionError(f"fake HubSpot does not implement {op} on {name}")

    def route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["crm", "v4", "associations"] and parts[-2:] == ["batch", "read"]:
            from_type, to_type = parts[3], parts[4]
            results = [
                {
                    "from": {"id": i["id"]},
                    "to": [
                        {
                            "toObjectId": int(t),
                            "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}],
                        }
                        for t in self.assoc.get((from_type, i["id"], to_type), [])
                    ],
                }
                for i in body["inputs"]
                if self.assoc.get((from_type, i["id"], to_type))
            ]
            return 200, {
                "status": "COMPLETE",
                "results": results,
                "startedAt": _iso(self.clock),
                "completedAt": _iso(self.clock),
            }
        assert parts[:3] == ["crm", "v3", "objects"], path
        hs_type = parts[3]
        rows = self.objects[hs_type]
        if method == "POST" and parts[4:] == ["search"]:
            matching = [
                r
                for r in rows.values()
                if not body.get("filterGroups")
                or any(all(self._matches(hs_type, r, f) for f in g["filters"]) for g in body["filterGroups"])
            ]
            for sort in reversed(body.get("sorts") or []):
                matching.sort(
                    key=lambda r: r["properties"].get(sort["propertyName"]) or "",
                    reverse=sort.get("direction") == "DESCENDING",
                )
            if not body.get("sorts"):
                matching.sort(key=lambda r: int(r["id"]))
            start = int(body.get("after") or 0)
            limit = int(body.get("limit") or 10)
            page = matching[start : start + limit]
            answer: dict[str, Any] = {
                "total": len(matching),
                "results": [self._public(r, body.get("properties")) for r in page],
            }
            if start + limit < len(matching):
                answer["paging"] = {"next": {"after": str(start + limit), "link": None}}
            return 200, answer
        if method == "POST" and parts[4:] == ["batch", "read"]:
            found = [self._public(rows[i["id"]], body.get("properties")) for i in body["inputs"] if i["id"] in rows]
            return 200, {
                "status": "COMPLETE",
                "results": found,
                "startedAt": _iso(self.clock),
                "completedAt": _iso(self.clock),
            }
        if method == "GET" and len(parts) == 4:
            limit = int(query.get("limit", ["10"])[0])
            page = sorted(rows.values(), key=lambda r: int(r["id"]))[:limit]
            return 200, {"results": [self._public(r, None) for r in page]}
        if method == "GET" and len(parts) == 5:
            if parts[4] not in rows:
                return 404, self.error_body(404)
            props = query.get("properties", [""])[0].split(",") if query.get("properties") else None
            return 200, self._public(rows[parts[4]], props)
        if method == "POST" and len(parts) == 4:
            object_id = self.put(hs_type, body["properties"])
            for a in body.get("associations") or []:
                self.associate(hs_type, object_id, "contacts", a["to"]["id"])
            return 201, self._public(rows[object_id], None)
        if method == "PATCH" and len(parts) == 5:
            if parts[4] not in rows:
                return 404, self.error_body(404)
            self.put(hs_type, body["properties"], parts[4])
            return 200, self._public(rows[parts[4]], None)
        raise AssertionError(f"fake HubSpot: no route {method} {path}")


PD_TIME = "%Y-%m-%d %H:%M:%S"


class FakePipedrive(_Server):
    """persons, organizations, deals, activities: list (start/limit paging, sort), /recents, persons/search, get,
    organization deals, person activities, create activity, update deal, users/me."""

    ITEMS = {"person": "persons", "organization": "organizations", "deal": "deals"}

    def __init__(self, token: str = "pd-test-token") -> None:
        super().__init__(token)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.rows: dict[str, dict[int, dict[str, Any]]] = {
            "persons": {},
            "organizations": {},
            "deals": {},
            "activities": {},
        }
        self.next_id = 0

    def authorized(self, headers, query) -> bool:
        return headers.get("x-api-token") == self.token or query.get("api_token") == [self.token]

    def error_body(self, status: int) -> dict[str, Any]:
        messages = {401: "unauthorized access", 429: "Request over limit", 404: "Not found"}
        return {
            "success": False,
            "error": messages.get(status, "Internal server error"),
            "errorCode": status,
            "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
        }

    def put(self, kind: str, fields: dict[str, Any], row_id: int | None = None) -> int:
        with self.lock:
            now = self.tick()
            if row_id is None:
                self.next_id += 1
                row_id = self.next_id
            row = self.rows[kind].setdefault(
                row_id, {"id": row_id, "add_time": now.strftime(PD_TIME), "active_flag": True}
            )
            row.update(fields)
            row["update_time"] = now.strftime(PD_TIME)
            return row_id

    def person(self, name: str, email: str | None, org_id: int | None = None, **fields: Any) -> int:
        first, _, last = name.partition(" ")
        org = {"name": self.rows["organizations"][org_id]["name"], "value": org_id} if org_id else None
        return self.put(
            "persons",
            {
                "name": name,
                "first_name": first,
                "last_name": last or None,
                "email": [{"label": "work", "value": email, "primary": True}] if email else [],
                "phone": [{"label": "work", "value": fields.pop("phone", ""), "primary": True}],
                "org_id": org,
                **fields,
            },
        )

    def _page(self, rows: list[Any], query: dict) -> dict[str, Any]:
        start = int(query.get("start", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        pagination: dict[str, Any] = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return {"success": True, "data": page or None, "additional_data": {"pagination": pagination}}

    def route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")[1:]  # after v1
        if parts == ["users", "me"]:
            return 200, {
                "success": True,
                "data": {"id": 1, "name": "Owner", "company_id": 77, "company_name": "Test Co"},
            }
        if parts == ["recents"]:
            since = query["since_timestamp"][0]
            kind = self.ITEMS[query["items"][0]]
            rows = sorted(
                (r for r in self.rows[kind].values() if r["update_time"] >= since), key=lambda r: r["update_time"]
            )
            answer = self._page([{"item": query["items"][0], "id": r["id"], "data": r} for r in rows], query)
            answer["additional_data"]["since_timestamp"] = since
            return 200, answer
        if parts == ["persons", "search"]:
            term = query["term"][0].lower()
            hits = [
                p
                for p in self.rows["persons"].values()
                if any((e.get("value") or "").lower() == term for e in p.get("email") or [])
            ]
            items = [
                {
                    "result_score": 1.0,
                    "item": {
                        "id": p["id"],
                        "type": "person",
                        "name": p["name"],
                        "phones": [x["value"] for x in p.get("phone") or []],
                        "emails": [x["value"] for x in p.get("email") or []],
                        "organization": {"id": p["org_id"]["value"], "name": p["org_id"]["name"], "address": None}
                        if p.get("org_id")
                        else None,
                        "owner": {"id": 1},
                        "visible_to": 3,
                        "custom_fields": [],
                        "notes": [],
                    },
                }
                for p in hits
            ]
            return 200, {"success": True, "data": {"items": items}, "additional_data": {"pagination": {}}}
        if method == "GET" and len(parts) == 1:
            rows = sorted(self.rows[parts[0]].values(), key=lambda r: (r["update_time"], r["id"]))
            return 200, self._page(rows, query)
        if method == "GET" and len(parts) == 2:
            row = self.rows[parts[0]].get(int(parts[1]))
            return (200, {"success": True, "data": row}) if row else (404, self.error_body(404))
        if method == "GET" and parts[0] == "organizations" and parts[2] == "deals":
            status = query.get("status", ["all_not_deleted"])[0]
            deals = [
                d
                for d in self.rows["deals"].values()
                if (d.get("org_id") or {}).get("value") == int(parts[1]) and status in ("all_not_deleted", d["status"])
            ]
            return 200, self._page(deals, query)
        if method == "GET" and parts[0] == "persons" and parts[2] == "activities":
            acts = [a for a in self.rows["activities"].values() if a["person_id"] == int(parts[1])]
            return 200, self._page(acts, query)
        if method == "POST" and parts == ["activities"]:
            row_id = self.put("activities", body)
            return 201, {"success": True, "data": self.rows["activities"][row_id]}
        if method == "PUT" and parts[0] == "deals":
            if int(parts[1]) not in self.rows["deals"]:
                return 404, self.error_body(404)
            self.put("deals", body, int(parts[1]))
            return 200, {"success": True, "data": self.rows["deals"][int(parts[1])]}
        raise AssertionError(f"fake Pipedrive: no route {method} {path}")
