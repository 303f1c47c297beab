"""Message templates: versions, validation and preview, and manager approval before use."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal
from api.deps import SessionDep, require
from review import templates

router = APIRouter(prefix="/v1/templates", tags=["templates"])
Manager = Annotated[Principal, Depends(require("manager"))]


class TemplateText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=50, description="Which message, e.g. first_touch_fast, dunning_firm")
    subject: str = Field(max_length=2000)
    body: str = Field(max_length=20_000)


def _row(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "key": row.key,
        "version": row.version,
        "status": row.status,
        "subject": row.subject,
        "body": row.body,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "approved_by": row.approved_by,
        "approved_at": row.approved_at,
    }


@router.get("", summary="Every template: the text in use (approved version or built-in) and its versions")
def list_templates(session: SessionDep, _: Manager) -> list[dict[str, Any]]:
    by_key: dict[str, list] = {}
    for row in templates.versions(session):
        by_key.setdefault(row.key, []).append(_row(row))
    out = []
    for key in sorted(templates.BUILT_IN):
        parts, version = templates.active(session, key)
        out.append(
            {
                "key": key,
                "in_use": version,
                "subject": parts["subject"],
                "body": parts["body"],
                "fields": sorted(templates.sample_facts(key)),
                "required": sorted(templates.REQUIRED[key]),
                "versions": by_key.get(key, []),
            }
        )
    return out


@router.post("/preview", summary="Check a template text and render it with sample data (nothing saved)")
def preview(data: TemplateText, _: Manager) -> dict[str, Any]:
    errors = templates.validate(data.key, data.subject, data.body)
    if errors:
        return {"valid": False, "errors": errors}
    rendered = templates.render_parts({"subject": data.subject, "body": data.body}, templates.sample_facts(data.key))
    return {"valid": True, "errors": [], **rendered}


@router.post("", status_code=status.HTTP_201_CREATED, summary="Save a new draft version (refused if invalid)")
def save(data: TemplateText, session: SessionDep, principal: Manager) -> dict[str, Any]:
    row = templates.save_draft(session, data.key, data.subject, data.body, actor=principal.actor)
    return _row(row)


@router.post("/{template_id}/approve", summary="Approve a draft version: new drafts use it from now on")
def approve(template_id: int, session: SessionDep, principal: Manager) -> dict[str, Any]:
    row = templates.approve(session, template_id, actor=principal.actor)
    return _row(row)
