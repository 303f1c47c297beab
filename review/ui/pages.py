"""The review app's pages: one row each (title, URL, icon, file, roles); app.py hands them to st.navigation.

Each page is a file in review/ui that Streamlit runs as ``__main__`` (its ``if __name__ == "__main__":``
block calls its ``page(...)``), so every page has its own URL (/kpis, /cash, ...; the queue is the app's
root) and adding a page is adding a file and a row here. st.navigation only serves the pages it is given,
so a role's page set is also what that role can open by URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import streamlit as st

UI = Path(__file__).resolve().parent
EVERYONE = ("closer", "manager", "evaluator", "admin")
MANAGERS = ("manager", "admin")


@dataclass(frozen=True)
class AppPage:
    title: str
    url_path: str
    file: str  # in review/ui
    roles: tuple[str, ...]
    icon: str | None = None

    def page(self, **kwargs) -> st.Page:
        return st.Page(UI / self.file, title=self.title, url_path=self.url_path, icon=self.icon, **kwargs)


PAGES = (  # the first page a role has is its default (see LANDING), served at the app's root URL
    AppPage("Review queue", "queue", "queue.py", EVERYONE, ":material/inbox:"),
    AppPage("Deals", "deals", "deals.py", ("closer", *MANAGERS), ":material/handshake:"),
    AppPage("Weekly review", "weekly", "weekly.py", MANAGERS, ":material/event_note:"),
    AppPage("KPIs", "kpis", "kpis.py", MANAGERS, ":material/monitoring:"),
    AppPage("Cash", "cash", "cash.py", MANAGERS, ":material/payments:"),
    AppPage("Templates", "templates", "templates.py", MANAGERS, ":material/description:"),
    AppPage("Sales team", "team", "team.py", MANAGERS, ":material/groups:"),
    AppPage("ICP rubric", "icp", "icp.py", (*MANAGERS, "evaluator"), ":material/rule:"),
    AppPage("Evals", "evals", "evals.py", (*MANAGERS, "evaluator"), ":material/fact_check:"),
    AppPage("Notifications", "notifications", "notifications.py", EVERYONE, ":material/notifications:"),
    AppPage("Integration health", "health", "health.py", MANAGERS, ":material/health_and_safety:"),
    AppPage("Users", "users", "users.py", ("admin",), ":material/group:"),
    AppPage("Audit", "audit", "audit.py", ("admin",), ":material/history:"),
)


def for_role(role: str) -> list[AppPage]:
    """The pages a role may open, in menu order; an unknown role gets the queue (the API decides the rest)."""
    return [p for p in PAGES if role in p.roles] or [PAGES[0]]


# Where a role lands (served at the app's root URL): its first page, unless it cannot act there. Evaluators read
# the queue but decide nothing, so they land on Evals.
LANDING = {"evaluator": "evals"}


def signed_in(role: str) -> list[st.Page]:
    """The role's pages, its landing page the default; the URL of a page it lacks (a bookmark, or a reload
    signed in by the cookie) is kept hidden and leads to the landing page instead of "Page not found"."""
    mine = for_role(role)
    landing = next((p for p in mine if p.url_path == LANDING.get(role)), mine[0])
    pages = [p.page(default=True) if p is landing else p.page() for p in mine]
    home = pages[mine.index(landing)]
    elsewhere = [
        st.Page(partial(_go_to, home), title=p.title, url_path=p.url_path, visibility="hidden")
        for p in PAGES
        if p not in mine
    ]
    return [*pages, *elsewhere]


def _go_to(page: st.Page) -> None:
    st.switch_page(page)


def signed_out(sign_in: Callable[[], None]) -> list[st.Page]:
    """Sign-in at the root, and every page's URL kept (hidden, not run) so it opens after sign-in if the role has it."""
    return [
        st.Page(sign_in, title="Sign in", url_path="login", default=True),
        *(p.page(visibility="hidden") for p in PAGES),
    ]
