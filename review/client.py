"""HTTP client of the revloop API, used by the review app (which never touches the database)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from core.schemas import (
    DealClosed,
    DealPage,
    DealRead,
    LoginResult,
    Me,
    MilestoneCompleted,
    ProductRead,
    ReviewItem,
    ReviewItemPage,
    StageChanged,
    WeeklyReview,
)


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        message: str,
        fields: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(f"{status_code}: {message}")
        self.status_code, self.message, self.fields = status_code, message, fields or {}
        self.details = details or {}  # e.g. an approval's unsupported_facts


def login(
    base_url: str, email: str, password: str, timeout: float = 15.0, *, client_ip: str | None = None
) -> LoginResult:
    """Exchange email and password for a session token. `client_ip` is the browser's address: the API counts
    failed sign-ins per account and address, and without it every review-app sign-in would come from this
    server's one address (anyone failing for a closer would slow the closer down too)."""
    client = RevloopClient(base_url, None, timeout)
    headers = {"X-Forwarded-For": client_ip} if client_ip else {}
    return LoginResult.model_validate(
        client._call("POST", "/v1/auth/login", json={"email": email, "password": password}, headers=headers)
    )


class RevloopClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 15.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def _call(self, method: str, path: str, *, text: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API at {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            fields, details = {}, {}
            try:
                body = response.json()
                message = body.get("message") or str(body)
                fields = body.get("fields") or {}
                details = body.get("details") or {}
            except ValueError:
                message = response.text[:300]
            raise ApiError(response.status_code, message, fields, details)
        if text:
            return response.text
        return response.json() if response.content else None

    def me(self) -> Me:
        return Me.model_validate(self._call("GET", "/v1/me"))

    def logout(self) -> None:
        self._call("POST", "/v1/auth/logout")

    def review_items(
        self,
        status: str | None = "pending",
        limit: int = 50,
        offset: int = 0,
        queue: str | None = None,
        **filters: Any,
    ) -> ReviewItemPage:
        """filters: view (my|team|exception), kind, grade, sla, assignee, snoozed."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if queue:
            params["queue"] = queue
        params.update({k: v for k, v in filters.items() if v not in (None, "", False)})
        return ReviewItemPage.model_validate(self._call("GET", "/v1/review-items", params=params))

    def assignees(self) -> list[str]:
        return self._call("GET", "/v1/review-items/assignees")

    def assign(self, item_id: int, assignee: str | None) -> ReviewItem:
        return ReviewItem.model_validate(
            self._call("POST", f"/v1/review-items/{item_id}/assign", json={"assignee": assignee})
        )

    def snooze(self, item_id: int, until: dt.datetime | None) -> ReviewItem:
        body = {"until": until.isoformat() if until else None}
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/snooze", json=body))

    def open_item(self, item_id: int) -> ReviewItem:
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/open"))

    def undo(self, item_id: int) -> ReviewItem:
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/undo"))

    def take_over(self, item_id: int) -> ReviewItem:
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/take-over"))

    def retry_send(self, item_id: int) -> ReviewItem:
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/retry"))

    def mark_sent(self, item_id: int) -> ReviewItem:
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/mark-sent"))

    def notifications(self, unread: bool = False, limit: int = 50) -> dict[str, Any]:
        return self._call("GET", "/v1/notifications", params={"unread": unread, "limit": limit})

    def read_notification(self, notification_id: int) -> dict[str, Any]:
        return self._call("POST", f"/v1/notifications/{notification_id}/read")

    def read_all_notifications(self) -> dict[str, Any]:
        return self._call("POST", "/v1/notifications/read-all")

    def notification_preferences(self) -> dict[str, Any]:
        return self._call("GET", "/v1/notifications/preferences")

    def update_notification_preferences(self, body: dict[str, Any]) -> dict[str, Any]:
        """`channels` {kind: {in_app?, email?}} and/or `quiet_hours` ({start, end, timezone}, or None to remove)."""
        return self._call("PUT", "/v1/notifications/preferences", json=body)

    def team_channels(self) -> dict[str, Any]:
        return self._call("GET", "/v1/notifications/team")

    def update_team_channels(self, webhook: dict[str, bool]) -> dict[str, Any]:
        return self._call("PUT", "/v1/notifications/team", json={"webhook": webhook})

    def integrations_health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health/integrations")

    def bulk_approve(self, ids: list[int]) -> dict[str, Any]:
        return self._call("POST", "/v1/review-items/bulk-approve", json={"ids": ids, "confirm": True})

    def timeline(self, item_id: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/review-items/{item_id}/timeline")

    def conversation(self, contact_id: int, limit: int = 50) -> dict[str, Any]:
        return self._call("GET", f"/v1/contacts/{contact_id}/conversation", params={"limit": limit})

    def kpis(self, days: int = 30) -> dict[str, Any]:
        return self._call("GET", "/v1/kpis", params={"days": days})

    def users(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/users")

    def create_user(self, email: str, role: str, password: str, name: str | None = None) -> dict[str, Any]:
        body = {"email": email, "role": role, "password": password, **({"name": name} if name else {})}
        return self._call("POST", "/v1/users", json=body)

    def update_user(self, user_id: int, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/v1/users/{user_id}", json=changes)

    def sales_agents(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/sales-agents")

    def set_sales_agent_services(self, agent_id: int, services: list[str]) -> dict[str, Any]:
        return self._call("PUT", f"/v1/sales-agents/{agent_id}/services", json={"services": services})

    def templates(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/templates")

    def preview_template(self, key: str, subject: str, body: str) -> dict[str, Any]:
        return self._call("POST", "/v1/templates/preview", json={"key": key, "subject": subject, "body": body})

    def save_template(self, key: str, subject: str, body: str) -> dict[str, Any]:
        return self._call("POST", "/v1/templates", json={"key": key, "subject": subject, "body": body})

    def approve_template(self, template_id: int) -> dict[str, Any]:
        return self._call("POST", f"/v1/templates/{template_id}/approve")

    def cash(self, as_of: dt.date | None = None, weeks: int = 8) -> dict[str, Any]:
        params: dict[str, Any] = {"weeks": weeks, **({"as_of": as_of.isoformat()} if as_of else {})}
        return self._call("GET", "/v1/cash", params=params)

    def held_payments(self) -> dict[str, Any]:
        return self._call("GET", "/v1/payments/held", params={"limit": 500})

    def assign_held_payment(self, event_id: int, invoice_number: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/payments/held/{event_id}/assign", json={"invoice_number": invoice_number})

    def blocked_invoices(self) -> list[dict[str, Any]]:
        """Issued invoices the tax authority has not accepted (pending or rejected): not sent, not chased."""
        page = self._call("GET", "/v1/invoices", params={"status": "issued", "limit": 500})
        return [i for i in page["items"] if i.get("fiscal_status") in ("pending", "rejected")]

    def resubmit_fiscal(self, invoice_id: int) -> dict[str, Any]:
        return self._call("POST", f"/v1/invoices/{invoice_id}/fiscal-submit")

    def eval_runs(self, suite: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"suite": suite} if suite else {})}
        return self._call("GET", "/v1/evals/runs", params=params)

    def eval_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/evals/runs/{run_id}")

    def eval_report(self, run_id: str) -> str:
        return self._call("GET", f"/v1/evals/runs/{run_id}/report", text=True)

    def eval_compare(self, a: str, b: str) -> dict[str, Any]:
        return self._call("GET", "/v1/evals/compare", params={"a": a, "b": b})

    def audit_events(self, **filters: Any) -> dict[str, Any]:
        params = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in filters.items() if v}
        return self._call("GET", "/v1/audit-events", params=params)

    def review_item(self, item_id: int) -> ReviewItem:
        return ReviewItem.model_validate(self._call("GET", f"/v1/review-items/{item_id}"))

    def review_item_context(self, item_id: int) -> dict[str, Any]:
        """What a closer needs to decide: lead_message (+ lead_message_flags), account, open_invoices, deals,
        recent_messages."""
        return self._call("GET", f"/v1/review-items/{item_id}/context")

    def respond(self, item_id: int, instruction: str) -> ReviewItem:
        """The closer's instruction to the agent: the item is redrafted with it; returns the new pending item."""
        return ReviewItem.model_validate(
            self._call("POST", f"/v1/review-items/{item_id}/respond", json={"instruction": instruction})
        )

    def approve(
        self,
        item_id: int,
        subject: str | None = None,
        body: str | None = None,
        acknowledge_flags: bool = False,
        acknowledge_facts: list[str] | None = None,
    ) -> ReviewItem:
        """Approve (edited or not). A 409 whose `details["unsupported_facts"]` lists facts no record supports
        is approved by calling again with those facts in `acknowledge_facts`, once a person checked them."""
        edit: dict[str, Any] = {k: v for k, v in (("subject", subject), ("body", body)) if v is not None}
        if acknowledge_flags:
            edit["acknowledge_flags"] = True
        if acknowledge_facts:
            edit["acknowledge_facts"] = list(acknowledge_facts)
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/approve", json=edit or None))

    def lead_llm_runs(self, lead_id: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/leads/{lead_id}/llm-runs")

    def active_rubric(self) -> dict[str, Any]:
        return self._call("GET", "/v1/icp/rubrics/active")

    def rubrics(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/icp/rubrics")

    def validate_rubric(self, content: str) -> dict[str, Any]:
        return self._call("POST", "/v1/icp/rubrics/validate", json={"content": content})

    def backtest_rubric(self, content: str, source: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/v1/icp/rubrics/backtest", json={"content": content, "source": source})

    def save_rubric(self, content: str) -> dict[str, Any]:
        return self._call("POST", "/v1/icp/rubrics", json={"content": content})

    def publish_rubric(self, rubric_id: int) -> dict[str, Any]:
        return self._call("POST", f"/v1/icp/rubrics/{rubric_id}/publish")

    def scoring_models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/scoring/models")

    def model_charts(self, version: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/scoring/models/{version}/charts")

    def promote_model(self, version: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/scoring/models/{version}/promote")

    def reject(self, item_id: int, reason: str, redraft: bool = False, template: str | None = None) -> ReviewItem:
        body: dict[str, Any] = {"reason": reason}
        if redraft:
            body["redraft"] = True
            if template:
                body["template"] = template
        return ReviewItem.model_validate(self._call("POST", f"/v1/review-items/{item_id}/reject", json=body))

    # --- deals and the weekly review ---------------------------------------------------------------------

    def deals(
        self,
        *,
        open_only: bool = False,
        owner: str | None = None,
        stage: str | None = None,
        lead_id: int | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> DealPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if open_only:
            params["open"] = True
        params.update({k: v for k, v in (("owner", owner), ("stage", stage), ("lead_id", lead_id)) if v})
        return DealPage.model_validate(self._call("GET", "/v1/deals", params=params))

    def deal(self, deal_id: int) -> DealRead:
        return DealRead.model_validate(self._call("GET", f"/v1/deals/{deal_id}"))

    def products(self) -> list[ProductRead]:
        return [ProductRead.model_validate(p) for p in self._call("GET", "/v1/products")]

    def convert_lead(self, lead_id: int, **fields: Any) -> DealRead:
        """fields: product, value, expected_close, owner, name (None ones are left out)."""
        body = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in fields.items() if v is not None}
        return DealRead.model_validate(self._call("POST", f"/v1/leads/{lead_id}/convert", json=body))

    def update_deal(self, deal_id: int, **changes: Any) -> DealRead:
        """changes: name, amount, expected_close, owner, next_step, next_step_due, product (None clears)."""
        body = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in changes.items()}
        return DealRead.model_validate(self._call("PATCH", f"/v1/deals/{deal_id}", json=body))

    def change_stage(self, deal_id: int, stage: str) -> StageChanged:
        return StageChanged.model_validate(self._call("POST", f"/v1/deals/{deal_id}/stage", json={"stage": stage}))

    def close_deal(self, deal_id: int, outcome: str, reason: str | None = None) -> DealClosed:
        body = {"outcome": outcome, **({"reason": reason} if reason is not None else {})}
        return DealClosed.model_validate(self._call("POST", f"/v1/deals/{deal_id}/close", json=body))

    def complete_milestone(self, deal_id: int, seq: int) -> MilestoneCompleted:
        return MilestoneCompleted.model_validate(self._call("POST", f"/v1/deals/{deal_id}/milestones/{seq}/complete"))

    def proposal_pdf(self, deal_id: int, number: str) -> bytes:
        """The proposal's PDF (the API serves it to a signed-in seller only, so the app fetches it)."""
        path = f"/v1/deals/{deal_id}/proposals/{number}/pdf"
        try:
            response = self._http.get(path)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API at {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text[:300]
            except ValueError:
                message = response.text[:300]
            raise ApiError(response.status_code, message)
        return response.content

    def weekly_review(self, as_of: dt.date | None = None, limit: int = 25) -> WeeklyReview:
        params: dict[str, Any] = {"limit": limit, **({"as_of": as_of.isoformat()} if as_of else {})}
        return WeeklyReview.model_validate(self._call("GET", "/v1/reviews/weekly", params=params))
