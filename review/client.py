"""HTTP client of the revloop API, used by the review app (which never touches the database)."""

from __future__ import annotations

from typing import Any

import httpx

from core.schemas import Me, ReviewItem, ReviewItemPage


class ApiError(Exception):
    def __init__(self, status_code: int, message: str):
        super().__init__(f"{status_code}: {message}")
        self.status_code, self.message = status_code, message


class RevloopClient:
    def __init__(self, base_url: str, token: str, timeout: float = 15.0):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API at {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("message") or str(body)
            except ValueError:
                message = response.text[:300]
            raise ApiError(response.status_code, message)
        return response.json()

    def me(self) -> Me:
        return Me.model_validate(self._call("GET", "/v1/me"))

    def review_items(
        self, status: str | None = "pending", limit: int = 50, offset: int = 0, queue: str | None = None
    ) -> ReviewItemPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if queue:
            params["queue"] = queue
        return ReviewItemPage.model_validate(self._call("GET", "/v1/review-items", params=params))

    def review_item(self, item_id: int) -> ReviewItem:
        return ReviewItem.model_validate(self._call("GET", f"/v1/review-items/{item_id}"))

    def approve(
        self, item_id: int, subject: str | None = None, body: str | None = None, acknowledge_flags: bool = False
    ) -> ReviewItem:
        edit = {k: v for k, v in (("subject", subject), ("body", body)) if v is not None}
        if acknowledge_flags:
            edit["acknowledge_flags"] = True
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

    def promote_model(self, version: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/scoring/models/{version}/promote")

    def reject(self, item_id: int, reason: str) -> ReviewItem:
        return ReviewItem.model_validate(
            self._call("POST", f"/v1/review-items/{item_id}/reject", json={"reason": reason})
        )
