"""A sandbox for eval runs: its own SQLite database, checkpoints, outbox and knowledge base in a
temporary folder, so an eval never touches the business's data (nor its SMTP server or chromadb server,
whatever the environment says). Each case starts from empty tables."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from agents.lead.graph import build_lead_graph
from agents.runtime import lead_worker, open_checkpointer
from core.db import dispose_engines, get_engine, session_scope
from core.enums import ItemStatus
from core.migrate import upgrade
from core.models import (
    Account,
    AuditEvent,
    Base,
    ChannelMessage,
    Contact,
    Deal,
    Lead,
    LlmRun,
    OutboxMessage,
    ReviewItem,
    SalesAgent,
    User,
)
from core.schemas import LeadCreate
from core.settings import Settings
from crm.capture import capture_lead
from review import decisions


class Sandbox:
    def __init__(self, base: Settings, engine: str):
        self.folder = Path(tempfile.mkdtemp(prefix="revloop-eval-"))
        llm = {}
        if engine == "llm":
            llm = {
                "llm": "openai",
                "llm_model": base.llm_model,
                "llm_base_url": base.llm_base_url,
                "llm_api_key": base.llm_api_key or "not-needed",
                "llm_timeout_seconds": base.llm_timeout_seconds,
                "llm_max_retries": base.llm_max_retries,
                # The business's budgets and price table: an eval's LLM runs cost what production's would.
                "llm_max_tool_rounds": base.llm_max_tool_rounds,
                "llm_budget_seconds": base.llm_budget_seconds,
                "llm_max_concurrency": base.llm_max_concurrency,
                "llm_max_tokens": base.llm_max_tokens.model_copy(),
                "llm_prices": dict(base.llm_prices),
            }
        self.settings = Settings(
            var_dir=self.folder,
            database_url=f"sqlite:///{self.folder / 'eval.db'}",
            checkpoint_url=f"sqlite:///{self.folder / 'checkpoints.sqlite'}",
            outbox_dir=self.folder / "outbox",
            smtp_url=None,  # approved sends become .eml files in the sandbox, never real mail
            twilio_account_sid=None,  # texts become message files in the sandbox too, never real SMS/WhatsApp
            whatsapp_access_token=None,
            channel_quiet_hours="",  # the same result at any hour of the day
            kb_url=None,  # the embedded knowledge base under the sandbox folder, not the business's server
            rubric_path=base.rubric_path,
            undo_seconds=0,
            worker_poll_seconds=0.05,
            llm="none",
        )
        for key, value in llm.items():  # set after construction: the URL and key fields read env aliases
            setattr(self.settings, key, value)
        upgrade(self.settings)
        self._stack = ExitStack()
        self.worker = self._stack.enter_context(lead_worker(self.settings))
        # A second view of the same checkpoints, to read what the graph did (tool calls) per thread.
        self.graph = build_lead_graph(self.settings).compile(
            checkpointer=self._stack.enter_context(open_checkpointer(self.settings))
        )

    def close(self) -> None:
        self._stack.close()
        dispose_engines(self.settings)  # the sandbox's engines only: the business's stay as they are
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        with get_engine(self.settings).begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(text(f"DELETE FROM {table.name}"))
        shutil.rmtree(self.settings.resolved_outbox_dir, ignore_errors=True)

    def load_crm(self, crm: dict[str, Any]) -> None:
        """Accounts (by domain), contacts, closed deals, users and sales agents (linked to a user by its email) a
        case needs."""
        with session_scope(self.settings) as session:
            accounts = {}
            for a in crm.get("accounts", []):
                row = Account(**a)
                session.add(row)
                session.flush()
                accounts[a.get("domain")] = row.id
            for c in crm.get("contacts", []):
                values = dict(c)
                domain = values.pop("account_domain", None)
                session.add(Contact(account_id=accounts.get(domain), **values))
            for d in crm.get("deals", []):
                values = dict(d)
                domain = values.pop("account_domain", None)
                session.add(Deal(account_id=accounts.get(domain), **values))
            users = {}
            for u in crm.get("users", []):  # people who sign in: routing assigns only to them
                row = User(password_hash="!eval-no-sign-in", active=True, **u)
                session.add(row)
                session.flush()
                users[u["email"]] = row.id
            for agent in crm.get("sales_agents", []):
                values = dict(agent)
                user_email = values.pop("user", None)  # the linked user's email; none: an agent with no account
                session.add(SalesAgent(user_id=users.get(user_email), **values))

    def run_lead(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Capture a lead and run its graph to the review interrupt; what a reviewer would see."""
        with session_scope(self.settings) as session:
            lead, _ = capture_lead(session, LeadCreate.model_validate(payload), actor="eval")
            lead_id = lead.id
        self.worker.run_until_idle()
        return self.observe(lead_id)

    def run_inbound(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Messages arriving on SMS or WhatsApp (as the webhooks pass them on), the worker run after each; what a
        reviewer would see for the lead they made (or replied on)."""
        from deals.inbound import InboundMessage, receive

        lead_id = None
        for n, m in enumerate(messages):
            msg = InboundMessage(
                channel=m["channel"],
                provider_message_id=m.get("id") or f"eval-{n}",
                from_number=m["from"],
                body=m["body"],
                profile_name=m.get("profile_name"),
            )
            with session_scope(self.settings) as session:
                lead_id = receive(session, self.settings, msg, actor="eval").get("lead_id") or lead_id
            self.worker.run_until_idle()
        if lead_id is None:
            raise ValueError("no inbound message of the case made or reached a lead")
        return self.observe(lead_id)

    def age_messages(self, hours: float) -> None:
        """Move every inbound text back in time (a reviewer approving long after the customer wrote)."""
        with session_scope(self.settings) as session:
            for message in session.scalars(select(ChannelMessage)).all():
                message.received_at = message.received_at - dt.timedelta(hours=hours)

    def observe(self, lead_id: int) -> dict[str, Any]:
        with session_scope(self.settings) as session:
            lead = session.get(Lead, lead_id)
            items = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead_id)).all()
            contact = lead.contact
            sent = session.scalars(
                select(OutboxMessage).where(OutboxMessage.review_item_id.in_([i.id for i in items]))
            ).all()
            refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "tool.refused")).all()
            runs = session.scalars(select(LlmRun).where(LlmRun.lead_id == lead_id)).all()
            research = (self.graph.get_state({"configurable": {"thread_id": lead.thread_id}}).values or {}).get(
                "research"
            ) or {}
            return {
                "tool_calls": [c for c in research.get("tool_calls", []) if c not in research.get("refused", [])],
                "lead_id": lead_id,
                "lead_status": lead.status,
                "grade": lead.grade,
                "contact_email": contact.email if contact else None,
                "contact_phone": contact.phone_e164 if contact else None,
                "items": [
                    {
                        "id": i.id,
                        "kind": i.kind,
                        "queue": i.queue,
                        "assignee": i.assignee,
                        "status": i.status,
                        "template": i.template,
                        "brief": i.brief,
                        "draft": i.draft,
                        "guard_flags": list(i.guard_flags),
                    }
                    for i in items
                ],
                "sent": [
                    {
                        "to": m.to_addr,
                        "subject": m.subject,
                        "body": m.body,
                        "item": m.review_item_id,
                        "channel": m.channel,
                    }
                    for m in sent
                ],
                "refused_tools": [e.after for e in refused],
                "llm": {
                    "calls": sum(r.calls for r in runs),
                    # None: some run's usage is unknown (the endpoint did not report it), never counted as 0.
                    "tokens": None
                    if any(r.prompt_tokens is None or r.completion_tokens is None for r in runs)
                    else sum(r.prompt_tokens + r.completion_tokens for r in runs),
                    "cost_usd": None
                    if any(r.cost_usd is None for r in runs)
                    else float(sum(r.cost_usd for r in runs)),
                },
            }

    def approve_all(self, lead_id: int) -> dict[str, Any]:
        """Approve every pending item as drafted (a careless reviewer) and run the sends."""
        with session_scope(self.settings) as session:
            for item in session.scalars(
                select(ReviewItem).where(ReviewItem.lead_id == lead_id, ReviewItem.status == ItemStatus.PENDING)
            ).all():
                decisions.approve(
                    session,
                    item.id,
                    actor="eval:approver",
                    acknowledge_flags=True,
                    max_discount_pct=self.settings.max_discount_pct,
                )
        self.worker.run_until_idle()
        return self.observe(lead_id)
