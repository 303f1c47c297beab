"""Message templates: versions, validation and preview, and manager approval before use."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, require
from core.enums import Role
from core.schemas import Id, TemplatePreview, TemplateRead, TemplateText, TemplateVersion
from review import templates

router = APIRouter(prefix="/v1/templates", tags=["templates"])
Manager = Annotated[Principal, Depends(require(Role.MANAGER))]


@router.get(
    "",
    response_model=list[TemplateRead],
    summary="Every template: the text in use (approved version or built-in) and its versions",
)
def list_templates(session: ReadSessionDep, _: Manager) -> list[TemplateRead]:
    by_key: dict[str, list[TemplateVersion]] = {}
    for row in templates.versions(session):
        by_key.setdefault(row.key, []).append(TemplateVersion.model_validate(row))
    out = []
    for key in sorted(templates.BUILT_IN):
        parts, version = templates.active(session, key)
        out.append(
            TemplateRead(
                key=key,
                in_use=version,
                subject=parts["subject"],
                body=parts["body"],
                fields=sorted(templates.sample_facts(key)),
                required=sorted(templates.REQUIRED[key]),
                versions=by_key.get(key, []),
            )
        )
    return out


@router.post(
    "/preview",
    response_model=TemplatePreview,
    response_model_exclude_unset=True,
    summary="Check a template text and render it with sample data (nothing saved)",
)
def preview(data: TemplateText, _: Manager) -> TemplatePreview:
    errors = templates.validate(data.key, data.subject, data.body)
    if errors:
        return TemplatePreview(valid=False, errors=errors)
    rendered = templates.render_parts({"subject": data.subject, "body": data.body}, templates.sample_facts(data.key))
    return TemplatePreview(valid=True, errors=[], **rendered)


@router.post(
    "",
    response_model=TemplateVersion,
    status_code=status.HTTP_201_CREATED,
    summary="Save a new draft version (refused if invalid)",
)
def save(data: TemplateText, session: SessionDep, principal: Manager) -> Any:
    return templates.save_draft(session, data.key, data.subject, data.body, actor=principal.actor)


@router.post(
    "/{template_id}/approve",
    response_model=TemplateVersion,
    summary="Approve a draft version: new drafts use it from now on",
)
def approve(template_id: Id, session: SessionDep, principal: Manager) -> Any:
    return templates.approve(session, template_id, actor=principal.actor)
