"""Pipedrive API v1 over httpx (Pipedrive keeps no maintained official Python SDK): persons (revloop's contacts),
organizations (accounts), deals, and sent emails logged as done `email` activities on the person. The token goes in
the x-api-token header; REVLOOP_PIPEDRIVE_BASE_URL points at https://COMPANY.pipedrive.com/api/v1 (or a test
server). The initial import lists each object sorted by update_time; later runs read /recents since the cursor.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from core.settings import Settings
from crm.connectors.base import (
    CrmAuthError,
    CrmError,
    CrmRejected,
    RemoteRecord,
    RetryPolicy,
    linked_local_id,
    local_contact,
    parse_stage_map,
    remote_account,
    retry_after_seconds,
)

# revloop object -> (list endpoint, /recents item name)
OBJECTS = {"contact": ("persons", "person"), "account": ("organizations", "organization"), "deal": ("deals", "deal")}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # Pipedrive's update_time and since_timestamp, in UTC


def _time(value: str | None) -> dt.datetime:
    return (
        dt.datetime.strptime(value, TIME_FORMAT).replace(tzinfo=dt.UTC)
        if value
        else dt.datetime.min.replace(tzinfo=dt.UTC)
    )


def _ref(value: Any) -> str | None:
    """A linked record's id: Pipedrive sends {"value": 5, "name": ...} in lists and a bare 5 elsewhere."""
    if isinstance(value, dict):
        value = value.get("value")
    return str(value) if value not in (None, "", 0) else None


def _primary(values: Any) -> str | None:
    """The primary (else first) entry of Pipedrive's [{"value": ..., "primary": true}, ...] lists."""
    if isinstance(values, str):
        return values or None
    items = [v for v in values or [] if isinstance(v, dict) and v.get("value")]
    chosen = next((v for v in items if v.get("primary")), items[0] if items else None)
    return chosen["value"] if chosen else None


@functools.lru_cache(maxsize=8)
def _client(base_url: str, token: str, timeout: float) -> httpx.Client:
    """One connection pool per account (a backend is built per lead run, check and write-back; httpx is
    thread-safe)."""
    return httpx.Client(
        base_url=base_url, headers={"x-api-token": token, "Accept": "application/json"}, timeout=timeout
    )


class PipedriveBackend:
    name = "pipedrive"

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] | None = None):
        self.settings = settings
        self.base_url = settings.pipedrive_base_url.rstrip("/")
        self.http = _client(self.base_url, settings.pipedrive_api_token or "", settings.crm_timeout_seconds)
        self.stages = parse_stage_map(settings.pipedrive_stage_map, "REVLOOP_PIPEDRIVE_STAGE_MAP")
        self.stage_of = {theirs: ours for ours, theirs in self.stages.items()}
        self.retry = RetryPolicy(settings.crm_max_retries, settings.crm_retry_max_wait_seconds)
        if sleep is not None:
            self.retry.sleep = sleep

    # -- transport ---------------------------------------------------------------------------------------------

    def _classify(self, exc: Exception) -> tuple[CrmError, float | None]:
        if not isinstance(exc, httpx.HTTPStatusError):
            return CrmError(f"Pipedrive at {self.base_url} cannot be reached: {type(exc).__name__}: {exc}"), None
        response = exc.response
        status = response.status_code
        try:
            message = response.json().get("error") or ""
        except ValueError:
            message = response.text[:200]
        if status in (401, 403):
            return CrmAuthError(
                f"Pipedrive refused the token ({status}): {message or 'unauthorized'}; "
                "check REVLOOP_PIPEDRIVE_API_TOKEN",
                status=status,
            ), None
        if status == 429:
            return CrmError(f"Pipedrive rate limit (429): {message}", status=429), retry_after_seconds(response.headers)
        if status >= 500:
            return CrmError(f"Pipedrive answered {status}: {message}", status=status), None
        return CrmRejected(f"Pipedrive refused the request ({status}): {message}", status=status), None

    def _request(self, method: str, path: str, *, write: bool = False, **kwargs: Any) -> dict[str, Any]:
        if not self.settings.pipedrive_api_token:
            raise CrmAuthError("Pipedrive is not configured: set REVLOOP_PIPEDRIVE_API_TOKEN")

        def once() -> dict[str, Any]:
            response = self.http.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json()

        return self.retry.run(once, self._classify, write=write)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        start = 0
        while True:
            answer = self._request("GET", path, params={**params, "start": start, "limit": self.settings.crm_page_size})
            pagination = (answer.get("additional_data") or {}).get("pagination") or {}
            yield answer.get("data") or [], answer
            if not pagination.get("more_items_in_collection"):
                return
            start = pagination.get("next_start", start + self.settings.crm_page_size)

    # -- reads for the agent tools -----------------------------------------------------------------------------

    def _account(self, org: dict[str, Any]) -> dict[str, Any]:
        return {
            "record": f"pipedrive:organization:{org['id']}",
            # revloop's account id (what crm_account_history takes) once a sync linked it; the CRM's own id beside it
            "id": linked_local_id(self.settings, self.name, "account", org["id"]),
            "remote_id": str(org["id"]),
            "name": org.get("name"),
            "domain": None,
            "industry": None,
            "employees": None,
            "country": org.get("address_country"),
        }

    def find_contact(self, email: str) -> dict[str, Any]:
        params = {"term": email.lower(), "fields": "email", "exact_match": "true", "limit": 1}
        items = (self._request("GET", "/persons/search", params=params).get("data") or {}).get("items") or []
        if not items:
            return {"found": False}
        person = items[0]["item"]
        org_id = _ref(person.get("organization") and person["organization"].get("id"))
        org = self._request("GET", f"/organizations/{org_id}").get("data") if org_id else None
        local = local_contact(self.settings, email)
        return {
            "found": True,
            "record": f"pipedrive:person:{person['id']}",
            "id": linked_local_id(self.settings, self.name, "contact", person["id"]),
            "remote_id": str(person["id"]),
            "name": person.get("name"),
            "title": None,
            "do_not_email": local.do_not_email if local else False,
            "do_not_call": local.do_not_call if local else False,
            "account": self._account(org) if org else None,
        }

    def account_history(self, account_id: int) -> dict[str, Any]:
        remote_id, _ = remote_account(self.settings, self.name, account_id)
        if not remote_id:
            return {"found": False}  # Pipedrive organizations carry no domain: only a synced account has a twin
        org = self._request("GET", f"/organizations/{remote_id}").get("data")
        if not org:
            return {"found": False}
        open_deals = []
        for page, _ in self._pages(f"/organizations/{remote_id}/deals", {"status": "open"}):
            open_deals += page
        return {
            "found": True,
            "account": self._account(org),
            "won": int(org.get("won_deals_count") or 0),
            "lost": int(org.get("lost_deals_count") or 0),
            "open": [
                {
                    "record": f"pipedrive:deal:{d['id']}",
                    "name": d.get("title"),
                    "stage": self.stage_of.get(str(d.get("stage_id")), str(d.get("stage_id"))),
                }
                for d in open_deals
            ],
            "activities": int(org.get("activities_count") or 0),
        }

    # -- sync --------------------------------------------------------------------------------------------------

    def changed_since(self, object_type: str, since: dt.datetime | None) -> Iterator[list[RemoteRecord]]:
        endpoint, item = OBJECTS[object_type]
        if since is None:
            params: dict[str, Any] = {"sort": "update_time ASC"}
            if object_type == "deal":
                params["status"] = "all_not_deleted"
            for page, _ in self._pages(f"/{endpoint}", params):
                if page:
                    yield [self._record(object_type, row) for row in page]
            return
        params = {"since_timestamp": since.astimezone(dt.UTC).strftime(TIME_FORMAT), "items": item}
        for page, _ in self._pages("/recents", params):
            rows = [r["data"] for r in page if r.get("item") == item and r.get("data")]
            if rows:
                yield sorted((self._record(object_type, row) for row in rows), key=lambda r: r.updated_at)

    def _record(self, object_type: str, row: dict[str, Any]) -> RemoteRecord:
        updated = _time(row.get("update_time"))
        if object_type == "contact":
            email = (_primary(row.get("email")) or "").strip().lower() or None
            return RemoteRecord(
                "contact",
                str(row["id"]),
                updated,
                {
                    "email": email,
                    "first_name": row.get("first_name"),
                    "last_name": row.get("last_name"),
                    "phone": _primary(row.get("phone")),
                },
                links={"account": _ref(row.get("org_id"))},
            )
        if object_type == "account":
            return RemoteRecord(
                "account", str(row["id"]), updated, {"name": row.get("name"), "country": row.get("address_country")}
            )
        status = row.get("status")
        stage = status if status in ("won", "lost") else self.stage_of.get(str(row.get("stage_id")))
        record = RemoteRecord(
            "deal",
            str(row["id"]),
            updated,
            {
                "name": row.get("title"),
                "amount": row.get("value"),
                "currency": row.get("currency") or None,
                "stage": stage,
                "lost_reason": row.get("lost_reason") or None,
                "close_date": (row.get("won_time") or row.get("lost_time") or row.get("expected_close_date") or "")[:10]
                or None,
            },
            links={"account": _ref(row.get("org_id")), "contact": _ref(row.get("person_id"))},
        )
        if stage is None:
            record.problem = (
                f"deal stage_id {row.get('stage_id')!r} is not in REVLOOP_PIPEDRIVE_STAGE_MAP "
                f"({', '.join(sorted(self.stage_of))})"
            )
        return record

    # -- write-back --------------------------------------------------------------------------------------------

    def find_logged_email(self, contact_remote_id: str, subject: str, sent_at: dt.datetime) -> str | None:
        when = sent_at.astimezone(dt.UTC)
        for page, _ in self._pages(f"/persons/{contact_remote_id}/activities", {"done": 1}):
            for activity in page:
                if (
                    activity.get("type") == "email"
                    and activity.get("subject") == subject
                    and activity.get("due_date") == when.strftime("%Y-%m-%d")
                    and (activity.get("due_time") or "")[:5] == when.strftime("%H:%M")
                ):
                    return str(activity["id"])
        return None

    def log_email(self, contact_remote_id: str, *, subject: str, body: str, sent_at: dt.datetime) -> str:
        when = sent_at.astimezone(dt.UTC)
        answer = self._request(
            "POST",
            "/activities",
            write=True,
            json={
                "subject": subject,
                "type": "email",
                "done": 1,
                "person_id": int(contact_remote_id),
                "note": body,
                "due_date": when.strftime("%Y-%m-%d"),
                "due_time": when.strftime("%H:%M"),
            },
        )
        return str(answer["data"]["id"])

    def set_deal_stage(self, deal_remote_id: str, stage: str) -> str:
        if stage in ("won", "lost"):
            change: dict[str, Any] = {"status": stage}
        elif stage in self.stages:
            change = {"status": "open", "stage_id": int(self.stages[stage])}
        else:
            raise CrmRejected(f"revloop stage {stage!r} has no Pipedrive stage_id in REVLOOP_PIPEDRIVE_STAGE_MAP")
        self._request("PUT", f"/deals/{deal_remote_id}", json=change, write=True)
        return deal_remote_id

    def ping(self) -> str:
        me = self._request("GET", "/users/me").get("data") or {}
        return f"Pipedrive {self.base_url} answers (company {me.get('company_name') or me.get('company_id') or '?'})"
