"""HubSpot CRM v3 through the official SDK (hubspot-api-client), pointed at REVLOOP_HUBSPOT_BASE_URL with a
private-app token: contacts, companies (revloop's accounts), deals, and sent emails logged as email engagements
on the contact. Every call goes through one retry rule (base.RetryPolicy): 429 waits its Retry-After; 5xx is
retried for reads; 401/403 fail at once with a message naming the token setting.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

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

# revloop object -> (HubSpot object type, its last-modified property, properties read)
OBJECTS = {
    "contact": (
        "contacts",
        "lastmodifieddate",
        ["email", "firstname", "lastname", "jobtitle", "phone", "associatedcompanyid"],
    ),
    "account": ("companies", "hs_lastmodifieddate", ["name", "domain", "industry", "numberofemployees", "country"]),
    "deal": (
        "deals",
        "hs_lastmodifieddate",
        ["dealname", "amount", "deal_currency_code", "dealstage", "closedate", "closed_lost_reason"],
    ),
}
SEARCH_WINDOW = (
    10_000  # HubSpot's search returns at most this many results per query: past it, search again from the cursor
)
EMAIL_TO_CONTACT = 198  # HUBSPOT_DEFINED association type: email -> contact


def _ms(moment: dt.datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def _int(value: Any) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class HubSpotBackend:
    name = "hubspot"

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] | None = None):
        from hubspot import HubSpot
        from urllib3.util.retry import Retry

        self.settings = settings
        self.base_url = settings.hubspot_base_url.rstrip("/")
        # The SDK's own urllib3 retries are off: RetryPolicy decides (a write is never repeated blindly).
        self.client = HubSpot(
            access_token=settings.hubspot_access_token or "", host=self.base_url, retry=Retry(0, read=0)
        )
        self.stages = parse_stage_map(settings.hubspot_stage_map, "REVLOOP_HUBSPOT_STAGE_MAP")
        self.stage_of = {theirs: ours for ours, theirs in self.stages.items()}
        self.retry = RetryPolicy(settings.crm_max_retries, settings.crm_retry_max_wait_seconds)
        if sleep is not None:
            self.retry.sleep = sleep

    # -- transport ---------------------------------------------------------------------------------------------

    def _classify(self, exc: Exception) -> tuple[CrmError, float | None]:
        status = getattr(exc, "status", None)
        if status is None or status == 0 or not hasattr(exc, "body"):
            return CrmError(f"HubSpot at {self.base_url} cannot be reached: {getattr(exc, 'reason', exc)}"), None
        message = ""
        try:
            message = json.loads(exc.body or b"{}").get("message", "")
        except (ValueError, AttributeError):
            message = str(exc.body or "")[:200]
        headers = exc.headers or {}
        if status in (401, 403):
            return CrmAuthError(
                f"HubSpot refused the token ({status}): {message or 'unauthorized'}; check "
                "REVLOOP_HUBSPOT_ACCESS_TOKEN and the private app's crm.objects scopes",
                status=status,
            ), None
        if status == 429:
            return CrmError(f"HubSpot rate limit (429): {message}", status=429), retry_after_seconds(headers)
        if status >= 500:
            return CrmError(f"HubSpot answered {status}: {message}", status=status), None
        return CrmRejected(f"HubSpot refused the request ({status}): {message}", status=status), None

    def _call(self, func: Callable[..., Any], *args: Any, write: bool = False, **kwargs: Any) -> Any:
        if not self.settings.hubspot_access_token:
            raise CrmAuthError("HubSpot is not configured: set REVLOOP_HUBSPOT_ACCESS_TOKEN (a private-app token)")
        kwargs["_request_timeout"] = self.settings.crm_timeout_seconds
        return self.retry.run(lambda: func(*args, **kwargs), self._classify, write=write)

    def _api(self, object_type: str) -> Any:
        return getattr(self.client.crm, object_type) if object_type != "emails" else self.client.crm.objects.emails

    def _search(self, hs_type: str, body: dict[str, Any]) -> Any:
        return self._call(self._api(hs_type).search_api.do_search, public_object_search_request=body)

    # -- reads for the agent tools -----------------------------------------------------------------------------

    def _contact(self, email: str) -> Any | None:
        body = {
            "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email.lower()}]}],
            "properties": OBJECTS["contact"][2],
            "limit": 1,
        }
        results = self._search("contacts", body).results
        return results[0] if results else None

    def _company(self, company_id: str) -> Any | None:
        from hubspot.crm.companies.exceptions import NotFoundException

        try:
            return self._call(
                self.client.crm.companies.basic_api.get_by_id, company_id, properties=OBJECTS["account"][2]
            )
        except CrmRejected as exc:
            if isinstance(exc.__cause__, NotFoundException):
                return None
            raise

    def _account(self, company: Any) -> dict[str, Any]:
        p = company.properties or {}
        return {
            "record": f"hubspot:company:{company.id}",
            # revloop's account id (what crm_account_history takes) once a sync linked it; the CRM's own id beside it
            "id": linked_local_id(self.settings, self.name, "account", company.id),
            "remote_id": company.id,
            "name": p.get("name"),
            "domain": p.get("domain"),
            "industry": p.get("industry"),
            "employees": _int(p.get("numberofemployees")),
            "country": p.get("country"),
        }

    def find_contact(self, email: str) -> dict[str, Any]:
        contact = self._contact(email)
        if contact is None:
            return {"found": False}
        p = contact.properties or {}
        company = self._company(p["associatedcompanyid"]) if p.get("associatedcompanyid") else None
        local = local_contact(self.settings, email)
        return {
            "found": True,
            "record": f"hubspot:contact:{contact.id}",
            "id": linked_local_id(self.settings, self.name, "contact", contact.id),
            "remote_id": contact.id,
            "name": " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x),
            "title": p.get("jobtitle"),
            # Consent is revloop's record (opt-outs arrive through revloop); a contact revloop never saw has none.
            "do_not_email": local.do_not_email if local else False,
            "do_not_call": local.do_not_call if local else False,
            "account": self._account(company) if company else None,
        }

    def _company_for_account(self, account_id: int) -> Any | None:
        remote_id, domain = remote_account(self.settings, self.name, account_id)
        if remote_id:
            return self._company(remote_id)
        if not domain:
            return None
        body = {
            "filterGroups": [{"filters": [{"propertyName": "domain", "operator": "EQ", "value": domain}]}],
            "properties": OBJECTS["account"][2],
            "limit": 1,
        }
        results = self._search("companies", body).results
        return results[0] if results else None

    def account_history(self, account_id: int) -> dict[str, Any]:
        company = self._company_for_account(account_id)
        if company is None:
            return {"found": False}
        deal_ids = self._associated("companies", "deals", [company.id]).get(company.id, [])
        email_count = 0
        contact_ids = self._associated("companies", "contacts", [company.id]).get(company.id, [])
        if contact_ids:
            emails = self._associated("contacts", "emails", contact_ids)
            email_count = sum(len(v) for v in emails.values())
        deals = []
        if deal_ids:
            batch = self._call(
                self.client.crm.deals.batch_api.read,
                batch_read_input_simple_public_object_id={
                    "inputs": [{"id": i} for i in deal_ids],
                    "properties": OBJECTS["deal"][2],
                    "propertiesWithHistory": [],
                },
            )
            deals = sorted(batch.results, key=lambda d: int(d.id))
        stages = [(d, self.stage_of.get((d.properties or {}).get("dealstage"), "")) for d in deals]
        return {
            "found": True,
            "account": self._account(company),
            "won": sum(stage == "won" for _, stage in stages),
            "lost": sum(stage == "lost" for _, stage in stages),
            "open": [
                {"record": f"hubspot:deal:{d.id}", "name": (d.properties or {}).get("dealname"), "stage": stage}
                for d, stage in stages
                if stage not in ("won", "lost")
            ],
            "activities": email_count,
        }

    def _associated(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[str]]:
        """Associated ids by source id, through the v4 batch associations read (one request per 100 ids)."""
        out: dict[str, list[str]] = {}
        for start in range(0, len(ids), 100):
            answer = self._call(
                self.client.crm.associations.v4.batch_api.get_page,
                from_type,
                to_type,
                batch_input_public_fetch_associations_batch_request={
                    "inputs": [{"id": str(i)} for i in ids[start : start + 100]]
                },
            )
            for row in answer.results or []:
                out[str(row._from.id)] = [str(t.to_object_id) for t in row.to or []]
        return out

    # -- sync --------------------------------------------------------------------------------------------------

    def changed_since(self, object_type: str, since: dt.datetime | None) -> Iterator[list[RemoteRecord]]:
        hs_type, modified, properties = OBJECTS[object_type]
        cursor = since
        while True:
            after: str | None = None
            seen = 0
            last: dt.datetime | None = None
            while True:
                filters = [{"propertyName": modified, "operator": "GTE", "value": _ms(cursor)}] if cursor else []
                body: dict[str, Any] = {
                    "filterGroups": [{"filters": filters}] if filters else [],
                    "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                    "properties": properties,
                    "limit": self.settings.crm_page_size,
                }
                if after:
                    body["after"] = after
                page = self._search(hs_type, body)
                records = [self._record(object_type, r) for r in page.results or []]
                if object_type == "deal" and records:
                    ids = [r.remote_id for r in records]
                    companies = self._associated("deals", "companies", ids)
                    contacts = self._associated("deals", "contacts", ids)
                    for r in records:
                        r.links = {
                            "account": (companies.get(r.remote_id) or [None])[0],
                            "contact": (contacts.get(r.remote_id) or [None])[0],
                        }
                if records:
                    seen += len(records)
                    last = records[-1].updated_at
                    yield records
                nxt = page.paging.next.after if page.paging and page.paging.next else None
                if not nxt:
                    return
                if seen + self.settings.crm_page_size > SEARCH_WINDOW:
                    break  # the search window is full: query again from the last change seen (GTE: none is lost)
                after = nxt
            if last is None or last == cursor:  # a full window of one timestamp: nothing more to learn from it
                return
            cursor = last

    def _record(self, object_type: str, obj: Any) -> RemoteRecord:
        p = obj.properties or {}
        updated = obj.updated_at.astimezone(dt.UTC)
        if object_type == "contact":
            return RemoteRecord(
                "contact",
                obj.id,
                updated,
                {
                    "email": (p.get("email") or "").strip().lower() or None,
                    "first_name": p.get("firstname"),
                    "last_name": p.get("lastname"),
                    "title": p.get("jobtitle"),
                    "phone": p.get("phone"),
                },
                links={"account": p.get("associatedcompanyid") or None},
            )
        if object_type == "account":
            return RemoteRecord(
                "account",
                obj.id,
                updated,
                {
                    "name": p.get("name"),
                    "domain": (p.get("domain") or "").strip().lower() or None,
                    "industry": p.get("industry"),
                    "employees": _int(p.get("numberofemployees")),
                    "country": p.get("country"),
                },
            )
        stage = self.stage_of.get(p.get("dealstage") or "")
        record = RemoteRecord(
            "deal",
            obj.id,
            updated,
            {
                "name": p.get("dealname"),
                "amount": p.get("amount") or None,
                "currency": p.get("deal_currency_code") or None,
                "stage": stage,
                "lost_reason": p.get("closed_lost_reason") or None,
                "close_date": (p.get("closedate") or "")[:10] or None,
            },
        )
        if stage is None:
            record.problem = (
                f"deal stage {p.get('dealstage')!r} is not in REVLOOP_HUBSPOT_STAGE_MAP "
                f"({', '.join(sorted(self.stage_of))})"
            )
        return record

    # -- write-back --------------------------------------------------------------------------------------------

    def find_logged_email(self, contact_remote_id: str, subject: str, sent_at: dt.datetime) -> str | None:
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "associations.contact", "operator": "EQ", "value": contact_remote_id},
                        {"propertyName": "hs_timestamp", "operator": "EQ", "value": _ms(sent_at)},
                        {"propertyName": "hs_email_subject", "operator": "EQ", "value": subject},
                    ]
                }
            ],
            "properties": ["hs_email_subject", "hs_timestamp"],
            "limit": 1,
        }
        results = self._search("emails", body).results
        return results[0].id if results else None

    def log_email(self, contact_remote_id: str, *, subject: str, body: str, sent_at: dt.datetime) -> str:
        created = self._call(
            self.client.crm.objects.emails.basic_api.create,
            simple_public_object_input_for_create={
                "properties": {
                    "hs_timestamp": sent_at.astimezone(dt.UTC)
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                    "hs_email_direction": "EMAIL",
                    "hs_email_status": "SENT",
                    "hs_email_subject": subject,
                    "hs_email_text": body,
                },
                "associations": [
                    {
                        "to": {"id": contact_remote_id},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": EMAIL_TO_CONTACT}],
                    }
                ],
            },
            write=True,
        )
        return str(created.id)

    def set_deal_stage(self, deal_remote_id: str, stage: str) -> str:
        theirs = self.stages.get(stage)
        if theirs is None:
            raise CrmRejected(f"revloop stage {stage!r} has no HubSpot dealstage in REVLOOP_HUBSPOT_STAGE_MAP")
        self._call(
            self.client.crm.deals.basic_api.update,
            deal_remote_id,
            simple_public_object_input={"properties": {"dealstage": theirs}},
            write=True,  # idempotent, but a 5xx is left to the write-back's own retry all the same
        )
        return deal_remote_id

    def ping(self) -> str:
        self._call(self.client.crm.contacts.basic_api.get_page, limit=1)
        return f"HubSpot {self.base_url} answers"
