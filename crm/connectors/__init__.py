"""CRM backends behind the agent tools, the sync and the write-back (REVLOOP_CRM_BACKEND: native | hubspot |
pipedrive). `backend(settings)` builds the configured one; `backend(settings, "hubspot")` a named one."""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from crm.connectors.base import CrmAuthError, CrmBackend, CrmError, CrmRejected, RemoteRecord

REMOTE_BACKENDS = ("hubspot", "pipedrive")


class NativeBackend:
    """revloop's own tables: what the agent tools read when no external CRM is configured."""

    name = "native"

    def __init__(self, settings: Settings):
        self.settings = settings

    def find_contact(self, email: str) -> dict[str, Any]:
        from tools.agent_tools import native_find_contact

        return native_find_contact(self.settings, email)

    def account_history(self, account_id: int) -> dict[str, Any]:
        from tools.agent_tools import native_account_history

        return native_account_history(self.settings, account_id)

    def ping(self) -> str:
        return "revloop's own tables"


def backend(settings: Settings, name: str | None = None, **options: Any) -> Any:
    name = name or settings.crm_backend
    if name == "hubspot":
        from crm.connectors.hubspot import HubSpotBackend

        return HubSpotBackend(settings, **options)
    if name == "pipedrive":
        from crm.connectors.pipedrive import PipedriveBackend

        return PipedriveBackend(settings, **options)
    if name == "native":
        return NativeBackend(settings)
    raise ValueError(f"unknown CRM backend {name!r}: one of native, {', '.join(REMOTE_BACKENDS)}")


__all__ = ["CrmAuthError", "CrmBackend", "CrmError", "CrmRejected", "NativeBackend", "RemoteRecord", "backend"]
