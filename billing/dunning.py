"""The dunning ladder: which step (if any) an invoice is due for today, in what tone, at what priority.

Pure and deterministic: the scheduler (and the collections eval suite) call `decide` with the invoice's
state, the customer's payment history and the steps already drafted. The ladder runs forwards only: the
step due is the latest whose day has come and that is later than every step drafted before. Disputed,
paid, payment-pending and fiscal-blocked (not accepted by the tax authority, so never sent) invoices are
skipped; the amount is always the net balance; a customer's history
(share of invoices paid late, average days late) moves the tone and the priority, never the amount.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from billing.ledger import PaymentHistory
from core.enums import InvoiceStatus, ItemKind
from core.errors import InvalidInput

TONES = ("friendly", "neutral", "firm", "final")
DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offset: int = Field(description="Days after the due date (negative: before)")
    tone: Literal["friendly", "neutral", "firm", "final"]
    # sms | whatsapp: a text when the contact's consent allows it (else email); preferred: the contact's preferred
    # channel when it is a text channel they consented to (else email).
    channel: Literal["email", "call_task", "sms", "whatsapp", "preferred"] = "email"
    escalate: Literal["human"] | None = None


class History(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chronic_late_share: float = Field(0.5, ge=0, le=1)
    chronic_avg_days_late: float = Field(15, ge=0)
    reliable_late_share: float = Field(0.1, ge=0, le=1)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    currency: str = "USD"
    materiality: Decimal = Field(Decimal("0"), ge=0)
    max_touches: int = Field(5, ge=1)
    steps: list[Step] = Field(min_length=1)
    history: History = History()

    @model_validator(mode="after")
    def _ordered(self) -> Policy:
        offsets = [s.offset for s in self.steps]
        if offsets != sorted(set(offsets)):
            raise ValueError("steps must have distinct offsets in increasing order")
        return self


def load_policy(path: Path | str = DEFAULT_POLICY) -> Policy:
    try:
        return Policy.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read dunning policy {path}: {exc}") from exc
    except ValueError as exc:
        raise InvalidInput(f"dunning policy {path} is invalid: {exc}") from exc


@dataclass(frozen=True)
class InvoiceState:
    due_date: dt.date
    balance: Decimal  # net: amount minus payments and credits
    status: str = "open"  # open | paid | disputed | payment_pending | fiscal_blocked | void
    touches_sent: tuple[int, ...] = ()  # offsets of the steps already drafted (sent, pending or withdrawn)


@dataclass(frozen=True)
class LadderDecision:
    action: str  # skip | wait | send | escalate
    reason: str
    step: int | None = None  # the step's offset
    tone: str | None = None
    channel: str | None = None
    priority: str = "normal"  # low | normal | high
    amount: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.amount is not None:
            out["amount"] = str(self.amount)
        return out


def _shift(tone: str, by: int, *, final_allowed: bool) -> str:
    top = len(TONES) - 1 if final_allowed else TONES.index("firm")
    return TONES[max(0, min(top, TONES.index(tone) + by))]


def decide(policy: Policy, invoice: InvoiceState, history: PaymentHistory, today: dt.date) -> LadderDecision:
    if invoice.status == InvoiceStatus.PAID or invoice.balance <= 0:
        return LadderDecision("skip", "paid")
    if invoice.status == InvoiceStatus.VOID:
        return LadderDecision("skip", "void")
    if invoice.status == "disputed":
        return LadderDecision("skip", "disputed: resolve the dispute before chasing")
    if invoice.status == "payment_pending":
        return LadderDecision("skip", "a payment is pending")
    if invoice.status == "fiscal_blocked":
        return LadderDecision("skip", "not accepted by the tax authority yet: the invoice was never sent")
    if invoice.balance < policy.materiality:
        return LadderDecision("skip", f"balance {invoice.balance} is below the materiality threshold")
    days = (today - invoice.due_date).days
    chronic = history.invoices > 0 and (
        history.late_share >= policy.history.chronic_late_share
        or history.avg_days_late >= policy.history.chronic_avg_days_late
    )
    reliable = history.invoices >= 3 and history.late_share < policy.history.reliable_late_share
    priority = "high" if chronic or days > 30 else "low" if reliable else "normal"
    # The ladder runs forwards only: a step is open when it is later than every step already drafted, and
    # due when its day has come. Of the due steps only the latest is drafted: a missed earlier reminder is
    # never sent late, and never after a later (firmer) one.
    last = max(invoice.touches_sent, default=None)
    ahead = [s for s in policy.steps if last is None or s.offset > last]
    due = [s for s in ahead if s.offset <= days]
    if not due:
        upcoming = [s.offset for s in ahead if s.offset > days]
        reason = f"next step at day {upcoming[0]:+d}" if upcoming else "every step has been drafted"
        return LadderDecision("wait", reason, priority=priority)
    step = due[-1]
    if len(invoice.touches_sent) >= policy.max_touches:
        return LadderDecision(
            "escalate",
            f"{len(invoice.touches_sent)} reminders sent: a human takes over",
            step=step.offset,
            tone="final",
            channel=ItemKind.CALL_TASK,
            priority="high",
            amount=invoice.balance,
        )
    tone = step.tone
    if chronic:
        tone = _shift(tone, +1, final_allowed=step.tone == "final")
    elif reliable and step.offset <= 7:
        tone = _shift(tone, -1, final_allowed=False)
    action = "escalate" if step.escalate else "send"
    return LadderDecision(
        action,
        f"day {days:+d}: step {step.offset:+d}" + (" (chronic late payer)" if chronic else ""),
        step=step.offset,
        tone=tone,
        channel=step.channel,
        priority=priority,
        amount=invoice.balance,
    )
